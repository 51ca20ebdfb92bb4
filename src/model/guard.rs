//! The automatic-rollback guard's rules, pure: after a promotion, the first drift windows of
//! the new version are judged against its own training figures (alert rate, outlier rate) and a
//! latency limit. The caller (the engine) owns the guard's state and does the registry write
//! when the verdict is a rollback; nothing here does I/O or reads a clock.
//!
//! A rate rolls a version back only on statistical evidence *and* a practical difference: a
//! binomial test of the window's count against the trained rate (two-sided for alerts: too few
//! is as wrong as too many; one-sided for outliers) at a per-test level of
//! `false_rollback_probability / (2 × windows)` (Bonferroni over every test the guard makes of
//! one version), and the rate outside the configured factor / margin. A healthy model is thus
//! rolled back with probability at most `false_rollback_probability`, whatever the window size.
//! Latency counts once `latency_min_samples` events were timed.

use crate::message::drift::WindowReport;
use crate::model::registry::{VersionEntry, ROLLBACK_REASON_PREFIX};

/// Thresholds the guard judges a window by (`[model] guard_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardRules {
    /// Windows a new version is watched for (0: no guard).
    pub windows: u32,
    /// The alert rate may be at most this factor above or below the trained rate.
    pub alert_rate_factor: f64,
    /// The outlier rate may exceed the trained rate by at most this much.
    pub outlier_margin: f64,
    /// Limit on the p99 decode+score latency, milliseconds.
    pub p99_latency_ms: f64,
    /// Windows with fewer samples do not count (they say too little either way).
    pub min_samples: u64,
    /// Probability of rolling back a healthy version over all its watched windows.
    pub false_rollback_probability: f64,
    /// Timed events needed before the p99 latency is judged.
    pub latency_min_samples: u64,
}

/// The guard's state for one newly serving version.
#[derive(Debug)]
pub struct Guard {
    /// The version watched; windows of any other version are ignored.
    version: String,
    /// Healthy windows still needed before the version is passed.
    windows_left: u32,
    /// Sampled decode+score latencies (µs) since the swap.
    latency_us: hdrhistogram::Histogram<u64>,
}

/// What the guard concludes from one window.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardVerdict {
    /// The window does not count (another version's, or too few samples).
    Ignored,
    /// Healthy; more windows are needed.
    Watching {
        /// Healthy windows still needed.
        windows_left: u32,
    },
    /// Healthy for every watched window: the guard stops watching.
    Passed,
    /// The version misbehaves: roll it back.
    RollBack {
        /// The misbehaving version.
        version: String,
        /// What it did, for the registry's history and the logs.
        reason: String,
    },
}

impl Guard {
    /// Starts watching `version` for `rules.windows` windows; `None` when the guard is off.
    pub fn watch(version: &str, rules: &GuardRules) -> Option<Guard> {
        (rules.windows > 0).then(|| Guard {
            version: version.to_string(),
            windows_left: rules.windows,
            latency_us: hdrhistogram::Histogram::new(3).expect("3 significant figures is a valid precision"),
        })
    }

    /// The version watched.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Records one sampled decode+score latency.
    pub fn record_latency_us(&mut self, micros: u64) {
        let _ = self.latency_us.record(micros);
    }

    /// Judges a closed window of `serving`.
    pub fn judge(&mut self, serving: &str, report: &WindowReport, rules: &GuardRules) -> GuardVerdict {
        if self.version != serving || report.drift.current.rows < rules.min_samples {
            return GuardVerdict::Ignored;
        }
        let p99_ms = (self.latency_us.len() >= rules.latency_min_samples.max(1)).then(|| self.latency_us.value_at_quantile(0.99) as f64 / 1000.0);
        if let Some(reason) = misbehaviour(report, p99_ms, rules) {
            return GuardVerdict::RollBack { version: self.version.clone(), reason };
        }
        self.windows_left = self.windows_left.saturating_sub(1);
        if self.windows_left == 0 {
            GuardVerdict::Passed
        } else {
            GuardVerdict::Watching { windows_left: self.windows_left }
        }
    }
}

/// Two-sided binomial p-value of `k` successes in `n` trials at rate `p` (twice the smaller tail).
pub fn binomial_two_sided(k: u64, n: u64, p: f64) -> f64 {
    (2.0 * binomial_lower(k, n, p).min(binomial_upper(k, n, p))).min(1.0)
}

