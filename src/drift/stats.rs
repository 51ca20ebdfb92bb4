//! Drift statistics on binned counts and on raw samples, defined as scipy defines them.
//!
//! Binned statistics take raw reference and current counts over the same bins and smooth
//! them: p_i = (cur_i + α)/(N_cur + Bα) for the current window, q_i likewise for the
//! reference. Then PSI = Σ (p−q) ln(p/q); KL = Σ p ln(p/q) = KL(current ‖ reference) in nats;
//! JS = Jensen–Shannon *distance* in base 2 (`scipy.spatial.distance.jensenshannon(p, q, base=2)`).
//! χ² is the test of homogeneity on the raw 2×B table with bins empty on both sides dropped
//! (`scipy.stats.chi2_contingency(correction=False)`). KS and Wasserstein-1 work on raw
//! values exactly as `scipy.stats.ks_2samp` (statistic; p-value from the asymptotic
//! Kolmogorov distribution) and `scipy.stats.wasserstein_distance`.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Smoothed proportions of `counts` with additive smoothing `alpha`.
pub fn smoothed(counts: &[u64], alpha: f64) -> Vec<f64> {
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    let denom = n + counts.len() as f64 * alpha;
    counts.iter().map(|&c| (c as f64 + alpha) / denom).collect()
}

/// Population stability index between proportions `p` (current) and `q` (reference).
pub fn psi(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(&p, &q)| if p == q { 0.0 } else { (p - q) * (p / q).ln() }).sum()
}

/// KL(p ‖ q) in nats; terms with p = 0 contribute 0.
pub fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(&p, &q)| if p > 0.0 { p * (p / q).ln() } else { 0.0 }).sum()
}

/// Jensen–Shannon distance with base-2 logarithms (0…1), as scipy computes it.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    // scipy normalises both vectors first.
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    let (p, q): (Vec<f64>, Vec<f64>) = (p.iter().map(|v| v / sp).collect(), q.iter().map(|v| v / sq).collect());
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let rel = |x: &[f64]| -> f64 { x.iter().zip(&m).map(|(&x, &m)| if x > 0.0 { x * (x / m).ln() } else { 0.0 }).sum() };
    let divergence = (rel(&p) + rel(&q)) / 2.0 / std::f64::consts::LN_2;
    divergence.max(0.0).sqrt()
}

/// Result of the χ² test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// Pearson's statistic.
    pub statistic: f64,
    /// Degrees of freedom: bins kept − 1.
    pub dof: u64,
    /// Upper-tail probability.
    pub p_value: f64,
}

/// χ² test of homogeneity of two count vectors (no continuity correction); `None` when fewer
/// than two bins are non-empty or a side is empty.
pub fn chi_square(a: &[u64], b: &[u64]) -> Option<ChiSquare> {
    let kept: Vec<(f64, f64)> = a.iter().zip(b).filter(|(&x, &y)| x + y > 0).map(|(&x, &y)| (x as f64, y as f64)).collect();
    let (na, nb): (f64, f64) = (kept.iter().map(|k| k.0).sum(), kept.iter().map(|k| k.1).sum());
    if kept.len() < 2 || na == 0.0 || nb == 0.0 {
        return None;
    }
    let n = na + nb;
    let mut statistic = 0.0;
    for &(x, y) in &kept {
        let col = x + y;
        let (ea, eb) = (na * col / n, nb * col / n);
        statistic += (x - ea) * (x - ea) / ea + (y - eb) * (y - eb) / eb;
    }
    let dof = kept.len() as u64 - 1;
    let p_value = ChiSquared::new(dof as f64).expect("dof ≥ 1").sf(statistic);
    Some(ChiSquare { statistic, dof, p_value })
}

