//! Models trained elsewhere: an ONNX graph (scikit-learn via skl2onnx, LightGBM and XGBoost via
//! onnxmltools) translated into plain data the engine evaluates natively.
//!
//! [`compile`] reads the graph and turns it into an [`ImportedModel`]: the classifier's input
//! columns as functions of one event field each ([`Slot`]), and the classifier itself (a linear
//! model or a tree ensemble). The artifact stores that translation, so scoring needs neither the
//! ONNX file nor an ONNX runtime. [`ImportRuntime`] is the compiled form the scorer uses; tree
//! reasons are exact TreeSHAP values ([`shap`]).
//!
//! Core: plain data and arithmetic.

mod compile;
pub mod proto;
mod shap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use compile::{compile, ImportOptions, OnnxError, SUPPORTED};

use super::artifact::Features;
use super::{FeatureRef, Transaction};

/// Most classifier input columns an imported model may have.
pub const MAX_WIDTH: usize = 4096;
/// Most event fields an imported model may read.
pub const MAX_FIELDS: usize = 512;

/// A translated ONNX model, as stored in the artifact (`imported`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedModel {
    /// Where it came from.
    pub source: ImportedSource,
    /// The ONNX inputs and the event fields behind each of their columns.
    pub inputs: Vec<ImportedInput>,
    /// The classifier's input columns, in order.
    pub slots: Vec<Slot>,
    /// The classifier.
    pub classifier: Classifier,
}

/// The ONNX file an imported model was translated from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedSource {
    /// File name.
    pub file: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// `producer_name producer_version` from the file (e.g. `skl2onnx 1.20.0`).
    pub producer: String,
    /// Operator sets the file imports (`domain:version`).
    pub opsets: Vec<String>,
}

/// One ONNX input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedInput {
    /// Input name in the graph.
    pub name: String,
    /// String tensor (categorical fields) rather than float (numeric fields).
    pub categorical: bool,
    /// Event field of each column.
    pub fields: Vec<String>,
}

/// One float operation on a numeric field, computed in `f32` as ONNX does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FloatOp {
    /// A missing value (NaN) becomes `value` (ai.onnx.ml Imputer).
    ReplaceMissing {
        /// Imputed value.
        value: f32,
    },
    /// `from` becomes `to` (Imputer with a non-NaN `replaced_value_float`).
    Replace {
        /// Replaced value.
        from: f32,
        /// Imputed value.
        to: f32,
    },
    /// `(x − offset) × scale` (ai.onnx.ml Scaler; Add, Sub and Mul by a constant).
    Scale {
        /// Subtracted first.
        offset: f32,
        /// Then multiplied.
        scale: f32,
    },
    /// `x / by`.
    Div {
        /// Divisor.
        by: f32,
    },
}

impl FloatOp {
    /// Applies the operation.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            FloatOp::ReplaceMissing { value } => {
                if x.is_nan() {
                    value
                } else {
                    x
                }
            }
            FloatOp::Replace { from, to } => {
                if x == from {
                    to
                } else {
                    x
                }
            }
            FloatOp::Scale { offset, scale } => (x - offset) * scale,
            FloatOp::Div { by } => x / by,
        }
    }
}

/// One classifier input column as a function of one event field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Slot {
    /// A constant.
    Constant {
        /// The value.
        value: f32,
    },
    /// The numeric field (as `f32`; NaN when missing) through `ops`.
    Numeric {
        /// Event field.
        field: String,
        /// Operations, in order.
        ops: Vec<FloatOp>,
    },
    /// A value per string of the categorical field (a missing field is the empty string).
    Categorical {
        /// Event field.
        field: String,
        /// Listed strings and their values.
        cases: Vec<(String, f32)>,
        /// The value for any other string.
        other: f32,
    },
}

impl Slot {
    /// The event field the column depends on.
    pub fn field(&self) -> Option<&str> {
        match self {
            Slot::Constant { .. } => None,
            Slot::Numeric { field, .. } | Slot::Categorical { field, .. } => Some(field),
        }
    }
}

/// ONNX's `post_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostTransform {
    /// The score is the probability.
    None,
    /// `1 / (1 + e^−score)`.
    Logistic,
    /// Softmax over the two class scores.
    Softmax,
}

/// The classifier of an imported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Classifier {
    /// ai.onnx.ml LinearClassifier.
    Linear(LinearModel),
    /// ai.onnx.ml TreeEnsembleClassifier.
    Trees(TreeEnsemble),
}

