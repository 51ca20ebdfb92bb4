//! Profiles: merge equals build-from-union, bytes round-trip, bounded memory, sampling, windows.

use std::sync::OnceLock;

use datasketches::common::SearchCriteria;
use datasketches::kll::KllFloat;
use proptest::prelude::*;

use super::window::{SlidingWindows, WindowSpec};
use super::*;
use crate::generate::{Generator, GeneratorConfig};
use crate::pipeline::{Pipeline, Score, Transaction};

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| Pipeline::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"))).unwrap())
}

fn scored(n: usize, seed: u64) -> Vec<(Transaction, Score)> {
    let p = pipeline();
    Generator::new(GeneratorConfig { seed, rows: n as u64, ..Default::default() })
        .take(n)
        .map(|t| {
            let mut tx = p.new_transaction();
            p.decode_into(&serde_json::to_vec(&t).unwrap(), &mut tx).unwrap();
            let s = p.score(&tx);
            (tx, s)
        })
        .collect()
}

fn build(events: &[(Transaction, Score)]) -> WindowProfile {
    let reference = &pipeline().artifact().reference;
    let layout = ProfileLayout::new(reference);
    let mut w = WindowProfile::new(reference, 0, 1);
    for (tx, s) in events {
        w.observe(&layout, tx, s);
    }
    w
}

fn events() -> &'static Vec<(Transaction, Score)> {
    static E: OnceLock<Vec<(Transaction, Score)>> = OnceLock::new();
    E.get_or_init(|| scored(3000, 17))
}

