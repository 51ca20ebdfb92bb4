//! Probability calibration: a monotone map from the model's probability to the fraud rate
//! observed at that probability.
//!
//! `train` and `import` fit one on the held-out split (isotonic regression, stored in the
//! artifact as [`ProbabilityCalibration`]), so the engine's *estimated* performance (expected
//! precision and recall before labels arrive) is calibrated from the first minute; once enough
//! matured labels exist the performance tracker refits the same map on them
//! ([`crate::performance`]). The model's own probabilities and decisions are not changed: the
//! threshold was chosen on the raw probabilities, and alerts stay as they are.

use rand::Rng;
use rand_distr::{Distribution, Poisson};
use serde::{Deserialize, Serialize};

/// A monotone map from a model's probability to the observed fraud rate: weighted isotonic
/// regression (pool-adjacent-violators), applied as scikit-learn's `IsotonicRegression`
/// predicts: constant within a fitted block, linear between the last score of one block and
/// the first of the next, clipped outside.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Per block: first score, last score, fraud rate (rates non-decreasing).
    pub(crate) blocks: Vec<(f64, f64, f64)>,
}

/// One pooled run of scores before the violators are pooled: (first score, last score,
/// Σ weight × label, Σ weight).
type Run = (f64, f64, f64, f64);

impl Calibration {
    /// Fits on (score, fraud, weight) rows.
    pub fn fit(rows: &mut [(f64, bool, f64)]) -> Calibration {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        Calibration::fit_sorted(rows, |_| 1.0)
    }

    /// Fits on rows sorted by score, row `i`'s weight multiplied by `mult(i)` (a bootstrap).
    pub fn fit_sorted(rows: &[(f64, bool, f64)], mult: impl Fn(usize) -> f64) -> Calibration {
        Calibration::pool(rows.iter().enumerate().map(|(i, &(score, fraud, w))| {
            let w = w * mult(i);
            (score, score, if fraud { w } else { 0.0 }, w)
        }))
    }

    /// Pool-adjacent-violators over runs in ascending score order. Runs of equal scores are
    /// added up first (as scikit-learn does before it pools): pooling part of a tie group with
    /// its predecessor before the rest of the group is in could not be undone. Runs of zero
    /// weight are skipped.
    fn pool(runs: impl Iterator<Item = Run>) -> Calibration {
        // Blocks: (Σ weight × label, Σ weight, first score, last score).
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        let mut push = |(first, last, y, w): Run| {
            blocks.push((y, w, first, last));
            while blocks.len() >= 2 {
                let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
                if a.0 / a.1 <= b.0 / b.1 {
                    break;
                }
                blocks.pop();
                let last = blocks.last_mut().expect("two blocks");
                *last = (a.0 + b.0, a.1 + b.1, a.2, b.3);
            }
        };
        let mut pending: Option<Run> = None;
        for run in runs.filter(|r| r.3 != 0.0) {
            match &mut pending {
                Some(p) if p.1 == run.0 => {
                    p.1 = run.1;
                    p.2 += run.2;
                    p.3 += run.3;
                }
                _ => {
                    if let Some(p) = pending.replace(run) {
                        push(p);
                    }
                }
            }
        }
        if let Some(p) = pending {
            push(p);
        }
        Calibration { blocks: blocks.iter().map(|b| (b.2, b.3, b.0 / b.1)).collect() }
    }

    /// The calibrated probability of `score`.
    pub fn apply(&self, score: f64) -> f64 {
        let b = &self.blocks;
        let Some(first) = b.first() else { return score };
        // The first block whose last score reaches `score`.
        let i = b.partition_point(|blk| blk.1 < score);
        if i == b.len() {
            return b[i - 1].2;
        }
        if score >= b[i].0 || i == 0 {
            return if i == 0 && score < first.0 { first.2 } else { b[i].2 };
        }
        // Between block i-1's last score and block i's first.
        let (x0, y0, x1, y1) = (b[i - 1].1, b[i - 1].2, b[i].0, b[i].2);
        y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    }
}

/// How `train` and `import` calibrate the model's probabilities (`--calibration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// Isotonic regression on the held-out split (scikit-learn's `IsotonicRegression`).
    #[default]
    Isotonic,
    /// None: estimates take the probabilities at face value until matured labels calibrate them.
    None,
}

/// One block of the fitted map: held-out transactions whose probability lies in
/// [`from`, `to`], and how many of them were fraud. The block's rate is `positives / rows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationBlock {
    /// Lowest probability in the block.
    pub from: f64,
    /// Highest probability in the block.
    pub to: f64,
    /// Held-out transactions in it (the counts, not only the rate, so the engine can resample
    /// them for the interval of an estimate).
    pub rows: u64,
    /// Frauds among them.
    pub positives: u64,
}

