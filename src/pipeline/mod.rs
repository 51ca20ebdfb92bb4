//! The loaded scoring pipeline: preprocessing, fraud model and outlier detector in one.
//!
//! [`Artifact`] is the file; [`Pipeline`] is that file compiled for the hot path. Scoring is
//! split in two steps so the engine can reuse buffers: [`Pipeline::decode_into`] parses one
//! JSON event into a reusable [`Transaction`] (no allocation once its buffers are warm), and
//! [`Pipeline::score`] turns a transaction into a [`Score`] without allocating. Training lives
//! in [`train`], the artifact format in [`artifact`], the streaming JSON decoder in `decode`.
//!
//! Core: plain data and arithmetic; imports no Kafka, tokio or clock.

pub mod artifact;
pub mod calibration;
mod decode;
pub mod evaluation;
pub mod logistic;
pub mod onnx;
pub mod reference;
pub mod train;

use std::fmt;

use rustc_hash::FxHashMap;

pub use artifact::{Artifact, ArtifactError};
pub use decode::DecodeError;

/// Most k-means clusters a pipeline may have (the scorer keeps distances on the stack).
pub const MAX_CLUSTERS: usize = 64;
/// Reasons reported per score.
pub const MAX_REASONS: usize = 3;

/// A decoded transaction in the pipeline's own column order; reuse one per thread.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// Value of the id column (empty when the pipeline has none).
    pub id: String,
    /// Value of the key column, e.g. the account (empty when the pipeline has none).
    pub key: String,
    /// Event time in milliseconds since the epoch, when the pipeline has a timestamp column.
    pub event_time_ms: Option<i64>,
    /// One value per numeric feature; NaN when missing.
    pub numeric: Vec<f64>,
    /// One value per categorical feature.
    pub categorical: Vec<CategoryValue>,
    /// What samples an event when the pipeline has no id column: a hash of the event's bytes
    /// (decoded events) or of its row number (rows of a file); 0 with an id column.
    pub content_hash: u64,
    /// Scratch for strings that arrive escaped, so decoding does not allocate.
    scratch: String,
    /// The SIMD parser's buffers.
    json: decode::JsonSlot,
}

/// A categorical value that keeps its buffer when absent, so decoding can reuse it.
#[derive(Debug, Clone, Default)]
pub struct CategoryValue {
    /// The text (meaningless when `present` is false).
    pub text: String,
    /// Whether the event had a value.
    pub present: bool,
}

impl CategoryValue {
    /// The value, if present.
    pub fn get(&self) -> Option<&str> {
        self.present.then_some(self.text.as_str())
    }
}

/// Which feature a reason is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureRef {
    /// Index into the numeric features.
    Numeric(u16),
    /// Index into the categorical features.
    Categorical(u16),
}

/// One feature's push towards (positive) or away from (negative) fraud, in logit units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason {
    /// The feature.
    pub feature: FeatureRef,
    /// Coefficient × standardised value (for a category, its level's coefficient).
    pub contribution: f64,
}

/// The result of scoring one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Fraud probability, corrected for the class weighting used in training.
    pub probability: f64,
    /// `probability >= threshold`.
    pub is_fraud: bool,
    /// Euclidean distance to the nearest k-means centre in the standardised feature space.
    pub outlier_score: f64,
    /// `outlier_score >= outlier threshold`.
    pub is_outlier: bool,
    /// Top contributions towards fraud, largest first; only the first `n_reasons` are set.
    pub reasons: [Reason; MAX_REASONS],
    /// How many `reasons` are set (only positive contributions are reasons).
    pub n_reasons: u8,
    /// How many categorical values were never seen in training (scored as the other level).
    pub unseen_categories: u16,
}

impl Score {
    /// The reasons that are set.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons[..usize::from(self.n_reasons)]
    }
}

/// Roles one input field plays (a field can be both the key and a feature).
#[derive(Debug, Clone, Copy, Default)]
struct FieldRoles {
    id: bool,
    key: bool,
    timestamp: bool,
    numeric: Option<u16>,
    categorical: Option<u16>,
}

