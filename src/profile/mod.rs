//! Window profiles: what a window of (sampled) live traffic looks like, in bounded memory.
//!
//! A [`WindowProfile`] holds, per feature, counts over the *reference's* bins (so drift
//! statistics compare like with like), and sketches from Apache DataSketches: a KLL quantile
//! sketch per numeric quantity (KS and Wasserstein, with a stated rank error), and for each
//! categorical feature a count-min sketch of level frequencies and a HyperLogLog of distinct
//! levels (cardinality bursts, e.g. many new device ids). It also profiles the model score,
//! the outlier score and the outlier and alert counts. Profiles merge (per partition, per
//! worker, across instances) and serialise to bytes. Memory per profile is fixed by the
//! sketch parameters, whatever the traffic: see [`WindowProfile::memory_bytes`].
//!
//! Core: imports the pipeline's types and [`crate::bins`], never Kafka, tokio or the clock;
//! event time comes in with each transaction.

pub mod partitioned;
pub mod window;

use datasketches::countmin::CountMinSketch;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use datasketches::kll::{KllFloat, KllSketch};
use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::bins::{MISSING, OTHER, UNSEEN};
use crate::pipeline::artifact::ReferenceProfile;
use crate::pipeline::reference::{decode_seen_hashes, level_hash};
use crate::pipeline::{Score, Transaction};
use crate::bins::bin_of;

/// KLL accuracy parameter: normalised rank error ≈ 1.65 % at k = 200 (DataSketches' default).
pub const KLL_K: u16 = 200;
/// HyperLogLog lg(k): 4,096 registers, ~1.6 % relative error.
pub const HLL_LG_K: u8 = 12;
/// Count-min sketch shape: 3 hashes × 2,048 buckets (≈ 0.13 % of the window's weight error).
pub const CMS_HASHES: u8 = 3;
/// Count-min buckets.
pub const CMS_BUCKETS: u32 = 2048;
/// Fixed count-min seed so sketches from different processes merge.
pub const CMS_SEED: u64 = 0x6472_6966_7477_6174;

/// Why two profiles could not be merged or bytes not read.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// Different layouts (features or bins).
    #[error("profiles have different layouts: {0}")]
    Layout(String),
    /// A sketch refused the merge or the bytes.
    #[error("sketch error: {0}")]
    Sketch(String),
}

struct CategoricalLayout {
    top: FxHashMap<String, u32>,
    seen: Vec<u32>,
}

/// The reference's bins, compiled for fast binning of live values.
pub struct ProfileLayout {
    numeric_edges: Vec<Vec<f64>>,
    categorical: Vec<CategoricalLayout>,
    score_edges: Vec<f64>,
    outlier_edges: Vec<f64>,
}

impl ProfileLayout {
    /// The layout of a pipeline's reference profile.
    pub fn new(reference: &ReferenceProfile) -> ProfileLayout {
        ProfileLayout {
            numeric_edges: reference.numeric.iter().map(|r| r.edges.clone()).collect(),
            categorical: reference
                .categorical
                .iter()
                .map(|r| CategoricalLayout {
                    top: r.top.iter().enumerate().map(|(i, c)| (c.value.clone(), i as u32)).collect(),
                    seen: decode_seen_hashes(&r.seen_hashes).unwrap_or_default(),
                })
                .collect(),
            score_edges: reference.score.edges.clone(),
            outlier_edges: reference.outlier_score.edges.clone(),
        }
    }

    /// Bin labels of categorical feature `i`: top-K, other, unseen, missing.
    pub fn categorical_labels(reference: &ReferenceProfile, i: usize) -> Vec<String> {
        let mut labels: Vec<String> = reference.categorical[i].top.iter().map(|c| c.value.clone()).collect();
        labels.extend([OTHER.into(), UNSEEN.into(), MISSING.into()]);
        labels
    }
}

/// One numeric quantity's profile.
#[derive(Debug, Clone)]
pub struct NumericProfile {
    /// Counts over the reference bins, then missing.
    pub counts: Vec<u64>,
    /// Quantiles of the non-missing values.
    pub sketch: KllSketch<KllFloat<f64>>,
}

impl NumericProfile {
    fn new(edges: &[f64]) -> NumericProfile {
        NumericProfile { counts: vec![0; edges.len() + 2], sketch: KllSketch::new(KLL_K).expect("valid k") }
    }

