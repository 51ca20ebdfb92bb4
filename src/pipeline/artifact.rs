//! The pipeline artifact: one JSON file holding everything needed to score and to measure drift.
//!
//! The file is the contract between `train`, the engine and the registry, so it is versioned
//! ([`FORMAT_VERSION`]), described by `schemas/pipeline.schema.json`, and checked on load:
//! a wrong version, a missing field or an inconsistent feature layout is refused with a message
//! that says which. Everything here is plain data (no maps with random order, no wall-clock
//! time), so the same data and seed give a byte-identical file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The artifact format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the one-hot column for categories seen in training but outside the top-K, and for
/// categories never seen in training (scoring treats them alike; the score flags them).
pub const OTHER_LEVEL: &str = "__other__";
/// Name of the one-hot column for a missing categorical value.
pub const MISSING_LEVEL: &str = "__missing__";

/// The whole artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Artifact format version; see [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Model identity; every alert names it.
    pub model: ModelIdentity,
    /// Which input columns carry the id, key, event time and label.
    pub columns: ColumnRoles,
    /// Preprocessing of each feature.
    pub features: Features,
    /// Names of the encoded (design) columns, in the order of `coefficients` and centroids.
    pub design_columns: Vec<String>,
    /// The fraud model (for an imported model: the preprocessing's scale only, coefficients zero).
    pub logistic: LogisticModel,
    /// A model trained elsewhere and imported from ONNX (`driftwatch import`): when present, it
    /// gives the fraud probability and the reasons; the rest of the artifact (features,
    /// outlier detector, threshold, reference) is fitted on the data given to `import`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<crate::pipeline::onnx::ImportedModel>,
    /// How a probability becomes a decision.
    pub decision: Decision,
    /// The fraud rate observed at each probability on the held-out split (isotonic regression),
    /// which the engine's estimated performance uses until matured labels calibrate it
    /// (`train --calibration none`, and artifacts written before it existed, have none). The
    /// probability and the decision themselves are not changed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::pipeline::calibration::ProbabilityCalibration>,
    /// The outlier detector.
    pub outlier: OutlierModel,
    /// The training distribution that drift is measured against.
    pub reference: ReferenceProfile,
    /// How this artifact was made.
    pub training: TrainingRecord,
}

/// Model name and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIdentity {
    /// Human name, e.g. `card-fraud`.
    pub name: String,
    /// Version string; unique per name in a registry.
    pub version: String,
}

/// Roles of input columns other than features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRoles {
    /// Transaction id column (required on every scored event when set).
    pub id: Option<String>,
    /// Entity key (account/card); alerts are keyed by it.
    pub key: Option<String>,
    /// Event-time column: RFC 3339, or an epoch number (or numeric string) in `timestamp_unit`.
    pub timestamp: Option<String>,
    /// Unit of numeric event times (absent: `auto`, by magnitude).
    #[serde(default, skip_serializing_if = "crate::time::TimestampUnit::is_auto")]
    pub timestamp_unit: crate::time::TimestampUnit,
    /// Ground-truth label column used in training.
    pub label: String,
}

/// Feature preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Numeric features, standardised after imputation.
    pub numeric: Vec<NumericFeature>,
    /// Categorical features, one-hot over the top-K levels plus other and missing.
    pub categorical: Vec<CategoricalFeature>,
}

/// One numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericFeature {
    /// Input column.
    pub name: String,
    /// Value used when the input is missing (training median).
    pub fill_value: f64,
    /// Mean used for standardisation (after imputation).
    pub mean: f64,
    /// Standard deviation used for standardisation (floored so it is never 0).
    pub std: f64,
    /// Whether a 0/1 missing-indicator column follows (the column had missing values in training).
    pub missing_indicator: bool,
}

/// One categorical feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    /// Input column.
    pub name: String,
    /// The top-K training levels, most frequent first; each has a one-hot column, followed by
    /// [`OTHER_LEVEL`] and [`MISSING_LEVEL`].
    pub levels: Vec<String>,
}

/// L2-regularised logistic regression over the design columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticModel {
    /// Intercept as fitted (with class weights).
    pub intercept: f64,
    /// Added to the logit so probabilities are corrected for class weighting: −ln(w₁/w₀).
    pub prior_correction: f64,
    /// One coefficient per design column.
    pub coefficients: Vec<f64>,
}

