//! The `fraud-alerts` message (`schemas/fraud-alert.schema.json`), keyed by account.

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

