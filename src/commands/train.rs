//! `driftwatch train`: fit a pipeline artifact from a CSV or JSONL file.

use std::path::Path;

use thiserror::Error;

use crate::dataset::{DatasetError, Table};
use crate::pipeline::train::{train, TrainError, TrainOptions};
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
    let bar = super::progress(None, "{spinner} {msg} {elapsed}");
    bar.set_message(format!("reading {}", data.display()));
    let (table, bytes) = Table::read_file(data)?;
    tracing::info!(message = "Read the training data.", file = %data.display(), rows = table.rows, columns = table.columns.len());
    bar.set_message(format!("training on {} rows (logistic regression, k-means, reference)", table.rows));
    let file_name = data.file_name().map_or_else(|| data.display().to_string(), |n| n.to_string_lossy().into_owned());
    let artifact = train(&table, &bytes, &file_name, opts)?;
    bar.finish_and_clear();
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
    format!(
        "wrote {} ({} {}){source}: {} numeric + {} categorical features, held-out ROC AUC {:.4}, PR AUC {:.4}, precision {:.3} / recall {:.3} at threshold {:.4}",
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

/// Runs `train` from its command-line arguments; a summary goes to stderr.
pub fn execute(a: TrainArgs) -> Result<Outcome, TrainCommandError> {
    let mut opts = TrainOptions::new(&a.label);
    a.columns.apply(&mut opts);
    a.fit.apply(&mut opts);
    opts.hyper.c = a.c;
    opts.hyper.class_weight = a.class_weight.as_str().to_string();
    let artifact = run(&a.data, &a.out, &opts)?;
    eprintln!("{}", summary(&a.out, &artifact, ""));
    for c in &artifact.training.ignored_columns {
        eprintln!("  ignored column `{}`: {}", c.name, c.reason);
    }
    Ok(Outcome::Success)
}