/// Two-sample Kolmogorov–Smirnov statistic D of sorted samples (as `scipy.stats.ks_2samp`).
pub fn ks_statistic(a_sorted: &[f64], b_sorted: &[f64]) -> f64 {
    let (n1, n2) = (a_sorted.len() as f64, b_sorted.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a_sorted.len() && j < b_sorted.len() {
        let x = a_sorted[i].min(b_sorted[j]);
        while i < a_sorted.len() && a_sorted[i] <= x {
            i += 1;
        }
        while j < b_sorted.len() && b_sorted[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    d
}

/// Survival function of the Kolmogorov distribution (`scipy.stats.kstwobign.sf`).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        // CDF = √(2π)/x · Σ exp(−(2k−1)²π²/(8x²)), converges fast for small x.
        let mut cdf = 0.0;
        for k in 1..=50 {
            let t = (2 * k - 1) as f64;
            let term = (-(t * t) * std::f64::consts::PI * std::f64::consts::PI / (8.0 * x * x)).exp();
            cdf += term;
            if term < 1e-300 {
                break;
            }
        }
        1.0 - cdf * (2.0 * std::f64::consts::PI).sqrt() / x
    } else {
        // SF = 2 Σ (−1)^(k−1) exp(−2k²x²)
        let mut sf = 0.0;
        for k in 1..=100 {
            let kf = k as f64;
            let term = (-2.0 * kf * kf * x * x).exp();
            sf += if k % 2 == 1 { term } else { -term };
            if term < 1e-300 * sf.abs().max(1e-300) {
                break;
            }
        }
        (2.0 * sf).clamp(0.0, 1.0)
    }
}

/// Two-sided two-sample KS p-value for statistic `d` with sample sizes n and m, as
/// `scipy.stats.ks_2samp(method="auto")` decides it: the exact null distribution when both
/// samples have at most 10,000 values ([`ks_exact_p`]), else the one-sample distribution of
/// the effective size round(nm/(n+m)) ([`ks_one_sample_sf`]).
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 || d.is_nan() {
        return f64::NAN;
    }
    if n.max(m) <= 10_000 {
        if let Some(p) = ks_exact_p(d, n, m) {
            return p;
        }
    }
    let (nf, mf) = (n as f64, m as f64);
    ks_one_sample_sf(d, (nf * mf / (nf + mf)).round().max(1.0) as u64)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Exact P(D ≥ d) for two samples of sizes n and m without ties: the share of monotone lattice
/// paths from (0, 0) to (n, m) that leave the band |i/n − j/m| < d (Hodges 1957). `d` is first
/// rounded to the lattice of attainable values, multiples of 1/lcm(n, m), as scipy does.
/// O(n·m) time, O(m) memory; `None` if the computation is not finite.
pub fn ks_exact_p(d: f64, n: usize, m: usize) -> Option<f64> {
    let g = gcd(n, m);
    let lcm = (n / g) as f64 * m as f64;
    let h = (d * lcm).round();
    if h <= 0.0 {
        return Some(1.0);
    }
    // Inside the band: |i·m − j·n| / g < h, in integers (lcm = n·m/g).
    let (mg, ng) = ((m / g) as i128, (n / g) as i128);
    let h = h as i128;
    let inside = |i: usize, j: usize| ((i as i128) * mg - (j as i128) * ng).abs() < h;
    // a[j] = share of the C(i+j, i) paths to (i, j) that stayed inside: a(i,j) =
    // a(i−1,j)·i/(i+j) + a(i,j−1)·j/(i+j). All values stay in [0, 1].
    let mut a = vec![0.0f64; m + 1];
    a[0] = 1.0;
    for j in 1..=m {
        a[j] = if inside(0, j) { a[j - 1] } else { 0.0 };
    }
    for i in 1..=n {
        a[0] = if inside(i, 0) { a[0] } else { 0.0 };
        for j in 1..=m {
            a[j] = if inside(i, j) {
                let t = (i + j) as f64;
                a[j] * (i as f64 / t) + a[j - 1] * (j as f64 / t)
            } else {
                0.0
            };
        }
    }
    let p = 1.0 - a[m];
    (p.is_finite() && (0.0..=1.0 + 1e-12).contains(&p)).then(|| p.clamp(0.0, 1.0))
}

/// ln Γ(x + 1) = ln x!, for the binomial coefficients of [`smirnov_sf`].
fn ln_factorial(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x + 1.0)
}

