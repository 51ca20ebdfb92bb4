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
            value: match reason_value(tx, r.feature) {
                Some(ReasonValue::Num(v)) => serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number),
                Some(ReasonValue::Text(t)) => serde_json::Value::String(t.to_string()),
                None => serde_json::Value::Null,
            },
            contribution: r.contribution,
        })
        .collect()
}

/// A reason's feature value as messages carry it: a finite number, a category, or none (null).
#[derive(Debug, Clone, Copy)]
enum ReasonValue<'a> {
    Num(f64),
    Text(&'a str),
}

impl Serialize for ReasonValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ReasonValue::Num(v) => serializer.serialize_f64(*v),
            ReasonValue::Text(t) => serializer.serialize_str(t),
        }
    }
}

/// The transaction's value of a reason's feature, the one mapping both [`reasons_json`] and
/// [`Reasons`] write.
fn reason_value(tx: &Transaction, feature: FeatureRef) -> Option<ReasonValue<'_>> {
    match feature {
        FeatureRef::Numeric(i) => Some(tx.numeric[usize::from(i)]).filter(|v| v.is_finite()).map(ReasonValue::Num),
        FeatureRef::Categorical(i) => tx.categorical[usize::from(i)].get().map(ReasonValue::Text),
    }
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

/// A score's reasons as [`ReasonJson`] objects, serialised straight from the transaction
/// (the alert path allocates nothing for them).
#[derive(Clone, Copy)]
pub struct Reasons<'a> {
    /// The pipeline that scored (feature names).
    pub pipeline: &'a Pipeline,
    /// The decoded transaction (feature values).
    pub tx: &'a Transaction,
    /// The score (its reasons).
    pub score: &'a Score,
}

impl std::fmt::Debug for Reasons<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(reasons_json(self.pipeline, self.tx, self.score)).finish()
    }
}

impl Serialize for Reasons<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        /// One reason, as `ReasonJson` writes it.
        struct One<'a>(&'a str, Option<ReasonValue<'a>>, f64);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut s = serializer.serialize_struct("ReasonJson", 3)?;
                s.serialize_field("feature", self.0)?;
                s.serialize_field("value", &self.1)?;
                s.serialize_field("contribution", &self.2)?;
                s.end()
            }
        }
        let reasons = self.score.reasons();
        let mut seq = serializer.serialize_seq(Some(reasons.len()))?;
        for r in reasons {
            seq.serialize_element(&One(self.pipeline.feature_name(r.feature), reason_value(self.tx, r.feature), r.contribution))?;
        }
        seq.end()
    }
}

/// A message on the `fraud-alerts` topic, keyed by `account_id`.
#[derive(Debug, Clone, Serialize)]
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
    pub triggers: &'static [&'static str],
    /// Top contributions towards fraud.
    pub reasons: Reasons<'a>,
    /// Model name.
    pub model: &'a str,
    /// Model version.
    pub model_version: &'a str,
    /// The transaction's event time (RFC 3339), when it has one.
    pub event_time: Option<crate::time::Rfc3339Ms>,
    /// When driftwatch scored it (RFC 3339).
    pub processed_at: crate::time::Rfc3339Ms,
    /// Where the transaction was read from.
    pub source: SourcePosition<'a>,
}

