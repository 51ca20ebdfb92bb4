//! Drift messages: the window report (`drift-reports`), a change of a feature's shown status
//! (`drift-alerts`) and a retrain request (`retrain-requests`); the offline `driftwatch drift`
//! report is the same [`DriftReport`]. Schemas: `schemas/drift-report.schema.json`,
//! `drift-alert.schema.json`, `retrain-request.schema.json`.

use serde::{Deserialize, Serialize};

/// Version of the report format (`schemas/drift-report.schema.json`).
pub const REPORT_VERSION: u32 = 1;

/// Per-feature status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Too few current samples to judge; never reported as drift.
    InsufficientData,
    /// Below the amber threshold.
    Green,
    /// At or above amber, below red.
    Amber,
    /// At or above red.
    Red,
}

/// Statistic a status is decided on (higher means more drift for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusMetric {
    /// Population stability index.
    Psi,
    /// KL(current ‖ reference).
    Kl,
    /// Jensen–Shannon distance (base 2).
    Js,
    /// KS statistic D (numeric features only; categoricals fall back to PSI).
    Ks,
    /// Wasserstein-1 over the reference standard deviation (numeric only; else PSI).
    WassersteinNormalized,
    /// The error rate of labelled decisions (concept-drift alerts only; not a feature rule).
    ErrorRate,
}

/// How a feature's status is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRule {
    /// The statistic compared with the thresholds.
    pub metric: StatusMetric,
    /// Amber at or above this.
    pub amber: f64,
    /// Red at or above this.
    pub red: f64,
}

impl Default for StatusRule {
    fn default() -> Self {
        StatusRule { metric: StatusMetric::Psi, amber: 0.1, red: 0.25 }
    }
}

/// Settings of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSettings {
    /// Bins per numeric feature (quantiles of the reference).
    pub bins: usize,
    /// Additive smoothing α of the proportions.
    pub smoothing: f64,
    /// Reference levels kept per categorical feature.
    pub top_k: usize,
    /// Fewer current samples than this is insufficient data.
    pub min_samples: u64,
    /// Default status rule.
    pub rule: StatusRule,
    /// Per-feature rules overriding the default.
    pub feature_rules: std::collections::BTreeMap<String, StatusRule>,
    /// The p-values a status also needs (the effect alone is not enough at small windows).
    #[serde(default)]
    pub significance: Significance,
}

/// Significance levels of the statuses: amber (red) needs the rule's effect *and* a no-drift
/// p-value at or below `amber` (`red`), so a feature is falsely amber (red) in at most that
/// share of windows, at any window size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Significance {
    /// Level for amber.
    pub amber: f64,
    /// Level for red.
    pub red: f64,
}

impl Default for Significance {
    fn default() -> Self {
        Significance { amber: 0.01, red: 0.001 }
    }
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            bins: 10,
            smoothing: 0.5,
            top_k: 50,
            min_samples: 100,
            rule: StatusRule::default(),
            feature_rules: Default::default(),
            significance: Significance::default(),
        }
    }
}

/// A feature's bins and raw counts on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinnedFeature {
    /// Feature name.
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: FeatureKind,
    /// One label per bin (the last is always `__missing__`).
    pub labels: Vec<String>,
    /// Inner edges for a numeric feature (bin i = [edges[i−1], edges[i])).
    pub edges: Option<Vec<f64>>,
    /// Reference count per bin.
    pub reference_counts: Vec<u64>,
    /// Current count per bin.
    pub current_counts: Vec<u64>,
}

/// Kind of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Binned at reference quantiles.
    Numeric,
    /// Binned by reference levels.
    Categorical,
}

/// χ² result as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquareResult {
    /// Statistic.
    pub statistic: f64,
    /// Degrees of freedom.
    pub dof: u64,
    /// Raw p-value.
    pub p_value: f64,
    /// Benjamini–Hochberg adjusted across the report's features.
    pub p_value_adjusted: f64,
}

/// KS result as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// D.
    pub statistic: f64,
    /// Asymptotic p-value.
    pub p_value: f64,
    /// Benjamini–Hochberg adjusted across the report's features.
    pub p_value_adjusted: f64,
    /// Bound on D's error from quantile sketches (0 when computed on raw values).
    pub rank_error: f64,
}

/// Wasserstein result as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WassersteinResult {
    /// W1 in the feature's units.
    pub distance: f64,
    /// W1 / max(reference population std, 0.001).
    pub normalized: f64,
    /// Bound on `distance`'s error from sketches (0 when computed on raw values).
    #[serde(default)]
    pub error_bound: f64,
}

