//! What happens to an output the broker did not take.
//!
//! librdkafka already retries a produce internally until `message.timeout.ms`; what reaches the
//! delivery callback has failed for good *for that attempt*. Each failure is classified:
//!
//! - **retriable** (timed out, broker down, leader moving, …): produced again after a backoff
//!   that doubles from 100 ms to `engine.retry_backoff_max_ms`; the batch's offsets wait;
//! - **too large** for the topic: a dead letter is produced again as a reference (its source
//!   position, size and digest, without the event's bytes or headers); any other output (and a
//!   reference) is tried [`TOO_LARGE_ATTEMPTS`] times — the broker refuses whole batches, so a
//!   small record can be refused with a large one — then refused as below;
//! - **permanent** (no ACL, topic deleted, record refused): an alert or a dead letter stops the
//!   engine (exit 5) without committing past it, so nothing is lost; a non-critical output
//!   (shadow score, drift report/alert, retrain request, model event) is dropped and counted
//!   (`engine.noncritical_output_failure = "drop"`, the default) or stops the engine (`"stop"`).

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::BaseRecord;
use rdkafka::Message;
use super::kafka::{refused, Delivery, Sink};
use super::records::OutputKind;
use super::EngineError;
use crate::config::NoncriticalFailure;
use crate::message::dead_letter::headers as dlq;

/// How a failed delivery is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again later.
    Retriable,
    /// The record is larger than the producer or topic accepts.
    TooLarge,
    /// Trying again cannot help.
    Permanent,
}

/// Classifies a produce error by librdkafka's code.
pub fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => Failure::TooLarge,
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::InvalidTopic
            | C::InvalidRecord
            | C::InvalidMessage
            | C::InvalidRequiredAcks
            | C::PolicyViolation
            | C::UnsupportedVersion
            | C::UnsupportedForMessageFormat
            | C::InvalidArgument
            | C::Fatal
            | C::Authentication
            | C::SaslAuthenticationFailed,
        ) => Failure::Permanent,
        _ => Failure::Retriable,
    }
}

/// Alerts and dead letters are never dropped: each stands for a consumed event.
pub fn is_critical(kind: OutputKind) -> bool {
    matches!(kind, OutputKind::Alert | OutputKind::DeadLetter)
}

/// The wait before retry number `attempt` (1, 2, …): 100 ms doubling, at most `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20))).min(max)
}

/// What to do with an output that failed with `failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Produce it again after this wait.
    RetryAfter(Duration),
    /// Produce the dead letter again as a reference, now.
    Reference,
    /// Drop it and count it.
    Drop,
    /// Stop the engine.
    Stop,
}

/// A record refused as too large is tried this many times before it counts as refused for good:
/// the broker refuses a whole batch when it exceeds the topic's `max.message.bytes`, so a small
/// record batched with a large one is refused too, and fits when tried again.
pub const TOO_LARGE_ATTEMPTS: u32 = 5;

/// The decision, pure: a failure class, the output's kind, whether it is already a reference,
/// how often it was tried, and the policy for non-critical outputs.
pub fn decide(failure: Failure, kind: OutputKind, is_reference: bool, attempt: u32, max_backoff: Duration, policy: NoncriticalFailure) -> Action {
    match failure {
        Failure::Retriable => Action::RetryAfter(backoff(attempt, max_backoff)),
        Failure::TooLarge if kind == OutputKind::DeadLetter && !is_reference => Action::Reference,
        Failure::TooLarge if attempt < TOO_LARGE_ATTEMPTS => Action::RetryAfter(backoff(attempt, max_backoff)),
        _ if is_critical(kind) || policy == NoncriticalFailure::Stop => Action::Stop,
        _ => Action::Drop,
    }
}

/// A message whose delivery failed, back from the producer's delivery callback.
pub struct Retry {
    /// The message as it was produced.
    pub message: OwnedMessage,
    /// Its bookkeeping (batch share, kind, attempts).
    pub delivery: Box<Delivery>,
    /// Why it failed.
    pub error: KafkaError,
}

