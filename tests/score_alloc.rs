//! Scoring an already-decoded transaction must not allocate, and decoding into a warm
//! transaction must not either: the engine calls both once per event.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(before > 0, "the counting allocator is installed");
    let mut flagged = 0usize;
    for e in &events {
        pipeline.decode_into(e, &mut tx).unwrap();
        let s = pipeline.score(&tx);
        flagged += usize::from(s.is_fraud || s.is_outlier);
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(during, 0, "{during} allocations while decoding and scoring 2000 events");
    assert!(flagged > 0 && flagged < 2000, "{flagged} flagged: the model should flag some but not all");
}