/// Exact one-sided one-sample P(D⁺ₙ ≥ d) by the Birnbaum–Tingey sum
/// d · Σ_{j=0}^{⌊n(1−d)⌋} C(n, j) (1 − d − j/n)^{n−j} (d + j/n)^{j−1}, in logs (all terms positive).
pub fn smirnov_sf(n: u64, d: f64) -> f64 {
    if d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let last = (nf * (1.0 - d)).floor() as u64;
    let ln_n_fact = ln_factorial(nf);
    let mut sum = 0.0f64;
    for j in 0..=last {
        let jf = j as f64;
        let a = 1.0 - d - jf / nf;
        if a <= 0.0 {
            break;
        }
        let ln_term = ln_n_fact - ln_factorial(jf) - ln_factorial(nf - jf) + (nf - jf) * a.ln() + (jf - 1.0) * (d + jf / nf).ln();
        sum += ln_term.exp();
    }
    (d * sum).clamp(0.0, 1.0)
}

/// Two-sided one-sample P(Dₙ ≥ d) (`scipy.stats.kstwo.sf(d, n)`): 2 P(D⁺ₙ ≥ d) where that is
/// small (n·d² ≥ 2.2; the two one-sided events then practically never both happen, and
/// scipy computes the same), 0 beyond n·d² ≥ 370, and otherwise (p ≳ 0.03, far from any
/// decision) the Kolmogorov limit with Stephens' finite-n correction, within ~1 % of scipy.
pub fn ks_one_sample_sf(d: f64, n: u64) -> f64 {
    let nf = n as f64;
    if d >= 1.0 {
        return 0.0;
    }
    if d <= 0.0 {
        return 1.0;
    }
    if nf * d <= 0.5 {
        return 1.0;
    }
    let nd2 = nf * d * d;
    if nd2 >= 370.0 {
        return 0.0;
    }
    if nd2 >= 2.2 {
        return (2.0 * smirnov_sf(n, d)).clamp(0.0, 1.0);
    }
    let s = nf.sqrt();
    kolmogorov_sf((s + 0.12 + 0.11 / s) * d)
}

/// Wasserstein-1 distance between two sorted samples, computed as scipy does.
pub fn wasserstein_sorted(u_sorted: &[f64], v_sorted: &[f64]) -> f64 {
    let mut all: Vec<f64> = u_sorted.iter().chain(v_sorted).copied().collect();
    all.sort_by(f64::total_cmp);
    let (nu, nv) = (u_sorted.len() as f64, v_sorted.len() as f64);
    let mut total = 0.0;
    for w in all.windows(2) {
        let delta = w[1] - w[0];
        if delta == 0.0 {
            continue;
        }
        let cu = u_sorted.partition_point(|&x| x <= w[0]) as f64 / nu;
        let cv = v_sorted.partition_point(|&x| x <= w[0]) as f64 / nv;
        total += (cu - cv).abs() * delta;
    }
    total
}

/// Benjamini–Hochberg adjusted p-values (as `scipy.stats.false_discovery_control(method="bh")`);
/// NaN inputs stay NaN and are not counted.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = idx.len() as f64;
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank as f64 + 1.0));
        out[i] = running.clamp(0.0, 1.0);
    }
    out
}

#[cfg(test)]
mod ks_tests {
    use super::*;

    /// P(D ≥ d) by enumerating every arrangement of n a's and m b's (all equally likely).
    fn brute_force(d: f64, n: usize, m: usize) -> f64 {
        let (mut hits, mut total) = (0u64, 0u64);
        for mask in 0u32..(1 << (n + m)) {
            if mask.count_ones() as usize != n {
                continue;
            }
            total += 1;
            let (mut i, mut j, mut dmax) = (0usize, 0usize, 0.0f64);
            for bit in 0..n + m {
                if mask >> bit & 1 == 1 { i += 1 } else { j += 1 }
                dmax = dmax.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
            }
            hits += u64::from(dmax >= d - 1e-12);
        }
        hits as f64 / total as f64
    }

    #[test]
    fn exact_two_sample_p_values_equal_path_enumeration() {
        for (n, m) in [(3, 4), (5, 5), (4, 8), (6, 7), (2, 9)] {
            let g = gcd(n, m);
            let lcm = n / g * m;
            for h in 1..=lcm {
                let d = h as f64 / lcm as f64;
                let (exact, brute) = (ks_exact_p(d, n, m).unwrap(), brute_force(d, n, m));
                assert!((exact - brute).abs() < 1e-12, "n={n} m={m} d={d}: {exact} vs {brute}");
            }
        }
    }