/// A binary linear classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearModel {
    /// `rows × width` coefficients, row-major.
    pub coefficients: Vec<f32>,
    /// One per row.
    pub intercepts: Vec<f32>,
    /// 1 (the positive class's score) or 2 (a score per class).
    pub rows: usize,
    /// The positive class's row.
    pub positive: usize,
    /// Score → probability.
    pub post_transform: PostTransform,
}

/// How a split compares the column with its threshold (ONNX's `nodes_modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeMode {
    /// `x ≤ t` goes to `yes`.
    Leq,
    /// `x < t`.
    Lt,
    /// `x ≥ t`.
    Gte,
    /// `x > t`.
    Gt,
    /// `x = t`.
    Eq,
    /// `x ≠ t`.
    Neq,
    /// A leaf.
    Leaf,
}

/// One tree node; children are indices into the same tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeNode {
    /// Split comparison, or leaf.
    pub mode: NodeMode,
    /// Column compared.
    pub feature: u32,
    /// Threshold (`f32`, as in the ONNX file).
    pub threshold: f32,
    /// Child when the comparison holds.
    pub yes: u32,
    /// Child otherwise.
    pub no: u32,
    /// A missing value (NaN) goes to `yes`.
    pub missing_yes: bool,
    /// Leaf value: the positive class's score.
    pub value: f64,
    /// Training rows through this node (or their hessian sum), for TreeSHAP.
    pub cover: f64,
}

/// What a node's cover counts (TreeSHAP weighs paths by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cover {
    /// Training rows (LightGBM, scikit-learn).
    Count,
    /// Sum of the logistic loss's hessian p(1 − p) over the rows, boosting round by round (XGBoost).
    Hessian,
}

/// A binary tree ensemble: score = base + Σ leaf values; probability = post_transform(score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEnsemble {
    /// Trees in boosting order, root first.
    pub trees: Vec<Vec<TreeNode>>,
    /// Added to the sum of leaf values.
    pub base_value: f64,
    /// Score → probability.
    pub post_transform: PostTransform,
    /// What the covers count.
    pub cover: Cover,
    /// The cover-weighted mean score (TreeSHAP's base value).
    pub expected_value: f64,
}

impl TreeNode {
    #[inline]
    fn goes_yes(&self, x: f32) -> bool {
        if x.is_nan() && self.missing_yes {
            return true;
        }
        let t = self.threshold;
        match self.mode {
            NodeMode::Leq => x <= t,
            NodeMode::Lt => x < t,
            NodeMode::Gte => x >= t,
            NodeMode::Gt => x > t,
            NodeMode::Eq => x == t,
            NodeMode::Neq => x != t,
            NodeMode::Leaf => false,
        }
    }
}

impl TreeEnsemble {
    /// The leaf `x` reaches in `tree`, and the nodes on the way (root first) when `path` is given.
    #[inline]
    fn leaf(tree: &[TreeNode], x: &[f32], mut path: Option<&mut Vec<usize>>) -> usize {
        let mut i = 0usize;
        loop {
            if let Some(p) = path.as_deref_mut() {
                p.push(i);
            }
            let n = &tree[i];
            if n.mode == NodeMode::Leaf {
                return i;
            }
            i = if n.goes_yes(x[n.feature as usize]) { n.yes } else { n.no } as usize;
        }
    }

    /// Depth of the subtree under node `i` (0 for a leaf).
    pub(crate) fn depth(tree: &[TreeNode], i: usize) -> usize {
        let n = &tree[i];
        if n.mode == NodeMode::Leaf {
            0
        } else {
            1 + Self::depth(tree, n.yes as usize).max(Self::depth(tree, n.no as usize))
        }
    }

    /// The raw score (before the post-transform).
    #[inline]
    pub fn margin(&self, x: &[f32]) -> f64 {
        let mut s = self.base_value;
        for tree in &self.trees {
            s += tree[Self::leaf(tree, x, None)].value;
        }
        s
    }