/// Decision rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// A transaction is flagged as fraud when its probability is ≥ this.
    pub threshold: f64,
    /// How the threshold was chosen on the held-out split.
    pub policy: ThresholdPolicy,
}

/// Threshold selection policies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ThresholdPolicy {
    /// Flag about this fraction of held-out transactions.
    AlertRate {
        /// Target fraction, e.g. 0.02.
        rate: f64,
    },
    /// The lowest threshold whose held-out precision reaches the target (most recall).
    Precision {
        /// Target precision, e.g. 0.5.
        precision: f64,
    },
}

/// k-means outlier detector on the design columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierModel {
    /// Cluster centres, each with one value per design column.
    pub centroids: Vec<Vec<f64>>,
    /// Distance to the nearest centroid at or above which a transaction is an outlier.
    pub threshold: f64,
    /// Fraction of training transactions at or above the threshold (the false-positive rate asked for).
    pub false_positive_rate: f64,
}

/// The training distribution, for drift measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceProfile {
    /// Rows profiled.
    pub rows: u64,
    /// Per numeric feature.
    pub numeric: Vec<NumericReference>,
    /// Per categorical feature.
    pub categorical: Vec<CategoricalReference>,
    /// The model's fraud probability on the training rows.
    pub score: NumericReference,
    /// The outlier score on the training rows.
    pub outlier_score: NumericReference,
    /// Fraction of training rows flagged as outliers.
    pub outlier_rate: f64,
    /// Fraction of training rows flagged as fraud at the threshold.
    pub alert_rate: f64,
}

/// Reference distribution of one numeric quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericReference {
    /// Feature name.
    pub name: String,
    /// Inner bin edges at the reference quantiles k/B (duplicates removed); outer bins are open.
    pub edges: Vec<f64>,
    /// Reference count per bin: `edges.len() + 1` bins, bin i = [edges[i-1], edges[i]).
    pub counts: Vec<u64>,
    /// Missing values (their own bin).
    pub missing: u64,
    /// Mean of the non-missing values.
    pub mean: f64,
    /// Population standard deviation of the non-missing values.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Quantiles at evenly spaced probabilities 0, 1/(n−1), …, 1 (for sketch-based KS and Wasserstein).
    pub quantiles: Vec<f64>,
    /// For a feature with at most [`MAX_SUPPORT`] distinct values: every value, ascending, so
    /// the reference CDF, steps and all, is exact for KS and Wasserstein (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support: Vec<f64>,
    /// How often each `support` value occurs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support_counts: Vec<u64>,
}

/// Most distinct values for which a numeric reference stores its exact distribution.
pub const MAX_SUPPORT: usize = 1000;

/// Reference distribution of one categorical feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalReference {
    /// Feature name.
    pub name: String,
    /// The top-K levels with their counts, most frequent first (ties by name).
    pub top: Vec<CategoryCount>,
    /// Rows with a level seen in training but outside the top-K.
    pub other: u64,
    /// Rows with no value.
    pub missing: u64,
    /// Distinct levels in training.
    pub distinct: u64,
    /// Levels seen exactly once: the Good–Turing estimate of the unseen-level mass.
    pub singletons: u64,
    /// Every training level as a 32-bit FNV-1a hash, sorted, as 8 hex digits each: tells a
    /// level outside the top-K that was seen in training (`__other__`) from a new one (`__unseen__`).
    pub seen_hashes: String,
}

/// A level and its count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryCount {
    /// The level.
    pub value: String,
    /// Rows with it.
    pub count: u64,
}

/// How the artifact was trained: enough to reproduce and audit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRecord {
    /// File name of the training data (no directory, so the artifact does not depend on where it ran).
    pub data_file: String,
    /// SHA-256 of the training file's bytes, hex.
    pub data_sha256: String,
    /// Rows in the file.
    pub rows: u64,
    /// Rows used for fitting.
    pub train_rows: u64,
    /// Rows held out for the threshold and metrics.
    pub holdout_rows: u64,
    /// Positive (fraud) rows in the file.
    pub positives: u64,
    /// Input columns not used, and why.
    pub ignored_columns: Vec<IgnoredColumn>,
    /// All hyper-parameters.
    pub hyperparameters: Hyperparameters,
    /// Solver diagnostics.
    pub solver: SolverReport,
    /// Metrics on the held-out split.
    pub holdout_metrics: HoldoutMetrics,
}

