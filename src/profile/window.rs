//! Sliding event-time windows with allowed lateness.
//!
//! Windows are [k·slide, k·slide + size). The watermark is the largest event time seen minus
//! the allowed lateness; a window closes when the watermark reaches its end. An event whose
//! windows have (some of them) already closed is still added to those still open, and counted
//! as late, never silently dropped. Every event advances the watermark, sampled or not, so
//! windows close on time even when few events are sampled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ProfileLayout, WindowProfile};
use crate::pipeline::artifact::ReferenceProfile;
use crate::pipeline::{Score, Transaction};

/// Window shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length in event time.
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

/// The open windows of one stream.
pub struct SlidingWindows {
    spec: WindowSpec,
    open: BTreeMap<i64, WindowProfile>,
    watermark: i64,
    /// Sampled events that missed at least one window because it had closed.
    pub late_events: u64,
}

impl SlidingWindows {
    /// No windows yet; panics if size or slide is not positive (validated config).
    pub fn new(spec: WindowSpec) -> SlidingWindows {
        assert!(spec.size_ms > 0 && spec.slide_ms > 0 && spec.lateness_ms >= 0, "validated window spec");
        SlidingWindows { spec, open: BTreeMap::new(), watermark: i64::MIN, late_events: 0 }
    }

    /// The current watermark (ms), `i64::MIN` before any event.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Event time at or after which the oldest open window closes (`i64::MAX` if none).
    pub fn next_close_ms(&self) -> i64 {
        self.open.first_key_value().map_or(i64::MAX, |(_, w)| w.end_ms.saturating_add(self.spec.lateness_ms))
    }

    /// Windows currently open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Adds a sampled event at event time `t_ms` to every open window containing it.
    pub fn observe(&mut self, reference: &ReferenceProfile, layout: &ProfileLayout, t_ms: i64, tx: &Transaction, score: &Score) {
        let (size, slide) = (self.spec.size_ms, self.spec.slide_ms);
        let mut start = t_ms.div_euclid(slide) * slide;
        let mut missed = false;
        while start + size > t_ms {
            if start + size <= self.watermark {
                missed = true;
            } else {
                self.open.entry(start).or_insert_with(|| WindowProfile::new(reference, start, start + size)).observe(layout, tx, score);
            }
            start -= slide;
        }
        self.late_events += u64::from(missed);
    }

    /// Moves the watermark for an event at `t_ms` (sampled or not); returns the windows it closes, oldest first.
    pub fn advance(&mut self, t_ms: i64) -> Vec<WindowProfile> {
        self.watermark = self.watermark.max(t_ms.saturating_sub(self.spec.lateness_ms));
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if entry.get().end_ms > self.watermark {
                break;
            }
            closed.push(entry.remove());
        }
        closed
    }

    /// Closes every open window (end of input or shutdown), oldest first.
    pub fn close_all(&mut self) -> Vec<WindowProfile> {
        std::mem::take(&mut self.open).into_values().collect()
    }
}
