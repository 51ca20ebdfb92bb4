//! The `model-events` message (`schemas/model-event.schema.json`): one change of a model
//! version's stage in the registry, published by the CLI and by the engine's guard.

use serde::{Deserialize, Serialize};

/// Stage of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Registered, not serving (may be shadow-scored).
    Candidate,
    /// Serving.
    Production,
    /// Retired.
    Archived,
}

/// One change of stage, kept forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageChange {
    /// When (RFC 3339).
    pub at: String,
    /// Stage before (none when registered).
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// Who or what made the change (a user, `guard`, …).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A stage change, as published on `model-events` (`schemas/model-event.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvent {
    /// Model name.
    pub model: String,
    /// Version changed.
    pub version: String,
    /// The change.
    #[serde(flatten)]
    pub change: StageChange,
}

