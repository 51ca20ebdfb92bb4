//! Status over time: evidence that counts once, drift alerts on changes, retrain requests.
//!
//! Windows overlap (10-minute windows sliding by 1 minute share 90 % of their data), so
//! counting consecutive red windows counts the same events again and again. Evidence here is
//! counted on *panes*, the slide of new data each window adds, which never overlap: per
//! feature a one-sided CUSUM of the pane's no-drift p-value, S ← max(0, S − ln p − k). Under no
//! drift −ln p is (at most) exponential with mean 1 whatever the pane's size, so the threshold
//! h that gives a chosen mean time between false alarms is the same in a quiet shop and a busy
//! one: it is computed from `mean_days_between_false_alarms` per model (spread over its
//! features), the slide and the allowance k. A strong drift adds up to ln(2001) − k per pane
//! and crosses h in a few panes; a weak one takes longer.
//!
//! The shown status is the window's *effect* (its statistic against the rule's amber and red
//! thresholds) once the feature has evidence (S ≥ h; the evidence holds until S falls below
//! h/2), and green without it. A red feature stays red while its effect is at least amber, and
//! a drifted feature turns green only after a whole window length of windows below amber, so a
//! value hovering around a threshold does not flap. Windows with insufficient data (and
//! panes under [`super::online::PANE_MIN_SAMPLES`]) neither count nor reset anything. Every
//! change of a shown status is a [`DriftAlert`].
//!
//! A retrain request needs sustained drift: a feature shown amber or red continuously, red at
//! least once, over `retrain_after_windows` window lengths of event time. A burst shorter than
//! a window leaves every window within one window length, so it never requests a retrain.
//! After a request, none for `retrain_cooldown` windows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::message::drift::{DriftAlert, RetrainEvidence, RetrainRequest};
use super::window::WindowReport;
use super::{status_name, FeatureDrift, Status};
use crate::profile::window::WindowSpec;

/// Evidence and retrain settings (`[drift.hysteresis]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// Mean time between false drift alerts of one model when nothing drifts, in days.
    pub mean_days_between_false_alarms: f64,
    /// CUSUM allowance k: a pane adds −ln p − k (no-drift mean of −ln p: 1).
    pub allowance: f64,
    /// Window lengths of event time a feature must stay drifted (red at least once) before a
    /// retrain request.
    pub retrain_after_windows: f64,
    /// Windows after a retrain request during which no other is made.
    pub retrain_cooldown: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis { mean_days_between_false_alarms: 30.0, allowance: 2.5, retrain_after_windows: 2.0, retrain_cooldown: 60 }
    }
}

/// Expected panes until a CUSUM with Exp(1) increments minus `k` first exceeds `h`, from 0
/// (Brook and Evans' Markov chain: an atom at 0 and `STATES` intervals of [0, h]).
pub fn cusum_arl(h: f64, k: f64) -> f64 {
    const STATES: usize = 150;
    let w = h / STATES as f64;
    let cdf = |x: f64| if x > 0.0 { 1.0 - (-x).exp() } else { 0.0 };
    let n = STATES + 1;
    // (I − Q) L = 1, Q over the transient states: 0 = the atom, j = ((j−1)w, jw].
    let mut a = vec![vec![0.0f64; n + 1]; n];
    for (i, row) in a.iter_mut().enumerate() {
        let s = if i == 0 { 0.0 } else { (i as f64 - 0.5) * w };
        row[0] -= cdf(k - s);
        for j in 1..n {
            row[j] -= cdf(j as f64 * w + k - s) - cdf((j - 1) as f64 * w + k - s);
        }
        row[i] += 1.0;
        row[n] = 1.0;
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..n {
        let pivot = (c..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs())).expect("rows");
        a.swap(c, pivot);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            if f != 0.0 {
                for col in c..=n {
                    a[r][col] -= f * a[c][col];
                }
            }
        }
    }
    let mut l = vec![0.0f64; n];
    for r in (0..n).rev() {
        let tail: f64 = (r + 1..n).map(|c| a[r][c] * l[c]).sum();
        l[r] = (a[r][n] - tail) / a[r][r];
    }
    l[0]
}

