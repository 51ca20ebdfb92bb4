//! `driftwatch train`: fit a pipeline artifact from a CSV or JSONL file.

use std::path::Path;

use thiserror::Error;

use crate::dataset::{DatasetError, Table};
use crate::pipeline::train::{train, TrainError, TrainOptions};
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
    let (table, bytes) = Table::read_file(data)?;
    let file_name = data.file_name().map_or_else(|| data.display().to_string(), |n| n.to_string_lossy().into_owned());
    let artifact = train(&table, &bytes, &file_name, opts)?;
    artifact.save(out).map_err(|source| TrainCommandError::Write { path: out.display().to_string(), source })?;
    Ok(artifact)
}