    #[inline]
    fn observe(&mut self, edges: &[f64], x: f64) {
        if x.is_nan() {
            *self.counts.last_mut().expect("missing bin") += 1;
        } else {
            self.counts[bin_of(edges, x)] += 1;
            self.sketch.update(KllFloat::<f64>::new(x).expect("not NaN"));
        }
    }

    fn merge(&mut self, other: &NumericProfile) -> Result<(), ProfileError> {
        add_counts(&mut self.counts, &other.counts)?;
        self.sketch.merge(&other.sketch).map_err(|e| ProfileError::Sketch(e.to_string()))
    }
}

/// One categorical feature's profile.
#[derive(Debug, Clone)]
pub struct CategoricalProfile {
    /// Counts over top-K levels, other, unseen, missing.
    pub counts: Vec<u64>,
    /// Frequencies of every level (count-min).
    pub frequencies: CountMinSketch<u64>,
    /// Distinct levels (HyperLogLog).
    pub distinct: HllSketch,
}

impl CategoricalProfile {
    fn new(top_k: usize) -> CategoricalProfile {
        CategoricalProfile {
            counts: vec![0; top_k + 3],
            frequencies: CountMinSketch::with_seed(CMS_HASHES, CMS_BUCKETS, CMS_SEED).expect("valid shape"),
            distinct: HllSketch::new(HLL_LG_K, HllType::Hll8).expect("valid lg_k"),
        }
    }

    #[inline]
    fn observe(&mut self, layout: &CategoricalLayout, value: Option<&str>) {
        let n = self.counts.len();
        let bin = match value {
            None => n - 1,
            Some(v) => {
                self.frequencies.update(v);
                self.distinct.update(v);
                match layout.top.get(v) {
                    Some(&i) => i as usize,
                    None if layout.seen.binary_search(&level_hash(v)).is_ok() => n - 3,
                    None => n - 2,
                }
            }
        };
        self.counts[bin] += 1;
    }

    fn merge(&mut self, other: &CategoricalProfile) -> Result<(), ProfileError> {
        add_counts(&mut self.counts, &other.counts)?;
        self.frequencies.merge(&other.frequencies).map_err(|e| ProfileError::Sketch(e.to_string()))?;
        let mut union = HllUnion::new(HLL_LG_K).map_err(|e| ProfileError::Sketch(e.to_string()))?;
        union.update(&self.distinct);
        union.update(&other.distinct);
        self.distinct = union.to_sketch(HllType::Hll8);
        Ok(())
    }
}

