//! `driftwatch evaluate`: an artifact's metrics on labelled data (the DVC pipeline's evaluate
//! stage; any held-out or recent labelled file).

use thiserror::Error;

use super::train::{metrics_json, write_json, TrainCommandError};
use super::Outcome;
use crate::cli::EvaluateArgs;
use crate::dataset::{DatasetError, Table};
use crate::pipeline::artifact::HoldoutMetrics;
use crate::pipeline::{evaluation, ArtifactError, Pipeline};

/// Why `evaluate` failed.
#[derive(Debug, Error)]
pub enum EvaluateError {
    /// The artifact could not be loaded.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// The label column is missing or not 0/1.
    #[error("{0}")]
    Label(String),
    /// The metrics could not be written.
    #[error(transparent)]
    Write(#[from] TrainCommandError),
}

/// Scores every row of `table` with `pipeline` and measures against column `label_name`.
pub fn evaluate(pipeline: &Pipeline, table: &Table, label_name: &str) -> Result<HoldoutMetrics, EvaluateError> {
    let col = table.columns.iter().position(|c| c.name == label_name).ok_or_else(|| EvaluateError::Label(format!("no column `{label_name}` in the data")))?;
    let labels = crate::pipeline::train::read_labels(table, col, label_name).map_err(|e| EvaluateError::Label(e.to_string()))?;
    let scores: Vec<f64> = pipeline.score_table(table).iter().map(|s| s.probability).collect();
    Ok(evaluation::metrics(&scores, &labels, pipeline.artifact().decision.threshold))
}

/// Runs `evaluate` from its command-line arguments.
pub fn execute(a: EvaluateArgs) -> Result<Outcome, EvaluateError> {
    let pipeline = Pipeline::load(&a.model)?;
    let (table, _) = Table::read_file(&a.data)?;
    let m = evaluate(&pipeline, &table, &a.label)?;
    let value = metrics_json(&m, table.rows as u64, pipeline.artifact().decision.threshold);
    match &a.out {
        Some(path) => write_json(path, &value)?,
        None => println!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialise")),
    }
    eprintln!(
        "{} ({} {}) on {} rows: ROC AUC {:.4}, PR AUC {:.4}, precision {:.3} / recall {:.3} at threshold {:.4}",
        a.data.display(),
        pipeline.artifact().model.name,
        pipeline.artifact().model.version,
        table.rows,
        m.roc_auc,
        m.pr_auc,
        m.precision,
        m.recall,
        pipeline.artifact().decision.threshold
    );
    Ok(Outcome::Success)
}
