//! Concept drift on the labelled error stream: the drift detection method (DDM, Gama et al.,
//! SBIA 2004), with River's `drift.binary.DDM` semantics (warning at 2 and drift at 3 standard
//! deviations above the best error rate seen), so River is the oracle in `tests/performance.rs`.
//! Warm-up: 100 observations, not River's 30: on the generator's missed-fraud stream (a few
//! hundred labelled frauds) 30 gave a false alarm at the 68th label (measured, seed 5).

use serde::{Deserialize, Serialize};

/// DDM's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdmSettings {
    /// Observations before the detector may warn or detect.
    pub warm_start: u64,
    /// Standard deviations above the best error rate for a warning.
    pub warning_threshold: f64,
    /// Standard deviations above the best error rate for a drift.
    pub drift_threshold: f64,
}

impl Default for DdmSettings {
    fn default() -> Self {
        DdmSettings { warm_start: 100, warning_threshold: 2.0, drift_threshold: 3.0 }
    }
}

/// What one observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdmState {
    /// Nothing unusual.
    Stable,
    /// The error rate is above the warning level.
    Warning,
    /// The error rate is above the drift level: the detector resets at the next observation.
    Drift,
}

/// The detector. Feed it 1 for a wrong decision, 0 for a right one.
#[derive(Debug, Clone)]
pub struct Ddm {
    settings: DdmSettings,
    n: u64,
    mean: f64,
    p_min: f64,
    s_min: f64,
    ps_min: f64,
    drifted: bool,
}

impl Ddm {
    /// A fresh detector.
    pub fn new(settings: DdmSettings) -> Ddm {
        Ddm { settings, n: 0, mean: 0.0, p_min: f64::NAN, s_min: f64::NAN, ps_min: f64::INFINITY, drifted: false }
    }

    /// Observations since the last reset.
    pub fn seen(&self) -> u64 {
        self.n
    }

    /// Error rate since the last reset.
    pub fn error_rate(&self) -> f64 {
        self.mean
    }

    /// The best error rate and its standard deviation since the last reset.
    pub fn minimum(&self) -> (f64, f64) {
        (self.p_min, self.s_min)
    }

    /// Takes one observation (`error`: the decision was wrong).
    pub fn update(&mut self, error: bool) -> DdmState {
        if self.drifted {
            *self = Ddm::new(self.settings);
        }
        self.n += 1;
        // The running mean as River's `stats.Mean` computes it (same rounding).
        self.mean += (f64::from(u8::from(error)) - self.mean) / self.n as f64;
        let p = self.mean;
        let s = (p * (1.0 - p) / self.n as f64).sqrt();
        if self.n <= self.settings.warm_start {
            return DdmState::Stable;
        }
        if p + s <= self.ps_min {
            self.p_min = p;
            self.s_min = s;
            self.ps_min = p + s;
        }
        if p + s > self.p_min + self.settings.drift_threshold * self.s_min {
            self.drifted = true;
            DdmState::Drift
        } else if p + s > self.p_min + self.settings.warning_threshold * self.s_min {
            DdmState::Warning
        } else {
            DdmState::Stable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_rise_in_the_error_rate_is_detected_and_a_flat_one_rarely() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let mut d = Ddm::new(DdmSettings::default());
        let mut first = None;
        for i in 0..4000 {
            let rate = if i < 2000 { 0.05 } else { 0.15 };
            if d.update(rng.gen::<f64>() < rate) == DdmState::Drift && i >= 2000 && first.is_none() {
                first = Some(i);
            }
        }
        let at = first.expect("the rise from 5 % to 15 % is detected");
        assert!(at < 2600, "detected after {} observations", at - 2000);
        // No rise: count false alarms over a long flat stream.
        let mut d = Ddm::new(DdmSettings::default());
        let alarms = (0..20_000).filter(|_| d.update(rng.gen::<f64>() < 0.05) == DdmState::Drift).count();
        assert!(alarms <= 3, "{alarms} false alarms on a flat stream");
    }
}
