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
    let depth = ensemble.trees.iter().map(|t| max_depth(t, 0)).max().unwrap_or(0);
    // One path per recursion level, each at most depth + 2 long; reused across trees.
    let mut paths = vec![PathElement::default(); (depth + 3) * (depth + 4) / 2 + 2];
    for tree in &ensemble.trees {
        recurse(tree, x, phi, 0, &mut paths, 0, 0, 1.0, 1.0, usize::MAX);
    }
}

fn max_depth(tree: &[TreeNode], i: usize) -> usize {
    let n = &tree[i];
    if n.mode == NodeMode::Leaf {
        0
    } else {
        1 + max_depth(tree, n.yes as usize).max(max_depth(tree, n.no as usize))
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
