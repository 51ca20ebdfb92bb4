//! At-least-once bookkeeping: which consumed offsets may be committed.
//!
//! Events are grouped into batches in consumption order. Every message produced for an event
//! (an alert or a dead letter) holds a share of its batch's `pending` count until the broker
//! acknowledges it. A batch is done when it is sealed and nothing is pending; done batches are
//! released strictly in order, so a stored offset never passes an event whose output is still
//! in flight. Plain data and atomics: no Kafka in here, so it is unit-tested directly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A handle on one batch's outstanding deliveries; call [`PendingOutput::done`] on acknowledgement.
#[derive(Debug, Clone)]
pub struct PendingOutput(Arc<AtomicUsize>);

impl PendingOutput {
    /// A handle on nothing (tests and outputs without offsets).
    pub fn detached() -> PendingOutput {
        PendingOutput(Arc::new(AtomicUsize::new(1)))
    }

    /// The output was acknowledged by the broker.
    pub fn done(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Batch {
    /// Outputs in flight, plus one while the batch is still open.
    pending: Arc<AtomicUsize>,
    /// Holds: drift panes (group aggregation) with a sampled event of this batch that are not
    /// yet published. Like outputs they keep the batch from committing, but they are not
    /// "unacknowledged outputs" (a pane is published once its slide has passed).
    held: Arc<AtomicUsize>,
    /// (partition, next offset to consume) — the offset to commit.
    offsets: Vec<(i32, i64)>,
    events: u64,
    opened: Instant,
}

impl Batch {
    fn new() -> Batch {
        Batch { pending: Arc::new(AtomicUsize::new(1)), held: Arc::new(AtomicUsize::new(0)), offsets: Vec::new(), events: 0, opened: Instant::now() }
    }
}

/// Offsets whose events are fully handled, ready to store for commit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committable {
    /// (partition, next offset) pairs, one per partition.
    pub offsets: Vec<(i32, i64)>,
    /// Events covered.
    pub events: u64,
}

/// Tracks batches of consumed events until their outputs are acknowledged.
#[derive(Debug)]
pub struct OffsetTracker {
    current: Batch,
    sealed: VecDeque<Batch>,
    batch_size: u64,
}

impl OffsetTracker {
    /// A tracker that seals a batch every `batch_size` events.
    pub fn new(batch_size: usize) -> OffsetTracker {
        OffsetTracker { current: Batch::new(), sealed: VecDeque::new(), batch_size: batch_size.max(1) as u64 }
    }

    /// Registers one output for the event being handled; complete it with [`PendingOutput::done`].
    pub fn add_output(&mut self) -> PendingOutput {
        self.current.pending.fetch_add(1, Ordering::AcqRel);
        PendingOutput(self.current.pending.clone())
    }

    /// Holds the event being handled (its batch) until the returned handle is done, unless
    /// `previous` already holds that batch (one hold per pane and batch, not per event).
    pub fn hold(&mut self, previous: Option<&PendingOutput>) -> Option<PendingOutput> {
        if previous.is_some_and(|p| Arc::ptr_eq(&p.0, &self.current.held)) {
            return None;
        }
        self.current.held.fetch_add(1, Ordering::AcqRel);
        Some(PendingOutput(self.current.held.clone()))
    }

