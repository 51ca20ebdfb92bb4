//! How surprising a feature's drift statistic is when nothing drifted: a p-value for the
//! statistic that decides the status, at the window's own size.
//!
//! The no-drift value of PSI, KL or JS grows like (B−1)(1/n + 1/m) and, with smoothing and
//! sparse bins, further at small n: a fixed threshold (PSI ≥ 0.25) is crossed by chance in a
//! small window and never by a real but small drift in a big one. So a status needs both an
//! effect at or above its threshold *and* a p-value at or below its significance level
//! ([`crate::drift::Significance`]): the false-red rate per feature and window is then at most
//! the red level at every window and reference size.
//!
//! Binned statistics get a Monte Carlo p-value from their exact small-sample null: both sides
//! are redrawn as multinomials (sizes m and n) from the reference's bin proportions (with a
//! Jeffreys ½ pseudo-count, so a bin empty in the reference still has some mass), and the
//! statistic is recomputed with the report's own smoothing. Sampling stops early once enough
//! simulated values reach the observed one (Besag & Clifford's sequential p-value), so a
//! typical no-drift window costs a few dozen draws; a strongly drifted one the maximum. The
//! generator is seeded from the feature and the counts, so the same window always gets the same
//! p-value. KS and Wasserstein rules use the KS test's p-value.

use rand::SeedableRng;
use rand_distr::{Binomial, Distribution};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::stats::{js_distance, kl, psi, smoothed};
use crate::drift::StatusMetric;

/// Simulations at most; the smallest p-value is 1/(MAX_SIMULATIONS + 1).
pub const MAX_SIMULATIONS: u32 = 2000;
/// Simulated values at least as large as the observed one before sampling stops.
pub const EXCEEDANCES: u32 = 20;

/// The binned statistic `metric` of two count vectors, with smoothing `alpha`.
pub fn binned_statistic(metric: StatusMetric, current: &[u64], reference: &[u64], alpha: f64) -> f64 {
    let (p, q) = (smoothed(current, alpha), smoothed(reference, alpha));
    match metric {
        StatusMetric::Kl => kl(&p, &q),
        StatusMetric::Js => js_distance(&p, &q),
        _ => psi(&p, &q),
    }
}

/// PSI or KL of two count vectors with smoothing `alpha`, without allocating (the simulation's
/// inner loop); the same arithmetic as [`binned_statistic`].
fn psi_or_kl(metric: StatusMetric, current: &[u64], reference: &[u64], alpha: f64) -> f64 {
    let b = current.len() as f64;
    let n: f64 = current.iter().map(|&c| c as f64).sum();
    let m: f64 = reference.iter().map(|&c| c as f64).sum();
    let (dp, dq) = (n + b * alpha, m + b * alpha);
    let mut sum = 0.0;
    for (&c, &r) in current.iter().zip(reference) {
        let (p, q) = ((c as f64 + alpha) / dp, (r as f64 + alpha) / dq);
        sum += match metric {
            StatusMetric::Kl if p > 0.0 => p * (p / q).ln(),
            StatusMetric::Kl => 0.0,
            _ if p == q => 0.0,
            _ => (p - q) * (p / q).ln(),
        };
    }
    sum
}

/// Draws multinomial counts of `n` over `probs` into `out` by sequential binomials.
fn multinomial(rng: &mut Xoshiro256PlusPlus, n: u64, probs: &[f64], out: &mut [u64]) {
    let (mut left, mut mass) = (n, 1.0f64);
    for (i, &p) in probs.iter().enumerate() {
        if left == 0 || i + 1 == probs.len() {
            out[i] = left;
            left = 0;
            continue;
        }
        let share = (p / mass).clamp(0.0, 1.0);
        let k = Binomial::new(left, share).map_or(0, |b| b.sample(rng));
        out[i] = k;
        left -= k;
        mass = (mass - p).max(f64::MIN_POSITIVE);
    }
}

/// Seed of the simulation for one feature and window: a hash of the name and the counts.
fn seed(name: &str, current: &[u64], reference: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    name.bytes().for_each(|b| mix(u64::from(b)));
    current.iter().chain(reference).for_each(|&c| mix(c));
    h
}

