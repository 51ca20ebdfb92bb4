//! `driftwatch drift`: compare a current file with a reference file, feature by feature.

use std::path::Path;

use thiserror::Error;

use crate::dataset::{DatasetError, Table};
use crate::drift::{compare_tables, DriftReport, DriftSettings};
use crate::pipeline::train::{resolve_roles, TrainError, TrainOptions};

/// Why `drift` failed.
#[derive(Debug, Error)]
pub enum DriftCommandError {
    /// A file could not be read.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// Column roles could not be resolved.
    #[error(transparent)]
    Columns(#[from] TrainError),
    /// The files do not match.
    #[error("{0}")]
    Mismatch(String),
}

/// Reads both files, resolves features on the reference (as `train` does), and compares.
/// `columns.label` may be empty (no label column).
pub fn run(reference: &Path, current: &Path, columns: &TrainOptions, settings: &DriftSettings) -> Result<DriftReport, DriftCommandError> {
    let (ref_table, _) = Table::read_file(reference)?;
    let (cur_table, _) = Table::read_file(current)?;
    let roles = resolve_roles(&ref_table, columns)?;
    let names = |cols: &[usize]| cols.iter().map(|&c| ref_table.columns[c].name.clone()).collect::<Vec<_>>();
    let file_name = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
    compare_tables(
        &ref_table,
        &cur_table,
        &names(&roles.numeric),
        &names(&roles.categorical),
        (&file_name(reference), &file_name(current)),
        settings,
    )
    .map_err(DriftCommandError::Mismatch)
}
