//! Scoring hot path: (a) score an already-decoded transaction, (b) decode JSON and score, (c)
//! each JSON decoder alone (simd-json, the engine's; serde_json, the reference).
//!
//! `cargo bench --bench scoring`; uses the shipped demo model and generated events. With
//! `DRIFTWATCH_BENCH_IMPORTED=ARTIFACT` (an artifact from `driftwatch import`; `scripts/bench-import`
//! makes a 200-tree LightGBM one) the same cases run for that model in the same run, plus the
//! cost of its reasons (every feature's contribution: TreeSHAP for trees).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::generate::Generator;
use driftwatch::pipeline::Pipeline;

fn scoring(c: &mut Criterion) {
    let demo = Pipeline::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"))).expect("demo model");
    cases(c, "scoring", &demo, false);
    if let Ok(path) = std::env::var("DRIFTWATCH_BENCH_IMPORTED") {
        let imported = Pipeline::load(Path::new(&path)).unwrap_or_else(|e| panic!("DRIFTWATCH_BENCH_IMPORTED={path}: {e}"));
        cases(c, "scoring_imported", &imported, true);
    }
}

fn cases(c: &mut Criterion, name: &str, pipeline: &Pipeline, reasons: bool) {
    let events: Vec<Vec<u8>> = Generator::new(Default::default()).take(4096).map(|t| serde_json::to_vec(&t).unwrap()).collect();
    let decoded: Vec<_> = events
        .iter()
        .map(|e| {
            let mut tx = pipeline.new_transaction();
            pipeline.decode_into(e, &mut tx).unwrap();
            tx
        })
        .collect();
    let mean_len = events.iter().map(Vec::len).sum::<usize>() / events.len();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("score_decoded", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(pipeline.score(black_box(&decoded[i])))
        })
    });
    let mut tx = pipeline.new_transaction();
    let mut j = 0;
    group.bench_function(format!("decode_and_score_{mean_len}B"), |b| {
        b.iter(|| {
            j = (j + 1) & 4095;
            pipeline.decode_into(black_box(&events[j]), &mut tx).unwrap();
            black_box(pipeline.score(&tx))
        })
    });
    // Each decoder alone, side by side: simd-json (the engine's) and serde_json (the reference).
    let mut k = 0;
    group.bench_function(format!("decode_simd_{mean_len}B"), |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            pipeline.decode_into(black_box(&events[k]), &mut tx).unwrap();
        })
    });
    let mut k = 0;
    group.bench_function(format!("decode_serde_json_{mean_len}B"), |b| {
        b.iter(|| {
            k = (k + 1) & 4095;
            pipeline.decode_into_serde(black_box(&events[k]), &mut tx).unwrap();
        })
    });
    if reasons {
        let mut p = 0;
        group.bench_function("probability_only_no_reasons", |b| {
            b.iter(|| {
                p = (p + 1) & 4095;
                black_box(pipeline.probability(black_box(&decoded[p])))
            })
        });
        let mut k = 0;
        group.bench_function("all_contributions", |b| {
            b.iter(|| {
                k = (k + 1) & 4095;
                black_box(pipeline.contributions(black_box(&decoded[k])))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
