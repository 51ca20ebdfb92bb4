//! `driftwatch score`: score JSONL transactions with a pipeline artifact, one output line each.

use std::io::{BufRead, Write};

use thiserror::Error;

use super::Outcome;
use crate::cli::ScoreArgs;
use crate::message::{reasons_json, ScoreErrorLine, ScoreLine};
use crate::pipeline::{ArtifactError, Pipeline};

/// Counts of what `score` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScoreSummary {
    /// Lines scored.
    pub scored: u64,
    /// Lines that produced an error line.
    pub errors: u64,
    /// Scored lines flagged as fraud.
    pub fraud: u64,
    /// Scored lines flagged as outliers.
    pub outliers: u64,
}

/// Scores every line of `input`, writing one JSON line per input line to `out`.
///
/// A line that cannot be scored (not JSON, wrong types, missing required fields, blank)
/// produces an error line with its number and the reason, and scoring goes on.
pub fn score_lines(pipeline: &Pipeline, input: impl BufRead, out: impl Write) -> std::io::Result<ScoreSummary> {
    score_lines_with(pipeline, input, out, false)
}

/// [`score_lines`], with every feature's contribution on each line when `contributions` is set.
pub fn score_lines_with(pipeline: &Pipeline, input: impl BufRead, mut out: impl Write, contributions: bool) -> std::io::Result<ScoreSummary> {
    let model = &pipeline.artifact().model;
    let has_id = pipeline.artifact().columns.id.is_some();
    let mut tx = pipeline.new_transaction();
    let mut summary = ScoreSummary::default();
    let mut buf = Vec::new();
    let mut input = input;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let result = if line.iter().all(u8::is_ascii_whitespace) {
            Err(ScoreErrorLine { line: line_no, error: "empty line".into(), reason: "empty" })
        } else {
            pipeline
                .decode_into(line, &mut tx)
                .map_err(|e| ScoreErrorLine { line: line_no, error: e.to_string(), reason: e.reason().as_str() })
        };
        match result {
            Ok(()) => {
                let s = pipeline.score(&tx);
                summary.scored += 1;
                summary.fraud += u64::from(s.is_fraud);
                summary.outliers += u64::from(s.is_outlier);
                let mut out_line = ScoreLine {
                    line: line_no,
                    transaction_id: has_id.then(|| tx.id.clone()),
                    score: s.probability,
                    is_fraud: s.is_fraud,
                    outlier_score: s.outlier_score,
                    is_outlier: s.is_outlier,
                    unseen_categories: s.unseen_categories,
                    reasons: reasons_json(pipeline, &tx, &s),
                    model: model.name.clone(),
                    model_version: model.version.clone(),
                    contributions: None,
                    base_value: None,
                };
                if contributions {
                    let (base, c) = pipeline.contributions(&tx);
                    out_line.base_value = Some(base);
                    out_line.contributions = Some(c.into_iter().map(|(f, v)| (pipeline.feature_name(f).to_string(), v)).collect());
                }
                serde_json::to_writer(&mut out, &out_line)?;
            }
            Err(e) => {
                summary.errors += 1;
                serde_json::to_writer(&mut out, &e)?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(summary)
}

/// Why `score` failed (lines that cannot be scored are output, not errors).
#[derive(Debug, Error)]
pub enum ScoreCommandError {
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ArtifactError),
    /// Input or output failed.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Runs `score` from its command-line arguments; the summary goes to stderr. Exit status 4
/// when no line could be scored (or, with `--fail-on-error`, when any could not).
pub fn execute(a: ScoreArgs) -> Result<Outcome, ScoreCommandError> {
    let pipeline = Pipeline::load(&a.model)?;
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |context: String| move |source| ScoreCommandError::Io { context, source };
    let summary = match &a.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
            let len = file.metadata().map(|m| m.len()).ok();
            let bar = super::progress(len, "{spinner} scoring {binary_bytes}/{binary_total_bytes} {wide_bar} {eta}");
            let summary = score_lines_with(&pipeline, std::io::BufReader::new(bar.wrap_read(file)), out, a.contributions);
            bar.finish_and_clear();
            summary
        }
        None => score_lines_with(&pipeline, std::io::stdin().lock(), out, a.contributions),
    }
    .map_err(io("scoring".into()))?;
    eprintln!("scored {} lines ({} fraud, {} outliers), {} lines could not be scored", summary.scored, summary.fraud, summary.outliers, summary.errors);
    let failed = summary.errors > 0 && (summary.scored == 0 || a.fail_on_error);
    if failed {
        eprintln!("error: {} of {} lines could not be scored (reasons in the output lines)", summary.errors, summary.errors + summary.scored);
    }
    Ok(if failed { Outcome::LinesFailed } else { Outcome::Success })
}
