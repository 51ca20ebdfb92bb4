//! driftwatch: streaming fraud scoring and drift detection on Apache Kafka.
//!
//! Where to start reading:
//! - [`pipeline`]: the functional core. An [`pipeline::Artifact`] (one versioned JSON file) holds
//!   preprocessing, a logistic-regression fraud model, a k-means outlier detector and the
//!   training reference profile; [`pipeline::Pipeline`] compiles it for the hot path
//!   (`decode_into` a reusable [`pipeline::Transaction`], then `score`). [`pipeline::train`]
//!   fits one from a CSV/JSONL file.
//! - [`dataset`]: reads users' CSV/JSONL files into columns for training and offline tools.
//! - [`generate`]: synthetic card transactions with ground truth and drift scenarios.
//! - [`event`]: every message driftwatch writes, mirrored by the JSON Schemas in `schemas/`.
//! - [`stream`]: the Kafka shell: consume, decode, score, produce alerts and dead letters,
//!   commit offsets only after outputs are acknowledged ([`stream::tracker`]).
//! - [`profile`] and [`drift`]: window profiles (bin counts and sketches) over sliding
//!   event-time windows, drift statistics against the training reference, hysteresis;
//!   [`drift::stream::StreamDrift`] is the engine's drift loop without Kafka.
//! - [`config`], [`metrics`], [`http`], [`telemetry`], [`tracing_otel`]: configuration, Prometheus
//!   metrics, the /metrics /healthz /readyz endpoint, logging, OpenTelemetry traces.
//! - [`commands`]: what each CLI subcommand does; `src/main.rs` only parses arguments.

pub mod commands;
pub mod config;
pub mod dataset;
pub mod drift;
pub mod event;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod profile;
pub mod registry;
pub mod stats;
pub mod stream;
pub mod telemetry;
pub mod tracing_otel;