/// An input column left out of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoredColumn {
    /// Column name.
    pub name: String,
    /// Why it was left out.
    pub reason: String,
}

/// Every setting that influenced the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// Inverse L2 strength, as scikit-learn's `C`: the objective is C·Σ wᵢ·lossᵢ + ½‖β‖².
    pub c: f64,
    /// `balanced` (wᵢ = n / (2·n_class)) or `none`.
    pub class_weight: String,
    /// Top-K levels per categorical feature in the model.
    pub max_categories: usize,
    /// Fraction of rows held out (stratified by label).
    pub holdout_fraction: f64,
    /// Threshold policy.
    pub threshold_policy: ThresholdPolicy,
    /// Newton iterations allowed.
    pub max_iterations: usize,
    /// Convergence tolerance on the gradient's max-norm, relative to the total weight.
    pub tolerance: f64,
    /// Number of k-means clusters.
    pub kmeans_clusters: usize,
    /// k-means restarts (best inertia kept).
    pub kmeans_runs: usize,
    /// At most this many training rows are clustered (a seeded sample).
    pub kmeans_max_rows: usize,
    /// Target outlier false-positive rate on training data.
    pub outlier_false_positive_rate: f64,
    /// Reference bins per numeric feature.
    pub reference_bins: usize,
    /// Top-K levels per categorical feature in the reference profile.
    pub reference_top_k: usize,
    /// Number of stored reference quantiles per numeric feature.
    pub reference_quantiles: usize,
    /// Seed for the split and k-means.
    pub seed: u64,
}

/// Newton solver diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverReport {
    /// Solver name.
    pub method: String,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
    /// Final max-norm of the gradient divided by the total weight.
    pub gradient_norm: f64,
}

/// Quality on the held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutMetrics {
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Average precision (area under the precision-recall curve, as scikit-learn computes it).
    pub pr_auc: f64,
    /// Precision at the decision threshold.
    pub precision: f64,
    /// Recall at the decision threshold.
    pub recall: f64,
    /// Fraction flagged at the threshold.
    pub alert_rate: f64,
    /// Positives in the held-out split.
    pub positives: u64,
}

/// Why an artifact could not be loaded.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// File unreadable.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// Path as given.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not JSON, or a field missing or of the wrong type.
    #[error("model file {path} is not a valid pipeline artifact: {reason}")]
    Invalid {
        /// Path as given.
        path: String,
        /// serde's message, which names the field and line.
        reason: String,
    },
    /// A format version this build does not read.
    #[error("model file {path} has format_version {found}; this driftwatch reads format_version {FORMAT_VERSION}")]
    Version {
        /// Path as given.
        path: String,
        /// Version in the file.
        found: String,
    },
    /// Parts of the artifact disagree about the features.
    #[error("model file {path} is inconsistent: {reason}")]
    FeatureMismatch {
        /// Path as given.
        path: String,
        /// Which parts disagree.
        reason: String,
    },
}

