//! What group drift aggregation costs (`drift.aggregation = "group"`), by instances and
//! partitions: `drift-profiles` bytes per second of traffic, and the aggregator's CPU per window.
//! `cargo bench --bench aggregation` (BENCH_EVENTS, default 1,440,000: 12 minutes of event time).
//!
//! One stream of generated events at 2,000 per second of event time, default drift settings
//! (5 % sampled, 10-minute windows sliding by 1 minute, 30 s lateness), is spread over P
//! partitions (event i on partition i mod P) and scored by the engine core in group mode; the
//! pane records it publishes are what P partitions over I instances would publish (the instance
//! only names a pane: instance = partition mod I). Those records are then replayed through the
//! aggregator (decode, dedupe, merge, evaluate, checkpoint), timed, five times; the median is
//! reported per window closed.

use std::sync::Arc;

use driftwatch::config::{Aggregation, Config};
use driftwatch::drift::aggregate::Aggregator;
use driftwatch::engine::{Engine, Incoming, Outgoing, OutputKind, Outputs};
use driftwatch::message::profile::ProfileRecord;
use driftwatch::observe::metrics::Metrics;
use driftwatch::pipeline::Pipeline;

struct Profiles(Vec<Vec<u8>>);

impl Outputs for Profiles {
    type Error = std::convert::Infallible;
    fn emit(&mut self, r: Outgoing<'_>) -> Result<(), Self::Error> {
        if r.kind == OutputKind::DriftProfile {
            self.0.push(r.payload.to_vec());
        }
        Ok(())
    }
    fn handled(&mut self, _: i32, _: i64) {}
}

const RATE: f64 = 2_000.0;

fn main() {
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_440_000);
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let pipeline = Pipeline::load(&model).unwrap();
    let features = pipeline.artifact().reference.numeric.len() + pipeline.artifact().reference.categorical.len();
    let payloads: Vec<Vec<u8>> = driftwatch::generate::Generator::new(driftwatch::generate::GeneratorConfig { seed: 9, rows: events as u64, rate_per_sec: RATE, ..Default::default() })
        .take(events)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    let seconds = events as f64 / RATE;
    println!("{events} events, {seconds:.0} s of event time at {RATE} events/s, {features} features + score, 5 % sampled, 600 s windows / 60 s slide");
    println!("| instances | partitions | pane records | bytes / pane (median) | drift-profiles bytes / s | progress bytes / s (1 s interval) | aggregator CPU / window (median of 5) | parts held at most |");
    println!("|---|---|---|---|---|---|---|---|");
    for (instances, partitions) in [(1, 4), (3, 12), (16, 64), (64, 256)] {
        let mut config = Config::default();
        config.drift.aggregation = Aggregation::Group;
        let engine = Engine::new(config.clone(), Pipeline::load(&model).unwrap(), Arc::new(Metrics::new()));
        let mut member = engine.member();
        let mut out = Profiles(Vec::new());
        let mut offsets = vec![0i64; partitions];
        for (i, p) in payloads.iter().enumerate() {
            let partition = i % partitions;
            let m = Incoming { payload: Some(p), key: None, headers: &driftwatch::engine::core::NoHeaders, topic: "transactions", partition: partition as i32, offset: offsets[partition], timestamp_ms: None };
            offsets[partition] += 1;
            member.handle(&m, &mut out).unwrap();
        }
        // Instance names as I instances would sign them.
        let records: Vec<Vec<u8>> = out
            .0
            .iter()
            .map(|b| match ProfileRecord::from_bytes(b).unwrap() {
                ProfileRecord::Pane(mut h, p) => {
                    h.instance = format!("instance-{}", h.partition as usize % instances);
                    ProfileRecord::Pane(h, p).to_bytes()
                }
                other => other.to_bytes(),
            })
            .collect();
        let mut sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        let total: usize = sizes.iter().sum();
        // A member's progress record for its partitions, once a second per instance.
        let progress = ProfileRecord::Progress(driftwatch::message::profile::Progress {
            model: "card-fraud".into(),
            version: pipeline.artifact().model.version.clone(),
            instance: "instance-0".into(),
            partitions: (0..partitions / instances).map(|p| driftwatch::message::profile::PartitionProgress { partition: p as i32, watermark_ms: 1_767_571_200_000, idle: false }).collect(),
        })
        .to_bytes()
        .len()
            * instances;
        let mut per_window = Vec::new();
        let mut held = 0;
        let mut windows = 0;
        for _ in 0..5 {
            let mut agg = Aggregator::new(&pipeline, &config.drift.to_config(), (0..partitions as i32).collect(), 30_000, 0);
            let started = cpu_seconds();
            windows = 0;
            for (o, r) in records.iter().enumerate() {
                agg.apply(ProfileRecord::from_bytes(r).unwrap(), o as i64, 1);
                held = held.max(agg.parts_held());
                let closed = agg.due(1);
                if !closed.is_empty() {
                    windows += closed.len();
                    // What the shell writes after publishing: the checkpoint.
                    std::hint::black_box(ProfileRecord::Checkpoint(Box::new(agg.checkpoint().unwrap())).to_bytes());
                    std::hint::black_box(closed.iter().map(|c| serde_json::to_vec(&c.report).unwrap().len()).sum::<usize>());
                }
            }
            per_window.push((cpu_seconds() - started) / windows.max(1) as f64);
        }
        per_window.sort_by(f64::total_cmp);
        println!(
            "| {instances} | {partitions} | {} | {} | {:.0} | {:.0} | {:.1} ms ({windows} windows; spread {:.1}–{:.1}) | {held} |",
            records.len(),
            sizes[sizes.len() / 2],
            total as f64 / seconds,
            progress as f64,
            per_window[2] * 1e3,
            per_window[0] * 1e3,
            per_window[4] * 1e3
        );
    }
}

/// This process's CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
