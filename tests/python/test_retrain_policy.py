"""The retraining DAG's comparison and promotion policy (orchestration/airflow/dags/driftwatch_policy.py),
checked against figures computed here by hand from a small set of shadow scores."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "orchestration" / "airflow" / "dags"))
from driftwatch_policy import compare, judge  # noqa: E402


def score(i, prod, cand):
    return {"transaction_id": f"t{i}", "production_alert": prod, "candidate_alert": cand, "agree": prod == cand}


# 10 events: champion alerts on t0..t3, challenger on t0..t1 and t4..t7.
SCORES = [score(i, i < 4, i < 2 or 4 <= i < 8) for i in range(10)]
# Frauds: t0, t4, t5 (t9 is labelled legitimate; t1..t3, t6..t8 unlabelled).
LABELS = {"t0": True, "t4": True, "t5": True, "t9": False}


def test_comparison_counts_agreement_rates_and_labelled_precision_recall():
    c = compare(SCORES, LABELS)
    # disagree on t2, t3 (champion only) and t4..t7 (challenger only): 6 of 10
    assert c["agreement"] == 0.4
    assert (c["champion_alert_rate"], c["challenger_alert_rate"]) == (0.4, 0.6)
    assert abs(c["alert_rate_ratio"] - 1.5) < 1e-12
    assert (c["labelled"], c["labelled_positives"]) == (4, 3)
    # labelled alerts: champion t0 (fraud); challenger t0, t4, t5 (all fraud)
    assert (c["champion_precision"], c["champion_recall"]) == (1.0, 1 / 3)
    assert (c["challenger_precision"], c["challenger_recall"]) == (1.0, 1.0)


def test_policy_promotes_only_when_every_rule_passes():
    c = compare(SCORES, LABELS)
    assert judge(c, min_agreement=0.4, max_alert_rate_ratio=1.5, min_labelled=3, auto_promote=True) == []
    low = judge(c, min_agreement=0.5, max_alert_rate_ratio=1.5, min_labelled=3, auto_promote=True)
    assert len(low) == 1 and low[0].startswith("agreement 0.400")
    rate = judge(c, min_agreement=0.0, max_alert_rate_ratio=1.4, min_labelled=3, auto_promote=True)
    assert len(rate) == 1 and "x1.50" in rate[0]
    assert judge(c, min_agreement=0.0, max_alert_rate_ratio=2.0, min_labelled=3, auto_promote=False) == ["auto_promote is off"]
    # Recall judged only with enough labelled frauds, and a worse challenger is held back.
    worse = dict(c, challenger_recall=0.0)
    assert judge(worse, 0.0, 2.0, min_labelled=4, auto_promote=True) == []
    held = judge(worse, 0.0, 2.0, min_labelled=3, auto_promote=True)
    assert len(held) == 1 and held[0].startswith("recall 0.000 < champion 0.333")
