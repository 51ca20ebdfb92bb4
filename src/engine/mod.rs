//! The streaming engine: consume `transactions`, decode and score each event, produce alerts
//! and dead letters, profile a sample into drift windows and publish their verdicts, and commit
//! offsets only once every output of the events before them is acknowledged (at-least-once).
//!
//! - [`core`]: the functional core. A consumed message as a plain [`core::Incoming`] value in,
//!   [`core::Outgoing`] records and offset bookkeeping out; every route is unit-tested without
//!   a broker. Imports no rdkafka, tokio or clock.
//! - [`records`]: the core's inputs and outputs as plain values.
//! - [`tracker`]: which consumed offsets may be committed (plain data and atomics).
//! - [`kafka`]: librdkafka contexts, topic administration, offset storing, the producer sink.
//! - [`workers`]: member threads, the registry watcher, shutdown.
//! - [`performance`]: the thread that joins labels to retained scores and publishes performance.
//! - [`aggregator`]: with `drift.aggregation = "group"`, the thread that may become the group's
//!   drift aggregator (Kafka picks one instance) and publishes the group's drift verdicts.

pub mod aggregator;
pub mod core;
pub mod delivery;
pub mod kafka;
pub mod performance;
pub mod records;
pub mod tracker;
pub mod workers;

#[cfg(test)]
mod tests;

use rdkafka::error::KafkaError;
use thiserror::Error;

pub use self::core::{Engine, Incoming, Member, Outgoing, OutputKind, Outputs, RunSummary, LATENCY_SAMPLE_EVERY};
pub use kafka::{ensure_topics, send_with_backpressure};

/// Errors that stop the engine. Each says whose problem it is.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Kafka is unreachable or refused a request (external; retrying later may help).
    #[error("Kafka error while {context}: {source}")]
    Kafka {
        /// What the engine was doing.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The brokers could not be reached or refused us; `cause` is what librdkafka reported
    /// meanwhile (a failed SASL authentication, an untrusted certificate, a refused connection).
    #[error("cannot use Kafka at {brokers}: {cause} ({source})")]
    Unreachable {
        /// Bootstrap servers.
        brokers: String,
        /// The last error librdkafka reported.
        cause: String,
        /// The request that failed.
        source: KafkaError,
    },
    /// A topic the engine needs does not exist and creating topics is off (configuration).
    #[error("topic(s) {0} do not exist; create them or set kafka.create_topics = true")]
    MissingTopics(String),
    /// The broker refused an output for good (no ACL, topic deleted, record too large): exit 5.
    #[error("the broker refused a {kind} for topic `{topic}` for good ({source}); the engine stopped without committing past its event, so nothing is lost: fix the cause (ACLs, the topic's max.message.bytes, a deleted topic) and restart")]
    OutputRefused {
        /// What the output was.
        kind: &'static str,
        /// Its topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A worker thread panicked (a bug): the others were stopped after committing what was safe.
    #[error("engine worker {worker} failed: {message}; the other workers stopped after committing what was acknowledged")]
    WorkerFailed {
        /// Worker number.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// Shutdown was asked while the member waited for room in the producer's queue.
    #[error("stopped while waiting for room in the producer's queue")]
    Interrupted,
    /// Outputs were still unacknowledged when shutdown gave up; their events will be re-read.
    #[error("{0} events' outputs were not acknowledged before the shutdown timeout; their offsets were not committed and they will be processed again")]
    Unacknowledged(u64),
}

impl EngineError {
    /// The process exit status this error ends `run` with: 5 when the broker refused an
    /// output for good, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::OutputRefused { .. } => 5,
            _ => 1,
        }
    }
}

/// Ends the process with `code` at 95 % of `deadline` (so it is gone before the deadline, not
/// just after it), logging `why`: the backstop of an orderly stop that a librdkafka call blocks
/// (a consumer closing against a broker that is gone). Safe because offsets are committed only
/// for acknowledged outputs: what was not committed is read again after the restart.
pub fn exit_after(deadline: std::time::Duration, code: u8, why: String) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline * 19 / 20);
        tracing::error!(message = %why, exit_code = code);
        std::process::exit(i32::from(code));
    });
}
