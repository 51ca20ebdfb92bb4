//! Exact TreeSHAP (Lundberg, Erion & Lee, "Consistent Individualized Feature Attribution for Tree
//! Ensembles", 2018, Algorithm 2): the Shapley values of the path-dependent tree expectation, in
//! polynomial time. Written from the paper; the node covers come from the training rows
//! ([`super::TreeEnsemble::fit_covers`]) the way LightGBM (row counts) and XGBoost (hessian
//! sums) keep theirs, so the values equal their `pred_contrib` / `pred_contribs`.

use super::{NodeMode, TreeEnsemble, TreeNode};

#[derive(Clone, Copy, Default)]
struct PathElement {
    /// Column, or `usize::MAX` for the root's placeholder.
    feature: usize,
    zero_fraction: f64,
    one_fraction: f64,
    weight: f64,
}

/// Adds every tree's contributions for `x` to `phi` (one per column).
pub fn tree_shap(ensemble: &TreeEnsemble, x: &[f32], phi: &mut [f64]) {
    let depth = ensemble.trees.iter().map(|t| TreeEnsemble::depth(t, 0)).max().unwrap_or(0);
    // One path per recursion level, each at most depth + 2 long; reused across trees.
    let mut paths = vec![PathElement::default(); (depth + 3) * (depth + 4) / 2 + 2];
    for tree in &ensemble.trees {
        recurse(tree, x, phi, 0, &mut paths, 0, 0, 1.0, 1.0, usize::MAX);
    }
}

fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathElement { feature, zero_fraction: zero, one_fraction: one, weight: if depth == 0 { 1.0 } else { 0.0 } };
    let d = depth as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i as f64 + 1.0) / (d + 1.0);
        path[i].weight = zero * path[i].weight * (d - i as f64) / (d + 1.0);
    }
}

fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d = depth as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next * (d + 1.0) / ((i as f64 + 1.0) * one);
            next = tmp - path[i].weight * zero * (d - i as f64) / (d + 1.0);
        } else {
            path[i].weight = path[i].weight * (d + 1.0) / (zero * (d - i as f64));
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

/// 1 / n for n = 1..=64, so the innermost loop multiplies instead of dividing.
const RECIPROCALS: [f64; 65] = {
    let mut t = [0.0; 65];
    let mut n = 1;
    while n < 65 {
        t[n] = 1.0 / n as f64;
        n += 1;
    }
    t
};

#[inline]
fn recip(n: usize) -> f64 {
    if n < RECIPROCALS.len() {
        RECIPROCALS[n]
    } else {
        1.0 / n as f64
    }
}

/// The sum of the path's weights with element `index` unwound, without changing the path
/// (the innermost loop of TreeSHAP: divisions replaced by multiplications by reciprocals).
fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d1 = depth as f64 + 1.0;
    let mut next = path[depth].weight;
    let mut total = 0.0;
    if one != 0.0 {
        let scale = d1 / one;
        let zero_over = zero * recip(depth + 1);
        for i in (0..depth).rev() {
            let tmp = next * scale * recip(i + 1);
            total += tmp;
            next = path[i].weight - tmp * zero_over * (depth - i) as f64;
        }
    } else if zero != 0.0 {
        let scale = d1 / zero;
        for i in (0..depth).rev() {
            total += path[i].weight * scale * recip(depth - i);
        }
    }
    total
}

