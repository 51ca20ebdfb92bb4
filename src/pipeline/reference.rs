//! Builds the training reference profile that drift is measured against.

use std::collections::BTreeMap;

use super::artifact::{CategoricalReference, CategoryCount, NumericReference};
use crate::bins::{bin_of, mean_std, quantile_sorted, reference_edges};

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
            support: vec![],
            support_counts: vec![],
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
    let (mut support, mut support_counts) = (Vec::new(), Vec::new());
    for &v in &sorted {
        if support.last() == Some(&v) {
            *support_counts.last_mut().expect("same length") += 1;
        } else if support.len() == super::artifact::MAX_SUPPORT {
            (support, support_counts) = (Vec::new(), Vec::new());
            break;
        } else {
            support.push(v);
            support_counts.push(1);
        }
    }
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
        support,
        support_counts,
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
    let singletons = ranked.iter().filter(|(_, c)| *c == 1).count() as u64;
    let mut hashes: Vec<u32> = ranked.iter().map(|(l, _)| level_hash(l)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let seen_hashes = hashes.iter().map(|h| format!("{h:08x}")).collect();
    let other = ranked.iter().skip(top_k).map(|(_, c)| c).sum();
    let top = ranked.into_iter().take(top_k).map(|(value, count)| CategoryCount { value, count }).collect();
    CategoricalReference { name: name.to_string(), top, other, missing, distinct, singletons, seen_hashes }
}

/// The stable 32-bit hash of a categorical level (FNV-1a), as stored in `seen_hashes`.
pub fn level_hash(level: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in level.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Decodes `seen_hashes` into a sorted vector (for binary search); `None` if malformed.
pub fn decode_seen_hashes(hex: &str) -> Option<Vec<u32>> {
    if hex.len() % 8 != 0 {
        return None;
    }
    hex.as_bytes().chunks(8).map(|c| u32::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()).collect()
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
        assert_eq!((r.other, r.missing, r.distinct, r.singletons), (2, 1, 4, 2));
        let seen = decode_seen_hashes(&r.seen_hashes).unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen.binary_search(&level_hash("d")).is_ok() && seen.binary_search(&level_hash("zzz")).is_err());
        // FNV-1a test vector: "a" → 0xe40c292c
        assert_eq!(level_hash("a"), 0xe40c_292c);
    }
}
