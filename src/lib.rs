//! driftwatch: streaming fraud scoring and drift detection on Apache Kafka.
//!
//! The data path, in reading order:
//!
//! ```text
//! transactions ─► engine::kafka ─► engine::core ──► fraud-alerts, transactions.dlq, shadow-scores
//!   (Kafka)       (consumer,        │ pipeline: decode + score (preprocessing, model, outlier)
//!                  producer,        │ sampling ─► profile: window panes (bins, KLL, count-min, HLL)
//!                  offsets)         │             └► drift: evaluate vs the training reference,
//!                                   │                hysteresis ─► drift-reports, drift-alerts,
//!                                   │                              retrain-requests
//!                                   ├ model: hot reload, shadow candidate, guard ─► model-events
//!                                   └ alerts + a sample ─► retained-scores ─┐
//! labels ─► engine::performance (join, windows, DDM) ◄──────────────────────┘
//!             ─► performance-reports, drift-alerts (concept), retrain-requests
//!
//! drift.aggregation = "group" (several instances, one verdict): engine::core publishes
//! per-partition panes (profile::partitioned) ─► drift-profiles ─► engine::aggregator (one
//! instance, picked by Kafka) ─► drift::aggregate ─► drift-reports, drift-alerts, retrain-requests
//! ```
//!
//! The functional core (plain Rust, no Kafka, no tokio, no clock; unit-tested on plain data):
//! - [`pipeline`]: an [`pipeline::Artifact`] (one versioned JSON file) holds preprocessing, a
//!   logistic-regression fraud model, a k-means outlier detector and the training reference;
//!   [`pipeline::Pipeline`] compiles it for the hot path (`decode_into` a reusable
//!   [`pipeline::Transaction`], then `score`); [`pipeline::train`] fits one.
//! - [`bins`]: reference bin edges and labels, one definition for training, profiles and drift.
//! - [`sampling`]: the one sampling hash (drift profiles, shadow scoring, traces).
//! - [`profile`]: window profiles (bin counts and sketches) over sliding event-time panes.
//! - [`drift`]: statistics against the training reference, window evaluation, hysteresis;
//!   [`drift::online::StreamDrift`] is the engine's drift loop without Kafka;
//!   [`drift::aggregate::Aggregator`] the group's (panes of many instances, one verdict).
//! - [`model`]: the registry, version diff, hot-reload/shadow lifecycle, the guard's rules.
//! - [`performance`]: fraud labels joined to retained scores: realised and estimated
//!   precision/recall per version and window, concept drift (DDM) on the labelled errors.
//! - [`engine::core`]: one consumed message in, its outgoing records and offset bookkeeping out.
//! - [`message`]: every wire message, one type each, mirroring `schemas/`.
//! - [`time`]: clock and RFC 3339 in one place.
//!
//! The shell (threads, sockets, time, retries):
//! - [`engine::kafka`], [`engine::workers`], [`engine::tracker`]: the Kafka side of the engine;
//!   [`engine::aggregator`] and [`engine::performance`]: its two optional threads.
//! - [`observe`]: metrics (one table), internal events, process metrics, HTTP, logs, traces.
//! - [`config`]: typed configuration, environment overlay, librdkafka client settings.
//! - [`cli`] and [`commands`]: the command line, one file per subcommand; `src/main.rs` only
//!   parses and dispatches.
//! - [`dataset`] (users' CSV/JSONL files) and [`generate`] (synthetic transactions and drift
//!   scenarios) feed the offline commands, the demo and the tests.
//!
//! Arrows point from the shell to the core, never back: nothing in the core modules imports
//! rdkafka, tokio, reqwest or the clock.

pub mod bins;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod drift;
pub mod engine;
pub mod generate;
pub mod message;
pub mod model;
pub mod observe;
pub mod performance;
pub mod pipeline;
pub mod profile;
pub mod sampling;
pub mod time;
