//! Reference bins, one definition for training, window profiles and drift: quantiles (numpy's
//! linear method), bin edges, the bin of a value, bin labels and the reserved categorical bins.
//! Plain functions over slices; imports nothing from the rest of the crate.

/// Label of the bin for categories seen in the reference but outside its top-K.
pub const OTHER: &str = "__other__";
/// Label of the bin for categories never seen in the reference.
pub const UNSEEN: &str = "__unseen__";
/// Label of the bin for missing values.
pub const MISSING: &str = "__missing__";

/// Labels of numeric bins for inner `edges`: `[lo, hi)` each, then the missing bin.
pub fn numeric_labels(edges: &[f64]) -> Vec<String> {
    let mut labels = Vec::with_capacity(edges.len() + 2);
    for i in 0..=edges.len() {
        let lo = if i == 0 { "-inf".to_string() } else { format!("{}", edges[i - 1]) };
        let hi = if i == edges.len() { "inf".to_string() } else { format!("{}", edges[i]) };
        labels.push(format!("[{lo}, {hi})"));
    }
    labels.push(MISSING.into());
    labels
}

/// Quantile of sorted data at probability `p` with linear interpolation (numpy's default method).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let pos = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    // numpy's "linear" method, written as numpy computes it for identical rounding.
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if frac >= 0.5 {
        b - diff * (1.0 - frac)
    } else {
        a + diff * frac
    }
}

/// Inner bin edges at the quantiles k/B, k = 1…B−1, of sorted data, duplicates removed.
pub fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins).map(|k| quantile_sorted(sorted, k as f64 / bins as f64)).collect();
    edges.dedup();
    edges
}

/// The reference bin edges of a numeric feature: one bin per distinct value when the sorted
/// reference has at most `bins` distinct values (so a 0/1 feature is not one bin), else the
/// quantile edges k/B. Every drift measurement and the artifact's reference use this.
pub fn reference_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut distinct: Vec<f64> = sorted.to_vec();
    distinct.dedup();
    if distinct.len() <= bins {
        distinct.into_iter().skip(1).collect()
    } else {
        quantile_edges(sorted, bins)
    }
}

/// Bin of `x` for inner edges `edges`: bin i holds [edges[i−1], edges[i]), outer bins open.
#[inline]
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e <= x)
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0, .25, .5, .9, 1]) == [1, 1.75, 2.5, 3.7, 4]
        let q: Vec<f64> = [0.0, 0.25, 0.5, 0.9, 1.0].iter().map(|&p| quantile_sorted(&v, p)).collect();
        for (a, b) in q.iter().zip([1.0, 1.75, 2.5, 3.7, 4.0]) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn discrete_features_get_a_bin_per_value() {
        let binary = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(quantile_edges(&binary, 10).len(), 2, "deciles of a 0/1 feature collapse to 0 and ~0.1");
        let e = reference_edges(&binary, 10);
        assert_eq!(e, vec![1.0]);
        assert_ne!(bin_of(&e, 0.0), bin_of(&e, 1.0));
        let many: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(reference_edges(&many, 10), quantile_edges(&many, 10));
    }

    #[test]
    fn edges_dedup_and_bins_are_left_closed() {
        let v = [0.0, 0.0, 0.0, 0.0, 1.0, 2.0];
        let e = quantile_edges(&v, 4);
        assert_eq!(e, vec![0.0, 0.75]);
        assert_eq!(bin_of(&e, -1.0), 0);
        assert_eq!(bin_of(&e, 0.0), 1);
        assert_eq!(bin_of(&e, 0.75), 2);
        assert_eq!(bin_of(&e, 9.0), 2);
    }
}