struct NumericRuntime {
    fill: f64,
    mean: f64,
    inv_std: f64,
    coef: f64,
    design: usize,
    /// Coefficient and design column of the missing indicator, if there is one.
    indicator: Option<(f64, usize)>,
}

struct CategoricalRuntime {
    /// Level → index among the top-K levels.
    levels: FxHashMap<String, u32>,
    /// Design column of the first level; then other, then missing.
    offset: usize,
    n_levels: usize,
}

/// An artifact compiled for fast scoring.
pub struct Pipeline {
    artifact: Artifact,
    fields: FxHashMap<String, FieldRoles>,
    numeric: Vec<NumericRuntime>,
    categorical: Vec<CategoricalRuntime>,
    coefficients: Vec<f64>,
    intercept: f64,
    threshold: f64,
    /// Centroids, row-major k × d.
    centroids: Vec<f64>,
    /// Per centroid and categorical block, Σ c_j² over the block (so one-hot distance needs no loop).
    block_norms: Vec<f64>,
    k: usize,
    d: usize,
    outlier_threshold: f64,
    /// A model imported from ONNX, which then gives the probability and reasons.
    imported: Option<onnx::ImportRuntime>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").field("model", &self.artifact.model).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Loads, validates and compiles an artifact file.
    pub fn load(path: &std::path::Path) -> Result<Pipeline, ArtifactError> {
        Ok(Pipeline::new(Artifact::load(path)?))
    }

    /// Compiles a validated artifact. Panics only if `check_consistency` would fail (a broken invariant).
    pub fn new(artifact: Artifact) -> Pipeline {
        let a = &artifact;
        let d = a.design_columns.len();
        let mut fields: FxHashMap<String, FieldRoles> = FxHashMap::default();
        if let Some(c) = &a.columns.id {
            fields.entry(c.clone()).or_default().id = true;
        }
        if let Some(c) = &a.columns.key {
            fields.entry(c.clone()).or_default().key = true;
        }
        if let Some(c) = &a.columns.timestamp {
            fields.entry(c.clone()).or_default().timestamp = true;
        }
        let n_num = a.features.numeric.len();
        let mut next_indicator = n_num;
        let numeric = a
            .features
            .numeric
            .iter()
            .enumerate()
            .map(|(i, f)| {
                fields.entry(f.name.clone()).or_default().numeric = Some(i as u16);
                let indicator = f.missing_indicator.then(|| {
                    next_indicator += 1;
                    (a.logistic.coefficients[next_indicator - 1], next_indicator - 1)
                });
                NumericRuntime { fill: f.fill_value, mean: f.mean, inv_std: 1.0 / f.std, coef: a.logistic.coefficients[i], design: i, indicator }
            })
            .collect();
        let mut offset = next_indicator;
        let categorical = a
            .features
            .categorical
            .iter()
            .enumerate()
            .map(|(i, f)| {
                fields.entry(f.name.clone()).or_default().categorical = Some(i as u16);
                let rt = CategoricalRuntime {
                    levels: f.levels.iter().enumerate().map(|(j, l)| (l.clone(), j as u32)).collect(),
                    offset,
                    n_levels: f.levels.len(),
                };
                offset += f.levels.len() + 2;
                rt
            })
            .collect::<Vec<_>>();
        assert_eq!(offset, d, "artifact passed check_consistency");
        let k = a.outlier.centroids.len();
        let centroids: Vec<f64> = a.outlier.centroids.iter().flatten().copied().collect();
        let mut block_norms = Vec::with_capacity(k * categorical.len());
        for c in 0..k {
            for block in &categorical {
                let row = &centroids[c * d + block.offset..c * d + block.offset + block.n_levels + 2];
                block_norms.push(row.iter().map(|v| v * v).sum());
            }
        }
        Pipeline {
            fields,
            numeric,
            categorical,
            coefficients: a.logistic.coefficients.clone(),
            intercept: a.logistic.intercept + a.logistic.prior_correction,
            threshold: a.decision.threshold,
            centroids,
            block_norms,
            k,
            d,
            outlier_threshold: a.outlier.threshold,
            imported: a.imported.as_ref().map(|m| onnx::ImportRuntime::new(m, &a.features).expect("artifact passed check_consistency")),
            artifact,
        }
    }

