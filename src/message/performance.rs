//! The model-performance messages: fraud labels in (`labels`), the scores kept until their
//! labels arrive (`retained-scores`, compacted), and what the engine concludes
//! (`performance-reports`).

use serde::{Deserialize, Deserializer, Serialize};

/// A fraud label for one transaction (the `labels` message, keyed by transaction id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The labelled transaction's id (its `transaction_id`).
    pub transaction_id: String,
    /// 1 (or `true`): fraud; 0 (or `false`): legitimate.
    #[serde(deserialize_with = "zero_one")]
    pub label: u8,
    /// When the label was known (RFC 3339).
    pub label_time: String,
    /// Where it came from: `analyst`, `chargeback`, `cleared`, or your own word.
    pub source: String,
}

/// 0/1 or false/true.
fn zero_one<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ZeroOne {
        Int(u64),
        Bool(bool),
    }
    match ZeroOne::deserialize(d)? {
        ZeroOne::Int(v @ (0 | 1)) => Ok(v as u8),
        ZeroOne::Bool(b) => Ok(u8::from(b)),
        ZeroOne::Int(v) => Err(serde::de::Error::custom(format!("label must be 0 or 1 (or false/true), got {v}"))),
    }
}

/// One version's score of a retained transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedVersion {
    /// Model version.
    pub version: String,
    /// `production` (served; its alerts went to `fraud-alerts`) or `shadow` (the candidate).
    pub role: Role,
    /// Fraud probability.
    pub score: f64,
    /// Whether this version alerted (score at the threshold, or an outlier with `model.alert_on_outlier`).
    pub alert: bool,
}

/// Whether a version served or shadow-scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The serving version.
    Production,
    /// The shadow candidate.
    Shadow,
}

impl Role {
    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Production => "production",
            Role::Shadow => "shadow",
        }
    }
}

/// A scored transaction kept until its label arrives (the `retained-scores` message, keyed by
/// transaction id, on a compacted topic): every alerted transaction, and a uniform sample of
/// the others, with the weight that makes sums over the sample estimate sums over all traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedScore {
    /// Transaction id.
    pub transaction_id: String,
    /// Model name.
    pub model: String,
    /// Event time (RFC 3339).
    pub event_time: String,
    /// 1 / probability of being retained: 1 when any version alerted, else 1 / `performance.retain_fraction`.
    pub weight: f64,
    /// The serving version's score, then the candidate's when it shadow-scored this event.
    pub scores: Vec<RetainedVersion>,
    /// The label joined to it, once one was: the performance thread writes the record again
    /// with its label, so the compacted topic is the join's changelog and a restart knows
    /// which transactions are labelled (absent until then, and in the members' records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<JoinedLabel>,
}

/// The label a retained score was joined to, and where it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedLabel {
    /// 1: fraud; 0: legitimate.
    pub label: u8,
    /// Its label time (RFC 3339).
    pub label_time: String,
    /// The labels topic's partition and offset it was read at (the same record read again
    /// after a restart joins again instead of counting as a duplicate).
    pub partition: i32,
    /// See `partition`.
    pub offset: i64,
}

/// An estimate with its interval (`lower`/`upper` at `performance.confidence`); `null` when
/// there is nothing to estimate from (no alerts for precision, no positives for recall).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Point estimate.
    pub value: Option<f64>,
    /// Lower bound.
    pub lower: Option<f64>,
    /// Upper bound.
    pub upper: Option<f64>,
}

impl Interval {
    /// No estimate.
    pub const NONE: Interval = Interval { value: None, lower: None, upper: None };
}

/// What a report measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// From labels that arrived in a label window (by `label_time`).
    Realised,
    /// Before labels: from the scores of an event-time window and the model's probabilities
    /// (confidence-based performance estimation).
    Estimated,
    /// The matured cohort: every retained transaction of an event-time window (the estimated
    /// window's), with the labels that came within `label_maturity_seconds` of its end; a
    /// transaction still unlabelled then counts as legitimate.
    Cohort,
}

/// What an estimated report's probabilities were calibrated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationSource {
    /// Taken at face value.
    None,
    /// The artifact's calibration, fitted on the held-out split by `train` or `import`.
    Training,
    /// Refitted on this version's matured labelled transactions.
    Matured,
}

