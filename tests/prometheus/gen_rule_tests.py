"""Writes tests/prometheus/driftwatch_test.yml: promtool unit tests for every alert rule, each
firing and not firing. Expected annotations are rendered from the rules file so the two never
disagree; the series and timings are written here. Run: python3 tests/prometheus/gen_rule_tests.py"""
import pathlib
import re

import yaml

HERE = pathlib.Path(__file__).parent
RULES = HERE.parents[1] / "config" / "prometheus" / "rules" / "driftwatch.yml"
rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def expected(alert, **labels):
    rule = rules[alert]
    render = lambda t: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], t)
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()},
    }


def case(series, checks):
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series], "alert_rule_test": checks}


def check(at, alert, *alerts):
    return {"eval_time": at, "alertname": alert, "exp_alerts": list(alerts)}


tests = [
    case([('up{job="driftwatch",instance="a"}', "1 1 0 0 0 0"), ('up{job="driftwatch",instance="b"}', "1 1 1 1 1 1")],
         [check("1m", "DriftwatchDown"), check("2m", "DriftwatchDown"),
          check("4m", "DriftwatchDown", expected("DriftwatchDown", job="driftwatch", instance="a"))]),
    case([('driftwatch_feature_drift_status{feature="country"}', "0 1 2 2"), ('driftwatch_feature_drift_status{feature="amount"}', "0 0 1 1")],
         [check("1m", "DriftwatchFeatureDriftRed"),
          check("3m", "DriftwatchFeatureDriftRed", expected("DriftwatchFeatureDriftRed", feature="country"))]),
    # 100 scored/min; alerts 2/min for 1,500 minutes, then 20/min (10x the baseline).
    case([("driftwatch_events_scored_total", "0+100x1600"), ("driftwatch_fraud_alerts_total", "0+2x1500 3020+20x100")],
         [check("1400m", "DriftwatchFraudAlertRateOutOfBand"),
          check("1540m", "DriftwatchFraudAlertRateOutOfBand", expected("DriftwatchFraudAlertRateOutOfBand"))]),
    # ... and a drop to a tenth is out of band too.
    case([("driftwatch_events_scored_total", "0+100x1600"), ("driftwatch_fraud_alerts_total", "0+2x1500 3000+0.2x100")],
         [check("1540m", "DriftwatchFraudAlertRateOutOfBand", expected("DriftwatchFraudAlertRateOutOfBand"))]),
    # Trained outlier rate 1 %: 1 % live is fine, 10 % is not.
    case([("driftwatch_model_trained_outlier_rate", "0.01x100"), ("driftwatch_events_scored_total", "0+100x100"),
          ("driftwatch_outliers_total", "0+1x50 51+10x50")],
         [check("45m", "DriftwatchOutlierRateHigh"),
          check("90m", "DriftwatchOutlierRateHigh", expected("DriftwatchOutlierRateHigh"))]),
    case([('driftwatch_score_latency_seconds_bucket{le="0.000004"}', "0+100x30"), ('driftwatch_score_latency_seconds_bucket{le="0.002"}', "0+100x30"),
          ('driftwatch_score_latency_seconds_bucket{le="+Inf"}', "0+100x30")],
         [check("20m", "DriftwatchScoreLatencyHigh")]),
    case([('driftwatch_score_latency_seconds_bucket{le="0.000004"}', "0+0x30"), ('driftwatch_score_latency_seconds_bucket{le="0.002"}', "0+100x30"),
          ('driftwatch_score_latency_seconds_bucket{le="+Inf"}', "0+100x30")],
         [check("20m", "DriftwatchScoreLatencyHigh", expected("DriftwatchScoreLatencyHigh"))]),
    case([('driftwatch_consumer_lag{topic="transactions",partition="0"}', "20000+0x40")],
         [check("35m", "DriftwatchConsumerLagGrowing")]),
    case([('driftwatch_consumer_lag{topic="transactions",partition="0"}', "0+1000x40")],
         [check("8m", "DriftwatchConsumerLagGrowing"),
          check("35m", "DriftwatchConsumerLagGrowing", expected("DriftwatchConsumerLagGrowing"))]),
    case([('driftwatch_events_invalid_total{reason="not_json"}', "0+0.5x40"), ("driftwatch_events_consumed_total", "0+100x40")],
         [check("30m", "DriftwatchDeadLetterRateHigh")]),
    case([('driftwatch_events_invalid_total{reason="not_json"}', "0+5x40"), ("driftwatch_events_consumed_total", "0+100x40")],
         [check("30m", "DriftwatchDeadLetterRateHigh", expected("DriftwatchDeadLetterRateHigh"))]),
    # An output stuck for 30 s, then one waiting ever longer.
    case([('driftwatch_output_oldest_unacked_age_seconds{instance="a",worker="0"}', "30x10"), ('driftwatch_output_oldest_unacked_age_seconds{instance="b",worker="0"}', "0+60x10")],
         [check("1m", "DriftwatchOutputUnacknowledged"),
          check("5m", "DriftwatchOutputUnacknowledged", expected("DriftwatchOutputUnacknowledged", instance="b"))]),
    # Committed lag 5,000 with commits moving (a), and with no commit for 10 minutes (b).
    case([('driftwatch_consumer_committed_lag{instance="a",topic="transactions",partition="0"}', "5000x30"),
          ('driftwatch_events_committable_total{instance="a"}', "0+1000x30"),
          ('driftwatch_consumer_committed_lag{instance="b",topic="transactions",partition="0"}', "5000x30"),
          ('driftwatch_events_committable_total{instance="b"}', "0+1000x5 5000x25")],
         [check("4m", "DriftwatchCommitsStalled"),
          check("25m", "DriftwatchCommitsStalled", expected("DriftwatchCommitsStalled", instance="b"))]),
    # Precision's interval below the floor for one window (noise), then two in a row (evidence).
    case([('driftwatch_performance_below_floor_windows{version="v1",role="production",metric="precision"}', "0 1 0 1 2 2"),
          ('driftwatch_performance_below_floor_windows{version="v1",role="shadow",metric="precision"}', "3 3 3 3 3 3")],
         [check("1m", "DriftwatchModelPerformanceBelowFloor"), check("3m", "DriftwatchModelPerformanceBelowFloor"),
          check("4m", "DriftwatchModelPerformanceBelowFloor", expected("DriftwatchModelPerformanceBelowFloor", version="v1", metric="precision"))]),
    case([("driftwatch_concept_drift_detections_total", "0 0 0 0 1 1 1")],
         [check("3m", "DriftwatchConceptDrift"), check("5m", "DriftwatchConceptDrift", expected("DriftwatchConceptDrift"))]),
    # Panes published; the aggregator (instance a) goes away at 4m and nobody takes over.
    case([('driftwatch_drift_panes_published_total{instance="a"}', "0+10x20"),
          ('driftwatch_drift_aggregator{instance="a"}', "1 1 1 1 0 0 0 0 0 0 0 0 0 0 0"),
          ('driftwatch_drift_aggregator{instance="b"}', "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0")],
         [check("6m", "DriftwatchDriftNoAggregator"), check("10m", "DriftwatchDriftNoAggregator", expected("DriftwatchDriftNoAggregator"))]),
    case([('driftwatch_drift_missing_partitions{instance="a"}', "0 0 2 0")],
         [check("1m", "DriftwatchDriftPartitionsMissing"), check("2m", "DriftwatchDriftPartitionsMissing", expected("DriftwatchDriftPartitionsMissing"))]),
]
covered = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
assert covered == set(rules), f"rules without a firing test: {set(rules) - covered}"
out = {"rule_files": ["../../config/prometheus/rules/driftwatch.yml"], "evaluation_interval": "1m", "tests": tests}
(HERE / "driftwatch_test.yml").write_text("# Generated by gen_rule_tests.py; edit that file.\n" + yaml.safe_dump(out, sort_keys=False, width=200))