    /// The artifact this pipeline was compiled from.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// An empty transaction with buffers sized for this pipeline.
    pub fn new_transaction(&self) -> Transaction {
        Transaction {
            numeric: vec![f64::NAN; self.numeric.len()],
            categorical: vec![CategoryValue::default(); self.categorical.len()],
            ..Default::default()
        }
    }

    /// Name of a feature a reason refers to.
    pub fn feature_name(&self, f: FeatureRef) -> &str {
        match f {
            FeatureRef::Numeric(i) => &self.artifact.features.numeric[usize::from(i)].name,
            FeatureRef::Categorical(i) => &self.artifact.features.categorical[usize::from(i)].name,
        }
    }

    /// Level index of a categorical value: a top-K level, other (also for unseen) or missing.
    /// Returns the design offset within the block and whether the value was never seen.
    #[inline]
    fn level_of(&self, block: &CategoricalRuntime, value: &CategoryValue) -> (usize, bool) {
        if !value.present {
            return (block.n_levels + 1, false);
        }
        match block.levels.get(value.text.as_str()) {
            Some(&j) => (j as usize, false),
            None => (block.n_levels, true),
        }
    }

    /// Scores a decoded transaction. Allocation-free.
    pub fn score(&self, tx: &Transaction) -> Score {
        let mut logit = self.intercept;
        let mut dist = [0.0f64; MAX_CLUSTERS];
        let dist = &mut dist[..self.k];
        let mut top = TopReasons::default();
        for (i, (f, &x)) in self.numeric.iter().zip(&tx.numeric).enumerate() {
            let missing = x.is_nan();
            let z = ((if missing { f.fill } else { x }) - f.mean) * f.inv_std;
            let mut contribution = f.coef * z;
            for (c, acc) in dist.iter_mut().enumerate() {
                let diff = z - self.centroids[c * self.d + f.design];
                *acc += diff * diff;
            }
            if let Some((coef, col)) = f.indicator {
                let ind = f64::from(u8::from(missing));
                contribution += coef * ind;
                for (c, acc) in dist.iter_mut().enumerate() {
                    let diff = ind - self.centroids[c * self.d + col];
                    *acc += diff * diff;
                }
            }
            logit += contribution;
            top.offer(FeatureRef::Numeric(i as u16), contribution);
        }
        let mut unseen = 0u16;
        let n_blocks = self.categorical.len();
        for (i, (block, value)) in self.categorical.iter().zip(&tx.categorical).enumerate() {
            let (level, is_unseen) = self.level_of(block, value);
            unseen += u16::from(is_unseen);
            let col = block.offset + level;
            let contribution = self.coefficients[col];
            logit += contribution;
            top.offer(FeatureRef::Categorical(i as u16), contribution);
            for (c, acc) in dist.iter_mut().enumerate() {
                // ‖e_level − c_block‖² = Σ c_j² − 2·c_level + 1
                *acc += self.block_norms[c * n_blocks + i] - 2.0 * self.centroids[c * self.d + col] + 1.0;
            }
        }
        let mut probability = 1.0 / (1.0 + (-logit).exp());
        if let Some(m) = &self.imported {
            (probability, top) = self.score_imported(m, tx);
        }
        let outlier_score = dist.iter().copied().fold(f64::INFINITY, f64::min).max(0.0).sqrt();
        Score {
            probability,
            is_fraud: probability >= self.threshold,
            outlier_score,
            is_outlier: outlier_score >= self.outlier_threshold,
            reasons: top.reasons,
            n_reasons: top.n,
            unseen_categories: unseen,
        }
    }

    /// Runs `f` on the imported model's input vector for `tx`, in this thread's buffers (no
    /// allocation once they are warm); `f` also gets the contributions buffer.
    fn with_imported_input<R>(m: &onnx::ImportRuntime, tx: &Transaction, f: impl FnOnce(&[f32], &mut Vec<f64>) -> R) -> R {
        IMPORT_SCRATCH.with_borrow_mut(|(x, contributions)| {
            x.resize(m.width(), 0.0);
            m.fill(tx, x);
            contributions.resize(m.n_features(), 0.0);
            f(x, contributions)
        })
    }

