//! The engine's operational events, one struct each (vector's `internal_events` pattern):
//! `emit` writes the log line and updates the metric in one call, so a call site is one line and
//! logs and metrics never drift apart. Per-event hot-path counters (consumed, scored) are not
//! here: they are plain counter increments with no log line.

use std::fmt::Display;

use tracing::{error, info, warn};

use super::metrics::{Metrics, ReasonLabel, StatusLabel, TopicLabel};
use crate::message::InvalidReason;

/// Something that happened in the engine: logs it and counts it.
pub trait InternalEvent {
    /// Logs the event and updates its metric.
    fn emit(self, metrics: &Metrics);
}

/// A librdkafka client reported an error (broker down, authentication failure, …).
pub struct KafkaClientError<'a, E: Display> {
    /// `consumer` or `producer`.
    pub client: &'static str,
    /// librdkafka's error.
    pub error: &'a E,
    /// librdkafka's reason text.
    pub reason: &'a str,
}

impl<E: Display> InternalEvent for KafkaClientError<'_, E> {
    fn emit(self, m: &Metrics) {
        m.kafka_errors.inc();
        warn!(message = "Kafka client error.", client = self.client, error = %self.error, reason = self.reason);
    }
}

/// `poll` returned an error instead of a message.
pub struct ConsumeFailed<'a, E: Display> {
    /// librdkafka's error.
    pub error: &'a E,
}

impl<E: Display> InternalEvent for ConsumeFailed<'_, E> {
    fn emit(self, m: &Metrics) {
        m.kafka_errors.inc();
        warn!(message = "Consumer error.", error = %self.error);
    }
}

/// An output message was acknowledged by the broker.
pub struct OutputDelivered<'a> {
    /// Its topic.
    pub topic: &'a str,
}

impl InternalEvent for OutputDelivered<'_> {
    fn emit(self, m: &Metrics) {
        m.messages_produced.get_or_create(&TopicLabel { topic: self.topic.to_string() }).inc();
    }
}

/// An output message's delivery failed; [`crate::engine::delivery`] decides: retry, reduce, drop or stop.
pub struct DeliveryFailed<'a, E: Display> {
    /// librdkafka's error.
    pub error: &'a E,
    /// The output topic.
    pub topic: &'a str,
}

impl<E: Display> InternalEvent for DeliveryFailed<'_, E> {
    fn emit(self, m: &Metrics) {
        m.producer_errors.inc();
        warn!(message = "Delivery failed; retried if the error is transient, else handled as refused.", error = %self.error, topic = self.topic);
    }
}

/// An event was dead-lettered.
pub struct EventInvalid {
    /// Why.
    pub reason: InvalidReason,
}

impl InternalEvent for EventInvalid {
    fn emit(self, m: &Metrics) {
        m.events_invalid.get_or_create(&ReasonLabel { reason: self.reason.as_str().to_string() }).inc();
    }
}

/// Events whose outputs are all acknowledged had their offsets stored for commit.
pub struct OffsetsStored {
    /// Events covered.
    pub events: u64,
}

impl InternalEvent for OffsetsStored {
    fn emit(self, m: &Metrics) {
        m.events_committable.inc_by(self.events);
    }
}

/// A feature's shown drift status changed.
pub struct DriftStatusChanged<'a> {
    /// Feature (or `model_score`).
    pub feature: &'a str,
    /// Status before.
    pub from: &'static str,
    /// Status now.
    pub to: &'static str,
    /// End of the window that changed it.
    pub window_end: &'a str,
}

impl InternalEvent for DriftStatusChanged<'_> {
    fn emit(self, m: &Metrics) {
        m.drift_status_changes.get_or_create(&StatusLabel { to: self.to.to_string() }).inc();
        warn!(message = "Drift status changed.", feature = self.feature, from = self.from, to = self.to, window_end = self.window_end);
    }
}

/// A retrain request is published.
pub struct RetrainRequested<'a> {
    /// Its reason text.
    pub reason: &'a str,
}

impl InternalEvent for RetrainRequested<'_> {
    fn emit(self, m: &Metrics) {
        m.retrain_requests.inc();
        warn!(message = "Retrain requested.", reason = self.reason);
    }
}

/// Hot reload swapped a new pipeline in.
pub struct ModelSwapped<'a> {
    /// Version replaced.
    pub from: &'a str,
    /// Version now serving.
    pub to: &'a str,
}

impl InternalEvent for ModelSwapped<'_> {
    fn emit(self, m: &Metrics) {
        m.model_reloads.inc();
        info!(message = "Model swapped.", from = self.from, to = self.to);
    }
}

/// A registry version was refused (unloadable, or not fitting the live events); the running
/// model stays.
pub struct ModelRefused<'a, E: Display> {
    /// The refused version.
    pub version: &'a str,
    /// Why.
    pub reason: &'a E,
    /// Whether it was the shadow candidate (else the production version).
    pub shadow: bool,
}

impl<E: Display> InternalEvent for ModelRefused<'_, E> {
    fn emit(self, m: &Metrics) {
        m.model_reload_failures.inc();
        if self.shadow {
            error!(message = "Refused a candidate for shadow scoring.", version = self.version, error = %self.reason);
        } else {
            error!(message = "Refused the registry's production model; the running model stays.", version = self.version, reason = %self.reason);
        }
    }
}

/// The guard rolled a misbehaving version back in the registry.
pub struct ModelRolledBack<'a> {
    /// The misbehaving version.
    pub version: &'a str,
    /// What it did.
    pub reason: &'a str,
}

impl InternalEvent for ModelRolledBack<'_> {
    fn emit(self, m: &Metrics) {
        m.model_rollbacks.inc();
        error!(message = "Rolled back a misbehaving model.", version = self.version, reason = self.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_moves_its_metric() {
        let m = Metrics::new();
        EventInvalid { reason: InvalidReason::Oversized }.emit(&m);
        DriftStatusChanged { feature: "amount", from: "green", to: "red", window_end: "t" }.emit(&m);
        ModelRefused { version: "v9", reason: &"corrupt", shadow: false }.emit(&m);
        ModelRolledBack { version: "v2", reason: "too many alerts" }.emit(&m);
        OffsetsStored { events: 7 }.emit(&m);
        let text = m.encode();
        for line in [
            "driftwatch_events_invalid_total{reason=\"oversized\"} 1",
            "driftwatch_drift_status_changes_total{to=\"red\"} 1",
            "driftwatch_model_reload_failures_total 1",
            "driftwatch_model_rollbacks_total 1",
            "driftwatch_events_committable_total 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }
}