/// A member's failed outputs, waiting for their retry (the policy is its [`Sink`]'s).
pub struct Redelivery {
    failed: Receiver<Retry>,
    waiting: Vec<(Instant, Retry)>,
}

impl Redelivery {
    /// Retries for the failures arriving on `failed`.
    pub fn new(failed: Receiver<Retry>) -> Redelivery {
        Redelivery { failed, waiting: Vec::new() }
    }

    /// Exactly-once: a failed delivery fails the transaction's commit, which aborts it.
    pub fn discard(&mut self) {
        while self.failed.try_recv().is_ok() {}
        self.waiting.clear();
    }

    /// Takes the new failures, then produces again those whose wait is over. A permanent
    /// failure that stops the engine is returned (its batch stays uncommitted).
    pub fn pump(&mut self, sink: &Sink<'_>) -> Result<(), EngineError> {
        while let Ok(mut retry) = self.failed.try_recv() {
            retry.delivery.attempts += 1;
            let is_reference = header(&retry.message, dlq::PAYLOAD) == Some(b"omitted".as_slice());
            match sink.decide(&retry.error, retry.delivery.kind, is_reference, retry.delivery.attempts) {
                Action::RetryAfter(wait) => self.waiting.push((Instant::now() + wait, retry)),
                Action::Reference => {
                    sink.referenced(retry.message.topic(), &retry.error);
                    retry.message = reference(&retry.message);
                    self.waiting.push((Instant::now(), retry));
                }
                Action::Drop => sink.dropped(retry.message.topic(), &retry.error, &retry.delivery),
                Action::Stop => return Err(refused(retry.delivery.kind, retry.message.topic(), retry.error)),
            }
        }
        if self.waiting.is_empty() {
            // The common case, every loop: no clock read, no allocation.
            return Ok(());
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting).into_iter().partition(|(at, _)| *at <= now);
        self.waiting = later;
        for (_, Retry { message, delivery, .. }) in due {
            let mut record = BaseRecord::with_opaque_to(message.topic(), delivery);
            if let Some(p) = message.payload() {
                record = record.payload(p);
            }
            if let Some(k) = message.key() {
                record = record.key(k);
            }
            if let Some(h) = message.headers() {
                record = record.headers(h.clone());
            }
            sink.send(record)?;
        }
        Ok(())
    }
}

fn header<'m>(message: &'m OwnedMessage, key: &str) -> Option<&'m [u8]> {
    message.headers()?.iter().find(|h| h.key == key)?.value
}

/// A dead letter reduced to a reference: no payload and none of the event's headers; ours
/// (`dlq.*`, `__connect.errors.*`) kept, with the event's size and digest.
pub fn reference(message: &OwnedMessage) -> OwnedMessage {
    let headers = reference_headers(message.payload().unwrap_or_default(), message.headers());
    OwnedMessage::new(Some(Vec::new()), message.key().map(<[u8]>::to_vec), message.topic().to_string(), message.timestamp(), message.partition(), message.offset(), Some(headers))
}

