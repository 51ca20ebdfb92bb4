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
//! - [`commands`]: what each CLI subcommand does; `src/main.rs` only parses arguments.

pub mod commands;
pub mod dataset;
pub mod event;
pub mod generate;
pub mod pipeline;
pub mod stats;