fn add_counts(a: &mut [u64], b: &[u64]) -> Result<(), ProfileError> {
    if a.len() != b.len() {
        return Err(ProfileError::Layout(format!("{} bins vs {}", a.len(), b.len())));
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    Ok(())
}

/// The profile of one window of sampled traffic.
#[derive(Debug, Clone)]
pub struct WindowProfile {
    /// Window start, event time, ms since the epoch (inclusive).
    pub start_ms: i64,
    /// Window end (exclusive).
    pub end_ms: i64,
    /// Sampled events observed.
    pub samples: u64,
    /// Per numeric feature, in the pipeline's order.
    pub numeric: Vec<NumericProfile>,
    /// Per categorical feature.
    pub categorical: Vec<CategoricalProfile>,
    /// The model's fraud probability.
    pub score: NumericProfile,
    /// The outlier score.
    pub outlier_score: NumericProfile,
    /// Sampled events flagged as outliers.
    pub outliers: u64,
    /// Sampled events flagged as fraud.
    pub alerts: u64,
}

impl WindowProfile {
    /// An empty profile for the window [start, end).
    pub fn new(reference: &ReferenceProfile, start_ms: i64, end_ms: i64) -> WindowProfile {
        WindowProfile {
            start_ms,
            end_ms,
            samples: 0,
            numeric: reference.numeric.iter().map(|r| NumericProfile::new(&r.edges)).collect(),
            categorical: reference.categorical.iter().map(|r| CategoricalProfile::new(r.top.len())).collect(),
            score: NumericProfile::new(&reference.score.edges),
            outlier_score: NumericProfile::new(&reference.outlier_score.edges),
            outliers: 0,
            alerts: 0,
        }
    }

    /// Adds one scored transaction.
    pub fn observe(&mut self, layout: &ProfileLayout, tx: &Transaction, score: &Score) {
        self.samples += 1;
        for ((p, edges), &x) in self.numeric.iter_mut().zip(&layout.numeric_edges).zip(&tx.numeric) {
            p.observe(edges, x);
        }
        for ((p, l), v) in self.categorical.iter_mut().zip(&layout.categorical).zip(&tx.categorical) {
            p.observe(l, v.get());
        }
        self.score.observe(&layout.score_edges, score.probability);
        self.outlier_score.observe(&layout.outlier_edges, score.outlier_score);
        self.outliers += u64::from(score.is_outlier);
        self.alerts += u64::from(score.is_fraud);
    }

    /// Merges another profile of the same layout (e.g. another partition's or instance's).
    /// The window bounds become the union of both.
    pub fn merge(&mut self, other: &WindowProfile) -> Result<(), ProfileError> {
        if self.numeric.len() != other.numeric.len() || self.categorical.len() != other.categorical.len() {
            return Err(ProfileError::Layout("different features".into()));
        }
        for (a, b) in self.numeric.iter_mut().zip(&other.numeric) {
            a.merge(b)?;
        }
        for (a, b) in self.categorical.iter_mut().zip(&other.categorical) {
            a.merge(b)?;
        }
        self.score.merge(&other.score)?;
        self.outlier_score.merge(&other.outlier_score)?;
        self.samples += other.samples;
        self.outliers += other.outliers;
        self.alerts += other.alerts;
        self.start_ms = self.start_ms.min(other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        Ok(())
    }

    /// Approximate heap bytes held (fixed by the sketch parameters and the bin counts, not by traffic).
    pub fn memory_bytes(&self) -> usize {
        let numeric = |p: &NumericProfile| p.counts.len() * 8 + p.sketch.num_retained() * 8 + 64;
        self.numeric.iter().map(numeric).sum::<usize>()
            + numeric(&self.score)
            + numeric(&self.outlier_score)
            + self.categorical.iter().map(|c| c.counts.len() * 8 + c.frequencies.estimated_size() + c.distinct.estimated_size()).sum::<usize>()
    }

    /// Serialises the profile: protocol buffers (see [`ProfileWire`]) holding the bin counts
    /// and DataSketches' own binary sketch formats.
    pub fn to_bytes(&self) -> Vec<u8> {
        let numeric = |p: &NumericProfile| NumericWire { counts: p.counts.clone(), kll: p.sketch.serialize() };
        let wire = ProfileWire {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            samples: self.samples,
            outliers: self.outliers,
            alerts: self.alerts,
            numeric: self.numeric.iter().map(numeric).collect(),
            categorical: self
                .categorical
                .iter()
                .map(|c| CategoricalWire { counts: c.counts.clone(), cms: SparseBytes::pack(&c.frequencies.serialize()), hll: c.distinct.serialize() })
                .collect(),
            score: Some(numeric(&self.score)),
            outlier_score: Some(numeric(&self.outlier_score)),
        };
        prost::Message::encode_to_vec(&wire)
    }

    /// Reads bytes written by [`WindowProfile::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<WindowProfile, ProfileError> {
        let sketch = |e: datasketches::error::Error| ProfileError::Sketch(e.to_string());
        let wire: ProfileWire = prost::Message::decode(bytes).map_err(|e| ProfileError::Layout(e.to_string()))?;
        let numeric = |w: Option<NumericWire>| -> Result<NumericProfile, ProfileError> {
            let w = w.ok_or_else(|| ProfileError::Layout("a numeric profile is missing".into()))?;
            Ok(NumericProfile { counts: w.counts, sketch: KllSketch::deserialize(&w.kll).map_err(sketch)? })
        };
        Ok(WindowProfile {
            start_ms: wire.start_ms,
            end_ms: wire.end_ms,
            samples: wire.samples,
            outliers: wire.outliers,
            alerts: wire.alerts,
            numeric: wire.numeric.into_iter().map(|n| numeric(Some(n))).collect::<Result<_, _>>()?,
            categorical: wire
                .categorical
                .into_iter()
                .map(|c| {
                    Ok(CategoricalProfile {
                        counts: c.counts,
                        frequencies: CountMinSketch::deserialize_with_seed(&c.cms.unwrap_or_default().unpack()?, CMS_SEED).map_err(sketch)?,
                        distinct: HllSketch::deserialize(&c.hll).map_err(sketch)?,
                    })
                })
                .collect::<Result<_, ProfileError>>()?,
            score: numeric(wire.score)?,
            outlier_score: numeric(wire.outlier_score)?,
        })
    }
}

/// A numeric quantity's profile on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct NumericWire {
    /// Counts over the reference bins (+ below, above/missing), packed varints.
    #[prost(uint64, repeated, tag = "1")]
    counts: Vec<u64>,
    /// The KLL sketch in DataSketches' format.
    #[prost(bytes = "vec", tag = "2")]
    kll: Vec<u8>,
}

