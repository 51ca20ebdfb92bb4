//! Status over time: hysteresis per feature, drift alerts on changes, retrain requests.
//!
//! A window's raw status per feature goes through a small state machine: the shown status
//! changes to red only after `red_after` consecutive red windows, to amber after `amber_after`
//! consecutive amber windows, back to green after `green_after` consecutive green ones;
//! windows with insufficient data leave the state alone. Every change of a shown status is a
//! [`DriftAlert`]. When any feature has been shown red for `retrain_after` consecutive windows
//! a [`RetrainRequest`] names the model, the red features and the evidence, then no other
//! request is made for `retrain_cooldown` windows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::window::WindowReport;
use super::{status_name, Status};

/// Hysteresis and retrain settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// Consecutive red windows before a feature is shown red.
    pub red_after: u32,
    /// Consecutive amber windows before a feature is shown amber.
    pub amber_after: u32,
    /// Consecutive green windows before a feature is shown green again.
    pub green_after: u32,
    /// Consecutive shown-red windows before a retrain request.
    pub retrain_after: u32,
    /// Windows after a retrain request during which no other is made.
    pub retrain_cooldown: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis { red_after: 2, amber_after: 2, green_after: 3, retrain_after: 3, retrain_cooldown: 60 }
    }
}

/// A change of a feature's shown status (the `drift-alerts` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlert {
    /// Model name and version.
    pub model: String,
    /// Feature (or `model_score`).
    pub feature: String,
    /// Status before.
    pub from: Status,
    /// Status now.
    pub to: Status,
    /// End of the window that made the change (RFC 3339).
    pub window_end: String,
    /// The deciding statistic and its value in that window.
    pub metric: super::StatusMetric,
    /// Its value.
    pub value: f64,
    /// Consecutive windows with the new raw status.
    pub consecutive_windows: u32,
}

/// A request to retrain (the `retrain-requests` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRequest {
    /// Model name and version.
    pub model: String,
    /// Features shown red, with their deciding values in the last window.
    pub features: Vec<RetrainEvidence>,
    /// End of the window that triggered the request (RFC 3339).
    pub window_end: String,
    /// Windows each listed feature has been shown red, at least.
    pub red_windows: u32,
    /// Human summary.
    pub reason: String,
}

/// Why a feature is in a retrain request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainEvidence {
    /// Feature.
    pub feature: String,
    /// PSI in the last window.
    pub psi: f64,
    /// JS distance in the last window.
    pub js: f64,
    /// Consecutive windows shown red.
    pub red_windows: u32,
}

#[derive(Debug, Clone, Copy)]
struct FeatureState {
    shown: Status,
    candidate: Status,
    streak: u32,
    red_windows: u32,
}

/// Per-feature shown status with hysteresis, across windows.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    config: Hysteresis,
    states: BTreeMap<String, FeatureState>,
    windows_since_request: Option<u32>,
}

/// What one window changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorOutput {
    /// Changes of shown status.
    pub alerts: Vec<DriftAlert>,
    /// A retrain request, if one is due.
    pub retrain: Option<RetrainRequest>,
}

impl DriftMonitor {
    /// A monitor where every feature starts green.
    pub fn new(config: Hysteresis) -> DriftMonitor {
        DriftMonitor { config, states: BTreeMap::new(), windows_since_request: None }
    }

    /// The shown status of a feature (green if never seen).
    pub fn shown(&self, feature: &str) -> Status {
        self.states.get(feature).map_or(Status::Green, |s| s.shown)
    }

    /// Features currently shown with this status.
    pub fn features_shown(&self, status: Status) -> Vec<String> {
        self.states.iter().filter(|(_, s)| s.shown == status).map(|(f, _)| f.clone()).collect()
    }

    /// Feeds one window's report.
    pub fn observe(&mut self, report: &WindowReport) -> MonitorOutput {
        let mut out = MonitorOutput::default();
        let c = self.config;
        let features = report.drift.features.iter().chain(std::iter::once(&report.model_drift.score));
        for f in features {
            let state = self.states.entry(f.bins.name.clone()).or_insert(FeatureState { shown: Status::Green, candidate: Status::Green, streak: 0, red_windows: 0 });
            let observed = f.status;
            if observed != Status::InsufficientData {
                if observed == state.candidate {
                    state.streak += 1;
                } else {
                    state.candidate = observed;
                    state.streak = 1;
                }
                let needed = match observed {
                    Status::Red => c.red_after,
                    Status::Amber => c.amber_after,
                    _ => c.green_after,
                };
                if observed != state.shown && state.streak >= needed {
                    out.alerts.push(DriftAlert {
                        model: report.model.clone(),
                        feature: f.bins.name.clone(),
                        from: state.shown,
                        to: observed,
                        window_end: report.window_end.clone(),
                        metric: f.rule.metric,
                        value: f.status_value,
                        consecutive_windows: state.streak,
                    });
                    state.shown = observed;
                }
            }
            state.red_windows = if state.shown == Status::Red { state.red_windows + 1 } else { 0 };
        }
        self.windows_since_request = self.windows_since_request.map(|w| w + 1);
        let cooling = self.windows_since_request.is_some_and(|w| w < c.retrain_cooldown);
        let red: Vec<(&String, &FeatureState)> = self.states.iter().filter(|(_, s)| s.red_windows >= c.retrain_after).collect();
        if !red.is_empty() && !cooling {
            let evidence: Vec<RetrainEvidence> = red
                .iter()
                .map(|(name, s)| {
                    let f = report.drift.features.iter().chain(std::iter::once(&report.model_drift.score)).find(|f| &f.bins.name == *name);
                    RetrainEvidence { feature: (*name).clone(), psi: f.map_or(f64::NAN, |f| f.psi), js: f.map_or(f64::NAN, |f| f.js), red_windows: s.red_windows }
                })
                .collect();
            let names: Vec<&str> = evidence.iter().map(|e| e.feature.as_str()).collect();
            out.retrain = Some(RetrainRequest {
                model: report.model.clone(),
                red_windows: evidence.iter().map(|e| e.red_windows).min().unwrap_or(0),
                reason: format!("{} shown {} for at least {} consecutive windows", names.join(", "), status_name(Status::Red), c.retrain_after),
                features: evidence,
                window_end: report.window_end.clone(),
            });
            self.windows_since_request = Some(0);
        }
        out
    }
}
