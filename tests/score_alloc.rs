//! Scoring an already-decoded transaction must not allocate, and decoding into a warm
//! transaction must not either: the engine calls both once per event.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations by this thread (the tests run in parallel threads).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn score_and_warm_decode_do_not_allocate() {
    let pipeline = driftwatch::pipeline::Pipeline::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"))).unwrap();
    let events: Vec<Vec<u8>> = driftwatch::generate::Generator::new(Default::default())
        .take(2000)
        .map(|t| serde_json::to_vec(&t).unwrap())
        .collect();
    let mut tx = pipeline.new_transaction();
    // Warm the buffers: the longest string per field sets the capacity.
    for e in &events {
        pipeline.decode_into(e, &mut tx).unwrap();
    }
    let before = allocations();
    assert!(before > 0, "the counting allocator is installed");
    let mut flagged = 0usize;
    for e in &events {
        pipeline.decode_into(e, &mut tx).unwrap();
        let s = pipeline.score(&tx);
        flagged += usize::from(s.is_fraud || s.is_outlier);
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} allocations while decoding and scoring 2000 events");
    assert!(flagged > 0 && flagged < 2000, "{flagged} flagged: the model should flag some but not all");
}

/// Records nothing: counts what the engine core hands over, without allocating.
#[derive(Default)]
struct Count {
    alerts: usize,
    other: usize,
    handled: usize,
}

impl driftwatch::engine::Outputs for Count {
    type Error = std::convert::Infallible;
    fn emit(&mut self, r: driftwatch::engine::Outgoing<'_>) -> Result<(), Self::Error> {
        match r.kind {
            driftwatch::engine::OutputKind::Alert => self.alerts += 1,
            _ => self.other += 1,
        }
        Ok(())
    }
    fn handled(&mut self, _partition: i32, _offset: i64) {
        self.handled += 1;
    }
}

/// The engine core's whole per-event path — decode, score, route (alert or not), sample for
/// drift, mark handled — allocates nothing for an event that is not sampled, alert or not; a
/// sampled one only when a pane opens (its sketches are made) or its sketches grow. Drift on at
/// the default 5 %; at 100 events/s of event time, 6,000 events a pane (a minute), and a window
/// report at each minute's end (its evaluation allocates, once a slide: those events are
/// counted apart).
#[test]
fn the_engine_core_handles_an_event_without_allocating() {
    use driftwatch::engine::{Engine, Incoming};
    let demo = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"));
    let pipeline = driftwatch::pipeline::Pipeline::load(demo).unwrap();
    let mut config = driftwatch::config::Config::default();
    assert!(config.drift.enabled, "drift is on by default");
    config.model.threshold = Some(0.5);
    let fraction = config.drift.sample_fraction;
    let engine = Engine::new(config, driftwatch::pipeline::Pipeline::load(demo).unwrap(), std::sync::Arc::new(driftwatch::observe::metrics::Metrics::new())).with_clock(|| 1_767_571_200_000);
    let generator = driftwatch::generate::Generator::new(driftwatch::generate::GeneratorConfig { rate_per_sec: 100.0, ..Default::default() });
    let events: Vec<Vec<u8>> = generator.take(22_000).map(|t| serde_json::to_vec(&t).unwrap()).collect();
    let mut member = engine.member();
    let mut out = Count::default();
    let mut tx = pipeline.new_transaction();
    let message = |i: usize| Incoming { payload: Some(&events[i]), key: None, headers: &driftwatch::engine::records::NoHeaders, topic: "transactions", partition: 0, offset: i as i64, timestamp_ms: None };
    // Warm-up: buffers reach their sizes (the longest value of each field, the alert text).
    for i in 0..2_000 {
        member.handle(&message(i), &mut out).unwrap();
    }
    // [events, allocations] per kind; `closing`: a window closed (evaluated once a slide);
    // `opening`: the first sampled event of a pane (a minute of event time), which makes its
    // sketches.
    let (mut plain, mut alerted, mut sampled, mut closing, mut opening) = ([0usize; 2], [0usize; 2], [0usize; 2], [0usize; 2], [0usize; 2]);
    let mut pane = i64::MIN;
    for i in 2_000..events.len() {
        pipeline.decode_into(&events[i], &mut tx).unwrap();
        let in_sample = driftwatch::sampling::in_sample(&tx, fraction);
        let (alerts, other) = (out.alerts, out.other);
        let before = allocations();
        member.handle(&message(i), &mut out).unwrap();
        let allocated = allocations() - before;
        let this_pane = tx.event_time_ms.unwrap().div_euclid(60_000);
        let slot = if out.other > other {
            &mut closing
        } else if in_sample && this_pane != pane {
            pane = this_pane;
            &mut opening
        } else if in_sample {
            &mut sampled
        } else if out.alerts > alerts {
            &mut alerted
        } else {
            &mut plain
        };
        slot[0] += 1;
        slot[1] += allocated;
    }
    assert_eq!(out.handled, events.len());
    assert!(plain[0] > 15_000 && alerted[0] > 50 && sampled[0] > 500 && opening[0] >= 3, "events: plain {plain:?}, alerted {alerted:?}, sampled {sampled:?}, opening {opening:?}, closing {closing:?}");
    assert_eq!(plain[1], 0, "{} allocations over {} plain events", plain[1], plain[0]);
    assert_eq!(alerted[1], 0, "{} allocations over {} alerts", alerted[1], alerted[0]);
    let per_sampled = sampled[1] as f64 / sampled[0] as f64;
    assert!(per_sampled < 0.5, "{per_sampled:.3} allocations per sampled event ({} over {})", sampled[1], sampled[0]);
    eprintln!("allocations per sampled event: {per_sampled:.3} ({} over {}); events: plain {plain:?}, alerted {alerted:?}, sampled {sampled:?}, opening {opening:?}, closing {closing:?}", sampled[1], sampled[0]);
}
