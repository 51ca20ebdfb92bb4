//! The group's drift aggregator (`drift.aggregation = "group"`): one per model, the member of
//! the aggregator consumer group that Kafka assigns the single partition of `drift-profiles`.
//! Plain data: the shell ([`crate::engine::aggregator`]) feeds it records and the wall clock.
//!
//! - **Panes** come per partition of `transactions` with the offsets they cover
//!   ([`crate::profile::partitioned`]). A pane part that overlaps one already held is the same
//!   events read again (an instance died before committing them and the partition's next owner
//!   re-read them): if it covers every part it overlaps it replaces them (it holds all their
//!   events and more), else it is a duplicate and dropped. So a replayed partition never counts
//!   an event twice.
//! - **Completeness**: the global watermark is the smallest of the partitions' watermarks
//!   (each partition's owner claims it with every pane and every `progress_interval_ms`), not
//!   counting idle partitions (caught up, no events), and not waiting for a partition whose
//!   owner has said nothing for `instance_timeout_ms` (it vanished; the window says which
//!   partitions it closed without). A window [s, s + size) closes when the global watermark
//!   reaches its end, as in one process.
//! - **Takeover**: after each published window the shell writes a [`Checkpoint`] (the
//!   hysteresis state, the next window) to the topic and commits the offset of the oldest record
//!   an open window still needs; a successor replays from there and restores the checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use super::online::{ClosedWindow, DriftConfig, Evaluator};
use crate::message::drift::WindowSources;
use crate::message::profile::{Checkpoint, PaneHeader, ProfileRecord};
use crate::pipeline::Pipeline;
use crate::profile::window::{next_due_window, ClosedProfile, WindowSpec};
use crate::profile::WindowProfile;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A pane part added.
    Accepted,
    /// A pane part that re-read held parts and more: it replaced them.
    Replaced,
    /// A pane part already held (its events are in the window once).
    Duplicate,
    /// A pane part every window of which was already published.
    Late,
    /// A record of another model or version.
    OtherModel,
    /// Progress or a checkpoint.
    State,
}

impl Applied {
    /// Every outcome.
    pub const ALL: [Applied; 6] = [Applied::Accepted, Applied::Replaced, Applied::Duplicate, Applied::Late, Applied::OtherModel, Applied::State];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Accepted => "accepted",
            Applied::Replaced => "replaced",
            Applied::Duplicate => "duplicate",
            Applied::Late => "late",
            Applied::OtherModel => "other_model",
            Applied::State => "state",
        }
    }
}

#[derive(Debug, Clone)]
struct Part {
    instance: String,
    first: i64,
    last: i64,
    /// Where the record is in `drift-profiles` (what a successor must replay from).
    topic_offset: i64,
    profile: WindowProfile,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    watermark: i64,
    idle: bool,
    seen_ms: i64,
}

/// The aggregator's state for one model version.
pub struct Aggregator {
    spec: WindowSpec,
    name: String,
    version: String,
    evaluator: Evaluator,
    /// pane start → partition → parts.
    panes: BTreeMap<i64, BTreeMap<i32, Vec<Part>>>,
    claims: BTreeMap<i32, Claim>,
    /// Partitions of `transactions` (from metadata): waited for from the start.
    partitions: Vec<i32>,
    started_ms: i64,
    instance_timeout_ms: i64,
    next_start: Option<i64>,
    last_end: Option<i64>,
}

impl Aggregator {
    /// An aggregator for this pipeline, started at wall time `now_ms`, for a topic with these
    /// partitions.
    pub fn new(pipeline: &Pipeline, config: &DriftConfig, partitions: Vec<i32>, instance_timeout_ms: i64, now_ms: i64) -> Aggregator {
        let model = &pipeline.artifact().model;
        Aggregator {
            spec: config.window,
            name: model.name.clone(),
            version: model.version.clone(),
            evaluator: Evaluator::new(pipeline, config),
            panes: BTreeMap::new(),
            claims: BTreeMap::new(),
            partitions,
            started_ms: now_ms,
            instance_timeout_ms,
            next_start: None,
            last_end: None,
        }
    }

    /// The model version aggregated.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The hysteresis state.
    pub fn monitor(&self) -> &super::monitor::DriftMonitor {
        &self.evaluator.monitor
    }

    /// Pane parts held.
    pub fn parts_held(&self) -> usize {
        self.panes.values().flat_map(|p| p.values()).map(Vec::len).sum()
    }

    /// Takes one record read at `topic_offset` of `drift-profiles` at wall time `now_ms`.
    pub fn apply(&mut self, record: ProfileRecord, topic_offset: i64, now_ms: i64) -> Applied {
        if record.model() != self.name || record.version() != self.version {
            return Applied::OtherModel;
        }
        match record {
            ProfileRecord::Pane(h, profile) => self.pane(h, profile, topic_offset, now_ms),
            ProfileRecord::Progress(p) => {
                for pp in p.partitions {
                    self.claim(pp.partition, pp.watermark_ms, pp.idle, now_ms);
                }
                Applied::State
            }
            ProfileRecord::Checkpoint(c) => {
                self.restore(*c);
                Applied::State
            }
        }
    }

    fn claim(&mut self, partition: i32, watermark: i64, idle: bool, now_ms: i64) {
        let c = self.claims.entry(partition).or_insert(Claim { watermark: i64::MIN, idle, seen_ms: now_ms });
        c.watermark = c.watermark.max(watermark);
        c.idle = idle;
        c.seen_ms = now_ms;
    }

