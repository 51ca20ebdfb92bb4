//! Classifier quality metrics, with the same definitions as scikit-learn.

/// Area under the ROC curve (ties get half credit, as `sklearn.metrics.roc_auc_score`).
/// Returns NaN when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Mann–Whitney U with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[order[k]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Average precision, Σₙ (Rₙ − Rₙ₋₁)·Pₙ over distinct thresholds (as `sklearn.metrics.average_precision_score`).
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    if positives == 0.0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let recall = tp / positives;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    ap
}

/// Precision, recall and alert rate when flagging `score >= threshold`.
pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut flagged) = (0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        if s >= threshold {
            flagged += 1;
            tp += usize::from(l);
        }
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let precision = if flagged == 0 { 0.0 } else { tp as f64 / flagged as f64 };
    let recall = if positives == 0 { 0.0 } else { tp as f64 / positives as f64 };
    (precision, recall, flagged as f64 / scores.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computed_values() {
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        assert!((roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]) - 0.75).abs() < 1e-12);
        // ties count half
        assert!((roc_auc(&[0.5, 0.5], &[false, true]) - 0.5).abs() < 1e-12);
        assert!(roc_auc(&[0.5], &[true]).is_nan());
    }

    #[test]
    fn average_precision_matches_sklearn_example() {
        // sklearn docs: average_precision_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.8333…
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert!((ap - 0.8333333333333333).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn threshold_counts() {
        let (p, r, a) = at_threshold(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true], 0.35);
        assert_eq!((p, r, a), (2.0 / 3.0, 1.0, 0.75));
    }
}

/// ROC AUC, average precision, and precision, recall and alert rate at `threshold`: the
/// held-out metrics of `train` and the metrics of `evaluate`.
pub fn metrics(scores: &[f64], labels: &[bool], threshold: f64) -> crate::pipeline::artifact::HoldoutMetrics {
    let (precision, recall, alert_rate) = at_threshold(scores, labels, threshold);
    crate::pipeline::artifact::HoldoutMetrics {
        roc_auc: roc_auc(scores, labels),
        pr_auc: average_precision(scores, labels),
        precision,
        recall,
        alert_rate,
        positives: labels.iter().filter(|&&l| l).count() as u64,
    }
}