/// One feature's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Bins and counts.
    #[serde(flatten)]
    pub bins: BinnedFeature,
    /// PSI on smoothed proportions.
    pub psi: f64,
    /// KL(current ‖ reference), nats.
    pub kl: f64,
    /// Jensen–Shannon distance, base 2.
    pub js: f64,
    /// χ² test of homogeneity (absent when fewer than two bins are non-empty).
    pub chi2: Option<ChiSquareResult>,
    /// KS (numeric features).
    pub ks: Option<KsResult>,
    /// Wasserstein-1 (numeric features).
    pub wasserstein: Option<WassersteinResult>,
    /// Status.
    pub status: Status,
    /// The rule that decided it.
    pub rule: StatusRule,
    /// The value compared with the rule's thresholds.
    pub status_value: f64,
    /// The no-drift p-value of that value at this window's size (Monte Carlo for binned
    /// statistics, the KS test's for KS and Wasserstein rules); `None` with too few samples.
    pub status_p_value: Option<f64>,
}

/// Which data a side of the comparison is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSide {
    /// File name, model version or window.
    pub source: String,
    /// Rows.
    pub rows: u64,
}

/// A drift report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Report format version.
    pub report_version: u32,
    /// The reference side.
    pub reference: DataSide,
    /// The current side.
    pub current: DataSide,
    /// Settings used.
    pub settings: DriftSettings,
    /// Worst feature status (or insufficient data).
    pub status: Status,
    /// Per feature, in input order.
    pub features: Vec<FeatureDrift>,
}

/// A rate in the window against its training value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateCheck {
    /// Fraction in the window.
    pub observed: f64,
    /// Fraction in training.
    pub expected: f64,
    /// Sampled events.
    pub samples: u64,
    /// One-sided binomial p-value of seeing at least this many (NaN without samples).
    pub p_value: f64,
}

/// Model-level drift of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDrift {
    /// The fraud probability's distribution.
    pub score: FeatureDrift,
    /// Outlier rate vs the trained false-positive rate.
    pub outlier_rate: RateCheck,
    /// Fraud-alert rate vs training.
    pub alert_rate: RateCheck,
}

/// A window's report: the feature report plus the model section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Window start (RFC 3339).
    pub window_start: String,
    /// Window end, exclusive (RFC 3339).
    pub window_end: String,
    /// Model name and version the reference belongs to.
    pub model: String,
    /// Per-feature drift.
    #[serde(flatten)]
    pub drift: DriftReport,
    /// Score and rates.
    pub model_drift: ModelDrift,
    /// With `drift.aggregation = "group"`: which instances and partitions the window's panes
    /// came from, and which partitions it closed without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<WindowSources>,
}

/// Where a group-aggregated window's data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSources {
    /// Distinct instances whose panes are in the window.
    pub instances: u32,
    /// Partitions of `transactions` with at least one sampled event in the window, ascending.
    pub partitions: Vec<i32>,
    /// Partitions the aggregator did not wait for when the window closed: no progress from
    /// their owner within `drift.instance_timeout_ms` (an instance that vanished before its
    /// partitions were reassigned). Their panes arriving later are counted late.
    pub missing_partitions: Vec<i32>,
    /// Partitions that were idle (caught up, no events for `drift.idle_partition_ms`).
    pub idle_partitions: Vec<i32>,
}

/// A change of a feature's shown status (the `drift-alerts` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlert {
    /// Model name and version.
    pub model: String,
    /// Feature (or `model_score`).
    pub feature: String,
    /// Status before.
    pub from: Status,
    /// Status now.
    pub to: Status,
    /// End of the window that made the change (RFC 3339).
    pub window_end: String,
    /// The deciding statistic and its value in that window.
    pub metric: StatusMetric,
    /// Its value.
    pub value: f64,
    /// Consecutive windows with the new raw status.
    pub consecutive_windows: u32,
}

/// A request to retrain (the `retrain-requests` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// Model name and version.
    pub model: String,
    /// Features shown red, with their deciding values in the last window.
    pub features: Vec<RetrainEvidence>,
    /// End of the window that triggered the request (RFC 3339).
    pub window_end: String,
    /// Windows each listed feature has been shown red, at least.
    pub red_windows: u32,
    /// Human summary.
    pub reason: String,
    /// For a request from concept drift (the labelled error rate rose; `features` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concept: Option<super::performance::ConceptEvidence>,
}

/// Why a feature is in a retrain request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainEvidence {
    /// Feature.
    pub feature: String,
    /// PSI in the last window.
    pub psi: f64,
    /// JS distance in the last window.
    pub js: f64,
    /// Consecutive windows shown red.
    pub red_windows: u32,
}

