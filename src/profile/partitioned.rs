//! An instance's side of group aggregation (`drift.aggregation = "group"`): panes kept per
//! partition of `transactions`, each sealed when *its partition's* watermark passes its end,
//! and handed to the caller to publish to `drift-profiles`.
//!
//! Per partition, events arrive in offset order, so a pane's content depends only on the
//! partition (not on how partitions are spread over instances, or interleaved within one):
//! any instance reading the same offsets builds the same pane. Each sealed pane says which
//! offsets it covers (first and last sampled offset); the aggregator uses that to recognise a
//! pane read twice (after a crash, before its offsets were committed) and keep it once.
//!
//! Sealing follows the partition's watermark (its largest event time minus the allowed
//! lateness): a sampled event whose pane has already been sealed is late and not profiled. A
//! partition that goes idle, is revoked, or is shut down has its open panes sealed early; a
//! later event of that pane starts a new part with its own offsets, which the aggregator adds.
//!
//! A partition that goes back to the committed offset on this process (a rebalance that gave
//! it back) reads events it has profiled already: they are skipped by offset. A partition that
//! moved to another instance is re-read there from the committed offset; the aggregator keeps
//! the pane that covers the other (see [`crate::drift::aggregate`]).
//!
//! `H` is what keeps a sampled event's offset from being committed until its pane is
//! published (the engine's tracker handles); this module only carries them.

use std::collections::BTreeMap;

use super::{ProfileLayout, WindowProfile};
use crate::pipeline::artifact::ReferenceProfile;
use crate::pipeline::{Score, Transaction};

/// A pane of one partition, ready to publish.
#[derive(Debug)]
pub struct SealedPane<H> {
    /// Partition of `transactions`.
    pub partition: i32,
    /// Pane start (ms, inclusive) and end (exclusive).
    pub start_ms: i64,
    /// Pane end.
    pub end_ms: i64,
    /// First and last sampled offset in it.
    pub first_offset: i64,
    /// Last sampled offset.
    pub last_offset: i64,
    /// The partition's watermark at sealing.
    pub watermark_ms: i64,
    /// The profile.
    pub profile: WindowProfile,
    /// Handles to release once the pane is published.
    pub holds: Vec<H>,
}

#[derive(Debug)]
struct OpenPane<H> {
    profile: WindowProfile,
    first_offset: i64,
    last_offset: i64,
    holds: Vec<H>,
}

#[derive(Debug)]
struct PartitionState<H> {
    watermark: i64,
    /// The engine member (worker) that read it last: the one that publishes its panes.
    owner: usize,
    /// One past the largest sampled offset profiled: an event below it was read again (the
    /// consumer went back to the committed offset after a rebalance) and is already profiled.
    next_offset: i64,
    panes: BTreeMap<i64, OpenPane<H>>,
}

/// Open panes of every partition this process reads.
#[derive(Debug)]
pub struct PartitionedPanes<H> {
    slide_ms: i64,
    lateness_ms: i64,
    parts: BTreeMap<i32, PartitionState<H>>,
    /// Sampled events whose pane had been sealed.
    pub late_events: u64,
}

impl<H> PartitionedPanes<H> {
    /// Panes of `slide_ms` with this allowed lateness.
    pub fn new(slide_ms: i64, lateness_ms: i64) -> PartitionedPanes<H> {
        assert!(slide_ms > 0 && lateness_ms >= 0, "validated window spec");
        PartitionedPanes { slide_ms, lateness_ms, parts: BTreeMap::new(), late_events: 0 }
    }

    /// The earliest event time at which some partition's pane seals (`i64::MAX` if none is
    /// open): an unsampled event earlier than that changes no pane.
    pub fn next_seal_ms(&self) -> i64 {
        self.parts
            .values()
            .filter_map(|p| p.panes.keys().next().map(|&start| start + self.slide_ms))
            .min()
            .map_or(i64::MAX, |end| end.saturating_add(self.lateness_ms))
    }

    /// Whether a sampled event at `t_ms` of `partition` would be late (its pane sealed).
    pub fn is_late(&self, partition: i32, t_ms: i64) -> bool {
        let pane = t_ms.div_euclid(self.slide_ms) * self.slide_ms;
        self.parts.get(&partition).is_some_and(|p| pane + self.slide_ms <= p.watermark)
    }

