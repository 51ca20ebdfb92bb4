//! Messages driftwatch writes, one Rust type each; `schemas/` holds their JSON Schemas and a
//! test validates every emitted message against them.

use serde::Serialize;

use crate::pipeline::{FeatureRef, Pipeline, Score, Transaction};

/// Why a transaction scored as it did: one feature's contribution.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasonJson {
    /// Feature name.
    pub feature: String,
    /// The transaction's value (null when missing; missing numerics were imputed).
    pub value: serde_json::Value,
    /// Contribution to the logit (coefficient × standardised value).
    pub contribution: f64,
}

/// The reasons of a score, with names and values, for messages.
pub fn reasons_json(pipeline: &Pipeline, tx: &Transaction, score: &Score) -> Vec<ReasonJson> {
    score
        .reasons()
        .iter()
        .map(|r| ReasonJson {
            feature: pipeline.feature_name(r.feature).to_string(),
            value: match r.feature {
                FeatureRef::Numeric(i) => {
                    let v = tx.numeric[usize::from(i)];
                    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
                FeatureRef::Categorical(i) => {
                    tx.categorical[usize::from(i)].get().map_or(serde_json::Value::Null, |s| serde_json::Value::String(s.to_string()))
                }
            },
            contribution: r.contribution,
        })
        .collect()
}

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

/// Where an alert's transaction was read from (with `transaction_id` and `model_version`,
/// what a downstream consumer deduplicates redeliveries by).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourcePosition<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A message on the `fraud-alerts` topic, keyed by `account_id`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FraudAlert<'a> {
    /// Transaction id.
    pub transaction_id: &'a str,
    /// Value of the model's key column (the account); also the Kafka message key.
    pub account_id: &'a str,
    /// Fraud probability.
    pub score: f64,
    /// The decision threshold in force.
    pub threshold: f64,
    /// Whether the score reached the threshold.
    pub is_fraud: bool,
    /// Distance to the nearest training cluster.
    pub outlier_score: f64,
    /// Whether the outlier detector flagged it.
    pub is_outlier: bool,
    /// What raised the alert: `fraud_score`, `outlier`, or both.
    pub triggers: Vec<&'static str>,
    /// Top contributions towards fraud.
    pub reasons: Vec<ReasonJson>,
    /// Model name.
    pub model: &'a str,
    /// Model version.
    pub model_version: &'a str,
    /// The transaction's event time (RFC 3339), when it has one.
    pub event_time: Option<String>,
    /// When driftwatch scored it (RFC 3339).
    pub processed_at: String,
    /// Where the transaction was read from.
    pub source: SourcePosition<'a>,
}

/// Dead-letter header names: the reason code, the human message, and where the event came from.
pub mod dlq_headers {
    /// Short reason code (`not_json`, `wrong_type`, `oversized`, …).
    pub const REASON: &str = "dlq.reason";
    /// Human-readable error.
    pub const ERROR: &str = "dlq.error";
    /// Source topic.
    pub const TOPIC: &str = "dlq.source.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "dlq.source.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "dlq.source.offset";
}

/// A message on the `shadow-scores` topic, keyed by transaction id: a candidate's decision next
/// to production's for the same event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowScore<'a> {
    /// Transaction id.
    pub transaction_id: &'a str,
    /// Production model version.
    pub production_version: &'a str,
    /// Candidate model version.
    pub candidate_version: &'a str,
    /// Production's fraud probability.
    pub production_score: f64,
    /// The candidate's fraud probability.
    pub candidate_score: f64,
    /// Production's decision (fraud or outlier alert).
    pub production_alert: bool,
    /// The candidate's decision.
    pub candidate_alert: bool,
    /// Whether the decisions agree.
    pub agree: bool,
    /// The candidate's decode+score time, microseconds.
    pub candidate_latency_us: f64,
    /// Where the transaction was read from.
    pub source: SourcePosition<'a>,
}