#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &[TreeNode],
    x: &[f32],
    phi: &mut [f64],
    node: usize,
    paths: &mut [PathElement],
    parent_offset: usize,
    depth: usize,
    zero: f64,
    one: f64,
    feature: usize,
) {
    // This level's path follows the parent's in `paths` and starts as a copy of it.
    let offset = parent_offset + depth + 1;
    {
        let (parent, rest) = paths.split_at_mut(offset);
        rest[..depth + 1].copy_from_slice(&parent[parent_offset..parent_offset + depth + 1]);
    }
    let path = &mut paths[offset..];
    extend(path, depth, zero, one, feature);
    let n = &tree[node];
    if n.mode == NodeMode::Leaf {
        for i in 1..=depth {
            let w = unwound_sum(path, depth, i);
            let el = path[i];
            phi[el.feature] += w * (el.one_fraction - el.zero_fraction) * n.value;
        }
        return;
    }
    let split = n.feature as usize;
    let (hot, cold) = if n.goes_yes(x[split]) { (n.yes as usize, n.no as usize) } else { (n.no as usize, n.yes as usize) };
    let cover = n.cover;
    let (hot_zero, cold_zero) = if cover > 0.0 { (tree[hot].cover / cover, tree[cold].cover / cover) } else { (0.5, 0.5) };
    let mut incoming_zero = 1.0;
    let mut incoming_one = 1.0;
    let mut depth = depth;
    if let Some(k) = (1..=depth).find(|&k| path[k].feature == split) {
        incoming_zero = path[k].zero_fraction;
        incoming_one = path[k].one_fraction;
        unwind(path, depth, k);
        depth -= 1;
    }
    // A branch no training row reached and `x` does not take weighs nothing (every path weight
    // below it is zero); skipping it also keeps the unwinding from dividing by zero.
    if hot_zero * incoming_zero != 0.0 || incoming_one != 0.0 {
        recurse(tree, x, phi, hot, paths, offset, depth + 1, hot_zero * incoming_zero, incoming_one, split);
    }
    if cold_zero * incoming_zero != 0.0 {
        recurse(tree, x, phi, cold, paths, offset, depth + 1, cold_zero * incoming_zero, 0.0, split);
    }
}

/// Precomputed TreeSHAP (the idea of Yang's "Fast TreeSHAP" v2): for one leaf with the unique
/// path features U (k of them), the path-dependent value of a coalition S is
/// `v · Π_{j∈U} (j ∈ S ? o_j : z_j)`, where `z_j` is the product of the cover fractions of the
/// path's splits on j and `o_j ∈ {0, 1}` says whether `x` satisfies all of them. Hence
/// `φ_i += v (o_i − z_i) · T_i(A ∖ {i})` with A the set of satisfied features and
/// `T_i(B) = Σ_{S ⊆ B} |S|!(k−|S|−1)!/k! · Π_{j ∈ U∖S∖{i}} z_j`, which depends only on the tree.
/// The tables (k · 2^(k−1) numbers per leaf) are built once; an explanation is then one
/// comparison per node and k look-ups per leaf instead of the O(k²) unwinding per leaf.
pub struct PathTables {
    trees: Vec<TreeTables>,
}

/// One tree's tables in contiguous arrays; leaves in the order of a yes-first depth-first walk.
struct TreeTables {
    /// Per node: the position of its split feature among the unique features of the path to it
    /// (fixed by the path prefix, so the same for every leaf below).
    position: Vec<u8>,
    leaves: Vec<LeafHeader>,
    /// Unique path features (columns) of every leaf, concatenated.
    features: Vec<u32>,
    /// Per feature of every leaf: the product of its splits' cover fractions on the path.
    zero: Vec<f64>,
    /// Per leaf and position p, 2^(k−1) values of `T_p(B)`, B a mask over the other positions.
    table: Vec<f64>,
}

#[derive(Clone, Copy)]
struct LeafHeader {
    value: f64,
    /// Unique path features.
    k: u32,
    /// Offset into `features` and `zero`.
    features: u32,
    /// Offset into `table`.
    table: u32,
}

/// Most unique features on one path the tables take (2^(k−1) entries per feature and leaf).
const TABLE_MAX_PATH: usize = 12;
/// Largest total table size built (bytes); beyond it the recursive algorithm is used.
const TABLE_MAX_BYTES: usize = 64 << 20;

impl PathTables {
    /// Builds the tables, or `None` when they would be too large (deep trees).
    pub fn build(ensemble: &TreeEnsemble) -> Option<PathTables> {
        let mut bytes = 0usize;
        let mut trees = Vec::with_capacity(ensemble.trees.len());
        for tree in &ensemble.trees {
            let mut t = TreeTables { position: vec![0; tree.len()], leaves: Vec::new(), features: Vec::new(), zero: Vec::new(), table: Vec::new() };
            let mut path: Vec<(usize, bool)> = Vec::new();
            collect(tree, 0, &mut path, &mut t)?;
            bytes += t.table.len() * 8;
            if bytes > TABLE_MAX_BYTES || t.table.len() > u32::MAX as usize {
                return None;
            }
            trees.push(t);
        }
        Some(PathTables { trees })
    }

    /// Table memory in bytes.
    pub fn bytes(&self) -> usize {
        self.trees.iter().map(|t| (t.table.len() + t.zero.len()) * 8 + t.features.len() * 4 + t.leaves.len() * 24 + t.position.len()).sum()
    }