    /// Records that the event at `offset` of `partition` is handled (its outputs registered).
    /// Seals the batch when it is full.
    pub fn record(&mut self, partition: i32, offset: i64) {
        let next = offset + 1;
        match self.current.offsets.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, o)) => *o = (*o).max(next),
            None => self.current.offsets.push((partition, next)),
        }
        self.current.events += 1;
        if self.current.events >= self.batch_size {
            self.seal();
        }
    }

    /// Closes the open batch (if it has events) so it can complete.
    pub fn seal(&mut self) {
        if self.current.events == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.current, Batch::new());
        batch.pending.fetch_sub(1, Ordering::AcqRel);
        self.sealed.push_back(batch);
    }

    /// Seals the open batch if it is older than `max_age_ms`, so quiet streams still commit.
    pub fn seal_if_older_than(&mut self, max_age_ms: u64) {
        if self.current.events > 0 && self.current.opened.elapsed().as_millis() as u64 >= max_age_ms {
            self.seal();
        }
    }

    /// Releases the done batches at the front, merged: the highest next offset per partition.
    pub fn take_done(&mut self) -> Option<Committable> {
        let mut out = Committable::default();
        while let Some(front) = self.sealed.front() {
            if front.pending.load(Ordering::Acquire) != 0 || front.held.load(Ordering::Acquire) != 0 {
                break;
            }
            let batch = self.sealed.pop_front().expect("front exists");
            out.events += batch.events;
            for (p, o) in batch.offsets {
                match out.offsets.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, x)) => *x = (*x).max(o),
                    None => out.offsets.push((p, o)),
                }
            }
        }
        (out.events > 0).then_some(out)
    }

    /// Age of the oldest batch with an output the broker has not acknowledged (`None`: all
    /// acknowledged). Call after [`OffsetTracker::take_done`], which releases finished batches.
    pub fn oldest_unacknowledged(&self) -> Option<std::time::Duration> {
        let waiting = |b: &Batch, open: usize| b.pending.load(Ordering::Acquire) > open;
        self.sealed.iter().find(|b| waiting(b, 0)).or_else(|| waiting(&self.current, 1).then_some(&self.current)).map(|b| b.opened.elapsed())
    }

    /// Events consumed whose offsets are not yet released.
    pub fn outstanding_events(&self) -> u64 {
        self.current.events + self.sealed.iter().map(|b| b.events).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_its_batch_and_every_later_one_uncommitted_but_is_not_an_unacknowledged_output() {
        let mut t = OffsetTracker::new(2);
        let hold = t.hold(None).expect("a first hold");
        assert!(t.hold(Some(&hold)).is_none(), "one hold per batch and pane");
        t.record(0, 10);
        t.record(0, 11);
        // The next batch holds nothing.
        t.record(0, 12);
        t.seal();
        assert_eq!(t.take_done(), None, "the held batch and the one after it wait");
        assert_eq!(t.oldest_unacknowledged(), None, "a hold is not an output the broker owes");
        let other = t.hold(Some(&hold)).expect("a new batch takes its own hold");
        other.done();
        hold.done();
        assert_eq!(t.take_done(), Some(Committable { offsets: vec![(0, 13)], events: 3 }));
    }

    #[test]
    fn a_batch_is_released_only_after_its_outputs_are_acknowledged() {
        let mut t = OffsetTracker::new(3);
        let alert = t.add_output();
        t.record(0, 10);
        t.record(1, 5);
        t.record(0, 11); // seals (3 events)
        assert_eq!(t.take_done(), None, "alert still in flight");
        alert.done();
        assert_eq!(t.take_done(), Some(Committable { offsets: vec![(0, 12), (1, 6)], events: 3 }));
        assert_eq!(t.take_done(), None);
    }

    #[test]
    fn later_batches_wait_for_earlier_ones() {
        let mut t = OffsetTracker::new(1);
        let slow = t.add_output();
        t.record(0, 1);
        let fast = t.add_output();
        t.record(0, 2);
        fast.done();
        assert_eq!(t.take_done(), None, "batch 2 is done but batch 1 is not");
        slow.done();
        assert_eq!(t.take_done(), Some(Committable { offsets: vec![(0, 3)], events: 2 }));
    }

    #[test]
    fn an_open_batch_is_never_released() {
        let mut t = OffsetTracker::new(100);
        t.record(2, 7);
        assert_eq!(t.take_done(), None);
        assert_eq!(t.outstanding_events(), 1);
        t.seal_if_older_than(0);
        assert_eq!(t.take_done(), Some(Committable { offsets: vec![(2, 8)], events: 1 }));
        t.seal(); // empty: no-op
        assert_eq!(t.take_done(), None);
    }
}
