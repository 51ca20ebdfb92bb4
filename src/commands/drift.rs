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

/// What `drift --model` produces.
pub enum ModelDriftOutput {
    /// The whole file as one window.
    Whole(crate::drift::window::WindowReport),
    /// Each closed window of a replay, in order.
    Windows(Vec<crate::drift::stream::ClosedWindow>),
}

/// Compares a file with a pipeline's training reference: as one window, or replayed through
/// sliding windows (`replay`: the streaming configuration) exactly as the engine would.
pub fn run_with_model(
    model: &Path,
    current: &Path,
    settings: &DriftSettings,
    replay: Option<crate::drift::stream::DriftConfig>,
) -> Result<ModelDriftOutput, Box<dyn std::error::Error + Send + Sync>> {
    use crate::pipeline::Pipeline;
    let pipeline = Pipeline::load(model)?;
    let (table, _) = Table::read_file(current)?;
    let cols = pipeline.row_columns(&table);
    let mut tx = pipeline.new_transaction();
    let a = pipeline.artifact();
    match replay {
        Some(config) => {
            let mut stream = crate::drift::stream::StreamDrift::new(&pipeline, config);
            let mut closed = Vec::new();
            for r in 0..table.rows {
                pipeline.fill_from_row(&table, &cols, r, &mut tx);
                let score = pipeline.score(&tx);
                closed.extend(stream.observe(&tx, &score));
            }
            closed.extend(stream.finish());
            Ok(ModelDriftOutput::Windows(closed))
        }
        None => {
            let layout = crate::profile::ProfileLayout::new(&a.reference);
            let mut profile = crate::profile::WindowProfile::new(&a.reference, i64::MAX, i64::MIN);
            for r in 0..table.rows {
                pipeline.fill_from_row(&table, &cols, r, &mut tx);
                let score = pipeline.score(&tx);
                profile.observe(&layout, &tx, &score);
                if let Some(t) = tx.event_time_ms {
                    profile.start_ms = profile.start_ms.min(t);
                    profile.end_ms = profile.end_ms.max(t + 1);
                }
            }
            if profile.start_ms > profile.end_ms {
                (profile.start_ms, profile.end_ms) = (0, 0);
            }
            let name = format!("{} {}", a.model.name, a.model.version);
            Ok(ModelDriftOutput::Whole(crate::drift::window::evaluate_window(&profile, &a.reference, &name, settings)))
        }
    }
}
