//! Drift of a [`WindowProfile`] against a pipeline's training reference.
//!
//! Binned statistics (PSI, KL, JS, χ²) use the same bins and counts as everywhere else, so
//! they are exact. KS and Wasserstein compare the window's KLL sketch with the reference's
//! stored quantiles: D is reported with `rank_error` (sketch error + reference grid
//! resolution), and a status decided on KS uses D minus that error, so drift is never called
//! on a D within sketch error. The model section compares the score distribution, and tests
//! the outlier rate against the trained rate with a one-sided binomial test.

use datasketches::common::SearchCriteria;
use datasketches::kll::KllFloat;
use statrs::distribution::{Binomial, DiscreteCDF};

pub use crate::message::drift::{ModelDrift, RateCheck, WindowReport};
use crate::bins::numeric_labels;
use super::{decide_status, finish, measure_counts, BinnedFeature, DataSide, DriftSettings, FeatureDrift, FeatureKind, KsResult, WassersteinResult};
use crate::pipeline::artifact::{NumericReference, ReferenceProfile};
use crate::profile::{NumericProfile, ProfileLayout, WindowProfile};

fn rate(k: u64, n: u64, p0: f64) -> RateCheck {
    let p_value = if n == 0 {
        f64::NAN
    } else if k == 0 {
        1.0
    } else {
        Binomial::new(p0.clamp(0.0, 1.0), n).map_or(f64::NAN, |b| b.sf(k - 1))
    };
    RateCheck { observed: if n == 0 { 0.0 } else { k as f64 / n as f64 }, expected: p0, samples: n, p_value }
}

/// Reference CDF at x from evenly spaced quantiles (piecewise linear; steps at repeated values).
fn reference_cdf(q: &[f64], x: f64) -> f64 {
    let m = q.len() - 1;
    let i = q.partition_point(|&v| v <= x);
    if i == 0 {
        return 0.0;
    }
    if i > m {
        return 1.0;
    }
    let (lo, hi) = (q[i - 1], q[i]);
    let frac = if hi > lo { (x - lo) / (hi - lo) } else { 0.0 };
    ((i - 1) as f64 + frac) / m as f64
}

/// Reference quantile at probability u, interpolating the stored grid.
fn reference_quantile(q: &[f64], u: f64) -> f64 {
    let pos = u.clamp(0.0, 1.0) * (q.len() - 1) as f64;
    let i = (pos.floor() as usize).min(q.len() - 2);
    q[i] + (q[i + 1] - q[i]) * (pos - i as f64)
}

/// KS D and Wasserstein-1 of a window sketch against reference quantiles, and the rank-error bound.
fn sketch_distances(p: &NumericProfile, r: &NumericReference) -> Option<(KsResult, WassersteinResult)> {
    if p.sketch.is_empty() || r.quantiles.len() < 2 {
        return None;
    }
    const GRID: usize = 400;
    let view = p.sketch.sorted_view();
    let ranks: Vec<f64> = (0..GRID).map(|i| (i as f64 + 0.5) / GRID as f64).collect();
    let window_quantiles: Vec<f64> =
        view.quantiles(&ranks, SearchCriteria::Inclusive).ok().flatten().unwrap_or_default().into_iter().map(|v| *v).collect();
    // D at the reference's quantiles and at the window's (the sketch's own items), both sides of each step.
    let mut d = 0.0f64;
    for &x in r.quantiles.iter().chain(&window_quantiles) {
        let key = KllFloat::<f64>::new(x).expect("finite");
        let below = view.rank(&key, SearchCriteria::Exclusive).unwrap_or(0.0);
        let at = view.rank(&key, SearchCriteria::Inclusive).unwrap_or(0.0);
        let fr = reference_cdf(&r.quantiles, x);
        d = d.max((at - fr).abs()).max((below - fr).abs());
    }
    let sketch_error = if p.sketch.is_estimation_mode() { p.sketch.normalized_rank_error() } else { 0.0 };
    let rank_error = sketch_error + 1.0 / (r.quantiles.len() - 1) as f64;
    // W1 = ∫₀¹ |F⁻¹_window(u) − F⁻¹_reference(u)| du on the same rank grid.
    let w: f64 = ranks.iter().zip(&window_quantiles).map(|(&u, &qw)| (qw - reference_quantile(&r.quantiles, u)).abs()).sum::<f64>() / GRID as f64;
    let n = p.sketch.n() as usize;
    let m = (r.counts.iter().sum::<u64>()) as usize;
    let effective = (d - rank_error).max(0.0);
    Some((
        KsResult { statistic: d, p_value: super::stats::ks_p_value(effective, n, m.max(1)), p_value_adjusted: f64::NAN, rank_error },
        WassersteinResult { distance: w, normalized: w / r.std.max(0.001) },
    ))
}

