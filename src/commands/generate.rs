//! `driftwatch generate`: synthetic transactions to a file or stdout.

use thiserror::Error;

use super::Outcome;
use crate::cli::{DataFormat, GenerateArgs};
use crate::generate::{GeneratorConfig, OutputFormat};

/// Why `generate` failed.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// `--start` is not a timestamp.
    #[error("--start `{0}` is not RFC 3339")]
    Start(String),
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Output path (`stdout`).
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Writes the generated rows.
pub fn execute(a: GenerateArgs) -> Result<Outcome, GenerateError> {
    let start_ms = crate::time::parse_rfc3339_ms(&a.start).ok_or_else(|| GenerateError::Start(a.start.clone()))?;
    let cfg = GeneratorConfig { seed: a.seed, scenario: a.scenario, rows: a.rows, onset: a.onset, start_ms, rate_per_sec: a.rate, ..Default::default() };
    let format = match a.format {
        DataFormat::Jsonl => OutputFormat::JsonLines,
        DataFormat::Csv => OutputFormat::Csv,
    };
    let bar = super::progress(Some(a.rows), "{spinner} generating {pos}/{len} rows {wide_bar} {eta}");
    let mut on_row = |n: u64| bar.set_position(n);
    match a.output {
        Some(path) => {
            let write = |source| GenerateError::Write { path: path.display().to_string(), source };
            let file = std::fs::File::create(&path).map_err(write)?;
            crate::generate::write_with_progress(&cfg, format, file, &mut on_row).map_err(write)?;
        }
        None => match crate::generate::write_with_progress(&cfg, format, std::io::stdout().lock(), &mut on_row) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|source| GenerateError::Write { path: "stdout".into(), source })?,
        },
    }
    bar.finish_and_clear();
    if let Some(path) = &a.labels_out {
        let write = |source| GenerateError::Write { path: path.display().to_string(), source };
        let delays = crate::generate::LabelDelays {
            analyst_share: a.label_analyst_share,
            analyst_mean_hours: a.label_analyst_hours,
            chargeback_days: a.label_chargeback_days,
            cleared_days: a.label_cleared_days,
            scale: a.label_delay_scale,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(write)?);
        for label in crate::generate::labels(&cfg, &delays) {
            serde_json::to_writer(&mut out, &label).map_err(|e| write(e.into()))?;
            std::io::Write::write_all(&mut out, b"\n").map_err(write)?;
        }
        std::io::Write::flush(&mut out).map_err(write)?;
    }
    tracing::info!(message = "Generated.", rows = a.rows, seed = a.seed, scenario = a.scenario.name());
    Ok(Outcome::Success)
}
