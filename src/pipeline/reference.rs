//! Builds the training reference profile that drift is measured against.

use std::collections::BTreeMap;

use super::artifact::{CategoricalReference, CategoryCount, NumericReference};
use crate::stats::{bin_of, mean_std, quantile_sorted, reference_edges};

/// Reference of a numeric quantity: `values` may hold NaN for missing.
pub fn numeric_reference(name: &str, values: &[f64], bins: usize, n_quantiles: usize) -> NumericReference {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let missing = (values.len() - sorted.len()) as u64;
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return NumericReference {
            name: name.to_string(),
            edges: vec![],
            counts: vec![0],
            missing,
            mean: 0.0,
            std: 0.0,
            min: 0.0,
            max: 0.0,
            quantiles: vec![],
        };
    }
    let edges = reference_edges(&sorted, bins);
    let mut counts = vec![0u64; edges.len() + 1];
    for &v in &sorted {
        counts[bin_of(&edges, v)] += 1;
    }
    let (mean, std) = mean_std(&sorted);
    let quantiles = (0..n_quantiles)
        .map(|i| quantile_sorted(&sorted, i as f64 / (n_quantiles.max(2) - 1) as f64))
        .collect();
    NumericReference {
        name: name.to_string(),
        edges,
        counts,
        missing,
        mean,
        std,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        quantiles,
    }
}

/// Level counts sorted most frequent first, ties by name (deterministic).
pub fn ranked_levels<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> (Vec<(String, u64)>, u64) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut missing = 0;
    for v in values {
        match v {
            Some(s) => *counts.entry(s).or_default() += 1,
            None => missing += 1,
        }
    }
    let mut ranked: Vec<(String, u64)> = counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (ranked, missing)
}

/// Reference of a categorical feature: top-K levels, the rest as other, and missing.
pub fn categorical_reference<'a>(name: &str, values: impl IntoIterator<Item = Option<&'a str>>, top_k: usize) -> CategoricalReference {
    let (ranked, missing) = ranked_levels(values);
    let distinct = ranked.len() as u64;
    let other = ranked.iter().skip(top_k).map(|(_, c)| c).sum();
    let top = ranked.into_iter().take(top_k).map(|(value, count)| CategoryCount { value, count }).collect();
    CategoricalReference { name: name.to_string(), top, other, missing, distinct }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_reference_counts_every_value_once() {
        let values: Vec<f64> = (0..100).map(f64::from).chain([f64::NAN, f64::NAN]).collect();
        let r = numeric_reference("x", &values, 10, 11);
        assert_eq!(r.edges.len(), 9);
        assert_eq!(r.counts.iter().sum::<u64>(), 100);
        assert!(r.counts.iter().all(|&c| c == 10), "{:?}", r.counts);
        assert_eq!(r.missing, 2);
        assert_eq!((r.min, r.max), (0.0, 99.0));
        assert_eq!(r.quantiles.len(), 11);
        assert_eq!(r.quantiles[10], 99.0);
    }

    #[test]
    fn categorical_reference_ranks_and_buckets_the_tail() {
        let vals = ["a", "b", "a", "c", "b", "a", "d"];
        let r = categorical_reference("c", vals.iter().map(|s| Some(*s)).chain([None]), 2);
        assert_eq!(r.top.iter().map(|c| (c.value.as_str(), c.count)).collect::<Vec<_>>(), vec![("a", 3), ("b", 2)]);
        assert_eq!((r.other, r.missing, r.distinct), (2, 1, 4));
    }
}