fn assert_same_counts_and_exact_sketches(a: &WindowProfile, b: &WindowProfile) {
    assert_eq!((a.samples, a.outliers, a.alerts), (b.samples, b.outliers, b.alerts));
    for (x, y) in a.numeric.iter().zip(&b.numeric).chain([(&a.score, &b.score), (&a.outlier_score, &b.outlier_score)]) {
        assert_eq!(x.counts, y.counts);
        assert_eq!(x.sketch.n(), y.sketch.n());
    }
    for (x, y) in a.categorical.iter().zip(&b.categorical) {
        assert_eq!(x.counts, y.counts);
        // The union keeps every register, so the register-based estimate is identical; the
        // default estimate of a single sketch uses its HIP accumulator, which a union cannot
        // carry, so it agrees only within the sketch's error.
        assert_eq!(x.distinct.composite_estimate(), y.distinct.composite_estimate(), "HLL union is lossless");
        let (ex, ey) = (x.distinct.estimate(), y.distinct.estimate());
        assert!((ex - ey).abs() <= 0.05 * ey.max(1.0), "HLL estimates {ex} vs {ey}");
        assert_eq!(x.frequencies.total_weight(), y.frequencies.total_weight());
        for level in ["US", "pos", "ecom", "M000001", "grocery", "nope"] {
            assert_eq!(x.frequencies.estimate(level), y.frequencies.estimate(level), "count-min merge is exact");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn merge_of_parts_equals_profile_of_the_whole(cut in 0usize..3000) {
        let all = events();
        let mut merged = build(&all[..cut]);
        merged.merge(&build(&all[cut..])).unwrap();
        let whole = build(all);
        assert_same_counts_and_exact_sketches(&merged, &whole);
        // Quantiles: within the sketches' stated rank error (both are approximations).
        for (x, y) in merged.numeric.iter().zip(&whole.numeric) {
            let eps = x.sketch.normalized_rank_error() + y.sketch.normalized_rank_error();
            for r in [0.1, 0.5, 0.9] {
                let q = *x.sketch.quantile(r, SearchCriteria::Inclusive).unwrap().unwrap();
                let rank_in_whole = y.sketch.rank(&KllFloat::<f64>::new(q).unwrap(), SearchCriteria::Inclusive).unwrap();
                let rank_below = y.sketch.rank(&KllFloat::<f64>::new(q).unwrap(), SearchCriteria::Exclusive).unwrap();
                prop_assert!(rank_below - eps <= r && r <= rank_in_whole + eps, "rank {r}: [{rank_below}, {rank_in_whole}] ± {eps}");
            }
        }
    }
}

#[test]
fn bytes_round_trip() {
    let p = build(&events()[..1500]);
    let back = WindowProfile::from_bytes(&p.to_bytes()).unwrap();
    assert_same_counts_and_exact_sketches(&p, &back);
    assert_eq!((back.start_ms, back.end_ms), (p.start_ms, p.end_ms));
    assert!(WindowProfile::from_bytes(b"{}").is_err());
    let mut wrong = build(&events()[..10]);
    wrong.numeric.pop();
    assert!(wrong.merge(&p).is_err(), "profiles of different layouts do not merge");
}

#[test]
fn memory_is_bounded_on_a_high_cardinality_stream() {
    let p = pipeline();
    let reference = &p.artifact().reference;
    let layout = ProfileLayout::new(reference);
    let mut w = WindowProfile::new(reference, 0, 1);
    let base = scored(1, 3).pop().unwrap();
    let device = p.artifact().features.categorical.iter().position(|f| f.name == "device_id").unwrap();
    let mut sizes = Vec::new();
    let mut tx = base.0.clone();
    for i in 0..200_000u32 {
        // Every event a new device id and a new merchant: the worst case for sketches.
        tx.categorical[device].text = format!("burst-device-{i}");
        tx.categorical[device].present = true;
        tx.numeric[0] = f64::from(i);
        w.observe(&layout, &tx, &base.1);
        if i == 49_999 || i == 199_999 {
            sizes.push(w.memory_bytes());
        }
    }
    assert!(sizes[1] < 512 * 1024, "{} bytes", sizes[1]);
    assert!(sizes[1] as f64 <= sizes[0] as f64 * 1.1, "memory grew from {} to {} bytes", sizes[0], sizes[1]);
    let distinct = w.categorical[device].distinct.estimate();
    assert!((distinct - 200_000.0).abs() / 200_000.0 < 0.05, "HLL sees the burst: {distinct}");
    let unseen = w.categorical[device].counts[w.categorical[device].counts.len() - 2];
    assert_eq!(unseen, 200_000, "every new device lands in __unseen__");
}

#[test]
fn sampling_is_deterministic_and_close_to_the_fraction() {
    let ids: Vec<String> = (0..100_000).map(|i| format!("tx-{i:016x}")).collect();
    let picked = ids.iter().filter(|id| crate::sampling::id_sampled(id, 0.05)).count();
    assert!((4_500..5_500).contains(&picked), "{picked} of 100,000 sampled at 5 %");
    assert!(ids.iter().all(|id| crate::sampling::id_sampled(id, 0.05) == crate::sampling::id_sampled(id, 0.05)));
    assert!(ids.iter().all(|id| !crate::sampling::id_sampled(id, 0.0) && crate::sampling::id_sampled(id, 1.0)));
}

#[test]
fn windows_close_at_the_watermark_and_late_events_are_counted() {
    let reference = &pipeline().artifact().reference;
    let layout = ProfileLayout::new(reference);
    let (tx, s) = &events()[0];
    let mut w = SlidingWindows::new(WindowSpec { size_ms: 10_000, slide_ms: 5_000, lateness_ms: 2_000 });
    let mut closed = Vec::new();
    for t in [1_000, 6_000] {
        w.observe(reference, &layout, t, tx, s);
        closed.extend(w.advance(t));
    }
    assert!(closed.is_empty(), "watermark 4 s: nothing ends yet");
    assert_eq!(w.open_windows(), 2, "two panes, [0, 5 s) and [5 s, 10 s), serve three windows");
    w.observe(reference, &layout, 9_000, tx, s);
    closed.extend(w.advance(9_000)); // watermark 7 s: [-5 s, 5 s) closes
    closed.extend(w.advance(12_500)); // watermark 10.5 s: [0, 10 s) closes
    assert_eq!(closed.iter().map(|p| (p.window.start_ms, p.window.samples)).collect::<Vec<_>>(), vec![(-5_000, 1), (0, 3)]);
    // Each window's newest pane is its last slide: [0, 5 s) for [-5, 5), [5, 10 s) for [0, 10).
    assert_eq!(closed.iter().map(|p| p.newest_pane.as_ref().map(|n| (n.start_ms, n.samples))).collect::<Vec<_>>(), vec![Some((0, 1)), Some((5_000, 2))]);
    w.observe(reference, &layout, 4_000, tx, s); // its windows [0,10) closed, [-5,5) closed
    assert_eq!(w.late_events, 1);
    w.observe(reference, &layout, 9_500, tx, s); // [0,10) closed, [5,15) still open
    assert_eq!(w.late_events, 2);
    let rest = w.close_all();
    assert_eq!(rest.iter().map(|p| (p.window.start_ms, p.window.samples)).collect::<Vec<_>>(), vec![(5_000, 3)]);
}

#[test]
fn sparse_bytes_round_trip_any_length_and_pattern() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 1000, 49_176] {
        for density in [0.0, 0.01, 0.5, 1.0] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if (rng % 1000) as f64 / 1000.0 < density { (rng >> 32) as u8 | 1 } else { 0 }
                })
                .collect();
            let packed = super::SparseBytes::pack(&bytes).unwrap();
            let bytes_back = packed.clone().unpack().unwrap();
            assert_eq!(bytes_back, bytes, "len {len} density {density}");
            if density == 0.0 && len > 0 {
                assert!(packed.words.is_empty() && packed.runs.is_empty(), "all zero: nothing but the length (trailing zeros are implied)");
            }
        }
    }
    let mut broken = super::SparseBytes::pack(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap();
    broken.words.pop();
    assert!(broken.unpack().is_err(), "a missing word is an error, not a shorter sketch");
}