/// The artifact's probability calibration (its `calibration` section), fitted by `train` or
/// `import` on the held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilityCalibration {
    /// `isotonic`.
    pub method: String,
    /// Held-out transactions fitted on.
    pub rows: u64,
    /// Frauds among them.
    pub positives: u64,
    /// The fitted blocks in ascending probability, rates non-decreasing.
    pub blocks: Vec<CalibrationBlock>,
    /// Expected calibration error (10 equal-width bins) of the raw probabilities on the held-out split.
    pub holdout_ece_raw: f64,
    /// The same after calibration, on the same rows it was fitted on (so optimistic: a measure
    /// of what the map corrects, not of how well it generalises).
    pub holdout_ece_calibrated: f64,
}

impl ProbabilityCalibration {
    /// Fits isotonic regression on held-out probabilities and labels.
    pub fn fit_isotonic(probabilities: &[f64], labels: &[bool]) -> ProbabilityCalibration {
        let mut rows: Vec<(f64, bool, f64)> = probabilities.iter().zip(labels).map(|(&p, &y)| (p, y, 1.0)).collect();
        let fitted = Calibration::fit(&mut rows);
        // Count each block's rows and frauds (the rows are sorted by probability).
        let mut blocks: Vec<CalibrationBlock> = fitted.blocks.iter().map(|&(from, to, _)| CalibrationBlock { from, to, rows: 0, positives: 0 }).collect();
        let mut i = 0;
        for &(p, y, _) in &rows {
            while blocks[i].to < p {
                i += 1;
            }
            blocks[i].rows += 1;
            blocks[i].positives += u64::from(y);
        }
        let calibrated: Vec<f64> = probabilities.iter().map(|&p| fitted.apply(p)).collect();
        ProbabilityCalibration {
            method: "isotonic".into(),
            rows: probabilities.len() as u64,
            positives: labels.iter().filter(|&&y| y).count() as u64,
            blocks,
            holdout_ece_raw: ece(probabilities, labels),
            holdout_ece_calibrated: ece(&calibrated, labels),
        }
    }

    /// The map, as fitted.
    pub fn calibration(&self) -> Calibration {
        Calibration { blocks: self.blocks.iter().map(|b| (b.from, b.to, b.positives as f64 / b.rows as f64)).collect() }
    }

    /// The map refitted on a Poisson bootstrap of the held-out rows, resampled per block
    /// (frauds and legitimate rows of a block each drawn Poisson(count)); the violators this
    /// creates are pooled again. An approximation of refitting on resampled rows (a block is not
    /// split again), used for the interval of an estimate.
    pub fn resampled(&self, rng: &mut impl Rng) -> Calibration {
        fn draw(n: u64, rng: &mut impl Rng) -> f64 {
            if n == 0 {
                0.0
            } else {
                Poisson::new(n as f64).expect("positive mean").sample(rng)
            }
        }
        let mut runs: Vec<Run> = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let frauds = draw(b.positives, rng);
            let legit = draw(b.rows - b.positives, rng);
            runs.push((b.from, b.to, frauds, frauds + legit));
        }
        Calibration::pool(runs.into_iter())
    }

    /// Checks the blocks: ordered, non-empty, rates non-decreasing, counts adding up.
    pub fn check(&self) -> Result<(), String> {
        if self.method != "isotonic" {
            return Err(format!("calibration method `{}` is not known (isotonic)", self.method));
        }
        let mut rows = 0;
        let mut positives = 0;
        let mut last: Option<&CalibrationBlock> = None;
        for b in &self.blocks {
            if !(b.from <= b.to) || b.rows == 0 || b.positives > b.rows {
                return Err(format!("calibration block [{}, {}] with {} of {} is not a block", b.from, b.to, b.positives, b.rows));
            }
            if let Some(l) = last {
                if !(l.to < b.from) || (l.positives as f64 / l.rows as f64) > (b.positives as f64 / b.rows as f64) {
                    return Err(format!("calibration blocks [{}, {}] and [{}, {}] are out of order or not monotone", l.from, l.to, b.from, b.to));
                }
            }
            rows += b.rows;
            positives += b.positives;
            last = Some(b);
        }
        if self.blocks.is_empty() || rows != self.rows || positives != self.positives {
            return Err(format!("calibration blocks hold {rows} rows ({positives} frauds), the section says {} ({})", self.rows, self.positives));
        }
        Ok(())
    }
}