/// P(X ≤ k) for X ~ Binomial(n, p).
pub fn binomial_lower(k: u64, n: u64, p: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    Binomial::new(p.clamp(0.0, 1.0), n).map_or(1.0, |b| b.cdf(k))
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_upper(k: u64, n: u64, p: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if k == 0 {
        return 1.0;
    }
    Binomial::new(p.clamp(0.0, 1.0), n).map_or(1.0, |b| b.sf(k - 1))
}

/// Why a window shows the serving model misbehaving, or `None` when it does not: the alert rate
/// significantly different from the trained rate and outside [trained ÷ factor, trained ×
/// factor], the outlier rate significantly above the trained rate and above trained + margin,
/// or the p99 latency above its limit (checked in that order).
pub fn misbehaviour(report: &WindowReport, p99_latency_ms: Option<f64>, rules: &GuardRules) -> Option<String> {
    let (alerts, outliers) = (&report.model_drift.alert_rate, &report.model_drift.outlier_rate);
    let alpha = rules.false_rollback_probability / (2.0 * f64::from(rules.windows.max(1)));
    let count = |r: &crate::drift::window::RateCheck| (r.observed * r.samples as f64).round() as u64;
    let f = rules.alert_rate_factor;
    let alert_p = binomial_two_sided(count(alerts), alerts.samples, alerts.expected);
    let outlier_p = binomial_upper(count(outliers), outliers.samples, outliers.expected);
    if (alerts.observed > alerts.expected * f || alerts.observed < alerts.expected / f) && alert_p < alpha {
        Some(format!(
            "fraud-alert rate {:.4} outside {:.4}–{:.4} (trained {:.4}; binomial p = {alert_p:.2e} < {alpha:.2e}, {} samples)",
            alerts.observed,
            alerts.expected / f,
            alerts.expected * f,
            alerts.expected,
            alerts.samples
        ))
    } else if outliers.observed > outliers.expected + rules.outlier_margin && outlier_p < alpha {
        Some(format!(
            "outlier rate {:.4} above the trained {:.4} + {} (binomial p = {outlier_p:.2e} < {alpha:.2e}, {} samples)",
            outliers.observed, outliers.expected, rules.outlier_margin, outliers.samples
        ))
    } else if let Some(p99) = p99_latency_ms.filter(|&p| p > rules.p99_latency_ms) {
        Some(format!("p99 scoring latency {p99:.3} ms above {} ms", rules.p99_latency_ms))
    } else {
        None
    }
}

/// Whether a version becoming production should be guarded. A version restored by a rollback is
/// not: otherwise a traffic shift that upsets both versions would cascade rollbacks to ever
/// older versions.
pub fn should_guard(entry: &VersionEntry) -> bool {
    entry.history.last().is_none_or(|c| !c.reason.starts_with(ROLLBACK_REASON_PREFIX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::drift::window::{ModelDrift, RateCheck};
    use crate::drift::{BinnedFeature, DataSide, DriftReport, DriftSettings, FeatureDrift, FeatureKind, Status, StatusRule, REPORT_VERSION};
    use crate::message::{Stage, StageChange};

    pub(crate) const RULES: GuardRules =
        GuardRules { windows: 3, alert_rate_factor: 3.0, outlier_margin: 0.03, p99_latency_ms: 5.0, min_samples: 100, false_rollback_probability: 0.001, latency_min_samples: 1000 };

    /// A window report of `rows` samples with these alert and outlier rates (trained 0.02 and 0.01).
    pub(crate) fn window(rows: u64, alert_rate: f64, outlier_rate: f64) -> WindowReport {
        let rate = |observed: f64, expected: f64| RateCheck { observed, expected, samples: rows, p_value: 0.5 };
        let score = FeatureDrift {
            bins: BinnedFeature { name: "model_score".into(), kind: FeatureKind::Numeric, labels: vec![], edges: None, reference_counts: vec![], current_counts: vec![] },
            psi: 0.0,
            kl: 0.0,
            js: 0.0,
            chi2: None,
            ks: None,
            wasserstein: None,
            status: Status::Green,
            rule: StatusRule::default(),
            status_value: 0.0,
            status_p_value: None,
        };
        WindowReport {
            window_start: "2026-01-05T00:00:00.000Z".into(),
            window_end: "2026-01-05T00:10:00.000Z".into(),
            model: "card-fraud v2".into(),
            drift: DriftReport {
                report_version: REPORT_VERSION,
                reference: DataSide { source: "v2".into(), rows: 50_000 },
                current: DataSide { source: "window".into(), rows },
                settings: DriftSettings::default(),
                status: Status::Green,
                features: vec![],
            },
            model_drift: ModelDrift { score, outlier_rate: rate(outlier_rate, 0.01), alert_rate: rate(alert_rate, 0.02) },
            sources: None,
        }
    }

    #[test]
    fn a_healthy_promotion_is_kept_and_passed_after_its_windows() {
        let mut g = Guard::watch("v2", &RULES).unwrap();
        g.record_latency_us(300);
        assert_eq!(g.judge("v2", &window(500, 0.021, 0.012), &RULES), GuardVerdict::Watching { windows_left: 2 });
        assert_eq!(g.judge("v2", &window(500, 0.015, 0.010), &RULES), GuardVerdict::Watching { windows_left: 1 });
        assert_eq!(g.judge("v2", &window(500, 0.030, 0.020), &RULES), GuardVerdict::Passed);
    }

    #[test]
    fn each_rule_names_its_reason() {
        let too_many = misbehaviour(&window(500, 0.5, 0.01), None, &RULES).unwrap();
        assert!(too_many.starts_with("fraud-alert rate 0.5000 outside 0.0067–0.0600"), "{too_many}");
        let too_few = misbehaviour(&window(2000, 0.001, 0.01), None, &RULES).unwrap();
        assert!(too_few.starts_with("fraud-alert rate 0.0010"), "{too_few}");
        let outliers = misbehaviour(&window(500, 0.02, 0.05), None, &RULES).unwrap();
        assert!(outliers.starts_with("outlier rate 0.0500 above the trained 0.0100 + 0.03"), "{outliers}");
        let slow = misbehaviour(&window(500, 0.02, 0.01), Some(7.5), &RULES).unwrap();
        assert_eq!(slow, "p99 scoring latency 7.500 ms above 5 ms");
        assert_eq!(misbehaviour(&window(500, 0.02, 0.01), Some(4.0), &RULES), None);
    }

    #[test]
    fn a_small_healthy_window_is_no_evidence() {
        // The case: 100 samples at a trained 1.8 % alert rate see 0 alerts 16 % of the time.
        let mut w = window(100, 0.0, 0.01);
        w.model_drift.alert_rate.expected = 0.018;
        assert!((binomial_lower(0, 100, 0.018) - 0.982f64.powi(100)).abs() < 1e-12);
        assert_eq!(misbehaviour(&w, None, &RULES), None, "0 of 100 at 1.8 %: p ≈ 0.33 two-sided");
        // A model alerting on everything is caught on the same 100 samples.
        assert!(misbehaviour(&window(100, 1.0, 0.01), None, &RULES).is_some());
        // A small difference on a huge window is significant but not a practical difference.
        assert_eq!(misbehaviour(&window(1_000_000, 0.025, 0.012), None, &RULES), None);
    }

    #[test]
    fn a_healthy_version_is_rolled_back_at_most_at_the_configured_probability() {
        // Healthy windows at the trained rates, every size from tiny to large: over 20,000
        // promotions of 3 windows each, the share rolled back stays within the configured 0.001
        // (the bound is conservative; a binomial sd at 0.001 over 20,000 is 0.00022).
        use rand::{Rng, SeedableRng};
        use rand_distr::{Binomial, Distribution};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let promotions = 20_000;
        let mut rolled_back = 0;
        for _ in 0..promotions {
            let mut g = Guard::watch("v2", &RULES).unwrap();
            for _ in 0..RULES.windows {
                let n: u64 = rng.gen_range(100..3000);
                let alerts = Binomial::new(n, 0.02).unwrap().sample(&mut rng) as f64 / n as f64;
                let outliers = Binomial::new(n, 0.01).unwrap().sample(&mut rng) as f64 / n as f64;
                if matches!(g.judge("v2", &window(n, alerts, outliers), &RULES), GuardVerdict::RollBack { .. }) {
                    rolled_back += 1;
                    break;
                }
            }
        }
        let rate = rolled_back as f64 / promotions as f64;
        assert!(rate <= RULES.false_rollback_probability + 3.0 * 0.00022, "false rollbacks {rolled_back} of {promotions}");
    }

    #[test]
    fn latency_counts_only_on_enough_timed_events() {
        let mut g = Guard::watch("v2", &RULES).unwrap();
        for _ in 0..999 {
            g.record_latency_us(9_000);
        }
        assert_eq!(g.judge("v2", &window(500, 0.02, 0.01), &RULES), GuardVerdict::Watching { windows_left: 2 }, "999 timed events: too few");
    }

    #[test]
    fn latency_is_judged_from_the_recorded_histogram() {
        let mut g = Guard::watch("v2", &RULES).unwrap();
        for _ in 0..1000 {
            g.record_latency_us(9_000);
        }
        match g.judge("v2", &window(500, 0.02, 0.01), &RULES) {
            GuardVerdict::RollBack { version, reason } => {
                assert_eq!(version, "v2");
                assert!(reason.starts_with("p99 scoring latency 9.0"), "{reason}");
            }
            other => panic!("expected a rollback, got {other:?}"),
        }
    }

    #[test]
    fn other_versions_and_small_windows_do_not_count() {
        let mut g = Guard::watch("v2", &RULES).unwrap();
        assert_eq!(g.judge("v1", &window(500, 0.9, 0.9), &RULES), GuardVerdict::Ignored);
        assert_eq!(g.judge("v2", &window(99, 0.9, 0.9), &RULES), GuardVerdict::Ignored);
        assert_eq!(g.judge("v2", &window(100, 0.02, 0.01), &RULES), GuardVerdict::Watching { windows_left: 2 });
        assert!(Guard::watch("v2", &GuardRules { windows: 0, ..RULES }).is_none(), "0 windows: no guard");
    }

    #[test]
    fn a_version_restored_by_a_rollback_is_not_guarded_again() {
        let change = |reason: &str| StageChange { at: "t".into(), from: Some(Stage::Archived), to: Stage::Production, by: "guard".into(), reason: reason.into() };
        let mut entry = crate::model::registry::tests::entry("v1");
        assert!(should_guard(&entry), "never changed: guarded");
        entry.history.push(change("promoted"));
        assert!(should_guard(&entry));
        entry.history.push(change(&format!("{ROLLBACK_REASON_PREFIX}v2: fraud-alert rate 0.5")));
        assert!(!should_guard(&entry), "restored by a rollback: not guarded (no cascade)");
    }
}
