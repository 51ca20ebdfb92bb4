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
    match a.output {
        Some(path) => {
            let write = |source| GenerateError::Write { path: path.display().to_string(), source };
            let file = std::fs::File::create(&path).map_err(write)?;
            crate::generate::write(&cfg, format, file).map_err(write)?;
        }
        None => match crate::generate::write(&cfg, format, std::io::stdout().lock()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|source| GenerateError::Write { path: "stdout".into(), source })?,
        },
    }
    Ok(Outcome::Success)
}