/// Label delays (label time − event time) in a window, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelaySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Longest.
    pub max: f64,
}

/// One model version's performance in one window (the `performance-reports` message, keyed by
/// model name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceReport {
    /// `realised` (labels by label time), `estimated` (before labels) or `cohort` (labels of
    /// an event-time window once matured).
    pub kind: ReportKind,
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// `production` or `shadow`.
    pub role: Role,
    /// Window start (RFC 3339): label time for realised reports, event time for estimated ones.
    pub window_start: String,
    /// Window end (exclusive).
    pub window_end: String,
    /// Retained transactions in the window (labelled ones, for realised reports).
    pub transactions: u64,
    /// Their alerts (every alert is retained, so this count is exact).
    pub alerts: u64,
    /// Labelled frauds among them (realised) or the expected number (estimated), weighted to all traffic.
    pub positives: f64,
    /// Precision at the threshold: exact from alerts when realised.
    pub precision: Interval,
    /// Recall at the threshold, from the weighted sample.
    pub recall: Interval,
    /// ROC AUC from the weighted sample (realised only).
    pub roc_auc: Interval,
    /// Alert rate, weighted to all traffic.
    pub alert_rate: f64,
    /// Brier score, weighted (realised only).
    pub brier: Option<f64>,
    /// Expected calibration error over 10 equal-width bins, weighted (realised only).
    pub ece: Option<f64>,
    /// Label delays (realised only).
    pub label_delay_seconds: Option<DelaySummary>,
    /// Estimated only: what the probabilities were calibrated with — `matured` (this version's
    /// matured labels), `training` (the artifact's calibration, fitted on the held-out split),
    /// or `none` (taken at face value; always `none` in realised reports).
    pub calibration: CalibrationSource,
    /// Estimated only: the labelled transactions that calibration was fitted on (matured rows,
    /// or held-out rows for `training`); 0 with `none`.
    pub calibrated_on: u64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// The levels this report is judged against, and how many consecutive windows the interval
    /// has been entirely below each (the evidence the alert rule reads).
    pub below_floor: BelowFloor,
    /// Cohort reports only: how many were labelled, and what was estimated for the same window
    /// before any label (absent in the other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortSummary>,
}

/// What a cohort report adds: its labelled share and the estimate it settles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CohortSummary {
    /// Retained transactions of the window that were labelled by maturity (the others count
    /// as legitimate).
    pub labelled: u64,
    /// The estimated report of the same window and version, when this engine published one
    /// (not after a restart that replayed the window).
    pub estimated: Option<CohortEstimate>,
}

/// The estimate published for a cohort's window before its labels came.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CohortEstimate {
    /// Estimated precision.
    pub precision: Interval,
    /// Estimated recall.
    pub recall: Interval,
    /// What the estimate was calibrated with.
    pub calibration: CalibrationSource,
}

/// Consecutive realised windows whose whole interval lies below the configured floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BelowFloor {
    /// `performance.precision_floor`.
    pub precision_floor: f64,
    /// Windows in a row with the precision interval's upper bound below it.
    pub precision_windows: u32,
    /// `performance.recall_floor`.
    pub recall_floor: f64,
    /// Windows in a row with the recall interval's upper bound below it.
    pub recall_windows: u32,
}

/// The evidence of a concept-drift detection (in the retrain request it triggers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptEvidence {
    /// The detector: `ddm` (Gama et al. 2004's drift detection method).
    pub detector: String,
    /// The error stream: `missed_fraud` (labelled frauds, error: not alerted) or `false_alert`
    /// (labelled alerts, error: legitimate).
    pub stream: String,
    /// The serving version whose errors drifted.
    pub version: String,
    /// Labelled retained transactions the detector has seen since it last reset.
    pub labels_seen: u64,
    /// Error rate over them.
    pub error_rate: f64,
    /// The lowest error rate + its standard deviation seen since the reset.
    pub min_error_rate: f64,
    /// Its standard deviation then.
    pub min_std: f64,
    /// Label time of the label that crossed the drift level (RFC 3339).
    pub detected_at: String,
}