    /// Probability and reasons from an imported model. Reasons of a tree ensemble (TreeSHAP, far
    /// costlier than the score) are computed only for a score at or over the threshold.
    fn score_imported(&self, m: &onnx::ImportRuntime, tx: &Transaction) -> (f64, TopReasons) {
        Self::with_imported_input(m, tx, |x, contributions| {
            let probability = m.probability(x);
            let mut top = TopReasons::default();
            if m.cheap_reasons() || probability >= self.threshold {
                m.contributions(x, contributions);
                for (i, &c) in contributions.iter().enumerate() {
                    top.offer(m.feature_ref(i), c);
                }
            }
            (probability, top)
        })
    }

    /// The fraud probability alone: what [`Pipeline::score`] computes before reasons (for an
    /// imported tree ensemble, without TreeSHAP). For benchmarks and offline checks.
    pub fn probability(&self, tx: &Transaction) -> f64 {
        match &self.imported {
            Some(m) => Self::with_imported_input(m, tx, |x, _| m.probability(x)),
            None => self.score(tx).probability,
        }
    }

    /// Every feature's contribution to the score's log-odds (raw score for a model whose output
    /// is not logistic), and the value they start from: for the built-in model the intercept
    /// and coefficient × standardised value (a category: its level's coefficient); for an
    /// imported linear model coefficient × transformed value; for an imported tree ensemble exact
    /// TreeSHAP values. Allocates; for explanations, not the hot path.
    pub fn contributions(&self, tx: &Transaction) -> (f64, Vec<(FeatureRef, f64)>) {
        if let Some(m) = &self.imported {
            let c = Self::with_imported_input(m, tx, |x, c| {
                m.contributions(x, c);
                c.iter().enumerate().map(|(i, &v)| (m.feature_ref(i), v)).collect()
            });
            return (m.base_value(), c);
        }
        let mut out = Vec::with_capacity(self.numeric.len() + self.categorical.len());
        for (i, (f, &x)) in self.numeric.iter().zip(&tx.numeric).enumerate() {
            let missing = x.is_nan();
            let z = ((if missing { f.fill } else { x }) - f.mean) * f.inv_std;
            let ind = f.indicator.map_or(0.0, |(coef, _)| coef * f64::from(u8::from(missing)));
            out.push((FeatureRef::Numeric(i as u16), f.coef * z + ind));
        }
        for (i, (block, value)) in self.categorical.iter().zip(&tx.categorical).enumerate() {
            let (level, _) = self.level_of(block, value);
            out.push((FeatureRef::Categorical(i as u16), self.coefficients[block.offset + level]));
        }
        (self.intercept, out)
    }

    /// Writes the transaction's design row (the model's input vector) into `out` (length d).
    /// Training uses this; [`Pipeline::score`] computes the same thing without materialising it.
    pub fn encode_into(&self, tx: &Transaction, out: &mut [f64]) {
        out.fill(0.0);
        for (f, &x) in self.numeric.iter().zip(&tx.numeric) {
            let missing = x.is_nan();
            out[f.design] = ((if missing { f.fill } else { x }) - f.mean) * f.inv_std;
            if let Some((_, col)) = f.indicator {
                out[col] = f64::from(u8::from(missing));
            }
        }
        for (block, value) in self.categorical.iter().zip(&tx.categorical) {
            out[block.offset + self.level_of(block, value).0] = 1.0;
        }
    }

    /// Number of design columns.
    pub fn design_width(&self) -> usize {
        self.d
    }

