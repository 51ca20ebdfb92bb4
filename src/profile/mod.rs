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
use serde::{Deserialize, Serialize};
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

    /// Serialises the profile (counts and DataSketches' own binary sketch formats) to JSON bytes.
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
                .map(|c| CategoricalWire { counts: c.counts.clone(), cms: c.frequencies.serialize(), hll: c.distinct.serialize() })
                .collect(),
            score: numeric(&self.score),
            outlier_score: numeric(&self.outlier_score),
        };
        serde_json::to_vec(&wire).expect("profile serialises")
    }

    /// Reads bytes written by [`WindowProfile::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<WindowProfile, ProfileError> {
        let sketch = |e: datasketches::error::Error| ProfileError::Sketch(e.to_string());
        let wire: ProfileWire = serde_json::from_slice(bytes).map_err(|e| ProfileError::Layout(e.to_string()))?;
        let numeric = |w: NumericWire| -> Result<NumericProfile, ProfileError> {
            Ok(NumericProfile { counts: w.counts, sketch: KllSketch::deserialize(&w.kll).map_err(sketch)? })
        };
        Ok(WindowProfile {
            start_ms: wire.start_ms,
            end_ms: wire.end_ms,
            samples: wire.samples,
            outliers: wire.outliers,
            alerts: wire.alerts,
            numeric: wire.numeric.into_iter().map(numeric).collect::<Result<_, _>>()?,
            categorical: wire
                .categorical
                .into_iter()
                .map(|c| {
                    Ok(CategoricalProfile {
                        counts: c.counts,
                        frequencies: CountMinSketch::deserialize_with_seed(&c.cms, CMS_SEED).map_err(sketch)?,
                        distinct: HllSketch::deserialize(&c.hll).map_err(sketch)?,
                    })
                })
                .collect::<Result<_, ProfileError>>()?,
            score: numeric(wire.score)?,
            outlier_score: numeric(wire.outlier_score)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct NumericWire {
    counts: Vec<u64>,
    kll: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct CategoricalWire {
    counts: Vec<u64>,
    cms: Vec<u8>,
    hll: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ProfileWire {
    start_ms: i64,
    end_ms: i64,
    samples: u64,
    outliers: u64,
    alerts: u64,
    numeric: Vec<NumericWire>,
    categorical: Vec<CategoricalWire>,
    score: NumericWire,
    outlier_score: NumericWire,
}

#[cfg(test)]
mod tests;
