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

pub use crate::message::drift::{DriftAlert, RetrainEvidence, RetrainRequest};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::window::{ModelDrift, RateCheck};
    use crate::drift::{BinnedFeature, DataSide, DriftReport, DriftSettings, FeatureDrift, FeatureKind, StatusRule, REPORT_VERSION};

    fn feature(name: &str, status: Status) -> FeatureDrift {
        FeatureDrift {
            bins: BinnedFeature { name: name.into(), kind: FeatureKind::Numeric, labels: vec![], edges: None, reference_counts: vec![], current_counts: vec![] },
            psi: match status {
                Status::Red => 0.5,
                Status::Amber => 0.15,
                _ => 0.01,
            },
            kl: 0.0,
            js: 0.0,
            chi2: None,
            ks: None,
            wasserstein: None,
            status,
            rule: StatusRule::default(),
            status_value: 0.0,
        }
    }

    fn window(i: usize, x: Status) -> WindowReport {
        let side = DataSide { source: String::new(), rows: 0 };
        let rate = RateCheck { observed: 0.0, expected: 0.0, samples: 0, p_value: 1.0 };
        WindowReport {
            window_start: String::new(),
            window_end: format!("w{i}"),
            model: "m v1".into(),
            drift: DriftReport {
                report_version: REPORT_VERSION,
                reference: side.clone(),
                current: side,
                settings: DriftSettings::default(),
                status: x,
                features: vec![feature("x", x), feature("steady", Status::Green)],
            },
            model_drift: ModelDrift { score: feature("model_score", Status::Green), outlier_rate: rate, alert_rate: rate },
        }
    }

    /// Feeds statuses of feature `x`; returns (shown after each window, changes, retrain window indices).
    fn run(config: Hysteresis, seq: &[Status]) -> (Vec<Status>, Vec<(Status, Status)>, Vec<usize>) {
        let mut m = DriftMonitor::new(config);
        let (mut shown, mut changes, mut retrain) = (vec![], vec![], vec![]);
        for (i, &s) in seq.iter().enumerate() {
            let out = m.observe(&window(i, s));
            changes.extend(out.alerts.iter().filter(|a| a.feature == "x").map(|a| (a.from, a.to)));
            if out.retrain.is_some() {
                retrain.push(i);
            }
            shown.push(m.shown("x"));
            assert_eq!(m.shown("steady"), Status::Green);
        }
        (shown, changes, retrain)
    }

    use Status::{Amber as A, Green as G, InsufficientData as I, Red as R};

    #[test]
    fn red_needs_consecutive_red_windows_and_green_needs_more() {
        let c = Hysteresis { red_after: 2, amber_after: 2, green_after: 3, retrain_after: 100, retrain_cooldown: 0 };
        let (shown, changes, _) = run(c, &[R, G, R, R, G, G, R, G, G, G]);
        assert_eq!(shown, vec![G, G, G, R, R, R, R, R, R, G]);
        assert_eq!(changes, vec![(G, R), (R, G)]);
    }

    #[test]
    fn insufficient_windows_neither_count_nor_break_a_streak() {
        let c = Hysteresis { red_after: 2, ..Hysteresis::default() };
        let (shown, _, _) = run(c, &[R, I, I, R]);
        assert_eq!(shown, vec![G, G, G, R]);
        let (shown, changes, _) = run(c, &[I, I, I, I]);
        assert_eq!(shown, vec![G; 4]);
        assert!(changes.is_empty());
    }

    #[test]
    fn amber_is_its_own_step() {
        let c = Hysteresis { red_after: 2, amber_after: 2, green_after: 2, retrain_after: 100, retrain_cooldown: 0 };
        let (shown, changes, _) = run(c, &[A, A, R, R, A, A]);
        assert_eq!(shown, vec![G, A, A, R, R, A]);
        assert_eq!(changes, vec![(G, A), (A, R), (R, A)]);
    }

    #[test]
    fn retrain_after_persistent_red_then_cool_down() {
        let c = Hysteresis { red_after: 1, amber_after: 1, green_after: 1, retrain_after: 3, retrain_cooldown: 4 };
        let (_, _, retrain) = run(c, &[R; 12]);
        // Shown red from window 0; third red window is 2; cool-down of 4 windows: next at 6, then 10.
        assert_eq!(retrain, vec![2, 6, 10]);
        let (_, _, retrain) = run(c, &[R, R, G, R, R, G]);
        assert!(retrain.is_empty(), "red must persist");
    }
}
