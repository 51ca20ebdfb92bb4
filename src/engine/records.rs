//! What goes into and comes out of the engine core, as plain values: an [`Incoming`] message
//! (borrowed from wherever it came from), the [`Outgoing`] records it produces, and the
//! [`Outputs`] they are handed to (a producer and offset tracker in the engine, a Vec in tests).
//! No Kafka types: the shell adapts librdkafka's messages to these.

use std::borrow::Cow;

pub use super::tracker::PendingOutput;

/// Headers of an incoming message, by position (the shell adapts librdkafka's; tests use a Vec).
pub trait HeaderList {
    /// Number of headers.
    fn count(&self) -> usize;
    /// Key and value of header `i` (`i < count()`).
    fn header(&self, i: usize) -> (&str, Option<&[u8]>);
}

impl HeaderList for Vec<(String, Option<Vec<u8>>)> {
    fn count(&self) -> usize {
        self.len()
    }
    fn header(&self, i: usize) -> (&str, Option<&[u8]>) {
        (&self[i].0, self[i].1.as_deref())
    }
}

/// Where an incoming message's headers come from, read only when a route needs them (a dead
/// letter, a traced event): librdkafka parses (and allocates) headers on first access, which
/// costs ~5 % of the loop if done for every event.
pub trait HeaderSource {
    /// The headers, if the message has any.
    fn headers(&self) -> Option<&dyn HeaderList>;
}

/// A message without headers.
pub struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn headers(&self) -> Option<&dyn HeaderList> {
        None
    }
}

impl HeaderSource for Vec<(String, Option<Vec<u8>>)> {
    fn headers(&self) -> Option<&dyn HeaderList> {
        Some(self)
    }
}

/// One consumed message, as plain values borrowed from wherever it came from.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    /// The event's bytes (`None`: a tombstone, dead-lettered as not JSON).
    pub payload: Option<&'a [u8]>,
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The message headers (read on demand).
    pub headers: &'a dyn HeaderSource,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The broker's (or producer's) timestamp, epoch milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// What an outgoing record is; each goes to its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `fraud-alerts`.
    Alert,
    /// `transactions.dlq`.
    DeadLetter,
    /// `shadow-scores`.
    ShadowScore,
    /// `drift-reports`.
    DriftReport,
    /// `drift-alerts`.
    DriftAlert,
    /// `retrain-requests`.
    RetrainRequest,
    /// `model-events` (the guard's rollbacks).
    ModelEvent,
    /// `retained-scores` (scores waiting for their labels).
    RetainedScore,
    /// `drift-profiles` (pane profiles and progress for the group's aggregator).
    DriftProfile,
}

impl OutputKind {
    /// A name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Alert => "fraud alert",
            OutputKind::DeadLetter => "dead letter",
            OutputKind::ShadowScore => "shadow score",
            OutputKind::DriftReport => "drift report",
            OutputKind::DriftAlert => "drift alert",
            OutputKind::RetrainRequest => "retrain request",
            OutputKind::ModelEvent => "model event",
            OutputKind::RetainedScore => "retained score",
            OutputKind::DriftProfile => "drift profile",
        }
    }
}

/// One record to produce. Borrowed for the duration of [`Outputs::emit`]; the producer copies it.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// What it is.
    pub kind: OutputKind,
    /// Topic to produce to.
    pub topic: &'a str,
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Message value.
    pub payload: &'a [u8],
    /// Headers, in order.
    pub headers: Vec<(Cow<'a, str>, Option<Cow<'a, [u8]>>)>,
    /// For an alert: its transaction's event time, for the end-to-end latency at acknowledgement.
    pub event_time_ms: Option<i64>,
}

/// Where the core's records and bookkeeping go: a Kafka producer and offset tracker in the
/// engine, a Vec in tests.
pub trait Outputs {
    /// Why a record could not be handed over.
    type Error;
    /// Takes one record for delivery.
    fn emit(&mut self, record: Outgoing<'_>) -> Result<(), Self::Error>;
    /// Every record of the message at (`partition`, `offset`) has been emitted.
    fn handled(&mut self, partition: i32, offset: i64);
    /// Keeps the message being handled from being committed until the returned handle is done
    /// (a drift pane not yet published holds its sampled events); `None` when `previous`
    /// already holds it, or when these outputs commit nothing (tests).
    fn hold(&mut self, previous: Option<&PendingOutput>) -> Option<PendingOutput> {
        let _ = previous;
        None
    }
    /// Takes one record for delivery; its acknowledgement also releases `releases`.
    fn emit_releasing(&mut self, record: Outgoing<'_>, releases: Vec<PendingOutput>) -> Result<(), Self::Error> {
        self.emit(record)?;
        for r in releases {
            r.done();
        }
        Ok(())
    }
}

/// What one member did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Events scored.
    pub scored: u64,
    /// Alerts produced.
    pub alerts: u64,
    /// Events dead-lettered.
    pub dead_letters: u64,
}

impl std::ops::AddAssign for RunSummary {
    fn add_assign(&mut self, r: RunSummary) {
        self.consumed += r.consumed;
        self.scored += r.scored;
        self.alerts += r.alerts;
        self.dead_letters += r.dead_letters;
    }
}