    fn pane(&mut self, h: PaneHeader, profile: WindowProfile, topic_offset: i64, now_ms: i64) -> Applied {
        self.claim(h.partition, h.watermark_ms, false, now_ms);
        let (size, slide) = (self.spec.size_ms, self.spec.slide_ms);
        let earliest_window = h.pane_start_ms - size + slide;
        match (self.next_start, self.last_end) {
            (None, _) => self.next_start = Some(earliest_window),
            // Nothing published yet: an earlier pane moves the first window back.
            (Some(next), None) if earliest_window < next => self.next_start = Some(earliest_window),
            // Every window containing it was published.
            (Some(next), Some(_)) if h.pane_start_ms + slide <= next => return Applied::Late,
            _ => {}
        }
        let parts = self.panes.entry(h.pane_start_ms).or_default().entry(h.partition).or_default();
        let overlapping: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].first <= h.last_offset && h.first_offset <= parts[i].last).collect();
        let part = Part { instance: h.instance, first: h.first_offset, last: h.last_offset, topic_offset, profile };
        if overlapping.is_empty() {
            parts.push(part);
            return Applied::Accepted;
        }
        let same = |i: &usize| parts[*i].first == part.first && parts[*i].last == part.last;
        if !overlapping.iter().any(same) && overlapping.iter().all(|&i| part.first <= parts[i].first && parts[i].last <= part.last) {
            for &i in overlapping.iter().rev() {
                parts.remove(i);
            }
            parts.push(part);
            return Applied::Replaced;
        }
        Applied::Duplicate
    }

    fn restore(&mut self, c: Checkpoint) {
        self.evaluator.monitor = c.monitor;
        self.last_end = Some(c.last_window_end_ms);
        self.next_start = Some(c.next_start_ms);
        self.drop_before(c.next_start_ms);
    }

    /// Drops panes no window from `next_start` on contains.
    fn drop_before(&mut self, next_start: i64) {
        while let Some(entry) = self.panes.first_entry() {
            if *entry.key() >= next_start {
                break;
            }
            entry.remove();
        }
    }

    /// The global watermark at wall time `now_ms`, the partitions not waited for because their
    /// owner is silent, and the idle ones.
    pub fn global_watermark(&self, now_ms: i64) -> (i64, Vec<i32>, Vec<i32>) {
        let all: BTreeSet<i32> = self.partitions.iter().copied().chain(self.claims.keys().copied()).collect();
        let (mut missing, mut idle) = (Vec::new(), Vec::new());
        let mut watermark: Option<i64> = None;
        for p in all {
            match self.claims.get(&p) {
                None if now_ms - self.started_ms >= self.instance_timeout_ms => missing.push(p),
                None => watermark = Some(i64::MIN),
                Some(c) if now_ms - c.seen_ms > self.instance_timeout_ms => missing.push(p),
                Some(c) if c.idle => idle.push(p),
                Some(c) => watermark = Some(watermark.map_or(c.watermark, |w| w.min(c.watermark))),
            }
        }
        // Every partition idle or silent: all that was read is in, up to the furthest claim.
        let w = watermark.unwrap_or_else(|| self.claims.values().map(|c| c.watermark).max().unwrap_or(i64::MIN));
        (w, missing, idle)
    }

    /// Closes and evaluates every window the global watermark has passed, oldest first.
    pub fn due(&mut self, now_ms: i64) -> Vec<ClosedWindow> {
        let (watermark, missing, idle) = self.global_watermark(now_ms);
        let (size, slide) = (self.spec.size_ms, self.spec.slide_ms);
        let mut closed = Vec::new();
        while let Some(start) = next_due_window(&mut self.next_start, self.panes.keys().next().copied(), &self.spec, watermark) {
            let mut window: Option<WindowProfile> = None;
            let mut newest: Option<WindowProfile> = None;
            let (mut instances, mut partitions) = (BTreeSet::new(), BTreeSet::new());
            for (&pane, by_partition) in self.panes.range(start..start + size) {
                for (&partition, parts) in by_partition {
                    for part in parts {
                        instances.insert(part.instance.as_str());
                        partitions.insert(partition);
                        for target in [Some(&mut window), (pane == start + size - slide).then_some(&mut newest)].into_iter().flatten() {
                            match target.as_mut() {
                                None => *target = Some(part.profile.clone()),
                                Some(w) => w.merge(&part.profile).expect("panes of one model version merge"),
                            }
                        }
                    }
                }
            }
            if let Some(mut w) = window {
                (w.start_ms, w.end_ms) = (start, start + size);
                let mut c = self.evaluator.close(&ClosedProfile { window: w, newest_pane: newest });
                c.report.sources = Some(WindowSources {
                    instances: instances.len() as u32,
                    partitions: partitions.into_iter().collect(),
                    missing_partitions: missing.clone(),
                    idle_partitions: idle.clone(),
                });
                closed.push(c);
            }
            self.last_end = Some(start + size);
            self.next_start = Some(start + slide);
            self.drop_before(start + slide);
        }
        closed
    }

    /// The state a successor needs, once the windows so far are published (`None` before the
    /// first window).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            model: self.name.clone(),
            version: self.version.clone(),
            last_window_end_ms: self.last_end?,
            next_start_ms: self.next_start?,
            monitor: self.evaluator.monitor.clone(),
        })
    }

    /// The `drift-profiles` offset of the oldest record an open window still needs.
    pub fn oldest_needed_offset(&self) -> Option<i64> {
        self.panes.values().flat_map(|p| p.values()).flatten().map(|p| p.topic_offset).min()
    }
}
