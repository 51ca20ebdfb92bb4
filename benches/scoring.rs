//! Scoring hot path: (a) score an already-decoded transaction, (b) decode JSON and score.
//!
//! `cargo bench --bench scoring`; uses the shipped demo model and generated events.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch::generate::Generator;
use driftwatch::pipeline::Pipeline;

fn scoring(c: &mut Criterion) {
    let pipeline = Pipeline::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"))).expect("demo model");
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
    let mut group = c.benchmark_group("scoring");
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
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
