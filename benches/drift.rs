//! Drift hot paths: (a) profiling one sampled event, (b) evaluating a closed window with 20
//! features against the training reference. `cargo bench --bench drift`.
//!
//! The pipeline is trained in the setup on generated transactions plus seven extra numeric
//! columns, so it has 20 features (14 numeric, 6 categorical).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::dataset::{Format, Table};
use driftwatch::drift::window::evaluate_window;
use driftwatch::drift::DriftSettings;
use driftwatch::generate::{Generator, GeneratorConfig};
use driftwatch::pipeline::train::{train, TrainOptions};
use driftwatch::pipeline::Pipeline;
use driftwatch::profile::{ProfileLayout, WindowProfile};

fn rows(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, t) in Generator::new(GeneratorConfig { seed, rows: n as u64, ..Default::default() }).take(n).enumerate() {
        let mut v = serde_json::to_value(&t).unwrap();
        for k in 0..7 {
            v[format!("extra_{k}")] = serde_json::json!(((i * 7919 + k * 104_729) % 1000) as f64 / 10.0);
        }
        out.extend(serde_json::to_vec(&v).unwrap());
        out.push(b'\n');
    }
    out
}

fn drift(c: &mut Criterion) {
    let data = rows(20_000, 1);
    let table = Table::parse(&data, Format::JsonLines, "bench.jsonl").unwrap();
    let artifact = train(&table, &data, "bench.jsonl", &TrainOptions::new("is_fraud")).unwrap();
    let features = artifact.features.numeric.len() + artifact.features.categorical.len();
    assert_eq!(features, 20, "the bench pipeline has 20 features");
    let pipeline = Pipeline::new(artifact);
    let reference = &pipeline.artifact().reference;
    let layout = ProfileLayout::new(reference);
    let events: Vec<_> = rows(4096, 2)
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut tx = pipeline.new_transaction();
            pipeline.decode_into(l, &mut tx).unwrap();
            let s = pipeline.score(&tx);
            (tx, s)
        })
        .collect();
    let mut group = c.benchmark_group("drift");
    group.throughput(Throughput::Elements(1));
    let mut profile = WindowProfile::new(reference, 0, 1);
    let mut i = 0;
    group.bench_function("profile_update_per_sampled_event_20_features", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            profile.observe(&layout, black_box(&events[i].0), &events[i].1);
        })
    });
    // A typical window: 10 minutes at 50 tx/s sampled at 5 % = 1,500 samples.
    let mut window = WindowProfile::new(reference, 0, 600_000);
    for (tx, s) in events.iter().cycle().take(1500) {
        window.observe(&layout, tx, s);
    }
    let settings = DriftSettings::default();
    group.bench_function("evaluate_window_20_features_1500_samples", |b| {
        b.iter(|| black_box(evaluate_window(black_box(&window), reference, "bench", &settings)))
    });
    // Closing a 10-minute window sliding by 1 minute: merge its 10 one-minute panes, then evaluate.
    let panes: Vec<WindowProfile> = (0..10)
        .map(|k| {
            let mut p = WindowProfile::new(reference, k * 60_000, (k + 1) * 60_000);
            for (tx, s) in events.iter().skip(k as usize * 150).take(150) {
                p.observe(&layout, tx, s);
            }
            p
        })
        .collect();
    group.bench_function("close_window_merge_10_panes_and_evaluate_20_features", |b| {
        b.iter(|| {
            let mut w = panes[0].clone();
            for p in &panes[1..] {
                w.merge(p).unwrap();
            }
            black_box(evaluate_window(&w, reference, "bench", &settings))
        })
    });
    group.finish();
}

criterion_group!(benches, drift);
criterion_main!(benches);