/// Expected calibration error over 10 equal-width bins (unweighted).
fn ece(p: &[f64], y: &[bool]) -> f64 {
    let mut acc = [(0.0f64, 0.0f64, 0.0f64); 10];
    for (&p, &y) in p.iter().zip(y) {
        let b = ((p * 10.0) as usize).min(9);
        acc[b].0 += 1.0;
        acc[b].1 += p;
        acc[b].2 += f64::from(u8::from(y));
    }
    acc.iter().map(|a| (a.1 - a.2).abs()).sum::<f64>() / p.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn isotonic_calibration_pools_violators_and_is_monotone() {
        // Rates by score: 0.1 → 0/2, 0.2 → 1/1, 0.3 → 0/1, 0.4 → 2/2: 0.2 and 0.3 pool to 1/2.
        let mut rows = vec![(0.1, false, 1.0), (0.1, false, 1.0), (0.2, true, 1.0), (0.3, false, 1.0), (0.4, true, 1.0), (0.4, true, 1.0)];
        let c = Calibration::fit(&mut rows);
        assert_eq!(c.blocks, vec![(0.1, 0.1, 0.0), (0.2, 0.3, 0.5), (0.4, 0.4, 1.0)]);
        // Constant within a block, linear between blocks, clipped outside.
        assert_eq!((c.apply(0.05), c.apply(0.1), c.apply(0.25), c.apply(0.3), c.apply(0.9)), (0.0, 0.0, 0.5, 0.5, 1.0));
        assert!((c.apply(0.15) - 0.25).abs() < 1e-12 && (c.apply(0.35) - 0.75).abs() < 1e-12);
        // A tie group is added up before it is pooled: at 0.3, one legitimate row then three
        // frauds (rate 3/4 > 1/2) must not pool with the 0.2 block because its first row alone would.
        let mut rows: Vec<(f64, bool, f64)> = vec![(0.2, true, 1.0), (0.2, false, 1.0), (0.3, false, 1.0), (0.3, true, 1.0), (0.3, true, 1.0), (0.3, true, 1.0)];
        rows.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: the legitimate 0.3 row stays first
        assert_eq!(Calibration::fit_sorted(&rows, |_| 1.0).blocks, vec![(0.2, 0.2, 0.5), (0.3, 0.3, 0.75)]);
        // Weights count: a weight-3 legitimate row at 0.3 pulls the pooled block to 1/4.
        let mut rows = vec![(0.2, true, 1.0), (0.3, false, 3.0)];
        assert_eq!(Calibration::fit(&mut rows).blocks, vec![(0.2, 0.3, 0.25)]);
    }

    #[test]
    fn the_stored_blocks_count_the_held_out_rows_and_give_back_the_fitted_map() {
        let p = [0.1, 0.1, 0.2, 0.3, 0.4, 0.4, 0.05];
        let y = [false, false, true, false, true, true, false];
        let c = ProbabilityCalibration::fit_isotonic(&p, &y);
        // 0.2 and 0.3 pool to 1/2 (a violator); 0.05 and 0.1 share a rate but violate nothing,
        // so they stay apart (scikit-learn's thresholds drop such interior points; the map is the same).
        let counts: Vec<(f64, f64, u64, u64)> = c.blocks.iter().map(|b| (b.from, b.to, b.rows, b.positives)).collect();
        assert_eq!(counts, vec![(0.05, 0.05, 1, 0), (0.1, 0.1, 2, 0), (0.2, 0.3, 2, 1), (0.4, 0.4, 2, 2)]);
        assert_eq!((c.rows, c.positives), (7, 3));
        c.check().unwrap();
        let mut rows: Vec<(f64, bool, f64)> = p.iter().zip(&y).map(|(&p, &y)| (p, y, 1.0)).collect();
        assert_eq!(c.calibration(), Calibration::fit(&mut rows));
        // The map removes the held-out miscalibration it was fitted on.
        assert!(c.holdout_ece_calibrated < 1e-12 && c.holdout_ece_raw > 0.1, "{c:?}");
    }

    #[test]
    fn a_resampled_map_stays_monotone_and_near_the_fit() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let p: Vec<f64> = (0..20_000).map(|_| rng.gen::<f64>()).collect();
        let y: Vec<bool> = p.iter().map(|&p| rng.gen::<f64>() < p * p).collect();
        let c = ProbabilityCalibration::fit_isotonic(&p, &y);
        let fitted = c.calibration();
        for _ in 0..20 {
            let r = c.resampled(&mut rng);
            assert!(r.blocks.windows(2).all(|w| w[0].2 <= w[1].2 && w[0].1 < w[1].0), "monotone, ordered");
            for x in [0.1, 0.5, 0.9] {
                assert!((r.apply(x) - fitted.apply(x)).abs() < 0.08, "at {x}: {} vs {}", r.apply(x), fitted.apply(x));
            }
        }
        // A broken section is refused.
        let mut bad = c.clone();
        bad.blocks.swap(0, 1);
        assert!(bad.check().is_err());
        let mut bad = c;
        bad.rows += 1;
        assert!(bad.check().is_err());
    }
}