    /// Adds every tree's contributions for `x` to `phi`; `stack` is scratch.
    pub fn shap(&self, ensemble: &TreeEnsemble, x: &[f32], phi: &mut [f64], stack: &mut Vec<(u32, u32)>) {
        for (tree, t) in ensemble.trees.iter().zip(&self.trees) {
            // Walk the tree carrying which path features `x` still satisfies.
            let mut next_leaf = 0usize;
            stack.clear();
            stack.push((0, u32::MAX));
            while let Some((node, satisfied)) = stack.pop() {
                let n = &tree[node as usize];
                if n.mode != NodeMode::Leaf {
                    let unmet = satisfied & !(1u32 << t.position[node as usize]);
                    let (yes, no) = if n.goes_yes(x[n.feature as usize]) { (satisfied, unmet) } else { (unmet, satisfied) };
                    stack.push((n.no, no));
                    stack.push((n.yes, yes));
                    continue;
                }
                let leaf = t.leaves[next_leaf];
                next_leaf += 1;
                let k = leaf.k as usize;
                if k == 0 {
                    continue;
                }
                let satisfied = satisfied & ((1u32 << k) - 1);
                let half = 1usize << (k - 1);
                let (f0, t0) = (leaf.features as usize, leaf.table as usize);
                for p in 0..k {
                    let o = f64::from((satisfied >> p) & 1);
                    let others = (satisfied & ((1u32 << p) - 1)) | ((satisfied >> (p + 1)) << p);
                    phi[t.features[f0 + p] as usize] += leaf.value * (o - t.zero[f0 + p]) * t.table[t0 + p * half + others as usize];
                }
            }
        }
    }
}

fn fraction(tree: &[TreeNode], node: usize, child: usize) -> f64 {
    let c = tree[node].cover;
    if c > 0.0 {
        tree[child].cover / c
    } else {
        0.5
    }
}

fn collect(tree: &[TreeNode], node: usize, path: &mut Vec<(usize, bool)>, out: &mut TreeTables) -> Option<()> {
    // Unique features of the path so far, in order of first appearance.
    let mut features: Vec<u32> = Vec::new();
    let mut zero: Vec<f64> = Vec::new();
    for &(split, yes) in path.iter() {
        let f = tree[split].feature;
        let child = if yes { tree[split].yes } else { tree[split].no } as usize;
        let pos = features.iter().position(|&g| g == f).unwrap_or_else(|| {
            features.push(f);
            zero.push(1.0);
            features.len() - 1
        });
        zero[pos] *= fraction(tree, split, child);
    }
    let n = &tree[node];
    if n.mode != NodeMode::Leaf {
        let pos = features.iter().position(|&g| g == n.feature).unwrap_or(features.len());
        if pos >= TABLE_MAX_PATH {
            return None;
        }
        out.position[node] = pos as u8;
        for (yes, child) in [(true, n.yes as usize), (false, n.no as usize)] {
            path.push((node, yes));
            collect(tree, child, path, out)?;
            path.pop();
        }
        return Some(());
    }
    let k = features.len();
    out.leaves.push(LeafHeader { value: n.value, k: k as u32, features: out.features.len() as u32, table: out.table.len() as u32 });
    out.features.extend(&features);
    out.zero.extend(&zero);
    if k > 0 {
        let half = 1usize << (k - 1);
        // w(s) = s! (k − s − 1)! / k!
        let fact = |m: usize| (1..=m).map(|v| v as f64).product::<f64>();
        let w: Vec<f64> = (0..k).map(|s| fact(s) * fact(k - s - 1) / fact(k)).collect();
        for p in 0..k {
            let others: Vec<f64> = (0..k).filter(|&q| q != p).map(|q| zero[q]).collect();
            // g(S) = w(|S|) · Π_{q ∉ S} z_q, then the subset sums over S ⊆ B.
            let mut g: Vec<f64> = (0..half)
                .map(|s| {
                    let zs: f64 = others.iter().enumerate().filter(|(q, _)| s & (1 << q) == 0).map(|(_, z)| z).product();
                    w[s.count_ones() as usize] * zs
                })
                .collect();
            for bit in 0..k - 1 {
                for s in 0..half {
                    if s & (1 << bit) != 0 {
                        g[s] += g[s ^ (1 << bit)];
                    }
                }
            }
            out.table.extend(g);
        }
    }
    Some(())
}
