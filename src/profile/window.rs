//! Sliding event-time windows with allowed lateness, built from panes.
//!
//! Windows are [k·slide, k·slide + size), with `size` a multiple of `slide`. Each sampled
//! event updates one *pane*, the slide-long profile [k·slide, (k+1)·slide) it falls in, and a
//! window is the merge of its size/slide panes when it closes (profiles are mergeable), so an
//! event costs one profile update however many windows overlap it. The watermark is the largest
//! event time seen minus the allowed lateness; a window closes when the watermark reaches its
//! end. An event whose earliest window has already closed is counted as late; it still counts in
//! the windows that are open, and is dropped only when every window containing it has closed.
//! Every event moves the watermark, sampled or not, so windows close on time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ProfileLayout, WindowProfile};
use crate::pipeline::artifact::ReferenceProfile;
use crate::pipeline::{Score, Transaction};

/// Window shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length in event time (a multiple of `slide_ms`).
    pub size_ms: i64,
    /// Distance between window starts.
    pub slide_ms: i64,
    /// How far behind the newest event time an event may be and still count in time.
    pub lateness_ms: i64,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec { size_ms: 10 * 60_000, slide_ms: 60_000, lateness_ms: 30_000 }
    }
}

/// A window that closed, with its newest pane: the slide of data no earlier window held (each
/// pane is the newest of exactly one window), which is what evidence over time counts.
#[derive(Debug, Clone)]
pub struct ClosedProfile {
    /// The window's profile (its panes merged).
    pub window: WindowProfile,
    /// The profile of its last slide, if that held any sampled event.
    pub newest_pane: Option<WindowProfile>,
}

/// The start of the next window to emit when windows ending at or before `limit` may close:
/// `next_start`, first moved ahead over a gap with no data (`first_pane`: the earliest pane
/// held); `None` when no window with data is due. Shared by [`SlidingWindows`] and the group's
/// aggregator.
pub fn next_due_window(next_start: &mut Option<i64>, first_pane: Option<i64>, spec: &WindowSpec, limit: i64) -> Option<i64> {
    loop {
        let (start, first) = ((*next_start)?, first_pane?);
        if start + spec.size_ms > limit {
            return None;
        }
        if first >= start + spec.size_ms {
            // Skip ahead over a gap with no data at all.
            *next_start = Some(first - spec.size_ms + spec.slide_ms);
            continue;
        }
        return Some(start);
    }
}

/// The panes of one stream and which windows have been emitted.
pub struct SlidingWindows {
    spec: WindowSpec,
    panes: BTreeMap<i64, WindowProfile>,
    /// Start of the next window to emit; `None` before the first pane.
    next_start: Option<i64>,
    watermark: i64,
    /// Sampled events that missed at least one window because it had closed.
    pub late_events: u64,
}

impl SlidingWindows {
    /// No windows yet; panics unless size and slide are positive, size a multiple of slide, and lateness ≥ 0 (validated config).
    pub fn new(spec: WindowSpec) -> SlidingWindows {
        assert!(spec.size_ms > 0 && spec.slide_ms > 0 && spec.size_ms % spec.slide_ms == 0 && spec.lateness_ms >= 0, "validated window spec");
        SlidingWindows { spec, panes: BTreeMap::new(), next_start: None, watermark: i64::MIN, late_events: 0 }
    }

    /// The current watermark (ms), `i64::MIN` before any event.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Pane profiles currently held (memory is this times one profile).
    pub fn open_windows(&self) -> usize {
        self.panes.len()
    }

    /// Event time at or after which the next window closes (`i64::MAX` if none is pending).
    pub fn next_close_ms(&self) -> i64 {
        match (self.next_start, self.panes.is_empty()) {
            (Some(s), false) => s.saturating_add(self.spec.size_ms).saturating_add(self.spec.lateness_ms),
            _ => i64::MAX,
        }
    }

    /// Adds a sampled event at event time `t_ms` to its pane.
    pub fn observe(&mut self, reference: &ReferenceProfile, layout: &ProfileLayout, t_ms: i64, tx: &Transaction, score: &Score) {
        let (size, slide) = (self.spec.size_ms, self.spec.slide_ms);
        let pane = t_ms.div_euclid(slide) * slide;
        if pane + size <= self.watermark {
            // Every window containing it has closed.
            self.late_events += 1;
            return;
        }
        let earliest_window = pane - size + slide;
        match self.next_start {
            None => self.next_start = Some(earliest_window),
            Some(next) if earliest_window < next => self.late_events += 1,
            Some(_) => {}
        }
        self.panes.entry(pane).or_insert_with(|| WindowProfile::new(reference, pane, pane + slide)).observe(layout, tx, score);
    }

    /// Moves the watermark for an event at `t_ms` (sampled or not); returns the windows it closes, oldest first.
    pub fn advance(&mut self, t_ms: i64) -> Vec<ClosedProfile> {
        self.watermark = self.watermark.max(t_ms.saturating_sub(self.spec.lateness_ms));
        self.emit_until(self.watermark)
    }

    /// Closes every window that holds data (end of input or shutdown), oldest first.
    pub fn close_all(&mut self) -> Vec<ClosedProfile> {
        let last_pane = self.panes.last_key_value().map(|(&p, _)| p);
        let closed = match last_pane {
            Some(p) => self.emit_until(p + self.spec.size_ms),
            None => Vec::new(),
        };
        self.panes.clear();
        closed
    }

    /// Emits every window ending at or before `limit`, then drops panes no open window needs.
    fn emit_until(&mut self, limit: i64) -> Vec<ClosedProfile> {
        let (size, slide) = (self.spec.size_ms, self.spec.slide_ms);
        let mut closed = Vec::new();
        while let Some(start) = next_due_window(&mut self.next_start, self.panes.keys().next().copied(), &self.spec, limit) {
            let mut window: Option<WindowProfile> = None;
            for (_, p) in self.panes.range(start..start + size) {
                match window.as_mut() {
                    None => window = Some(p.clone()),
                    Some(w) => w.merge(p).expect("panes of one layout merge"),
                }
            }
            if let Some(mut w) = window {
                (w.start_ms, w.end_ms) = (start, start + size);
                let newest_pane = self.panes.get(&(start + size - slide)).cloned();
                closed.push(ClosedProfile { window: w, newest_pane });
            }
            self.next_start = Some(start + slide);
            // Panes before the next window's start are no longer needed.
            while let Some(entry) = self.panes.first_entry() {
                if *entry.key() >= start + slide {
                    break;
                }
                entry.remove();
            }
        }
        closed
    }
}