impl Artifact {
    /// Reads and validates an artifact file.
    pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io { path: shown.clone(), source })?;
        Artifact::from_slice(&bytes, &shown)
    }

    /// Parses and validates artifact bytes; `name` is used in errors.
    pub fn from_slice(bytes: &[u8], name: &str) -> Result<Artifact, ArtifactError> {
        let invalid = |reason: String| ArtifactError::Invalid { path: name.to_string(), reason };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        match value.get("format_version") {
            None => return Err(invalid("missing field `format_version`".into())),
            Some(v) if v.as_u64() != Some(u64::from(FORMAT_VERSION)) => {
                return Err(ArtifactError::Version { path: name.to_string(), found: v.to_string() })
            }
            Some(_) => {}
        }
        let artifact: Artifact = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        artifact
            .check_consistency()
            .map_err(|reason| ArtifactError::FeatureMismatch { path: name.to_string(), reason })?;
        Ok(artifact)
    }

    /// Serialises as pretty JSON with a trailing newline (deterministic).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("artifact serialises");
        s.push('\n');
        s
    }

    /// Writes the artifact atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(&tmp, path)
    }

    /// The design column names implied by `features`, in order.
    pub fn expected_design_columns(features: &Features) -> Vec<String> {
        let mut cols: Vec<String> = features.numeric.iter().map(|f| f.name.clone()).collect();
        cols.extend(features.numeric.iter().filter(|f| f.missing_indicator).map(|f| format!("{}{MISSING_LEVEL}", f.name)));
        for c in &features.categorical {
            for level in c.levels.iter().map(String::as_str).chain([OTHER_LEVEL, MISSING_LEVEL]) {
                cols.push(format!("{}={level}", c.name));
            }
        }
        cols
    }

    /// Checks that every part agrees on the feature layout; returns what disagrees.
    pub fn check_consistency(&self) -> Result<(), String> {
        let expected = Artifact::expected_design_columns(&self.features);
        if self.design_columns != expected {
            return Err(format!(
                "design_columns ({} columns) do not match the features ({} columns expected)",
                self.design_columns.len(),
                expected.len()
            ));
        }
        if let Some(c) = &self.calibration {
            c.check()?;
        }
        let d = expected.len();
        if self.logistic.coefficients.len() != d {
            return Err(format!("{} coefficients for {d} design columns", self.logistic.coefficients.len()));
        }
        if self.outlier.centroids.is_empty() || self.outlier.centroids.len() > crate::pipeline::MAX_CLUSTERS {
            return Err(format!("outlier detector has {} centroids; 1..={} supported", self.outlier.centroids.len(), crate::pipeline::MAX_CLUSTERS));
        }
        if let Some(c) = self.outlier.centroids.iter().find(|c| c.len() != d) {
            return Err(format!("a centroid has {} values for {d} design columns", c.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for name in self.features.numeric.iter().map(|f| &f.name).chain(self.features.categorical.iter().map(|f| &f.name)) {
            if !names.insert(name) {
                return Err(format!("feature `{name}` is defined twice"));
            }
        }
        if self.features.numeric.iter().any(|f| !(f.std > 0.0) || !f.mean.is_finite() || !f.fill_value.is_finite()) {
            return Err("a numeric feature has a non-finite mean or fill value, or a non-positive std".into());
        }
        let ref_num: Vec<_> = self.reference.numeric.iter().map(|r| &r.name).collect();
        let feat_num: Vec<_> = self.features.numeric.iter().map(|f| &f.name).collect();
        let ref_cat: Vec<_> = self.reference.categorical.iter().map(|r| &r.name).collect();
        let feat_cat: Vec<_> = self.features.categorical.iter().map(|f| &f.name).collect();
        if ref_num != feat_num || ref_cat != feat_cat {
            return Err("the reference profile's features differ from the model's".into());
        }
        for r in &self.reference.categorical {
            if crate::pipeline::reference::decode_seen_hashes(&r.seen_hashes).is_none_or(|h| h.windows(2).any(|w| w[0] >= w[1])) {
                return Err(format!("reference `{}` has malformed seen_hashes", r.name));
            }
        }
        for r in self.reference.numeric.iter().chain([&self.reference.score, &self.reference.outlier_score]) {
            if r.counts.len() != r.edges.len() + 1 {
                return Err(format!("reference `{}` has {} counts for {} edges", r.name, r.counts.len(), r.edges.len()));
            }
            if r.support.len() != r.support_counts.len() || r.support.windows(2).any(|w| !(w[0] < w[1])) || r.support_counts.contains(&0) {
                return Err(format!("reference `{}` has a malformed support (values must ascend, each with a positive count)", r.name));
            }
        }
        let finite = self.logistic.coefficients.iter().chain(self.outlier.centroids.iter().flatten()).all(|v| v.is_finite())
            && self.logistic.intercept.is_finite()
            && self.decision.threshold.is_finite()
            && self.outlier.threshold.is_finite();
        if !finite {
            return Err("non-finite model parameters".into());
        }
        if let Some(m) = &self.imported {
            crate::pipeline::onnx::ImportRuntime::new(m, &self.features).map_err(|e| format!("imported model: {e}"))?;
        }
        Ok(())
    }
}
