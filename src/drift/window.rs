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

/// The reference distribution of a numeric quantity as a CDF with its left and right limits:
/// exact from the stored support (every distinct value and its count) when there is one, else
/// from the evenly spaced quantiles (linear between them, steps where quantiles repeat; within
/// one grid step, 1/(M−1), of the training data's ECDF).
enum ReferenceCdf<'r> {
    /// Support values and cumulative counts, and the total.
    Exact { values: &'r [f64], cumulative: Vec<u64>, total: f64 },
    /// Quantiles at k/M, k = 0…M.
    Grid(&'r [f64]),
}

impl<'r> ReferenceCdf<'r> {
    fn of(r: &'r NumericReference) -> Option<ReferenceCdf<'r>> {
        if !r.support.is_empty() {
            let cumulative: Vec<u64> = r.support_counts.iter().scan(0u64, |acc, &c| {
                *acc += c;
                Some(*acc)
            }).collect();
            let total = *cumulative.last().expect("non-empty") as f64;
            Some(ReferenceCdf::Exact { values: &r.support, cumulative, total })
        } else if r.quantiles.len() >= 2 {
            Some(ReferenceCdf::Grid(&r.quantiles))
        } else {
            None
        }
    }

    /// The points where the CDF bends or steps.
    fn points(&self) -> &'r [f64] {
        match self {
            ReferenceCdf::Exact { values, .. } => values,
            ReferenceCdf::Grid(q) => q,
        }
    }

    /// Largest error of this CDF against the training data's ECDF.
    fn error(&self) -> f64 {
        match self {
            ReferenceCdf::Exact { .. } => 0.0,
            ReferenceCdf::Grid(q) => 1.0 / (q.len() - 1) as f64,
        }
    }

    /// P(X ≤ x) (`left = false`) or P(X < x) (`left = true`).
    fn at(&self, x: f64, left: bool) -> f64 {
        match self {
            ReferenceCdf::Exact { values, cumulative, total } => {
                let i = if left { values.partition_point(|&v| v < x) } else { values.partition_point(|&v| v <= x) };
                if i == 0 {
                    0.0
                } else {
                    cumulative[i - 1] as f64 / total
                }
            }
            ReferenceCdf::Grid(q) => {
                let m = q.len() - 1;
                let i = if left { q.partition_point(|&v| v < x) } else { q.partition_point(|&v| v <= x) };
                if i == 0 {
                    return 0.0;
                }
                if i > m {
                    return 1.0;
                }
                let (lo, hi) = (q[i - 1], q[i]);
                let frac = if hi > lo { ((x - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.0 };
                ((i - 1) as f64 + frac) / m as f64
            }
        }
    }
}

/// The distinct items a KLL sketch retains, ascending (its CDF steps exactly there).
fn retained_items(view: &datasketches::kll::SortedView<KllFloat<f64>>) -> Vec<f64> {
    let mut items = Vec::with_capacity(view.len());
    let half_step = 0.5 / view.total_weight().max(1) as f64;
    let mut x = match view.quantile(0.0, SearchCriteria::Inclusive) {
        Ok(Some(v)) => v,
        _ => return items,
    };
    loop {
        items.push(*x);
        let r = view.rank(&x, SearchCriteria::Inclusive).unwrap_or(1.0);
        if r >= 1.0 || items.len() > view.len() {
            break;
        }
        match view.quantile((r + half_step).min(1.0), SearchCriteria::Inclusive) {
            Ok(Some(next)) if *next > *x => x = next,
            _ => break,
        }
    }
    items
}

/// KS D and Wasserstein-1 of a window sketch against the reference, with their error bounds.
///
/// Both CDFs are step or piecewise-linear functions whose bends are the sketch's retained items
/// and the reference's points, so D is the largest gap at those points, comparing right limits
/// with right limits and left limits with left limits (a discrete or binary feature is a step
/// function: comparing the sketch's left limit with the reference's right limit there would
/// report the size of a step as drift). W1 = ∫ |F_window − F_reference| is integrated exactly
/// between the same points. Against the window's raw values and the training data, D is within
/// `rank_error` (the sketch's double-sided rank error, plus the quantile grid's step when the
/// reference has no exact support), and W1 within that times the range of the values.
fn sketch_distances(p: &NumericProfile, r: &NumericReference) -> Option<(KsResult, WassersteinResult)> {
    if p.sketch.is_empty() {
        return None;
    }
    let reference = ReferenceCdf::of(r)?;
    let view = p.sketch.sorted_view();
    let items = retained_items(&view);
    let mut points: Vec<f64> = items.iter().chain(reference.points()).copied().filter(|v| v.is_finite()).collect();
    points.sort_by(f64::total_cmp);
    points.dedup();
    let window_at = |x: f64, left: bool| {
        let key = KllFloat::<f64>::new(x).expect("finite");
        view.rank(&key, if left { SearchCriteria::Exclusive } else { SearchCriteria::Inclusive }).unwrap_or(0.0)
    };
    let mut d = 0.0f64;
    let mut w = 0.0f64;
    for (i, &x) in points.iter().enumerate() {
        let (fw, fr) = (window_at(x, false), reference.at(x, false));
        d = d.max((fw - fr).abs()).max((window_at(x, true) - reference.at(x, true)).abs());
        if let Some(&next) = points.get(i + 1) {
            // On [x, next): the window's CDF is flat at fw; the reference's goes from fr to its
            // left limit at `next` (flat for an exact support).
            let (f0, f1) = (fw - fr, fw - reference.at(next, true));
            let mean_abs = if f0 * f1 >= 0.0 { (f0 + f1).abs() / 2.0 } else { (f0 * f0 + f1 * f1) / (2.0 * (f0 - f1).abs()) };
            w += mean_abs * (next - x);
        }
    }
    let sketch_error = if p.sketch.is_estimation_mode() { p.sketch.normalized_pmf_error() } else { 0.0 };
    let rank_error = sketch_error + reference.error();
    let range = points.last().zip(points.first()).map_or(0.0, |(hi, lo)| hi - lo);
    let n = p.sketch.n() as usize;
    let m = (r.counts.iter().sum::<u64>()) as usize;
    let effective = (d - rank_error).max(0.0);
    Some((
        KsResult { statistic: d, p_value: super::stats::ks_p_value(effective, n, m.max(1)), p_value_adjusted: f64::NAN, rank_error },
        WassersteinResult { distance: w, normalized: w / r.std.max(0.001), error_bound: rank_error * range },
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
        sources: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_reference_cdf_has_left_and_right_limits_at_steps() {
        let q: Vec<f64> = (0..=100).map(|i| f64::from(i) * 2.0).collect();
        let g = ReferenceCdf::Grid(&q);
        assert_eq!(g.at(-1.0, false), 0.0);
        assert_eq!(g.at(1000.0, false), 1.0);
        assert!((g.at(101.0, false) - 0.505).abs() < 1e-12);
        // A 0/1 feature: 75 % zeros. The step at 0 is 0.75 high; left and right limits differ.
        let binary: Vec<f64> = (0..=200).map(|i| if i < 150 { 0.0 } else { 1.0 }).collect();
        let b = ReferenceCdf::Grid(&binary);
        assert_eq!(b.at(0.0, true), 0.0);
        assert!((b.at(0.0, false) - 0.745).abs() < 1e-12);
        // Just below 1 the grid spreads one step (1/200) linearly; the true value is 0.75.
        assert!((b.at(1.0, true) - 0.75).abs() <= b.error());
        assert_eq!(b.at(1.0, false), 1.0);
        // Exact support: the steps themselves.
        let r = NumericReference {
            name: "is_new_device".into(),
            edges: vec![1.0],
            counts: vec![150, 50],
            missing: 0,
            mean: 0.25,
            std: 0.43,
            min: 0.0,
            max: 1.0,
            quantiles: binary.clone(),
            support: vec![0.0, 1.0],
            support_counts: vec![150, 50],
        };
        let e = ReferenceCdf::of(&r).unwrap();
        assert_eq!((e.at(0.0, true), e.at(0.0, false), e.at(1.0, true), e.at(1.0, false), e.error()), (0.0, 0.75, 0.75, 1.0, 0.0));
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