    #[test]
    fn one_sample_tail_is_monotone_and_tends_to_kolmogorov() {
        let mut last = 1.0;
        for k in 1..60 {
            let d = k as f64 / 100.0;
            let p = ks_one_sample_sf(d, 400);
            assert!(p <= last + 1e-12 && (0.0..=1.0).contains(&p), "d={d}: {p} after {last}");
            last = p;
        }
        // Large n: the exact tail approaches the limit distribution.
        let n = 40_000u64;
        let x = 1.6;
        let d = x / (n as f64).sqrt();
        assert!((ks_one_sample_sf(d, n) / kolmogorov_sf(x) - 1.0).abs() < 0.02);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
        (2usize..12).prop_flat_map(|b| (proptest::collection::vec(0u64..1000, b), proptest::collection::vec(0u64..1000, b)))
    }

    proptest! {
        #[test]
        fn binned_statistics_are_finite_nonnegative_and_psi_js_symmetric((a, b) in counts(), alpha in 0.01f64..2.0) {
            let (p, q) = (smoothed(&a, alpha), smoothed(&b, alpha));
            for v in [psi(&p, &q), kl(&p, &q), js_distance(&p, &q)] {
                prop_assert!(v.is_finite() && v >= -1e-12, "{v}");
            }
            prop_assert!((psi(&p, &q) - psi(&q, &p)).abs() < 1e-9);
            prop_assert!((js_distance(&p, &q) - js_distance(&q, &p)).abs() < 1e-9);
            prop_assert!(js_distance(&p, &q) <= 1.0 + 1e-12);
            prop_assert!(psi(&p, &p).abs() < 1e-15 && js_distance(&p, &p) < 1e-7);
            if let Some(c) = chi_square(&a, &b) {
                prop_assert!(c.statistic >= 0.0 && (0.0..=1.0).contains(&c.p_value));
                let swapped = chi_square(&b, &a).unwrap();
                prop_assert!((c.statistic - swapped.statistic).abs() <= 1e-9 * c.statistic.max(1.0));
            }
        }

        #[test]
        fn ks_and_wasserstein_are_symmetric_and_bounded(
            mut a in proptest::collection::vec(-1e3f64..1e3, 1..60),
            mut b in proptest::collection::vec(-1e3f64..1e3, 1..60),
        ) {
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            let d = ks_statistic(&a, &b);
            prop_assert!((0.0..=1.0).contains(&d));
            prop_assert!((d - ks_statistic(&b, &a)).abs() < 1e-12);
            prop_assert_eq!(ks_statistic(&a, &a), 0.0);
            let w = wasserstein_sorted(&a, &b);
            prop_assert!(w >= 0.0 && w.is_finite());
            prop_assert!((w - wasserstein_sorted(&b, &a)).abs() <= 1e-9 * w.max(1.0));
            prop_assert!((0.0..=1.0).contains(&ks_p_value(d, a.len(), b.len())));
        }
    }

    #[test]
    fn known_values() {
        // Identical samples shifted by 1: W1 = 1, D = 1/3 for three points.
        assert!((wasserstein_sorted(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert!((ks_statistic(&[0.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 1.0 / 3.0).abs() < 1e-12);
        // scipy.stats.kstwobign.sf(1.0) = 0.26999967167735456
        assert!((kolmogorov_sf(1.0) - 0.26999967167735456).abs() < 1e-14);
        // scipy.stats.kstwobign.sf(0.5) = 0.9639452436648751
        assert!((kolmogorov_sf(0.5) - 0.9639452436648751).abs() < 1e-13);
        // BH: scipy.stats.false_discovery_control([0.01, 0.04, 0.03, 0.2]) = [0.04, 0.05333, 0.05333, 0.2]
        let adj = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        for (a, b) in adj.iter().zip([0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2]) {
            assert!((a - b).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(chi_square(&[5, 0], &[0, 0]), None);
    }
}
