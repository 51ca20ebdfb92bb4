"""The promotion policy of the retraining DAG, as a pure function (tested without Airflow:
tests/python/test_retrain_policy.py)."""

from __future__ import annotations


def compare(scores: list[dict], labels: dict[str, bool]) -> dict:
    """Champion vs challenger on the same events, from `shadow-scores` messages: agreement,
    both alert rates, and precision/recall on the events `labels` (transaction id -> fraud) covers."""
    n = len(scores)
    out = {
        "shadow_scores": n,
        "agreement": sum(s["agree"] for s in scores) / n,
        "champion_alert_rate": sum(s["production_alert"] for s in scores) / n,
        "challenger_alert_rate": sum(s["candidate_alert"] for s in scores) / n,
    }
    out["alert_rate_ratio"] = out["challenger_alert_rate"] / max(out["champion_alert_rate"], 1e-9)
    labelled = [(labels[s["transaction_id"]], s) for s in scores if s["transaction_id"] in labels]
    positives = sum(1 for y, _ in labelled if y)
    out["labelled"], out["labelled_positives"] = len(labelled), positives
    for side, name in (("production", "champion"), ("candidate", "challenger")):
        tp = sum(1 for y, s in labelled if y and s[f"{side}_alert"])
        flagged = sum(1 for _, s in labelled if s[f"{side}_alert"])
        out[f"{name}_precision"] = tp / flagged if flagged else None
        out[f"{name}_recall"] = tp / positives if positives else None
    return out


def judge(cmp: dict, min_agreement: float, max_alert_rate_ratio: float, min_labelled: int, auto_promote: bool) -> list[str]:
    """Why the challenger is not promoted (empty: promote it)."""
    reasons = []
    if cmp["agreement"] < min_agreement:
        reasons.append(f"agreement {cmp['agreement']:.3f} < {min_agreement}")
    ratio = cmp["alert_rate_ratio"]
    if not (1 / max_alert_rate_ratio <= ratio <= max_alert_rate_ratio):
        reasons.append(
            f"alert rate {cmp['challenger_alert_rate']:.4f} vs champion {cmp['champion_alert_rate']:.4f} (x{ratio:.2f}, allowed x{max_alert_rate_ratio})"
        )
    if cmp["labelled_positives"] >= min_labelled and (cmp["challenger_recall"] or 0.0) < (cmp["champion_recall"] or 0.0):
        reasons.append(f"recall {cmp['challenger_recall'] or 0.0:.3f} < champion {cmp['champion_recall']:.3f} on {cmp['labelled_positives']} labelled frauds")
    if not auto_promote:
        reasons.append("auto_promote is off")
    return reasons