/// A categorical feature's profile on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct CategoricalWire {
    /// Counts over the reference categories (+ other, missing).
    #[prost(uint64, repeated, tag = "1")]
    counts: Vec<u64>,
    /// Count-min sketch, DataSketches' format, its zero words left out.
    #[prost(message, optional, tag = "2")]
    cms: Option<SparseBytes>,
    /// HyperLogLog sketch, DataSketches' format.
    #[prost(bytes = "vec", tag = "3")]
    hll: Vec<u8>,
}

/// Bytes whose 8-byte words are mostly zero (a count-min sketch of a pane holds a few hundred
/// non-zero counters among 6,144): the non-zero words and the lengths of the zero runs between
/// them. 49 KiB → ~2 KiB for a pane of a few hundred events; the sketch format stays
/// DataSketches'.
#[derive(Clone, PartialEq, prost::Message)]
struct SparseBytes {
    /// Length of the original bytes.
    #[prost(uint64, tag = "1")]
    len: u64,
    /// Alternating: zero words skipped, non-zero words that follow (from `words`).
    #[prost(uint64, repeated, tag = "2")]
    runs: Vec<u64>,
    /// The non-zero words, little-endian.
    #[prost(fixed64, repeated, tag = "3")]
    words: Vec<u64>,
}

impl SparseBytes {
    fn pack(bytes: &[u8]) -> Option<SparseBytes> {
        let mut out = SparseBytes { len: bytes.len() as u64, runs: Vec::new(), words: Vec::new() };
        let (mut zeros, mut literal) = (0u64, 0u64);
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            if w == 0 {
                if literal > 0 {
                    out.runs.push(literal);
                    literal = 0;
                }
                zeros += 1;
            } else {
                if literal == 0 {
                    out.runs.push(zeros);
                    zeros = 0;
                }
                literal += 1;
                out.words.push(w);
            }
        }
        if literal > 0 {
            out.runs.push(literal);
        }
        Some(out)
    }

    fn unpack(self) -> Result<Vec<u8>, ProfileError> {
        let bad = || ProfileError::Layout("sparse bytes do not add up".into());
        let mut out = Vec::with_capacity(self.len as usize + 8);
        let mut words = self.words.into_iter();
        for (i, &run) in self.runs.iter().enumerate() {
            if i % 2 == 0 {
                out.resize(out.len() + 8 * run as usize, 0);
            } else {
                for _ in 0..run {
                    out.extend_from_slice(&words.next().ok_or_else(bad)?.to_le_bytes());
                }
            }
        }
        if words.next().is_some() || out.len() as u64 > self.len.div_ceil(8) * 8 {
            return Err(bad());
        }
        out.resize(self.len as usize, 0);
        Ok(out)
    }
}

/// A profile on the wire (`drift-profiles` panes): protocol buffers, so fields can be added
/// without breaking older readers.
#[derive(Clone, PartialEq, prost::Message)]
struct ProfileWire {
    #[prost(int64, tag = "1")]
    start_ms: i64,
    #[prost(int64, tag = "2")]
    end_ms: i64,
    #[prost(uint64, tag = "3")]
    samples: u64,
    #[prost(uint64, tag = "4")]
    outliers: u64,
    #[prost(uint64, tag = "5")]
    alerts: u64,
    #[prost(message, repeated, tag = "6")]
    numeric: Vec<NumericWire>,
    #[prost(message, repeated, tag = "7")]
    categorical: Vec<CategoricalWire>,
    #[prost(message, optional, tag = "8")]
    score: Option<NumericWire>,
    #[prost(message, optional, tag = "9")]
    outlier_score: Option<NumericWire>,
}

#[cfg(test)]
mod tests;
