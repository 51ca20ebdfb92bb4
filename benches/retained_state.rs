//! What waiting for labels costs: heap bytes per retained score in the performance thread's
//! memory (counted by a counting allocator), bytes per `retained-scores` record, and the time
//! to take one record and to join one label. `cargo bench --bench retained_state`.
//!
//! Records look like the engine's: `tx-` + 16 hex digits, one serving version, alerted 27 % of
//! the time (the demo's 1.8 % alert rate over 1.8 % + 5 % × 98.2 % retained), weight 20 otherwise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use driftwatch::message::performance::{Label, RetainedScore, RetainedVersion, Role};
use driftwatch::performance::{PerformanceSettings, Tracker};
use driftwatch::time::format_rfc3339_ms;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0: i64 = 1_767_571_200_000;

fn record(i: u64) -> RetainedScore {
    let alert = i % 100 < 27;
    RetainedScore {
        transaction_id: format!("tx-{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        model: "card-fraud".into(),
        event_time: format_rfc3339_ms(T0 + i as i64),
        weight: if alert { 1.0 } else { 20.0 },
        scores: vec![RetainedVersion { version: "demo-1".into(), role: Role::Production, score: if alert { 0.41 } else { 0.012 }, alert }],
        label: None,
    }
}

fn main() {
    let n: u64 = std::env::var("BENCH_RETAINED").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let settings = PerformanceSettings { enabled: true, max_retained: usize::MAX, ..Default::default() };
    let records: Vec<Vec<u8>> = (0..n).map(|i| serde_json::to_vec(&record(i)).unwrap()).collect();
    let json_bytes: usize = records.iter().map(Vec::len).sum();
    let before = LIVE.load(Ordering::Relaxed);
    let mut tracker = Tracker::new("card-fraud", settings);
    let started = Instant::now();
    for r in &records {
        let r: RetainedScore = serde_json::from_slice(r).unwrap();
        tracker.retain(&r, 0);
    }
    let retain_ns = started.elapsed().as_nanos() as f64 / n as f64;
    // The estimated windows hold rows too until they close; count the map alone by closing them.
    tracker.tick(i64::MAX / 2);
    let live = LIVE.load(Ordering::Relaxed) - before;
    let labels: Vec<Vec<u8>> = (0..n.min(500_000))
        .map(|i| serde_json::to_vec(&Label { transaction_id: record(i).transaction_id, label: 0, label_time: format_rfc3339_ms(T0 + 86_400_000), source: "cleared".into() }).unwrap())
        .collect();
    let started = Instant::now();
    for l in &labels {
        let l: Label = serde_json::from_slice(l).unwrap();
        tracker.label(&l, 0);
    }
    let label_ns = started.elapsed().as_nanos() as f64 / labels.len() as f64;
    println!("retained scores: {n}");
    println!("heap bytes per retained score (map, after windows closed): {:.1}", live as f64 / n as f64);
    println!("retained-scores record, JSON value bytes: {:.1} (+ the 19-byte key)", json_bytes as f64 / n as f64);
    println!("retain one record (decode + insert): {retain_ns:.0} ns; join one label (decode + join): {label_ns:.0} ns");
}