/// Monte Carlo p-value of the binned `metric` at `observed`, under no drift, for a window of
/// `current` counts against `reference` counts (see the module documentation).
pub fn binned_p_value(name: &str, metric: StatusMetric, observed: f64, current: &[u64], reference: &[u64], alpha: f64) -> f64 {
    let (n, m) = (current.iter().sum::<u64>(), reference.iter().sum::<u64>());
    if n == 0 || m == 0 || current.len() < 2 || !observed.is_finite() {
        return 1.0;
    }
    let b = reference.len() as f64;
    let probs: Vec<f64> = reference.iter().map(|&c| (c as f64 + 0.5) / (m as f64 + 0.5 * b)).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed(name, current, reference));
    let (mut sim_current, mut sim_reference) = (vec![0u64; current.len()], vec![0u64; reference.len()]);
    // A value equal to the observed one up to rounding counts as reaching it.
    let bar = observed - 1e-12 * observed.abs().max(1.0);
    let mut reached = 0u32;
    for drawn in 1..=MAX_SIMULATIONS {
        multinomial(&mut rng, n, &probs, &mut sim_current);
        multinomial(&mut rng, m, &probs, &mut sim_reference);
        let simulated = match metric {
            StatusMetric::Js => binned_statistic(metric, &sim_current, &sim_reference, alpha),
            _ => psi_or_kl(metric, &sim_current, &sim_reference, alpha),
        };
        if simulated >= bar {
            reached += 1;
            if reached == EXCEEDANCES {
                return f64::from(reached) / f64::from(drawn);
            }
        }
    }
    f64::from(reached + 1) / f64::from(MAX_SIMULATIONS + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` draws from the population `weights` (the test's own sampler, not the module's).
    fn sample(rng: &mut Xoshiro256PlusPlus, n: u64, weights: &[u64]) -> Vec<u64> {
        let total: u64 = weights.iter().sum();
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..n {
            let mut u = rand::Rng::gen_range(rng, 0..total);
            for (i, &c) in weights.iter().enumerate() {
                if u < c {
                    counts[i] += 1;
                    break;
                }
                u -= c;
            }
        }
        counts
    }

    #[test]
    fn p_values_are_calibrated_at_small_and_large_windows_and_references() {
        // A 12-bin population, two bins nearly empty (as a missing bin is). Under no drift the
        // reference and the window are both samples of it.
        let population = [9000u64, 8000, 7000, 6000, 5000, 4000, 4000, 3000, 2000, 1990, 9, 1];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for (m, n) in [(50_000u64, 100u64), (50_000, 3000), (500, 100), (2000, 2000)] {
            let trials = 400;
            let mut small = 0;
            for t in 0..trials {
                let reference = sample(&mut rng, m, &population);
                let cur = sample(&mut rng, n, &population);
                let v = binned_statistic(StatusMetric::Psi, &cur, &reference, 0.5);
                let p = binned_p_value(&format!("x{t}"), StatusMetric::Psi, v, &cur, &reference, 0.5);
                small += u32::from(p <= 0.05);
            }
            // P(p ≤ 0.05) ≤ 0.05 under no drift: 20 of 400 expected; binomial sd ≈ 4.4.
            assert!(small <= 37, "m={m} n={n}: {small} of {trials} windows at p ≤ 0.05");
            assert!(small >= 3, "m={m} n={n}: {small} of {trials}: the p-value should not be uselessly conservative");
        }
    }

    #[test]
    fn the_allocation_free_statistics_equal_the_reported_ones() {
        let (c, r) = ([0u64, 3, 40, 7, 0], [100u64, 300, 350, 250, 1]);
        for metric in [StatusMetric::Psi, StatusMetric::Kl] {
            let (a, b) = (psi_or_kl(metric, &c, &r, 0.5), binned_statistic(metric, &c, &r, 0.5));
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{metric:?}: {a} vs {b}");
        }
    }

    #[test]
    fn a_real_shift_gets_a_tiny_p_value_and_the_same_window_the_same_p() {
        let reference = [5000u64, 5000, 5000, 5000];
        let shifted = [10u64, 40, 150, 300];
        let v = binned_statistic(StatusMetric::Psi, &shifted, &reference, 0.5);
        let p = binned_p_value("amount", StatusMetric::Psi, v, &shifted, &reference, 0.5);
        assert_eq!(p, 1.0 / f64::from(MAX_SIMULATIONS + 1));
        assert_eq!(p, binned_p_value("amount", StatusMetric::Psi, v, &shifted, &reference, 0.5), "deterministic");
        let same = [1250u64, 1250, 1250, 1250];
        let v = binned_statistic(StatusMetric::Js, &same, &reference, 0.5);
        assert!(binned_p_value("amount", StatusMetric::Js, v, &same, &reference, 0.5) > 0.5);
    }
}
