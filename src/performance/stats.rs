//! The statistics of a performance report, on weighted samples: each row carries the weight
//! that makes sums over the retained sample estimate sums over all traffic (1 for alerts, which
//! are all kept; 1 / `retain_fraction` for the others).

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::message::performance::Interval;
pub use crate::pipeline::calibration::Calibration;
use crate::pipeline::calibration::ProbabilityCalibration;

/// One labelled (or, for estimates, scored) retained transaction of one model version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// The version's fraud probability.
    pub score: f64,
    /// Whether it alerted.
    pub alert: bool,
    /// The label (realised) — ignored by [`estimate`].
    pub fraud: bool,
    /// Sampling weight.
    pub weight: f64,
}

/// The standard normal quantile for a two-sided interval at `confidence`.
fn z(confidence: f64) -> f64 {
    Normal::new(0.0, 1.0).expect("standard normal").inverse_cdf(0.5 + confidence / 2.0)
}

/// Wilson's score interval for `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64, confidence: f64) -> Interval {
    if n == 0 {
        return Interval::NONE;
    }
    let (k, n, z) = (k as f64, n as f64, z(confidence));
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    Interval { value: Some(p), lower: Some((centre - half).max(0.0)), upper: Some((centre + half).min(1.0)) }
}

/// Recall at the threshold: labelled frauds that alerted over all labelled frauds (weighted).
pub fn recall(rows: &[Row], mult: impl Fn(usize) -> f64) -> Option<f64> {
    let (mut tp, mut pos) = (0.0, 0.0);
    for (i, r) in rows.iter().enumerate() {
        if r.fraud {
            let w = r.weight * mult(i);
            pos += w;
            if r.alert {
                tp += w;
            }
        }
    }
    (pos > 0.0).then(|| tp / pos)
}

/// Weighted ROC AUC (the probability that a random fraud outscores a random legitimate
/// transaction, ties counting one half), as scikit-learn's `roc_auc_score(sample_weight=…)`.
/// `order` holds the row indices sorted by score.
pub fn roc_auc(rows: &[Row], order: &[usize], mult: impl Fn(usize) -> f64) -> Option<f64> {
    let (mut neg_below, mut sum, mut pos_total, mut neg_total) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        // A run of equal scores.
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < order.len() && rows[order[j]].score == rows[order[i]].score {
            let r = &rows[order[j]];
            let w = r.weight * mult(order[j]);
            if r.fraud {
                pos += w;
            } else {
                neg += w;
            }
            j += 1;
        }
        sum += pos * (neg_below + neg / 2.0);
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    (pos_total > 0.0 && neg_total > 0.0).then(|| sum / (pos_total * neg_total))
}

/// Weighted Brier score.
pub fn brier(rows: &[Row]) -> Option<f64> {
    let w: f64 = rows.iter().map(|r| r.weight).sum();
    (w > 0.0).then(|| rows.iter().map(|r| r.weight * (r.score - f64::from(u8::from(r.fraud))).powi(2)).sum::<f64>() / w)
}

/// Weighted expected calibration error over `bins` equal-width probability bins.
pub fn ece(rows: &[Row], bins: usize) -> Option<f64> {
    let mut acc = vec![(0.0f64, 0.0f64, 0.0f64); bins];
    for r in rows {
        let b = ((r.score * bins as f64) as usize).min(bins - 1);
        acc[b].0 += r.weight;
        acc[b].1 += r.weight * r.score;
        acc[b].2 += r.weight * f64::from(u8::from(r.fraud));
    }
    let total: f64 = acc.iter().map(|a| a.0).sum();
    (total > 0.0).then(|| acc.iter().map(|a| (a.1 - a.2).abs()).sum::<f64>() / total)
}