    /// Fills `tx` from a table row (training and offline tools), with the same rules as decoding.
    pub fn fill_from_row(&self, table: &crate::dataset::Table, columns: &RowColumns, row: usize, tx: &mut Transaction) {
        tx.content_hash = if self.artifact.columns.id.is_none() { crate::sampling::hash_bytes(&(row as u64).to_le_bytes()) } else { 0 };
        tx.numeric.resize(self.numeric.len(), f64::NAN);
        tx.categorical.resize_with(self.categorical.len(), CategoryValue::default);
        for (slot, col) in tx.numeric.iter_mut().zip(&columns.numeric) {
            *slot = col.and_then(|c| table.columns[c].cells[row].as_f64()).unwrap_or(f64::NAN);
        }
        for (slot, col) in tx.categorical.iter_mut().zip(&columns.categorical) {
            slot.text.clear();
            slot.present = false;
            if let Some(v) = col.and_then(|c| table.columns[c].cells[row].as_category()) {
                slot.text.push_str(&v);
                slot.present = true;
            }
        }
        tx.id.clear();
        if let Some(v) = columns.id.and_then(|c| table.columns[c].cells[row].as_category()) {
            tx.id.push_str(&v);
        }
        tx.key.clear();
        if let Some(v) = columns.key.and_then(|c| table.columns[c].cells[row].as_category()) {
            tx.key.push_str(&v);
        }
        let unit = self.artifact.columns.timestamp_unit;
        tx.event_time_ms = columns.timestamp.and_then(|c| match &table.columns[c].cells[row] {
            crate::dataset::Cell::Num(v) => crate::time::epoch_to_ms(*v, unit),
            other => other.as_category().and_then(|s| crate::time::parse_event_time(&s, unit)),
        });
    }

    /// Scores every row of `table` (train's held-out split and outlier threshold, `evaluate`).
    pub fn score_table(&self, table: &crate::dataset::Table) -> Vec<Score> {
        let columns = self.row_columns(table);
        let mut tx = self.new_transaction();
        (0..table.rows)
            .map(|r| {
                self.fill_from_row(table, &columns, r, &mut tx);
                self.score(&tx)
            })
            .collect()
    }

    /// Where this pipeline's inputs are in a table (features absent from it stay missing).
    pub fn row_columns(&self, table: &crate::dataset::Table) -> RowColumns {
        let find = |name: &str| table.columns.iter().position(|c| c.name == name);
        let cols = &self.artifact.columns;
        RowColumns {
            numeric: self.artifact.features.numeric.iter().map(|f| find(&f.name)).collect(),
            categorical: self.artifact.features.categorical.iter().map(|f| find(&f.name)).collect(),
            id: cols.id.as_deref().and_then(find),
            key: cols.key.as_deref().and_then(find),
            timestamp: cols.timestamp.as_deref().and_then(find),
            label: find(&cols.label),
        }
    }
}

/// Column positions of a pipeline's inputs in a [`crate::dataset::Table`].
#[derive(Debug, Clone)]
pub struct RowColumns {
    /// Per numeric feature.
    pub numeric: Vec<Option<usize>>,
    /// Per categorical feature.
    pub categorical: Vec<Option<usize>>,
    /// Id column.
    pub id: Option<usize>,
    /// Key column.
    pub key: Option<usize>,
    /// Timestamp column.
    pub timestamp: Option<usize>,
    /// Label column.
    pub label: Option<usize>,
}

thread_local! {
    /// Per-thread buffers for imported models: the classifier's input and the contributions.
    static IMPORT_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

#[derive(Default)]
struct TopReasons {
    reasons: [Reason; MAX_REASONS],
    n: u8,
}

impl Default for Reason {
    fn default() -> Self {
        Reason { feature: FeatureRef::Numeric(0), contribution: 0.0 }
    }
}

impl TopReasons {
    #[inline]
    fn offer(&mut self, feature: FeatureRef, contribution: f64) {
        if !(contribution > 0.0) {
            return;
        }
        let n = usize::from(self.n);
        if n == MAX_REASONS && contribution <= self.reasons[MAX_REASONS - 1].contribution {
            return;
        }
        let mut i = n.min(MAX_REASONS - 1);
        while i > 0 && self.reasons[i - 1].contribution < contribution {
            self.reasons[i] = self.reasons[i - 1];
            i -= 1;
        }
        self.reasons[i] = Reason { feature, contribution };
        self.n = (n + 1).min(MAX_REASONS) as u8;
    }
}

#[cfg(test)]
pub(crate) mod tests;
