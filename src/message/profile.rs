//! The `drift-profiles` topic (`drift.aggregation = "group"`): what instances tell the group's
//! drift aggregator, and the aggregator's own checkpoints. One partition, so one total order.
//!
//! A record is binary and versioned:
//!
//! ```text
//! "DWPF"  u8 format version (1)  u8 kind (1 pane, 2 progress, 3 checkpoint)
//! u32 big-endian length of the header, the header (JSON: PaneHeader | Progress | Checkpoint)
//! pane only: the rest is the pane's profile (WindowProfile::to_bytes, itself versioned)
//! ```
//!
//! The header is JSON so that an operator can read it (`kcat -C -t drift-profiles`); the profile
//! is the binary, mergeable form the engine already uses (counts over the reference bins,
//! DataSketches KLL / count-min / HLL, score histogram, rates). Records are keyed by model name.

use serde::{Deserialize, Serialize};

use crate::drift::monitor::DriftMonitor;
use crate::profile::WindowProfile;

/// First bytes of every record.
pub const MAGIC: &[u8; 4] = b"DWPF";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// One partition's sampled events of one pane (a slide of event time), as far as one instance
/// read them: events at offsets `first_offset..=last_offset` of `partition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaneHeader {
    /// Model name.
    pub model: String,
    /// Model version the profile is binned for (the aggregator ignores other versions).
    pub version: String,
    /// The instance that read the events (`kafka.instance_id`, else host name and process id).
    pub instance: String,
    /// Partition of `transactions`.
    pub partition: i32,
    /// Pane start, epoch ms (inclusive).
    pub pane_start_ms: i64,
    /// Pane end, epoch ms (exclusive).
    pub pane_end_ms: i64,
    /// Offset of the first sampled event in the pane.
    pub first_offset: i64,
    /// Offset of the last sampled event in the pane.
    pub last_offset: i64,
    /// Sampled events in the profile.
    pub samples: u64,
    /// The partition's watermark when the pane was sealed (its progress claim).
    pub watermark_ms: i64,
}

/// One partition's progress as its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Partition of `transactions`.
    pub partition: i32,
    /// Largest event time read minus the allowed lateness (`i64::MIN` before any event).
    pub watermark_ms: i64,
    /// Caught up and no event for `drift.idle_partition_ms`: do not wait for it.
    pub idle: bool,
}

/// An instance's progress on the partitions one of its members holds (sent every
/// `drift.progress_interval_ms`, after that member's panes, by the same producer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// The instance.
    pub instance: String,
    /// The member's partitions.
    pub partitions: Vec<PartitionProgress>,
}

/// The aggregator's state after it published a window: what a successor needs besides the
/// panes (which it reads again from the topic).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// End (epoch ms) of the last window published.
    pub last_window_end_ms: i64,
    /// Start of the next window to publish.
    pub next_start_ms: i64,
    /// Hysteresis and retrain state.
    pub monitor: DriftMonitor,
}

/// A record of the `drift-profiles` topic.
#[derive(Debug, Clone)]
pub enum ProfileRecord {
    /// A pane of one partition.
    Pane(PaneHeader, WindowProfile),
    /// Progress of a member's partitions.
    Progress(Progress),
    /// The aggregator's checkpoint.
    Checkpoint(Box<Checkpoint>),
}

impl ProfileRecord {
    /// The model name the record belongs to.
    pub fn model(&self) -> &str {
        match self {
            ProfileRecord::Pane(h, _) => &h.model,
            ProfileRecord::Progress(p) => &p.model,
            ProfileRecord::Checkpoint(c) => &c.model,
        }
    }

    /// The model version the record belongs to.
    pub fn version(&self) -> &str {
        match self {
            ProfileRecord::Pane(h, _) => &h.version,
            ProfileRecord::Progress(p) => &p.version,
            ProfileRecord::Checkpoint(c) => &c.version,
        }
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (kind, header, profile) = match self {
            ProfileRecord::Pane(h, p) => (1u8, serde_json::to_vec(h), Some(p.to_bytes())),
            ProfileRecord::Progress(p) => (2, serde_json::to_vec(p), None),
            ProfileRecord::Checkpoint(c) => (3, serde_json::to_vec(c), None),
        };
        let header = header.expect("profile headers serialise");
        let mut out = Vec::with_capacity(10 + header.len() + profile.as_ref().map_or(0, Vec::len));
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(kind);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        if let Some(p) = profile {
            out.extend_from_slice(&p);
        }
        out
    }

    /// Reads a record, or says why it is not one this build understands.
    pub fn from_bytes(bytes: &[u8]) -> Result<ProfileRecord, String> {
        if bytes.len() < 10 || &bytes[..4] != MAGIC {
            return Err("not a driftwatch profile record (no DWPF magic)".into());
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(format!("profile record format version {} (this build reads {FORMAT_VERSION})", bytes[4]));
        }
        let len = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
        let header = bytes.get(10..10 + len).ok_or("profile record header truncated")?;
        let rest = &bytes[10 + len..];
        let json = |e: serde_json::Error| format!("profile record header: {e}");
        match bytes[5] {
            1 => {
                let h: PaneHeader = serde_json::from_slice(header).map_err(json)?;
                let p = WindowProfile::from_bytes(rest).map_err(|e| format!("pane profile: {e}"))?;
                Ok(ProfileRecord::Pane(h, p))
            }
            2 => Ok(ProfileRecord::Progress(serde_json::from_slice(header).map_err(json)?)),
            3 => Ok(ProfileRecord::Checkpoint(Box::new(serde_json::from_slice(header).map_err(json)?))),
            k => Err(format!("unknown profile record kind {k}")),
        }
    }
}