/// The headers of a reference to a dead letter with this payload and these headers.
pub fn reference_headers(payload: &[u8], original: Option<&OwnedHeaders>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    let mut sized = false;
    if let Some(h) = original {
        for h in h.iter().filter(|h| (h.key.starts_with("dlq.") || h.key.starts_with("__connect.errors.")) && h.key != dlq::PAYLOAD) {
            sized |= h.key == dlq::ORIGINAL_BYTES;
            headers = headers.insert(Header { key: h.key, value: h.value });
        }
    }
    if !sized {
        let digest = crate::pipeline::train::sha256_hex(payload);
        headers = headers.insert(Header { key: dlq::ORIGINAL_BYTES, value: Some(payload.len().to_string().as_bytes()) });
        headers = headers.insert(Header { key: dlq::ORIGINAL_SHA256, value: Some(digest.as_bytes()) });
    }
    headers.insert(Header { key: dlq::PAYLOAD, value: Some(b"omitted".as_slice()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_what_a_retry_can_change() {
        use RDKafkaErrorCode as C;
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&e(C::MessageTimedOut)), Failure::Retriable);
        assert_eq!(classify(&e(C::BrokerTransportFailure)), Failure::Retriable);
        assert_eq!(classify(&e(C::NotLeaderForPartition)), Failure::Retriable);
        assert_eq!(classify(&e(C::MessageSizeTooLarge)), Failure::TooLarge);
        assert_eq!(classify(&e(C::TopicAuthorizationFailed)), Failure::Permanent);
        assert_eq!(classify(&e(C::UnknownTopicOrPartition)), Failure::Permanent);
        assert_eq!(classify(&e(C::UnknownTopic)), Failure::Permanent);
    }

    #[test]
    fn alerts_and_dead_letters_are_never_dropped() {
        let max = Duration::from_secs(10);
        let (drop, stop) = (NoncriticalFailure::Drop, NoncriticalFailure::Stop);
        assert_eq!(decide(Failure::Permanent, OutputKind::Alert, false, 1, max, drop), Action::Stop);
        assert_eq!(decide(Failure::TooLarge, OutputKind::Alert, false, 1, max, drop), Action::RetryAfter(Duration::from_millis(100)), "maybe refused with its batch");
        assert_eq!(decide(Failure::TooLarge, OutputKind::Alert, false, TOO_LARGE_ATTEMPTS, max, drop), Action::Stop);
        assert_eq!(decide(Failure::TooLarge, OutputKind::DeadLetter, false, 1, max, drop), Action::Reference);
        assert_eq!(decide(Failure::TooLarge, OutputKind::DeadLetter, true, 2, max, drop), Action::RetryAfter(Duration::from_millis(200)));
        assert_eq!(decide(Failure::TooLarge, OutputKind::DeadLetter, true, TOO_LARGE_ATTEMPTS, max, drop), Action::Stop, "a reference that does not fit");
        assert_eq!(decide(Failure::Permanent, OutputKind::DeadLetter, false, 1, max, drop), Action::Stop);
        assert_eq!(decide(Failure::Permanent, OutputKind::ShadowScore, false, 1, max, drop), Action::Drop);
        assert_eq!(decide(Failure::Permanent, OutputKind::DriftReport, false, 1, max, stop), Action::Stop);
        assert_eq!(decide(Failure::Retriable, OutputKind::Alert, false, 3, max, drop), Action::RetryAfter(Duration::from_millis(400)));
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let max = Duration::from_secs(10);
        let waits: Vec<u128> = (1..=9).map(|a| backoff(a, max).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff(u32::MAX, max), max, "no overflow");
    }

    #[test]
    fn a_reference_keeps_our_headers_and_drops_the_event() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "traceparent", value: Some(b"00-abc".as_slice()) })
            .insert(Header { key: dlq::REASON, value: Some(b"oversized".as_slice()) })
            .insert(Header { key: dlq::OFFSET, value: Some(b"42".as_slice()) });
        let original = OwnedMessage::new(Some(vec![b'x'; 5000]), Some(b"k".to_vec()), "dlq".into(), rdkafka::Timestamp::NotAvailable, 0, 0, Some(headers));
        let r = reference(&original);
        assert_eq!(r.payload(), Some(&[][..]));
        let keys: Vec<&str> = r.headers().unwrap().iter().map(|h| h.key).collect();
        assert_eq!(keys, vec![dlq::REASON, dlq::OFFSET, dlq::ORIGINAL_BYTES, dlq::ORIGINAL_SHA256, dlq::PAYLOAD]);
        assert_eq!(header(&r, dlq::ORIGINAL_BYTES), Some(b"5000".as_slice()));
        assert_eq!(header(&r, dlq::ORIGINAL_SHA256).map(<[u8]>::len), Some(64));
    }
}
