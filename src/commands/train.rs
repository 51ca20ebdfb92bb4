//! `driftwatch train`: fit a pipeline artifact from a CSV or JSONL file.

use std::path::Path;

use thiserror::Error;

use crate::dataset::{DatasetError, Table};
use crate::pipeline::train::{train_with_holdout, TrainError, TrainOptions};
use super::Outcome;
use crate::cli::{ColumnArgs, FitArgs, TrainArgs};
use crate::pipeline::artifact::ThresholdPolicy;
use crate::pipeline::Artifact;

/// Why `train` failed.
#[derive(Debug, Error)]
pub enum TrainCommandError {
    /// The data file could not be read.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The MLflow run or registration failed (the artifact was written).
    #[error("the artifact was written, but logging it to MLflow failed: {0}")]
    Mlflow(#[from] crate::model::registry::RegistryError),
    /// The artifact could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Output path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Reads `data`, trains, and writes the artifact to `out`. Returns the artifact.
pub fn run(data: &Path, out: &Path, opts: &TrainOptions) -> Result<Artifact, TrainCommandError> {
    run_with_holdout(data, out, opts, None)
}

/// [`run`], also writing the held-out rows to `holdout_out` (JSON lines) when given.
pub fn run_with_holdout(data: &Path, out: &Path, opts: &TrainOptions, holdout_out: Option<&Path>) -> Result<Artifact, TrainCommandError> {
    let bar = super::progress(None, "{spinner} {msg} {elapsed}");
    bar.set_message(format!("reading {}", data.display()));
    let (table, bytes) = Table::read_file(data)?;
    tracing::info!(message = "Read the training data.", file = %data.display(), rows = table.rows, columns = table.columns.len());
    bar.set_message(format!("training on {} rows (logistic regression, k-means, reference)", table.rows));
    let file_name = data.file_name().map_or_else(|| data.display().to_string(), |n| n.to_string_lossy().into_owned());
    let (artifact, holdout) = train_with_holdout(&table, &bytes, &file_name, opts)?;
    bar.finish_and_clear();
    if let Some(path) = holdout_out {
        let mut text = String::with_capacity(holdout.len() * 48);
        for row in &holdout {
            text.push_str(&serde_json::to_string(row).expect("held-out rows serialise"));
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|source| TrainCommandError::Write { path: path.display().to_string(), source })?;
    }
    let solver = &artifact.training.solver;
    if !solver.converged {
        tracing::warn!(
            message = "The logistic-regression solver did not converge; the model may be poor. Raise max_iterations, lower --c, or check for separable or badly scaled columns.",
            iterations = solver.iterations,
            gradient_norm = solver.gradient_norm
        );
    }
    artifact.save(out).map_err(|source| TrainCommandError::Write { path: out.display().to_string(), source })?;
    Ok(artifact)
}

impl ColumnArgs {
    /// Sets the column roles of `train`'s role resolution (shared by `train` and `drift`).
    pub fn apply(&self, opts: &mut TrainOptions) {
        opts.numeric = self.numeric.clone();
        opts.categorical = self.categorical.clone();
        opts.id = self.id.clone();
        opts.key = self.key.clone();
        opts.timestamp = self.timestamp.clone();
        opts.timestamp_unit = self.timestamp_unit.into();
        opts.ignore = self.ignore.clone();
    }
}

impl FitArgs {
    /// Sets what `train` and `import` share: identity, split, threshold policy, outlier
    /// detector and drift reference.
    pub fn apply(&self, opts: &mut TrainOptions) {
        opts.name = self.name.clone();
        opts.version = self.model_version.clone();
        opts.calibration = self.calibration.into();
        let h = &mut opts.hyper;
        h.seed = self.seed;
        h.max_categories = self.max_categories;
        h.holdout_fraction = self.holdout;
        h.kmeans_clusters = self.clusters;
        h.outlier_false_positive_rate = self.outlier_fpr;
        h.reference_bins = self.bins;
        h.reference_top_k = self.reference_top_k;
        if let Some(rate) = self.target_alert_rate {
            h.threshold_policy = ThresholdPolicy::AlertRate { rate };
        }
        if let Some(precision) = self.target_precision {
            h.threshold_policy = ThresholdPolicy::Precision { precision };
        }
    }
}

/// The line `train` and `import` print: where the artifact went, its features and held-out
/// metrics; `source` (e.g. " from model.onnx (…)") follows the version.
pub fn summary(out: &Path, artifact: &Artifact, source: &str) -> String {
    let m = &artifact.training.holdout_metrics;
    let calibration = match &artifact.calibration {
        Some(c) => format!("; calibrated ({}, {} blocks over {} held-out rows; ECE {:.4} raw)", c.method, c.blocks.len(), c.rows, c.holdout_ece_raw),
        None => "; not calibrated".to_string(),
    };
    format!(
        "wrote {} ({} {}){source}: {} numeric + {} categorical features, held-out ROC AUC {:.4}, PR AUC {:.4}, precision {:.3} / recall {:.3} at threshold {:.4}{calibration}",
        out.display(),
        artifact.model.name,
        artifact.model.version,
        artifact.features.numeric.len(),
        artifact.features.categorical.len(),
        m.roc_auc,
        m.pr_auc,
        m.precision,
        m.recall,
        artifact.decision.threshold
    )
}

/// The metrics file of `--metrics-out` and `evaluate`: flat keys, as `dvc metrics show` reads them.
pub fn metrics_json(m: &crate::pipeline::artifact::HoldoutMetrics, rows: u64, threshold: f64) -> serde_json::Value {
    serde_json::json!({
        "roc_auc": m.roc_auc,
        "pr_auc": m.pr_auc,
        "precision": m.precision,
        "recall": m.recall,
        "alert_rate": m.alert_rate,
        "positives": m.positives,
        "rows": rows,
        "threshold": threshold,
    })
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainCommandError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    std::fs::write(path, text).map_err(|source| TrainCommandError::Write { path: path.display().to_string(), source })
}

/// What `train` and `import` do once the artifact is written: the metrics file
/// (`--metrics-out`) and the MLflow run and model version (`--mlflow`).
pub fn publish(fit: &FitArgs, out: &Path, artifact: &Artifact) -> Result<(), TrainCommandError> {
    if let Some(path) = &fit.metrics_out {
        write_json(path, &metrics_json(&artifact.training.holdout_metrics, artifact.training.holdout_rows, artifact.decision.threshold))?;
    }
    if let Some(uri) = &fit.mlflow {
        let settings = crate::model::registry::MlflowSettings { uri: uri.clone(), experiment: fit.mlflow_experiment.clone(), cache: String::new() };
        let by = std::env::var("USER").unwrap_or_else(|_| "driftwatch".into());
        let registry = crate::model::mlflow::MlflowRegistry::open(&artifact.model.name, &settings)?;
        let (entry, version, _) = registry.register_run(out, &by)?;
        eprintln!("logged to MLflow at {}: registered model {} version {} ({}, experiment `{}`)", registry.client().uri(), artifact.model.name, version.number, entry.version, settings.experiment);
    }
    Ok(())
}

/// Runs `train` from its command-line arguments; a summary goes to stderr.
pub fn execute(a: TrainArgs) -> Result<Outcome, TrainCommandError> {
    let mut opts = TrainOptions::new(&a.label);
    a.columns.apply(&mut opts);
    a.fit.apply(&mut opts);
    opts.hyper.c = a.c;
    opts.hyper.class_weight = a.class_weight.as_str().to_string();
    let artifact = run_with_holdout(&a.data, &a.out, &opts, a.fit.holdout_out.as_deref())?;
    eprintln!("{}", summary(&a.out, &artifact, ""));
    for c in &artifact.training.ignored_columns {
        eprintln!("  ignored column `{}`: {}", c.name, c.reason);
    }
    publish(&a.fit, &a.out, &artifact)?;
    Ok(Outcome::Success)
}