/// The CUSUM threshold h whose no-drift mean run length is `arl0` panes (bisection on
/// [`cusum_arl`], which grows with h).
pub fn cusum_threshold(arl0: f64, k: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while cusum_arl(hi, k) < arl0 && hi < 1e3 {
        hi *= 2.0;
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if cusum_arl(mid, k) < arl0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FeatureState {
    shown: Option<Status>,
    cusum: f64,
    evidence: bool,
    /// End of the first window of the current drifted (amber or red) episode.
    drifted_since_ms: Option<i64>,
    /// Windows shown drifted in the current episode.
    drifted_windows: u32,
    /// Whether the current episode was shown red at some point.
    red_in_episode: bool,
    /// End of the first window, since the feature was last drifted, whose effect was below amber.
    calm_since_ms: Option<i64>,
}

/// Per-feature evidence and shown status, across windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftMonitor {
    config: Hysteresis,
    window: WindowSpec,
    /// CUSUM threshold for the configured mean time between false alarms.
    threshold: f64,
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

/// The level a window's effect reaches: its statistic against the rule's thresholds.
fn effect(f: &FeatureDrift) -> Status {
    if f.status_value >= f.rule.red {
        Status::Red
    } else if f.status_value >= f.rule.amber {
        Status::Amber
    } else {
        Status::Green
    }
}

impl DriftMonitor {
    /// A monitor for windows of this shape over `features` monitored quantities, every feature
    /// green.
    pub fn new(config: Hysteresis, window: WindowSpec, features: usize) -> DriftMonitor {
        let panes_per_day = 86_400_000.0 / window.slide_ms.max(1) as f64;
        let arl0 = config.mean_days_between_false_alarms * panes_per_day * features.max(1) as f64;
        let threshold = cusum_threshold(arl0.max(2.0), config.allowance);
        DriftMonitor { config, window, threshold, states: BTreeMap::new(), windows_since_request: None }
    }

    /// The CUSUM threshold h in force.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The shown status of a feature (green if never seen).
    pub fn shown(&self, feature: &str) -> Status {
        self.states.get(feature).and_then(|s| s.shown).unwrap_or(Status::Green)
    }

    /// A feature's accumulated evidence (CUSUM value).
    pub fn evidence(&self, feature: &str) -> f64 {
        self.states.get(feature).map_or(0.0, |s| s.cusum)
    }

    /// Features currently shown with this status.
    pub fn features_shown(&self, status: Status) -> Vec<String> {
        self.states.iter().filter(|(_, s)| s.shown.unwrap_or(Status::Green) == status).map(|(f, _)| f.clone()).collect()
    }

    /// Feeds one window's report and the report of its newest pane.
    pub fn observe(&mut self, report: &WindowReport, pane: Option<&WindowReport>) -> MonitorOutput {
        let mut out = MonitorOutput::default();
        let c = self.config;
        let (h, size) = (self.threshold, self.window.size_ms);
        let end_ms = crate::time::parse_rfc3339_ms(&report.window_end).unwrap_or(0);
        let pane_features: Vec<&FeatureDrift> = pane.map(|p| p.drift.features.iter().chain(std::iter::once(&p.model_drift.score)).collect()).unwrap_or_default();
        for f in report.drift.features.iter().chain(std::iter::once(&report.model_drift.score)) {
            let state = self.states.entry(f.bins.name.clone()).or_default();
            // Evidence: the newest pane's p-value, counted once.
            if let Some(p) = pane_features.iter().find(|p| p.bins.name == f.bins.name).and_then(|p| p.status_p_value) {
                state.cusum = (state.cusum - p.max(1e-300).ln() - c.allowance).max(0.0);
                if state.cusum >= h {
                    state.evidence = true;
                } else if state.cusum < h / 2.0 {
                    state.evidence = false;
                }
            }
            if f.status == Status::InsufficientData {
                continue;
            }
            let shown = state.shown.unwrap_or(Status::Green);
            let e = effect(f);
            if e >= Status::Amber {
                state.calm_since_ms = None;
            } else if shown >= Status::Amber {
                state.calm_since_ms.get_or_insert(end_ms);
            }
            // A drifted feature returns to green once a whole window of data has shown no
            // effect (or the evidence is gone), so a value hovering at a threshold does not flap.
            let calm_for_a_window = state.calm_since_ms.is_some_and(|t| end_ms - t >= size);
            let target = match (state.evidence, shown, e) {
                (false, _, _) => Status::Green,
                (true, Status::Red, Status::Amber) => Status::Red,
                (true, s, Status::Green) if s >= Status::Amber && !calm_for_a_window => s,
                (true, _, e) => e,
            };
            if target != shown {
                out.alerts.push(DriftAlert {
                    model: report.model.clone(),
                    feature: f.bins.name.clone(),
                    from: shown,
                    to: target,
                    window_end: report.window_end.clone(),
                    metric: f.rule.metric,
                    value: f.status_value,
                    consecutive_windows: if target >= Status::Amber { state.drifted_windows + 1 } else { 1 },
                });
            }
            state.shown = Some(target);
            if target >= Status::Amber {
                state.drifted_since_ms.get_or_insert(end_ms);
                state.drifted_windows += 1;
                state.red_in_episode |= target == Status::Red;
            } else {
                (state.drifted_since_ms, state.drifted_windows, state.red_in_episode) = (None, 0, false);
            }
        }
        self.windows_since_request = self.windows_since_request.map(|w| w + 1);
        let cooling = self.windows_since_request.is_some_and(|w| w < c.retrain_cooldown);
        let span = (c.retrain_after_windows * size as f64) as i64;
        let sustained: Vec<(&String, &FeatureState)> = self
            .states
            .iter()
            .filter(|(_, s)| s.red_in_episode && s.drifted_since_ms.is_some_and(|t| end_ms - t >= span))
            .collect();
        if !sustained.is_empty() && !cooling {
            let evidence: Vec<RetrainEvidence> = sustained
                .iter()
                .map(|(name, s)| {
                    let f = report.drift.features.iter().chain(std::iter::once(&report.model_drift.score)).find(|f| &f.bins.name == *name);
                    RetrainEvidence { feature: (*name).clone(), psi: f.map_or(f64::NAN, |f| f.psi), js: f.map_or(f64::NAN, |f| f.js), red_windows: s.drifted_windows }
                })
                .collect();
            let names: Vec<&str> = evidence.iter().map(|e| e.feature.as_str()).collect();
            out.retrain = Some(RetrainRequest {
                model: report.model.clone(),
                red_windows: evidence.iter().map(|e| e.red_windows).min().unwrap_or(0),
                reason: format!(
                    "{} drifted ({} at least once) for {} window lengths of event time",
                    names.join(", "),
                    status_name(Status::Red),
                    c.retrain_after_windows
                ),
                features: evidence,
                window_end: report.window_end.clone(),
                concept: None,
            });
            self.windows_since_request = Some(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Exp1};

    use super::*;
    use crate::drift::window::{ModelDrift, RateCheck};
    use crate::drift::{BinnedFeature, DataSide, DriftReport, DriftSettings, FeatureKind, StatusRule, REPORT_VERSION};

    #[test]
    fn the_cusum_threshold_gives_the_mean_run_length_asked_for() {
        let k = 2.5;
        for target in [200.0, 1000.0] {
            let h = cusum_threshold(target, k);
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
            let runs = 3000;
            let mut total = 0u64;
            for _ in 0..runs {
                let (mut s, mut t) = (0.0f64, 0u64);
                while s < h {
                    let x: f64 = Exp1.sample(&mut rng);
                    s = (s + x - k).max(0.0);
                    t += 1;
                }
                total += t;
            }
            let mean = total as f64 / runs as f64;
            // Run lengths are near-geometric: sd ≈ mean, so the mean of 3,000 is within ±6 % (3 sd).
            assert!((mean / target - 1.0).abs() < 0.06, "target {target}: h {h:.3} gave {mean:.1}");
        }
        assert!(cusum_threshold(1e6, k) > cusum_threshold(1e3, k));
    }

    fn feature(name: &str, value: f64, status: Status, p: Option<f64>) -> FeatureDrift {
        FeatureDrift {
            bins: BinnedFeature { name: name.into(), kind: FeatureKind::Numeric, labels: vec![], edges: None, reference_counts: vec![], current_counts: vec![] },
            psi: value,
            kl: 0.0,
            js: 0.0,
            chi2: None,
            ks: None,
            wasserstein: None,
            status,
            rule: StatusRule::default(),
            status_value: value,
            status_p_value: p,
        }
    }

    const SLIDE: i64 = 60_000;
    const SIZE: i64 = 600_000;

    /// A window ending at slide `i` where feature `x` has this value (and raw status), plus
    /// `steady`, always green.
    fn report(i: i64, x: f64, x_status: Status, p: Option<f64>) -> WindowReport {
        let side = DataSide { source: String::new(), rows: 0 };
        let rate = RateCheck { observed: 0.0, expected: 0.0, samples: 0, p_value: 1.0 };
        WindowReport {
            window_start: crate::time::format_rfc3339_ms(i * SLIDE - SIZE),
            window_end: crate::time::format_rfc3339_ms(i * SLIDE),
            model: "m v1".into(),
            drift: DriftReport {
                report_version: REPORT_VERSION,
                reference: side.clone(),
                current: side,
                settings: DriftSettings::default(),
                status: x_status,
                features: vec![feature("x", x, x_status, p), feature("steady", 0.01, Status::Green, Some(0.6))],
            },
            model_drift: ModelDrift { score: feature("model_score", 0.01, Status::Green, Some(0.5)), outlier_rate: rate, alert_rate: rate },
            sources: None,
        }
    }

    struct Step {
        value: f64,
        pane_p: Option<f64>,
        insufficient: bool,
    }

    fn drifted(value: f64) -> Step {
        Step { value, pane_p: Some(1.0 / 2001.0), insufficient: false }
    }
    fn quiet(value: f64) -> Step {
        Step { value, pane_p: Some(0.5), insufficient: false }
    }

    /// Feeds windows; returns (shown x after each, x's changes, windows with a retrain request).
    fn run(m: &mut DriftMonitor, steps: &[Step]) -> (Vec<Status>, Vec<(Status, Status)>, Vec<usize>) {
        let (mut shown, mut changes, mut retrain) = (vec![], vec![], vec![]);
        for (i, s) in steps.iter().enumerate() {
            let status = if s.insufficient { Status::InsufficientData } else { Status::Green };
            let window = report(i as i64 + 10, s.value, status, None);
            let pane = report(i as i64 + 10, s.value, status, s.pane_p);
            let out = m.observe(&window, Some(&pane));
            changes.extend(out.alerts.iter().filter(|a| a.feature == "x").map(|a| (a.from, a.to)));
            if out.retrain.is_some() {
                retrain.push(i);
            }
            shown.push(m.shown("x"));
            assert_eq!(m.shown("steady"), Status::Green);
        }
        (shown, changes, retrain)
    }

    fn monitor() -> DriftMonitor {
        DriftMonitor::new(Hysteresis::default(), WindowSpec { size_ms: SIZE, slide_ms: SLIDE, lateness_ms: 0 }, 20)
    }

    use Status::{Amber as A, Green as G, Red as R};

    #[test]
    fn a_big_value_without_evidence_is_not_shown() {
        // Small windows: PSI well above 0.25 by chance, panes unremarkable.
        let (shown, changes, retrain) = run(&mut monitor(), &(0..30).map(|_| quiet(0.4)).collect::<Vec<_>>());
        assert!(shown.iter().all(|&s| s == G) && changes.is_empty() && retrain.is_empty());
    }

    #[test]
    fn strong_evidence_turns_red_within_a_few_panes_and_sustained_drift_requests_one_retrain() {
        let mut m = monitor();
        let per_pane = (2001f64).ln() - Hysteresis::default().allowance;
        let panes_needed = (m.threshold() / per_pane).ceil() as usize;
        assert!(panes_needed <= 4, "h {} needs {panes_needed} panes", m.threshold());
        let (shown, changes, retrain) = run(&mut m, &(0..40).map(|_| drifted(0.6)).collect::<Vec<_>>());
        assert_eq!(shown.iter().position(|&s| s == R), Some(panes_needed - 1));
        assert_eq!(changes, vec![(G, R)]);
        // Red from window panes_needed−1; 2 window lengths (20 slides) later: a request, then the
        // 60-window cool-down.
        assert_eq!(retrain, vec![panes_needed - 1 + 20]);
    }

    /// Quiet, then `burst` panes of strong evidence whose data stays in the windows for a window
    /// length (10 slides), then quiet again.
    fn burst(panes: usize) -> Vec<Step> {
        let mut steps: Vec<Step> = (0..5).map(|_| quiet(0.01)).collect();
        steps.extend((0..panes).map(|_| drifted(0.5)));
        steps.extend((0..10).map(|_| Step { value: 0.5, pane_p: Some(0.5), insufficient: false }));
        steps.extend((0..30).map(|_| quiet(0.01)));
        steps
    }

    #[test]
    fn a_burst_never_requests_a_retrain_and_a_two_minute_one_is_not_even_shown() {
        // Two one-minute panes of burst: less evidence than the threshold asks for.
        let (shown, changes, retrain) = run(&mut monitor(), &burst(2));
        assert!(shown.iter().all(|&s| s == G) && changes.is_empty() && retrain.is_empty(), "{shown:?}");
        // Five minutes: shown red while its data is in the windows, then green; no retrain.
        let (shown, changes, retrain) = run(&mut monitor(), &burst(5));
        assert!(shown.contains(&R), "{shown:?}");
        assert_eq!(changes.first(), Some(&(G, R)));
        assert_eq!(*shown.last().unwrap(), G, "and it ends");
        assert!(retrain.is_empty(), "no retrain for a burst");
    }

    #[test]
    fn hovering_between_amber_and_red_stays_red_and_still_counts_towards_a_retrain() {
        let mut m = monitor();
        let steps: Vec<Step> = (0..40).map(|i| drifted(if i % 2 == 0 { 0.3 } else { 0.2 })).collect();
        let (shown, changes, retrain) = run(&mut m, &steps);
        assert_eq!(changes.iter().filter(|c| c.1 == R).count(), 1, "one change to red, no flapping: {changes:?}");
        assert!(!changes.contains(&(R, A)));
        assert_eq!(retrain.len(), 1, "hovering is sustained drift");
        assert_eq!(*shown.last().unwrap(), R);
    }

    #[test]
    fn hovering_at_the_amber_threshold_does_not_flap() {
        let mut m = monitor();
        let steps: Vec<Step> = (0..30).map(|i| drifted(if i % 3 == 0 { 0.05 } else { 0.15 })).collect();
        let (shown, changes, _) = run(&mut m, &steps);
        assert_eq!(changes, vec![(G, A)], "amber once, no flapping: {changes:?}");
        assert_eq!(*shown.last().unwrap(), A);
        // Calm for a whole window (10 slides) of data: green.
        let (shown, changes, _) = run(&mut m, &(0..12).map(|_| drifted(0.05)).collect::<Vec<_>>());
        assert_eq!(changes, vec![(A, G)]);
        assert_eq!(shown.iter().position(|&s| s == G), Some(10));
    }

    #[test]
    fn insufficient_windows_and_panes_neither_count_nor_reset() {
        let mut m = monitor();
        let mut steps: Vec<Step> = (0..2).map(|_| drifted(0.6)).collect();
        steps.extend((0..10).map(|_| Step { value: 0.6, pane_p: None, insufficient: true }));
        let (shown, _, _) = run(&mut m, &steps);
        let after_two = shown[1];
        assert!(shown[2..].iter().all(|&s| s == after_two), "insufficient windows change nothing: {shown:?}");
        let cusum = m.evidence("x");
        run(&mut m, &(0..3).map(|_| Step { value: 0.6, pane_p: None, insufficient: true }).collect::<Vec<_>>());
        assert_eq!(m.evidence("x"), cusum, "panes without a p-value add no evidence");
    }

    #[test]
    fn a_longer_mean_time_between_false_alarms_needs_more_evidence() {
        let w = WindowSpec { size_ms: SIZE, slide_ms: SLIDE, lateness_ms: 0 };
        let short = DriftMonitor::new(Hysteresis { mean_days_between_false_alarms: 1.0, ..Hysteresis::default() }, w, 20).threshold();
        let long = DriftMonitor::new(Hysteresis { mean_days_between_false_alarms: 365.0, ..Hysteresis::default() }, w, 20).threshold();
        assert!(long > short + 3.0, "h {short} for a day, {long} for a year");
    }
}
