//! The output lines of `driftwatch score` (`schemas/score-line.schema.json`).

use serde::Serialize;

use super::alert::ReasonJson;

/// One output line of `driftwatch score` for an input that scored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreLine {
    /// 1-based input line number.
    pub line: u64,
    /// Transaction id (null when the pipeline has no id column).
    pub transaction_id: Option<String>,
    /// Fraud probability.
    pub score: f64,
    /// Whether the score reached the model's threshold.
    pub is_fraud: bool,
    /// Distance to the nearest training cluster.
    pub outlier_score: f64,
    /// Whether the outlier score reached the trained threshold.
    pub is_outlier: bool,
    /// Categorical values never seen in training.
    pub unseen_categories: u16,
    /// Top contributions towards fraud.
    pub reasons: Vec<ReasonJson>,
    /// Model name.
    pub model: String,
    /// Model version.
    pub model_version: String,
    /// With `score --contributions`: every feature's contribution to the log-odds (raw score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contributions: Option<std::collections::BTreeMap<String, f64>>,
    /// With `score --contributions`: the value the contributions start from (their sum plus
    /// this is the score's log-odds, or raw score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_value: Option<f64>,
}

/// One output line of `driftwatch score` for an input that could not be scored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreErrorLine {
    /// 1-based input line number.
    pub line: u64,
    /// Human-readable reason.
    pub error: String,
    /// Short reason code (as in dead-letter headers).
    pub reason: &'static str,
}

