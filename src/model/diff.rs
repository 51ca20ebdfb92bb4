//! `driftwatch model diff`: what differs between two versions (hyper-parameters, held-out
//! metrics, features, training references). Pure: two artifacts in, a diff out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pipeline::artifact::{Artifact, HoldoutMetrics};

/// What differs between two artifacts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactDiff {
    /// Hyper-parameters that differ: name → (a, b).
    pub hyperparameters: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
    /// Held-out metrics: name → (a, b, b − a).
    pub metrics: BTreeMap<String, (f64, f64, f64)>,
    /// Features only in A.
    pub features_only_in_a: Vec<String>,
    /// Features only in B.
    pub features_only_in_b: Vec<String>,
    /// Per shared numeric feature: PSI between the two training references over A's bins
    /// (B's reference values are re-binned through its stored quantiles), and the mean shift.
    pub reference: BTreeMap<String, ReferenceDiff>,
    /// Decision thresholds (a, b).
    pub threshold: (f64, f64),
}

/// How two training references differ on one numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceDiff {
    /// Mean in A and B.
    pub mean: (f64, f64),
    /// Population standard deviation in A and B.
    pub std: (f64, f64),
    /// Jensen–Shannon distance (base 2) between the two references' quantile grids binned on A's edges.
    pub js: f64,
}

/// Compares two artifacts: hyper-parameters, metrics, features and training references.
pub fn diff(a: &Artifact, b: &Artifact) -> ArtifactDiff {
    let ha = serde_json::to_value(&a.training.hyperparameters).expect("serialises");
    let hb = serde_json::to_value(&b.training.hyperparameters).expect("serialises");
    let mut hyperparameters = BTreeMap::new();
    if let (Some(ma), Some(mb)) = (ha.as_object(), hb.as_object()) {
        for (k, va) in ma {
            let vb = mb.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if *va != vb {
                hyperparameters.insert(k.clone(), (va.clone(), vb));
            }
        }
    }
    let m = |h: &HoldoutMetrics| [("roc_auc", h.roc_auc), ("pr_auc", h.pr_auc), ("precision", h.precision), ("recall", h.recall), ("alert_rate", h.alert_rate)];
    let metrics = m(&a.training.holdout_metrics)
        .iter()
        .zip(m(&b.training.holdout_metrics))
        .map(|((k, x), (_, y))| (k.to_string(), (*x, y, y - x)))
        .collect();
    let names = |x: &Artifact| -> Vec<String> { x.features.numeric.iter().map(|f| f.name.clone()).chain(x.features.categorical.iter().map(|f| f.name.clone())).collect() };
    let (na, nb) = (names(a), names(b));
    let mut reference = BTreeMap::new();
    for ra in &a.reference.numeric {
        if let Some(rb) = b.reference.numeric.iter().find(|r| r.name == ra.name) {
            let bin = |q: &[f64]| {
                let mut c = vec![0u64; ra.edges.len() + 1];
                for &x in q {
                    c[crate::bins::bin_of(&ra.edges, x)] += 1;
                }
                c
            };
            let (pa, pb) = (crate::drift::stats::smoothed(&bin(&ra.quantiles), 0.5), crate::drift::stats::smoothed(&bin(&rb.quantiles), 0.5));
            reference.insert(ra.name.clone(), ReferenceDiff { mean: (ra.mean, rb.mean), std: (ra.std, rb.std), js: crate::drift::stats::js_distance(&pb, &pa) });
        }
    }
    ArtifactDiff {
        hyperparameters,
        metrics,
        features_only_in_a: na.iter().filter(|f| !nb.contains(f)).cloned().collect(),
        features_only_in_b: nb.iter().filter(|f| !na.contains(f)).cloned().collect(),
        reference,
        threshold: (a.decision.threshold, b.decision.threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::registry::tests::artifact;

    #[test]
    fn diff_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifact::load(&artifact(dir.path(), "a", 1.0)).unwrap();
        let b = Artifact::load(&artifact(dir.path(), "b", 0.5)).unwrap();
        let d = diff(&a, &b);
        assert_eq!(d.hyperparameters.get("c"), Some(&(serde_json::json!(1.0), serde_json::json!(0.5))));
        assert_eq!(d.hyperparameters.len(), 1);
        assert!(d.features_only_in_a.is_empty() && d.features_only_in_b.is_empty());
        assert!(d.reference.values().all(|r| r.js < 1e-9), "same data, same references");
        let same = diff(&a, &a);
        assert!(same.hyperparameters.is_empty() && same.metrics.values().all(|m| m.2 == 0.0));
    }
}