    /// The cover the model's own library uses, as far as the export shows it: XGBoost's
    /// exports split with `<` (`BRANCH_LT`) under a logistic transform and keep hessian sums;
    /// LightGBM (`BRANCH_LEQ`) and scikit-learn count rows.
    pub fn default_cover(&self) -> Cover {
        let all_lt = self.trees.iter().flatten().filter(|n| n.mode != NodeMode::Leaf).all(|n| n.mode == NodeMode::Lt);
        if all_lt && self.post_transform == PostTransform::Logistic {
            Cover::Hessian
        } else {
            Cover::Count
        }
    }

    /// Sets every node's cover from training rows (the classifier's input vectors).
    pub fn fit_covers<'a>(&mut self, rows: impl Iterator<Item = &'a [f32]>, cover: Cover) {
        for tree in &mut self.trees {
            for n in tree.iter_mut() {
                n.cover = 0.0;
            }
        }
        let mut path = Vec::new();
        for x in rows {
            let mut margin = self.base_value;
            for tree in &mut self.trees {
                path.clear();
                let leaf = Self::leaf(tree, x, Some(&mut path));
                let w = match cover {
                    Cover::Count => 1.0,
                    Cover::Hessian => {
                        let p = sigmoid(margin);
                        p * (1.0 - p)
                    }
                };
                for &i in &path {
                    tree[i].cover += w;
                }
                margin += tree[leaf].value;
            }
        }
        self.cover = cover;
        self.expected_value = self.base_value
            + self
                .trees
                .iter()
                .map(|t| {
                    let root = t[0].cover;
                    if root > 0.0 {
                        t.iter().filter(|n| n.mode == NodeMode::Leaf).map(|n| n.cover * n.value).sum::<f64>() / root
                    } else {
                        0.0
                    }
                })
                .sum::<f64>();
    }
}

impl LinearModel {
    fn width(&self) -> usize {
        self.coefficients.len() / self.rows
    }

    /// The positive class's log-odds (raw score) from a per-row quantity: the positive row's,
    /// less the other row's under a two-row softmax. Scores, coefficients and intercepts all
    /// go through this one rule.
    fn log_odds(&self, of_row: impl Fn(usize) -> f64) -> f64 {
        let pos = of_row(self.positive);
        if self.rows == 2 && self.post_transform == PostTransform::Softmax {
            pos - of_row(1 - self.positive)
        } else {
            pos
        }
    }

    /// Per-column coefficient of the positive class's log-odds.
    fn log_odds_coefficient(&self, j: usize) -> f64 {
        let w = self.width();
        self.log_odds(|r| f64::from(self.coefficients[r * w + j]))
    }

    fn probability(&self, x: &[f32]) -> f64 {
        let w = self.width();
        let s = self.log_odds(|r| {
            let row = &self.coefficients[r * w..(r + 1) * w];
            f64::from(self.intercepts[r]) + row.iter().zip(x).map(|(&c, &v)| f64::from(c) * f64::from(v)).sum::<f64>()
        });
        match self.post_transform {
            PostTransform::None => s,
            PostTransform::Logistic | PostTransform::Softmax => sigmoid(s),
        }
    }
}