    /// The hold already taken for the pane a sampled event at `t_ms` goes to (the newest), so
    /// the caller can avoid taking another for the same batch.
    pub fn last_hold(&self, partition: i32, t_ms: i64) -> Option<&H> {
        let pane = t_ms.div_euclid(self.slide_ms) * self.slide_ms;
        self.parts.get(&partition)?.panes.get(&pane)?.holds.last()
    }

    /// Whether the sampled event at `offset` of `partition` is already profiled (read again).
    pub fn is_reread(&self, partition: i32, offset: i64) -> bool {
        self.parts.get(&partition).is_some_and(|p| offset < p.next_offset)
    }

    /// Adds a sampled event (returns false, counting it late, when its pane is sealed). An event
    /// read again ([`Self::is_reread`]) is skipped (returns true): it is in a pane already.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(&mut self, reference: &ReferenceProfile, layout: &ProfileLayout, partition: i32, offset: i64, t_ms: i64, tx: &Transaction, score: &Score, hold: Option<H>) -> bool {
        if self.is_reread(partition, offset) {
            return true;
        }
        if self.is_late(partition, t_ms) {
            self.late_events += 1;
            return false;
        }
        let slide = self.slide_ms;
        let pane = t_ms.div_euclid(slide) * slide;
        let part = self.parts.entry(partition).or_insert_with(|| PartitionState { watermark: i64::MIN, owner: 0, next_offset: i64::MIN, panes: BTreeMap::new() });
        let open = part.panes.entry(pane).or_insert_with(|| OpenPane { profile: WindowProfile::new(reference, pane, pane + slide), first_offset: offset, last_offset: offset, holds: Vec::new() });
        open.profile.observe(layout, tx, score);
        open.first_offset = open.first_offset.min(offset);
        open.last_offset = open.last_offset.max(offset);
        open.holds.extend(hold);
        part.next_offset = part.next_offset.max(offset + 1);
        true
    }

    /// Moves `partition`'s watermark for an event at `t_ms` read by `member`; returns the panes
    /// it seals, oldest first.
    pub fn advance(&mut self, partition: i32, t_ms: i64, member: usize) -> Vec<SealedPane<H>> {
        let lateness = self.lateness_ms;
        let part = self.parts.entry(partition).or_insert_with(|| PartitionState { watermark: i64::MIN, owner: member, next_offset: i64::MIN, panes: BTreeMap::new() });
        part.watermark = part.watermark.max(t_ms.saturating_sub(lateness));
        part.owner = member;
        let limit = part.watermark;
        self.seal(partition, |start, slide| start + slide <= limit)
    }

    /// The partition's watermark (`i64::MIN` when unknown).
    pub fn watermark(&self, partition: i32) -> i64 {
        self.parts.get(&partition).map_or(i64::MIN, |p| p.watermark)
    }

    /// Seals every open pane of `partition` (idle, revoked, shutting down).
    pub fn seal_partition(&mut self, partition: i32) -> Vec<SealedPane<H>> {
        self.seal(partition, |_, _| true)
    }

    /// Partitions whose last reader was `member`.
    pub fn owned_by(&self, member: usize) -> Vec<i32> {
        self.parts.iter().filter(|(_, p)| p.owner == member).map(|(&k, _)| k).collect()
    }

    /// Forgets a partition (after its panes were sealed; it went to another instance).
    pub fn forget(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// Every open pane's holds, dropping the panes (a model swap discards the windows).
    pub fn discard(&mut self) -> Vec<H> {
        let holds = self.parts.values_mut().flat_map(|p| std::mem::take(&mut p.panes).into_values().flat_map(|o| o.holds)).collect();
        self.parts.clear();
        holds
    }

    fn seal(&mut self, partition: i32, due: impl Fn(i64, i64) -> bool) -> Vec<SealedPane<H>> {
        let slide = self.slide_ms;
        let Some(part) = self.parts.get_mut(&partition) else { return Vec::new() };
        let mut sealed = Vec::new();
        while let Some(entry) = part.panes.first_entry() {
            if !due(*entry.key(), slide) {
                break;
            }
            let (start, open) = entry.remove_entry();
            sealed.push(SealedPane {
                partition,
                start_ms: start,
                end_ms: start + slide,
                first_offset: open.first_offset,
                last_offset: open.last_offset,
                watermark_ms: part.watermark,
                profile: open.profile,
                holds: open.holds,
            });
        }
        sealed
    }
}