/// Percentile interval of `values` (NaN-free) at `confidence`.
fn percentiles(mut values: Vec<f64>, point: Option<f64>, confidence: f64) -> Interval {
    if values.is_empty() || point.is_none() {
        return Interval { value: point, lower: None, upper: None };
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    let tail = (1.0 - confidence) / 2.0;
    Interval { value: point, lower: Some(at(tail)), upper: Some(at(1.0 - tail)) }
}

/// Realised recall and ROC AUC with Poisson-bootstrap percentile intervals (`replicates`
/// resamples, each row's weight multiplied by a Poisson(1) draw; seeded, so a replay gives the
/// same interval).
pub fn realised_recall_auc(rows: &[Row], confidence: f64, replicates: u32, seed: u64) -> (Interval, Interval) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[a].score.total_cmp(&rows[b].score));
    let recall_point = recall(rows, |_| 1.0);
    let auc_point = roc_auc(rows, &order, |_| 1.0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let poisson = Poisson::new(1.0).expect("positive mean");
    let (mut recalls, mut aucs) = (Vec::new(), Vec::new());
    let mut mult = vec![0.0; rows.len()];
    for _ in 0..replicates {
        for m in &mut mult {
            *m = poisson.sample(&mut rng);
        }
        recalls.extend(recall(rows, |i| mult[i]));
        aucs.extend(roc_auc(rows, &order, |i| mult[i]));
    }
    (percentiles(recalls, recall_point, confidence), percentiles(aucs, auc_point, confidence))
}

