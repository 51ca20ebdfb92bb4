//! Every message driftwatch reads or writes, one Rust type each, mirroring `schemas/` (a test
//! validates each emitted message against its schema):
//!
//! | topic / output            | type                                        | schema                          |
//! |---------------------------|---------------------------------------------|---------------------------------|
//! | `fraud-alerts`            | [`alert::FraudAlert`]                       | `fraud-alert.schema.json`       |
//! | `transactions.dlq`        | the event's bytes + [`dead_letter::headers`] | (headers, see README)          |
//! | `shadow-scores`           | [`shadow::ShadowScore`]                     | `shadow-score.schema.json`      |
//! | `drift-reports`           | [`drift::WindowReport`]                     | `drift-report.schema.json`      |
//! | `drift-alerts`            | [`drift::DriftAlert`]                       | `drift-alert.schema.json`       |
//! | `retrain-requests`        | [`drift::RetrainRequest`]                   | `retrain-request.schema.json`   |
//! | `model-events`            | [`model_event::ModelEvent`]                 | `model-event.schema.json`       |
//! | `labels` (input)          | [`performance::Label`]                      | `label.schema.json`             |
//! | `retained-scores`         | [`performance::RetainedScore`]              | `retained-score.schema.json`    |
//! | `performance-reports`     | [`performance::PerformanceReport`]          | `performance-report.schema.json` |
//! | `drift-profiles`          | [`profile::ProfileRecord`] (binary, versioned) | (format in the module, README) |
//! | `driftwatch score` output | [`score_line::ScoreLine`], [`score_line::ScoreErrorLine`] | `score-line.schema.json` |
//!
//! The input, `transactions`, is decoded straight into [`crate::pipeline::Transaction`] by the
//! pipeline's streaming decoder (`transaction.schema.json` states the contract for producers).
//! Plain data: nothing here does I/O.

pub mod alert;
pub mod dead_letter;
pub mod drift;
pub mod model_event;
pub mod performance;
pub mod profile;
pub mod score_line;
pub mod shadow;

pub use alert::{reasons_json, FraudAlert, ReasonJson, Reasons, SourcePosition};
pub use dead_letter::InvalidReason;
pub use drift::{DriftAlert, DriftReport, RetrainRequest, WindowReport};
pub use model_event::{ModelEvent, Stage, StageChange};
pub use score_line::{ScoreErrorLine, ScoreLine};
pub use shadow::ShadowScore;