#[inline]
fn sigmoid(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

/// Deepest tree the complete layout takes (2^depth leaves per tree).
const COMPLETE_MAX_DEPTH: usize = 10;

/// A tree ensemble laid out for branch-free evaluation: every tree completed to the same depth
/// D (a shallower leaf is copied into every leaf below it), nodes in breadth-first order
/// (children of i at 2i + 1 and 2i + 2), every comparison turned into `x ≤ t` with the child
/// order and the missing-value direction adjusted. Each tree then takes exactly D steps of
/// load, compare and index arithmetic with no data-dependent branch, and consecutive trees
/// overlap in the CPU. Built when every split is ≤, <, ≥ or > and no tree is deeper than
/// [`COMPLETE_MAX_DEPTH`]; otherwise the node-by-node evaluation is used.
struct CompleteTrees {
    depth: usize,
    /// Per tree `2^D − 1` nodes.
    nodes: Vec<CompleteNode>,
    /// Per tree `2^D` leaf values.
    leaves: Vec<f64>,
    base: f64,
}

#[derive(Clone, Copy)]
struct CompleteNode {
    threshold: f32,
    feature: u32,
    /// A missing value goes left.
    nan_left: bool,
}

impl CompleteNode {
    /// The breadth-first index of the child `x` goes to from index `i`, without a branch.
    #[inline(always)]
    fn child(self, i: usize, x: &[f32]) -> usize {
        let v = x[self.feature as usize];
        let left = (v <= self.threshold) | (v.is_nan() & self.nan_left);
        2 * i + 2 - usize::from(left)
    }
}

impl CompleteTrees {
    fn build(t: &TreeEnsemble) -> Option<CompleteTrees> {
        if t.trees.iter().flatten().any(|n| matches!(n.mode, NodeMode::Eq | NodeMode::Neq)) {
            return None;
        }
        let depth = t.trees.iter().map(|tr| TreeEnsemble::depth(tr, 0)).max()?;
        if depth == 0 || depth > COMPLETE_MAX_DEPTH {
            return None;
        }
        let (n_nodes, n_leaves) = ((1usize << depth) - 1, 1usize << depth);
        let mut out = CompleteTrees { depth, nodes: Vec::with_capacity(t.trees.len() * n_nodes), leaves: Vec::with_capacity(t.trees.len() * n_leaves), base: t.base_value };
        for tree in &t.trees {
            let mut nodes = vec![CompleteNode { threshold: 0.0, feature: 0, nan_left: true }; n_nodes];
            let mut leaves = vec![0.0; n_leaves];
            // (position in the complete tree, level, source node)
            let mut stack = vec![(0usize, 0usize, 0usize)];
            while let Some((pos, level, src)) = stack.pop() {
                let n = &tree[src];
                if level == depth {
                    leaves[pos - n_nodes] = n.value;
                    continue;
                }
                if n.mode == NodeMode::Leaf {
                    // Both children are this leaf: the comparison does not matter.
                    stack.push((2 * pos + 1, level + 1, src));
                    stack.push((2 * pos + 2, level + 1, src));
                    continue;
                }
                // left = the child taken when x ≤ threshold.
                let (threshold, left, right) = match n.mode {
                    NodeMode::Leq => (n.threshold, n.yes, n.no),
                    // x < t  ⇔  x ≤ the largest f32 below t (x is an f32).
                    NodeMode::Lt => (n.threshold.next_down(), n.yes, n.no),
                    // x > t  ⇔  ¬(x ≤ t): yes is the right child.
                    NodeMode::Gt => (n.threshold, n.no, n.yes),
                    // x ≥ t  ⇔  ¬(x < t).
                    NodeMode::Gte => (n.threshold.next_down(), n.no, n.yes),
                    _ => unreachable!("checked above"),
                };
                // A missing value goes to `yes` if tracked, else where a false comparison goes (`no`).
                let nan_child = if n.missing_yes { n.yes } else { n.no };
                nodes[pos] = CompleteNode { threshold, feature: n.feature, nan_left: nan_child == left };
                stack.push((2 * pos + 1, level + 1, left as usize));
                stack.push((2 * pos + 2, level + 1, right as usize));
            }
            out.nodes.extend(nodes);
            out.leaves.extend(leaves);
        }
        Some(out)
    }

    /// Trees walked in lockstep: independent load-compare chains the CPU overlaps.
    const LANES: usize = 8;

    #[inline]
    fn margin(&self, x: &[f32]) -> f64 {
        let n_nodes = (1usize << self.depth) - 1;
        let n_trees = self.leaves.len() >> self.depth;
        let mut s = self.base;
        let mut t = 0;
        while t + Self::LANES <= n_trees {
            let mut idx = [0usize; Self::LANES];
            for _ in 0..self.depth {
                for (k, i) in idx.iter_mut().enumerate() {
                    *i = self.nodes[(t + k) * n_nodes + *i].child(*i, x);
                }
            }
            for (k, i) in idx.iter().enumerate() {
                s += self.leaves[((t + k) << self.depth) + i - n_nodes];
            }
            t += Self::LANES;
        }
        for t in t..n_trees {
            let mut i = 0usize;
            for _ in 0..self.depth {
                i = self.nodes[t * n_nodes + i].child(i, x);
            }
            s += self.leaves[(t << self.depth) + i - n_nodes];
        }
        s
    }
}

struct NumericSlot {
    slot: u32,
    feature: u16,
    ops: Vec<FloatOp>,
}

struct CategoricalBlock {
    feature: u16,
    slots: Vec<u32>,
    /// String → row of `values`.
    rows: FxHashMap<String, u32>,
    /// Row-major `(cases + 1) × slots`; the last row is any other string.
    values: Vec<f32>,
    /// Row for a missing field (the empty string's, else other).
    missing_row: u32,
    /// Row for any other string (the last).
    other_row: u32,
}

/// An imported model compiled for the scorer.
pub struct ImportRuntime {
    width: usize,
    constants: Vec<(u32, f32)>,
    numeric: Vec<NumericSlot>,
    blocks: Vec<CategoricalBlock>,
    /// Feature ordinal (numeric first, then categorical) of each column.
    origin: Vec<Option<u16>>,
    n_features: usize,
    n_numeric: usize,
    classifier: Classifier,
    /// The tree ensemble in its branch-free layout, when it has one.
    complete: Option<CompleteTrees>,
    /// Precomputed TreeSHAP tables, when they fit.
    tables: Option<shap::PathTables>,
}

impl ImportRuntime {
    /// Compiles `model` against the artifact's features. Errors name a field that is not a
    /// feature of the right kind.
    pub fn new(model: &ImportedModel, features: &Features) -> Result<ImportRuntime, String> {
        let numeric_index = |name: &str| features.numeric.iter().position(|f| f.name == name);
        let categorical_index = |name: &str| features.categorical.iter().position(|f| f.name == name);
        let n_numeric = features.numeric.len();
        let n_features = n_numeric + features.categorical.len();
        if n_features > MAX_FIELDS {
            return Err(format!("{n_features} features; an imported model may read at most {MAX_FIELDS}"));
        }
        let width = model.slots.len();
        if width == 0 || width > MAX_WIDTH {
            return Err(format!("{width} classifier columns; 1..={MAX_WIDTH} supported"));
        }
        let mut rt = ImportRuntime {
            width,
            constants: Vec::new(),
            numeric: Vec::new(),
            blocks: Vec::new(),
            origin: vec![None; width],
            n_features,
            n_numeric,
            classifier: model.classifier.clone(),
            complete: None,
            tables: None,
        };
        let mut block_of: FxHashMap<usize, usize> = FxHashMap::default();
        let mut block_slots: Vec<Vec<(u32, &Vec<(String, f32)>, f32)>> = Vec::new();
        for (k, slot) in model.slots.iter().enumerate() {
            match slot {
                Slot::Constant { value } => rt.constants.push((k as u32, *value)),
                Slot::Numeric { field, ops } => {
                    let i = numeric_index(field).ok_or_else(|| format!("the model reads `{field}` as a number, but it is not a numeric feature"))?;
                    rt.numeric.push(NumericSlot { slot: k as u32, feature: i as u16, ops: ops.clone() });
                    rt.origin[k] = Some(i as u16);
                }
                Slot::Categorical { field, cases, other } => {
                    let i = categorical_index(field).ok_or_else(|| format!("the model reads `{field}` as a string, but it is not a categorical feature"))?;
                    let b = *block_of.entry(i).or_insert_with(|| {
                        block_slots.push(Vec::new());
                        rt.blocks.push(CategoricalBlock { feature: i as u16, slots: Vec::new(), rows: FxHashMap::default(), values: Vec::new(), missing_row: 0, other_row: 0 });
                        block_slots.len() - 1
                    });
                    block_slots[b].push((k as u32, cases, *other));
                    rt.origin[k] = Some((n_numeric + i) as u16);
                }
            }
        }
        for (block, slots) in rt.blocks.iter_mut().zip(&block_slots) {
            let mut keys: Vec<&String> = slots.iter().flat_map(|(_, cases, _)| cases.iter().map(|(k, _)| k)).collect();
            keys.sort();
            keys.dedup();
            block.slots = slots.iter().map(|(s, _, _)| *s).collect();
            for (r, key) in keys.iter().enumerate() {
                block.rows.insert((*key).clone(), r as u32);
                for (_, cases, other) in slots {
                    block.values.push(cases.iter().find(|(k, _)| k == *key).map_or(*other, |(_, v)| *v));
                }
            }
            for (_, _, other) in slots {
                block.values.push(*other);
            }
            block.other_row = keys.len() as u32;
            block.missing_row = block.rows.get("").copied().unwrap_or(block.other_row);
        }
        match &model.classifier {
            Classifier::Linear(l) if l.rows == 0 || l.coefficients.len() != l.rows * width || l.intercepts.len() != l.rows || l.positive >= l.rows => {
                return Err("the linear classifier's coefficients do not match its columns".into())
            }
            Classifier::Trees(t) => {
                for tree in &t.trees {
                    if tree.is_empty() {
                        return Err("an empty tree".into());
                    }
                    for n in tree {
                        if n.mode != NodeMode::Leaf && (n.feature as usize >= width || n.yes as usize >= tree.len() || n.no as usize >= tree.len()) {
                            return Err("a tree node refers outside its tree or columns".into());
                        }
                    }
                }
                rt.complete = CompleteTrees::build(t);
                rt.tables = shap::PathTables::build(t);
            }
            Classifier::Linear(_) => {}
        }
        Ok(rt)
    }

    /// Number of classifier columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Writes the classifier's input vector for `tx` into `x` (length [`Self::width`]).
    #[inline]
    pub fn fill(&self, tx: &Transaction, x: &mut [f32]) {
        for &(k, v) in &self.constants {
            x[k as usize] = v;
        }
        for s in &self.numeric {
            let mut v = tx.numeric[usize::from(s.feature)] as f32;
            for op in &s.ops {
                v = op.apply(v);
            }
            x[s.slot as usize] = v;
        }
        for b in &self.blocks {
            let value = &tx.categorical[usize::from(b.feature)];
            let row = if value.present { b.rows.get(value.text.as_str()).copied().unwrap_or(b.other_row) } else { b.missing_row };
            let n = b.slots.len();
            let vals = &b.values[row as usize * n..(row as usize + 1) * n];
            for (&s, &v) in b.slots.iter().zip(vals) {
                x[s as usize] = v;
            }
        }
    }

    /// Fraud probability of a filled input vector.
    #[inline]
    pub fn probability(&self, x: &[f32]) -> f64 {
        match &self.classifier {
            Classifier::Linear(l) => l.probability(x),
            Classifier::Trees(t) => {
                let s = match &self.complete {
                    Some(c) => c.margin(x),
                    None => t.margin(x),
                };
                match t.post_transform {
                    PostTransform::Logistic => sigmoid(s),
                    _ => s,
                }
            }
        }
    }

    /// Whether contributions are cheap enough to compute for every event (linear models).
    pub fn cheap_reasons(&self) -> bool {
        matches!(self.classifier, Classifier::Linear(_))
    }

    /// Each feature's contribution to the raw score (log-odds for logistic models), by feature
    /// ordinal (numeric features first, then categorical), into `out` (length = features).
    /// Linear: coefficient × column value, summed over the feature's columns. Trees: exact
    /// TreeSHAP (path-dependent, weighted by the training covers), summed likewise.
    pub fn contributions(&self, x: &[f32], out: &mut [f64]) {
        out.fill(0.0);
        match &self.classifier {
            Classifier::Linear(l) => {
                for (j, &v) in x.iter().enumerate() {
                    if let Some(f) = self.origin[j] {
                        out[usize::from(f)] += l.log_odds_coefficient(j) * f64::from(v);
                    }
                }
            }
            Classifier::Trees(t) => {
                let mut phi = vec![0.0; self.width];
                match &self.tables {
                    Some(tables) => tables.shap(t, x, &mut phi, &mut Vec::new()),
                    None => shap::tree_shap(t, x, &mut phi),
                }
                for (j, p) in phi.iter().enumerate() {
                    if let Some(f) = self.origin[j] {
                        out[usize::from(f)] += p;
                    }
                }
            }
        }
    }

    /// The contribution every event starts from: TreeSHAP's expected value for trees, the
    /// intercept's log-odds for linear models.
    pub fn base_value(&self) -> f64 {
        match &self.classifier {
            Classifier::Linear(l) => l.log_odds(|r| f64::from(l.intercepts[r])),
            Classifier::Trees(t) => t.expected_value,
        }
    }

    /// The feature an ordinal from [`Self::contributions`] refers to.
    pub fn feature_ref(&self, ordinal: usize) -> FeatureRef {
        if ordinal < self.n_numeric {
            FeatureRef::Numeric(ordinal as u16)
        } else {
            FeatureRef::Categorical((ordinal - self.n_numeric) as u16)
        }
    }

    /// Memory of the precomputed TreeSHAP tables, in bytes (0 without them).
    pub fn explanation_bytes(&self) -> usize {
        self.tables.as_ref().map_or(0, shap::PathTables::bytes)
    }

    /// Number of features (length of the contributions).
    pub fn n_features(&self) -> usize {
        self.n_features
    }
}

#[cfg(test)]
mod tests;
