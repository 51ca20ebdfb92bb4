//! The `shadow-scores` message (`schemas/shadow-score.schema.json`): a candidate's decision
//! next to production's for the same event.

use serde::Serialize;

use super::alert::SourcePosition;

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