/// What the probabilities of an estimate are calibrated with.
#[derive(Debug, Clone, Copy)]
pub enum CalibrationInput<'a> {
    /// Nothing: the scores as they are.
    Raw,
    /// Matured labelled (score, fraud, weight) rows sorted by score: isotonic, refitted on a
    /// Poisson bootstrap of the rows for each replicate.
    Matured(&'a [(f64, bool, f64)]),
    /// The artifact's calibration (fitted on the held-out split at training time), resampled
    /// per block for each replicate.
    Training(&'a ProbabilityCalibration),
}

/// Performance expected from the scores alone, as if each (calibrated) probability were the
/// chance of fraud (confidence-based performance estimation): precision = Σ p over alerts /
/// alerts, recall = Σ p over alerts / Σ w·p over all. The interval simulates `replicates`
/// times both what is uncertain: the calibration (refitted on a bootstrap of what it was
/// fitted on) and the labels (fraud ~ Bernoulli(p) per row, weighted as the rows are).
pub fn estimate(rows: &[Row], calibration: CalibrationInput<'_>, confidence: f64, replicates: u32, seed: u64) -> (f64, Interval, Interval) {
    let calibrated = |c: Option<&Calibration>| -> Vec<f64> { rows.iter().map(|r| c.map_or(r.score, |c| c.apply(r.score))).collect() };
    let fitted = match calibration {
        CalibrationInput::Raw => None,
        CalibrationInput::Matured(m) => Some(Calibration::fit_sorted(m, |_| 1.0)),
        CalibrationInput::Training(t) => Some(t.calibration()),
    };
    let p = calibrated(fitted.as_ref());
    let (mut alerts, mut tp, mut pos) = (0.0, 0.0, 0.0);
    for (r, &p) in rows.iter().zip(&p) {
        pos += r.weight * p;
        if r.alert {
            alerts += r.weight;
            tp += r.weight * p;
        }
    }
    let precision = (alerts > 0.0).then(|| tp / alerts);
    let recall = (pos > 0.0).then(|| tp / pos);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let poisson = Poisson::new(1.0).expect("positive mean");
    let (mut ps, mut rs) = (Vec::new(), Vec::new());
    let mut mult = vec![0.0; if let CalibrationInput::Matured(m) = calibration { m.len() } else { 0 }];
    for _ in 0..replicates {
        let p_r = match calibration {
            CalibrationInput::Matured(m) => {
                for x in &mut mult {
                    *x = poisson.sample(&mut rng);
                }
                calibrated(Some(&Calibration::fit_sorted(m, |i| mult[i])))
            }
            CalibrationInput::Training(t) => calibrated(Some(&t.resampled(&mut rng))),
            CalibrationInput::Raw => p.clone(),
        };
        let (mut tp, mut fn_) = (0.0, 0.0);
        for (r, &p) in rows.iter().zip(&p_r) {
            if rng.gen::<f64>() < p {
                if r.alert {
                    tp += r.weight;
                } else {
                    fn_ += r.weight;
                }
            }
        }
        if alerts > 0.0 {
            ps.push(tp / alerts);
        }
        if tp + fn_ > 0.0 {
            rs.push(tp / (tp + fn_));
        }
    }
    (pos, percentiles(ps, precision, confidence), percentiles(rs, recall, confidence))
}

/// The `q` quantile of `values` (linear interpolation, as numpy's default); `None` when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seed: u64, n: usize) -> Vec<Row> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let score = (rng.gen::<f64>() * 20.0).round() / 20.0; // ties on purpose
                let fraud = rng.gen::<f64>() < score;
                let alert = score >= 0.6;
                Row { score, alert, fraud, weight: if alert { 1.0 } else { 1.0 + f64::from(rng.gen_range(0..3u8)) } }
            })
            .collect()
    }

    #[test]
    fn weighted_auc_equals_the_pairwise_definition() {
        for seed in 0..20 {
            let r = rows(seed, 60);
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.sort_by(|&a, &b| r[a].score.total_cmp(&r[b].score));
            let (mut num, mut den) = (0.0, 0.0);
            for p in r.iter().filter(|x| x.fraud) {
                for n in r.iter().filter(|x| !x.fraud) {
                    let w = p.weight * n.weight;
                    den += w;
                    num += w * if p.score > n.score { 1.0 } else if p.score == n.score { 0.5 } else { 0.0 };
                }
            }
            let auc = roc_auc(&r, &order, |_| 1.0).unwrap();
            assert!((auc - num / den).abs() < 1e-12, "seed {seed}: {auc} vs {}", num / den);
        }
    }

    #[test]
    fn wilson_matches_its_formula_at_known_points() {
        // 8 of 10 at 95 %: Wilson's interval is [0.4902, 0.9433] (textbook value).
        let i = wilson(8, 10, 0.95);
        assert!((i.lower.unwrap() - 0.4902).abs() < 1e-4 && (i.upper.unwrap() - 0.9433).abs() < 1e-4, "{i:?}");
        assert_eq!(wilson(0, 0, 0.9), Interval::NONE);
    }

    #[test]
    fn estimates_cover_simulated_truth_about_as_often_as_promised() {
        // Calibrated scores: the realised precision and recall of labels drawn from them fall
        // inside the 90 % interval about 90 % of the time.
        let (mut covered_p, mut covered_r, trials) = (0, 0, 200);
        for seed in 0..trials {
            let mut r = rows(seed, 400);
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed + 10_000);
            for x in &mut r {
                x.fraud = rng.gen::<f64>() < x.score;
            }
            let (_, p, rec) = estimate(&r, CalibrationInput::Raw, 0.9, 400, seed);
            let tp: f64 = r.iter().filter(|x| x.alert && x.fraud).map(|x| x.weight).sum();
            let alerts: f64 = r.iter().filter(|x| x.alert).map(|x| x.weight).sum();
            let pos: f64 = r.iter().filter(|x| x.fraud).map(|x| x.weight).sum();
            let inside = |i: Interval, v: f64| i.lower.unwrap() <= v && v <= i.upper.unwrap();
            covered_p += u32::from(inside(p, tp / alerts));
            covered_r += u32::from(inside(rec, tp / pos));
        }
        for (name, c) in [("precision", covered_p), ("recall", covered_r)] {
            let share = f64::from(c) / trials as f64;
            assert!((0.84..=0.96).contains(&share), "{name} coverage {share}");
        }
    }

    #[test]
    fn brier_and_ece_of_a_perfect_and_a_wrong_model() {
        let perfect = [Row { score: 1.0, alert: true, fraud: true, weight: 1.0 }, Row { score: 0.0, alert: false, fraud: false, weight: 3.0 }];
        assert_eq!(brier(&perfect), Some(0.0));
        assert_eq!(ece(&perfect, 10), Some(0.0));
        let wrong = [Row { score: 0.0, alert: false, fraud: true, weight: 1.0 }, Row { score: 1.0, alert: true, fraud: false, weight: 3.0 }];
        assert_eq!(brier(&wrong), Some(1.0));
        assert_eq!(ece(&wrong, 10), Some(1.0));
    }
}
