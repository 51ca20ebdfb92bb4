//! `driftwatch drift`: compare a current file with a reference file, feature by feature.

use std::path::Path;

use thiserror::Error;

use crate::dataset::{DatasetError, Table};
use super::Outcome;
use crate::cli::{DriftArgs, DriftFormat, FailOn};
use crate::drift::online::DriftConfig;
use crate::drift::window::WindowReport;
use crate::drift::{compare_tables, format_table, status_name, DriftReport, DriftSettings, Status, StatusRule};
use crate::profile::window::WindowSpec;
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
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] crate::pipeline::ArtifactError),
    /// Inconsistent options.
    #[error("{0}")]
    Options(String),
}

/// Reads both files, resolves features on the reference (as `train` does), and compares.
/// `columns.label` may be empty (no label column).
pub fn run(reference: &Path, current: &Path, columns: &TrainOptions, settings: &DriftSettings) -> Result<DriftReport, DriftCommandError> {
    let bar = super::progress(None, "{spinner} {msg} {elapsed}");
    bar.set_message(format!("reading {}", reference.display()));
    let (ref_table, _) = Table::read_file(reference)?;
    bar.set_message(format!("reading {}", current.display()));
    let (cur_table, _) = Table::read_file(current)?;
    bar.finish_and_clear();
    tracing::info!(message = "Read both files.", reference_rows = ref_table.rows, current_rows = cur_table.rows);
    let roles = resolve_roles(&ref_table, columns)?;
    let names = |cols: &[usize]| cols.iter().map(|&c| ref_table.columns[c].name.clone()).collect::<Vec<_>>();
    eprintln!("{}", describe_columns(&names(&roles.numeric), &names(&roles.categorical), &columns.label));
    if columns.label.is_empty() {
        for name in names(&roles.numeric).iter().chain(&names(&roles.categorical)) {
            if LABEL_NAMES.contains(&name.as_str()) {
                eprintln!("note: `{name}` looks like a label and is compared as a feature (shows prior drift); pass --label {name} to leave it out");
            }
        }
    }
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

/// Column names that usually hold a label.
const LABEL_NAMES: [&str; 7] = ["is_fraud", "label", "target", "class", "y", "fraud", "is_anomaly"];

/// The line `drift` prints on stderr: which columns it compares, and what it leaves out.
fn describe_columns(numeric: &[String], categorical: &[String], label: &str) -> String {
    let mut line = format!("comparing {} numeric ({}) and {} categorical ({}) columns", numeric.len(), numeric.join(", "), categorical.len(), categorical.join(", "));
    if !label.is_empty() {
        line.push_str(&format!("; label `{label}` left out"));
    }
    line
}

/// What `drift --model` produces.
pub enum ModelDriftOutput {
    /// The whole file as one window.
    Whole(crate::drift::window::WindowReport),
    /// Each closed window of a replay, in order.
    Windows(Vec<crate::drift::online::ClosedWindow>),
}

/// Compares a file with a pipeline's training reference: as one window, or replayed through
/// sliding windows (`replay`: the streaming configuration) exactly as the engine would.
pub fn run_with_model(
    model: &Path,
    current: &Path,
    settings: &DriftSettings,
    replay: Option<crate::drift::online::DriftConfig>,
) -> Result<ModelDriftOutput, DriftCommandError> {
    use crate::pipeline::Pipeline;
    let pipeline = Pipeline::load(model)?;
    let bar = super::progress(None, "{spinner} {msg} {elapsed}");
    bar.set_message(format!("reading {}", current.display()));
    let (table, _) = Table::read_file(current)?;
    bar.finish_and_clear();
    tracing::info!(message = "Read the current file.", rows = table.rows);
    let cols = pipeline.row_columns(&table);
    let features = &pipeline.artifact().features;
    let numeric: Vec<String> = features.numeric.iter().map(|f| f.name.clone()).collect();
    let categorical: Vec<String> = features.categorical.iter().map(|f| f.name.clone()).collect();
    eprintln!("{} against the training reference of {}", describe_columns(&numeric, &categorical, ""), model.display());
    for name in numeric.iter().chain(&categorical) {
        if table.column(name).is_none() {
            eprintln!("warning: feature `{name}` is not in {}; every row counts as missing", current.display());
        }
    }
    let mut tx = pipeline.new_transaction();
    let a = pipeline.artifact();
    match replay {
        Some(config) => {
            let mut stream = crate::drift::online::StreamDrift::new(&pipeline, config);
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

/// Runs `drift` from its command-line arguments: prints the report(s) and says whether
/// `--fail-on` was reached.
pub fn execute(a: DriftArgs) -> Result<Outcome, DriftCommandError> {
    if !(a.amber <= a.red) {
        return Err(DriftCommandError::Options(format!("--amber ({}) must not exceed --red ({})", a.amber, a.red)));
    }
    let fail_on = a.fail_on.map(|f| match f {
        FailOn::Amber => Status::Amber,
        FailOn::Red => Status::Red,
    });
    let settings = DriftSettings {
        bins: a.bins as usize,
        smoothing: a.smoothing,
        top_k: a.top_k as usize,
        min_samples: a.min_samples,
        rule: StatusRule { metric: a.metric.into(), amber: a.amber, red: a.red },
        feature_rules: Default::default(),
        significance: Default::default(),
    };
    let worst = match &a.model {
        Some(model) => {
            let replay = match a.window_minutes {
                None => None,
                Some(w) => {
                    let window = WindowSpec {
                        size_ms: (w * 60_000.0) as i64,
                        slide_ms: (a.slide_minutes * 60_000.0) as i64,
                        lateness_ms: (a.lateness_seconds * 1000.0) as i64,
                    };
                    if !(window.size_ms > 0 && window.slide_ms > 0 && window.size_ms % window.slide_ms == 0 && a.lateness_seconds >= 0.0) {
                        return Err(DriftCommandError::Options(
                            "need --window-minutes a multiple of --slide-minutes, and --lateness-seconds ≥ 0".into(),
                        ));
                    }
                    Some(DriftConfig { sample_fraction: a.sample, window, settings: settings.clone(), ..Default::default() })
                }
            };
            match run_with_model(model, &a.current, &settings, replay)? {
                ModelDriftOutput::Whole(report) => {
                    match a.format {
                        DriftFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise")),
                        DriftFormat::Table => print!("{}", model_table(&report)),
                    }
                    report.drift.status
                }
                ModelDriftOutput::Windows(windows) => {
                    let mut worst = Status::InsufficientData;
                    for w in &windows {
                        worst = worst.max(w.report.drift.status);
                        match a.format {
                            DriftFormat::Json => println!("{}", serde_json::to_string(w).expect("windows serialise")),
                            DriftFormat::Table => println!("{}", window_line(w)),
                        }
                    }
                    worst
                }
            }
        }
        None => {
            let reference = a.reference.as_ref().expect("clap requires --reference without --model");
            let mut columns = TrainOptions::new(a.label.as_deref().unwrap_or(""));
            a.columns.apply(&mut columns);
            let report = run(reference, &a.current, &columns, &settings)?;
            match a.format {
                DriftFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise")),
                DriftFormat::Table => print!("{}", format_table(&report)),
            }
            report.status
        }
    };
    Ok(if fail_on.is_some_and(|level| worst >= level) { Outcome::DriftFound } else { Outcome::Success })
}

/// The feature table of a model comparison, then its model line.
fn model_table(report: &WindowReport) -> String {
    let m = &report.model_drift;
    format!(
        "{}model_score psi {:.4} ({})   outlier rate {:.4} (trained {:.4}, p {:.3e})   alert rate {:.4} (trained {:.4})\n",
        format_table(&report.drift),
        m.score.psi,
        status_name(m.score.status),
        m.outlier_rate.observed,
        m.outlier_rate.expected,
        m.outlier_rate.p_value,
        m.alert_rate.observed,
        m.alert_rate.expected
    )
}

/// One line per replayed window: end, samples, status, red features, status changes, retrain.
fn window_line(w: &crate::drift::online::ClosedWindow) -> String {
    let red: Vec<&str> = w.report.drift.features.iter().filter(|f| f.status == Status::Red).map(|f| f.bins.name.as_str()).collect();
    let changes: Vec<String> = w.alerts.iter().map(|c| format!("{} {}→{}", c.feature, status_name(c.from), status_name(c.to))).collect();
    format!(
        "{}  {:>6} samples  {:<17}  red: {:<40}  {}{}",
        w.report.window_end,
        w.report.drift.current.rows,
        status_name(w.report.drift.status),
        red.join(","),
        changes.join(", "),
        if w.retrain.is_some() { "  RETRAIN REQUESTED" } else { "" }
    )
}