fn numeric_bins(name: &str, r: &NumericReference, p: &NumericProfile) -> BinnedFeature {
    let labels = numeric_labels(&r.edges);
    let mut reference_counts = r.counts.clone();
    reference_counts.push(r.missing);
    BinnedFeature { name: name.into(), kind: FeatureKind::Numeric, labels, edges: Some(r.edges.clone()), reference_counts, current_counts: p.counts.clone() }
}

fn numeric_drift(name: &str, r: &NumericReference, p: &NumericProfile, alpha: f64) -> FeatureDrift {
    let mut f = measure_counts(numeric_bins(name, r, p), alpha);
    if let Some((ks, w)) = sketch_distances(p, r) {
        f.ks = Some(ks);
        f.wasserstein = Some(w);
    }
    f
}

/// Evaluates a window against the reference with these settings.
pub fn evaluate_window(profile: &WindowProfile, reference: &ReferenceProfile, model: &str, settings: &DriftSettings) -> WindowReport {
    let alpha = settings.smoothing;
    let mut features: Vec<FeatureDrift> = reference
        .numeric
        .iter()
        .zip(&profile.numeric)
        .map(|(r, p)| numeric_drift(&r.name, r, p, alpha))
        .collect();
    for (i, (r, p)) in reference.categorical.iter().zip(&profile.categorical).enumerate() {
        let top: Vec<u64> = r.top.iter().map(|c| c.count).collect();
        let reference_counts = super::categorical_reference_counts(&top, r.other, r.singletons, r.missing);
        let bins = BinnedFeature {
            name: r.name.clone(),
            kind: FeatureKind::Categorical,
            labels: ProfileLayout::categorical_labels(reference, i),
            edges: None,
            reference_counts,
            current_counts: p.counts.clone(),
        };
        features.push(measure_counts(bins, alpha));
    }
    let window = |ms: i64| crate::time::format_rfc3339_ms(ms);
    let drift = finish(
        features,
        DataSide { source: format!("training reference of {model}"), rows: reference.rows },
        DataSide { source: format!("window {} – {}", window(profile.start_ms), window(profile.end_ms)), rows: profile.samples },
        settings,
    );
    let mut score = numeric_drift("model_score", &reference.score, &profile.score, alpha);
    // One quantity: its p-values need no adjustment across features.
    if let Some(k) = score.ks.as_mut() {
        k.p_value_adjusted = k.p_value;
    }
    if let Some(c) = score.chi2.as_mut() {
        c.p_value_adjusted = c.p_value;
    }
    decide_status(&mut score, settings);
    WindowReport {
        window_start: window(profile.start_ms),
        window_end: window(profile.end_ms),
        model: model.to_string(),
        drift,
        model_drift: ModelDrift {
            score,
            outlier_rate: rate(profile.outliers, profile.samples, reference.outlier_rate),
            alert_rate: rate(profile.alerts, profile.samples, reference.alert_rate),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_cdf_and_quantile_invert_each_other() {
        let q: Vec<f64> = (0..=100).map(|i| f64::from(i) * 2.0).collect();
        assert_eq!(reference_cdf(&q, -1.0), 0.0);
        assert_eq!(reference_cdf(&q, 1000.0), 1.0);
        assert!((reference_cdf(&q, 101.0) - 0.505).abs() < 1e-12);
        assert!((reference_quantile(&q, 0.505) - 101.0).abs() < 1e-9);
    }

    #[test]
    fn binomial_rate_check() {
        let r = rate(30, 1000, 0.01);
        assert!((r.observed - 0.03).abs() < 1e-12);
        assert!(r.p_value < 1e-6, "3 % outliers where 1 % were trained is significant");
        assert!(rate(10, 1000, 0.01).p_value > 0.3);
        assert_eq!(rate(0, 10, 0.01).p_value, 1.0);
        assert!(rate(0, 0, 0.01).p_value.is_nan());
    }
}
