//! Drift over a stream of scored transactions: sample, window, evaluate, apply hysteresis.
//!
//! [`StreamDrift`] is the engine's drift loop without Kafka or a clock: feed it every scored
//! transaction (sampled or not, since every event moves event time) and it returns each window
//! that closes with its report, the status changes and any retrain request. The engine and
//! `driftwatch drift --model … --window-minutes …` (a replay of a file) both use it.

use serde::{Deserialize, Serialize};

use super::monitor::{DriftAlert, DriftMonitor, Hysteresis, RetrainRequest};
use super::window::{evaluate_window, WindowReport};
use super::DriftSettings;
use crate::pipeline::artifact::ReferenceProfile;
use crate::pipeline::{Pipeline, Score, Transaction};
use crate::profile::window::{ClosedProfile, SlidingWindows, WindowSpec};
use crate::profile::ProfileLayout;
use crate::sampling::in_sample;

/// Streaming drift settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Fraction of transactions profiled, decided by a hash of the transaction id.
    pub sample_fraction: f64,
    /// Window shape.
    pub window: WindowSpec,
    /// Statistics and status rules.
    pub settings: DriftSettings,
    /// Hysteresis and retrain requests.
    pub hysteresis: Hysteresis,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { sample_fraction: 0.05, window: WindowSpec::default(), settings: DriftSettings::default(), hysteresis: Hysteresis::default() }
    }
}

/// Fewest samples in a pane for its evidence to count (its p-values are valid at any size; a
/// handful of events says nothing either way).
pub const PANE_MIN_SAMPLES: u64 = 20;

/// A window that closed, with what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedWindow {
    /// The window's report (the `drift-reports` message).
    pub report: WindowReport,
    /// Status changes it caused (`drift-alerts` messages).
    pub alerts: Vec<DriftAlert>,
    /// A retrain request, if one became due (`retrain-requests` message).
    pub retrain: Option<RetrainRequest>,
}

/// Window evaluation against one pipeline's reference, with the hysteresis state: what a local
/// [`StreamDrift`] and the group's aggregator ([`super::aggregate::Aggregator`]) share.
#[derive(Debug, Clone)]
pub struct Evaluator {
    /// The training reference.
    pub reference: ReferenceProfile,
    /// "name version", as reports name the model.
    pub model: String,
    settings: super::DriftSettings,
    /// The window settings with a pane's sample floor: a pane is a slide of data, small, but its
    /// p-values are exact at any size, so it counts from [`PANE_MIN_SAMPLES`] on.
    pane_settings: super::DriftSettings,
    /// Hysteresis and retrain state.
    pub monitor: DriftMonitor,
}

impl Evaluator {
    /// An evaluator for this pipeline with every feature green.
    pub fn new(pipeline: &Pipeline, config: &DriftConfig) -> Evaluator {
        let a = pipeline.artifact();
        Evaluator {
            reference: a.reference.clone(),
            model: format!("{} {}", a.model.name, a.model.version),
            settings: config.settings.clone(),
            pane_settings: super::DriftSettings { min_samples: config.settings.min_samples.min(PANE_MIN_SAMPLES), ..config.settings.clone() },
            monitor: DriftMonitor::new(config.hysteresis, config.window, a.reference.numeric.len() + a.reference.categorical.len() + 1),
        }
    }

    /// Evaluates a closed window, and its newest pane for the evidence the monitor counts.
    pub fn close(&mut self, closed: &ClosedProfile) -> ClosedWindow {
        let report = evaluate_window(&closed.window, &self.reference, &self.model, &self.settings);
        let pane = closed.newest_pane.as_ref().map(|p| evaluate_window(p, &self.reference, &self.model, &self.pane_settings));
        let out = self.monitor.observe(&report, pane.as_ref());
        ClosedWindow { report, alerts: out.alerts, retrain: out.retrain }
    }
}

/// Sampling, windows and status for one pipeline.
pub struct StreamDrift {
    layout: ProfileLayout,
    windows: SlidingWindows,
    evaluator: Evaluator,
    config: DriftConfig,
    /// Events without an event time: they cannot be windowed (counted, not dropped silently).
    pub untimed_events: u64,
}

impl StreamDrift {
    /// Drift tracking against this pipeline's training reference.
    pub fn new(pipeline: &Pipeline, config: DriftConfig) -> StreamDrift {
        let a = pipeline.artifact();
        StreamDrift {
            layout: ProfileLayout::new(&a.reference),
            windows: SlidingWindows::new(config.window),
            evaluator: Evaluator::new(pipeline, &config),
            config,
            untimed_events: 0,
        }
    }

    /// Feeds one scored transaction; returns the windows its event time closed.
    pub fn observe(&mut self, tx: &Transaction, score: &Score) -> Vec<ClosedWindow> {
        let Some(t) = tx.event_time_ms else {
            self.untimed_events += 1;
            return Vec::new();
        };
        if in_sample(tx, self.config.sample_fraction) {
            self.windows.observe(&self.evaluator.reference, &self.layout, t, tx, score);
        }
        let closed = self.windows.advance(t);
        closed.iter().map(|p| self.evaluator.close(p)).collect()
    }

    /// Closes every open window (end of input).
    pub fn finish(&mut self) -> Vec<ClosedWindow> {
        let open = self.windows.close_all();
        open.iter().map(|p| self.evaluator.close(p)).collect()
    }

    /// Event time at or after which the next window closes (`i64::MAX` when none is open):
    /// an unsampled event before it changes nothing, so callers may skip it.
    pub fn close_due_ms(&self) -> i64 {
        self.windows.next_close_ms()
    }

    /// Sampled events that missed a window because it had closed.
    pub fn late_events(&self) -> u64 {
        self.windows.late_events
    }

    /// The hysteresis state.
    pub fn monitor(&self) -> &DriftMonitor {
        &self.evaluator.monitor
    }
}
