"""The oracle of tests/performance.rs: recomputes, from what the engine put on Kafka and from the
generator's truth, every figure of the engine's performance reports, with scikit-learn, numpy
and River; checks them and prints the measured coverage and detection figures as JSON.

    performance_oracle.py DIR

DIR holds: settings.json, events.jsonl (the transactions with their truth, `is_fraud`),
labels.jsonl (in the order produced, one partition), retained.jsonl (the retained-scores topic),
reports.jsonl (the performance-reports topic), retrain.jsonl (the retrain-requests topic).
"""
import json
import math
import sys
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
from river.drift.binary import DDM
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, roc_auc_score


def ms(s):
    return int(round(datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp() * 1000))


def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def close(a, b, tol, what):
    if a is None or b is None:
        assert a is None and b is None, f"{what}: {a} vs {b}"
        return 0.0
    assert abs(a - b) <= tol, f"{what}: engine {a!r} vs oracle {b!r}"
    return abs(a - b)


def main(d):
    s = json.load(open(f"{d}/settings.json"))
    W_label, W_est = s["label_window_seconds"] * 1000, s["window_seconds"] * 1000
    maturity = s["label_maturity_seconds"] * 1000
    events = {e["transaction_id"]: e for e in lines(f"{d}/events.jsonl")}
    labels = lines(f"{d}/labels.jsonl")
    retained = {}
    for r in lines(f"{d}/retained.jsonl"):
        # Compaction keeps the last: the changelog record (with `label`) once one joined.
        retained[r["transaction_id"]] = r
    reports = lines(f"{d}/reports.jsonl")
    retrain = [r for r in lines(f"{d}/retrain.jsonl") if r.get("concept")]
    prod = lambda r: next(v for v in r["scores"] if v["role"] == "production")

    # Every alert is retained: compare with the truth of all events.
    first_event = min(ms(r["event_time"]) for r in retained.values())

    # --- Join, as the engine does: first label counts, labels in order.
    labelled = set()
    windows = defaultdict(list)  # label window start -> rows (p, alert, y, w, delay_s)
    calib = []  # (event_ms, label_ms, p, y, w, index of the label) in label order
    errors = []  # the concept detector's input: (label_ms, error)
    label_ms_all = np.array([ms(l["label_time"]) for l in labels])
    for k, l in enumerate(labels):
        r = retained.get(l["transaction_id"])
        if r is None or l["transaction_id"] in labelled:
            continue
        labelled.add(l["transaction_id"])
        lm, em = ms(l["label_time"]), ms(r["event_time"])
        v, y = prod(r), int(l["label"])
        windows[lm // W_label * W_label].append((v["score"], v["alert"], y, r["weight"], (lm - em) / 1000))
        calib.append((em, lm, v["score"], y, r["weight"], k))
        if lm >= first_event + maturity:
            # The two streams, in the engine's order: labelled frauds (missed?), labelled alerts (legitimate?).
            if y == 1:
                errors.append((lm, "missed_fraud", int(not v["alert"])))
            if v["alert"]:
                errors.append((lm, "false_alert", int(y == 0)))

    realised = [r for r in reports if r["kind"] == "realised" and r["role"] == "production"]
    assert realised, "no realised report"
    dev = defaultdict(float)
    for rep in realised:
        rows = windows[ms(rep["window_start"])]
        p = np.array([x[0] for x in rows]); a = np.array([x[1] for x in rows]); y = np.array([x[2] for x in rows]); w = np.array([x[3] for x in rows])
        assert rep["transactions"] == len(rows), f"{rep['window_start']}: {rep['transactions']} labelled vs {len(rows)}"
        assert rep["alerts"] == int(a.sum())
        tp = int((a & (y == 1)).sum())
        assert rep["precision"]["value"] == (tp / a.sum() if a.sum() else None), f"precision {rep['precision']} vs {tp}/{a.sum()}"
        pos = w[y == 1].sum()
        dev["recall"] = max(dev["recall"], close(rep["recall"]["value"], (w[(y == 1) & a].sum() / pos) if pos > 0 else None, 1e-9, "recall"))
        auc = roc_auc_score(y, p, sample_weight=w) if 0 < y.sum() < len(y) else None
        dev["roc_auc"] = max(dev["roc_auc"], close(rep["roc_auc"]["value"], auc, 1e-9, "roc_auc"))
        dev["brier"] = max(dev["brier"], close(rep["brier"], brier_score_loss(y, p, sample_weight=w), 1e-9, "brier"))
        dev["alert_rate"] = max(dev["alert_rate"], close(rep["alert_rate"], w[a].sum() / w.sum(), 1e-12, "alert_rate"))
        dev["positives"] = max(dev["positives"], close(rep["positives"], pos, 1e-9, "positives"))
        dev["delay_p50"] = max(dev["delay_p50"], close(rep["label_delay_seconds"]["p50"], float(np.percentile([x[4] for x in rows], 50)), 1e-6, "delay p50"))
        for k in ("precision", "recall", "roc_auc"):
            i = rep[k]
            if i["value"] is not None and i["lower"] is not None:
                assert i["lower"] <= i["value"] + 1e-12 and i["value"] <= i["upper"] + 1e-12, f"{k} interval {i} does not hold its value"

    # --- Estimated windows: the oracle refits the calibration from the labels known when the
    # window closed (the label watermark then is the newest label consumed before it).
    estimated = [r for r in reports if r["kind"] == "estimated" and r["role"] == "production"]
    by_window = defaultdict(list)
    for r in retained.values():
        by_window[ms(r["event_time"]) // W_est * W_est].append(r)
    # The serving artifact's own calibration (held-out split): a step/linear map, as
    # scikit-learn's IsotonicRegression predicts (tests/python/test_calibration_parity.py checks
    # it against IsotonicRegression fitted on the held-out rows).
    model = json.load(open(s["model"]))
    blocks = model.get("calibration", {}).get("blocks", [])
    xs, ys = [], []
    for b in blocks:
        rate = b["positives"] / b["rows"]
        xs += [b["from"], b["to"]] if b["to"] > b["from"] else [b["from"]]
        ys += [rate, rate] if b["to"] > b["from"] else [rate]
    # Coverage and (estimate, truth, width) pairs per source of calibration.
    coverage = {src: {"precision": [], "recall": []} for src in ("matured", "training", "none")}
    pairs = {src: {"precision": [], "recall": []} for src in ("matured", "training", "none")}
    calibrated = 0
    training_windows = 0
    abs_error = {"calibrated": [], "raw": []}  # training-calibrated windows: |precision estimate - truth|
    for rep in estimated:
        start = ms(rep["window_start"])
        rows = by_window[start]
        assert rep["transactions"] == len(rows), f"estimated {rep['window_start']}: {rep['transactions']} vs {len(rows)}"
        p = np.array([prod(r)["score"] for r in rows]); a = np.array([prod(r)["alert"] for r in rows]); w = np.array([r["weight"] for r in rows])
        source = rep["calibration"]
        if source == "training":
            training_windows += 1
            assert blocks and rep["calibrated_on"] == model["calibration"]["rows"], f"{rep['window_start']}: training calibration of {rep['calibrated_on']} rows"
            raw_precision = p[a].sum() / a.sum() if a.sum() else None
            p = np.interp(p, xs, ys)
        elif source == "none":
            assert rep["calibrated_on"] == 0 and not blocks, f"{rep['window_start']}: uncalibrated although the artifact has a calibration"
        if source == "matured":
            calibrated += 1
            # The labels the engine had read when the window closed: the shortest prefix of the
            # labels (in order; the watermark is its last label's time) whose matured matched
            # rows number `calibrated_on` (the set only grows with the prefix).
            c_em = np.array([c[0] for c in calib]); c_idx = np.array([c[5] for c in calib])
            count = lambda k: int(((c_idx < k) & (c_em <= label_ms_all[k - 1] - maturity)).sum())
            lo, hi = 1, len(labels)
            while lo < hi:
                mid = (lo + hi) // 2
                if count(mid) < rep["calibrated_on"]:
                    lo = mid + 1
                else:
                    hi = mid
            assert count(lo) == rep["calibrated_on"], f"no prefix of the labels gives {rep['calibrated_on']} matured rows"
            m = [c for c in calib if c[5] < lo and c[0] <= label_ms_all[lo - 1] - maturity]
            iso = IsotonicRegression(out_of_bounds="clip").fit([c[2] for c in m], [c[3] for c in m], sample_weight=[c[4] for c in m])
            fitted = iso.predict(p)
            p = fitted
        exp_prec = p[a].sum() / a.sum() if a.sum() else None
        exp_rec = p[a].sum() / (w * p).sum() if (w * p).sum() > 0 else None
        dev["est_precision"] = max(dev["est_precision"], close(rep["precision"]["value"], exp_prec, 1e-9, "estimated precision"))
        dev["est_recall"] = max(dev["est_recall"], close(rep["recall"]["value"], exp_rec, 1e-9, "estimated recall"))
        # Truth over the whole window (every event, not the sample): once all labels are known.
        window_events = [e for e in events.values() if ms(e["event_time"]) // W_est * W_est == start]
        alerts = [r for r in rows if prod(r)["alert"]]
        tp = sum(events[r["transaction_id"]]["is_fraud"] for r in alerts)
        frauds = sum(e["is_fraud"] for e in window_events)
        if alerts and frauds:
            for k, truth in (("precision", tp / len(alerts)), ("recall", tp / frauds)):
                i = rep[k]
                coverage[source][k].append(i["lower"] <= truth <= i["upper"])
                pairs[source][k].append((i["value"], truth, i["upper"] - i["lower"]))
            if source == "training":
                abs_error["calibrated"].append(abs(rep["precision"]["value"] - tp / len(alerts)))
                abs_error["raw"].append(abs(raw_precision - tp / len(alerts)))

    # --- Cohorts: every retained transaction of an event-time window, with the labels whose
    # time is before the window's end + maturity + lateness (the label that reaches it closes
    # the cohort before it joins); unlabelled then is legitimate. Truth: the generator's.
    lateness = s["lateness_seconds"] * 1000
    first_label = {}
    for l in labels:
        first_label.setdefault(l["transaction_id"], l)
    estimated_at = {ms(r["window_start"]): r for r in estimated}
    cohort_reports = [r for r in reports if r["kind"] == "cohort" and r["role"] == "production"]
    assert len(cohort_reports) == len(by_window), f"{len(cohort_reports)} cohort reports for {len(by_window)} event-time windows"
    cohort_truth, cohort_settled = 0, 0
    report_index = {id(r): i for i, r in enumerate(reports)}
    for rep in cohort_reports:
        start = ms(rep["window_start"])
        rows = by_window[start]
        due = start + W_est + maturity + lateness
        ys, n_labelled = [], 0
        for r in rows:
            l = first_label.get(r["transaction_id"])
            if l is not None and ms(l["label_time"]) < due:
                n_labelled += 1
                ys.append(int(l["label"]))
            else:
                ys.append(0)
        p = np.array([prod(r)["score"] for r in rows]); a = np.array([prod(r)["alert"] for r in rows]); w = np.array([r["weight"] for r in rows]); y = np.array(ys)
        what = f"cohort {rep['window_start']}"
        assert rep["transactions"] == len(rows) and rep["alerts"] == int(a.sum()), f"{what}: {rep['transactions']}/{rep['alerts']} vs {len(rows)}/{int(a.sum())}"
        assert rep["cohort"]["labelled"] == n_labelled, f"{what}: {rep['cohort']['labelled']} labelled vs {n_labelled}"
        tp = int((a & (y == 1)).sum())
        assert rep["precision"]["value"] == (tp / a.sum() if a.sum() else None), f"{what}: precision {rep['precision']} vs {tp}/{a.sum()}"
        pos = w[y == 1].sum()
        dev["cohort_recall"] = max(dev["cohort_recall"], close(rep["recall"]["value"], (w[(y == 1) & a].sum() / pos) if pos > 0 else None, 1e-9, f"{what} recall"))
        auc = roc_auc_score(y, p, sample_weight=w) if 0 < y.sum() < len(y) else None
        dev["cohort_roc_auc"] = max(dev["cohort_roc_auc"], close(rep["roc_auc"]["value"], auc, 1e-9, f"{what} roc_auc"))
        dev["cohort_brier"] = max(dev["cohort_brier"], close(rep["brier"], brier_score_loss(y, p, sample_weight=w), 1e-9, f"{what} brier"))
        # Matured: every fraud among the alerts is labelled by then, so precision is the truth.
        truth = sum(events[r["transaction_id"]]["is_fraud"] for r in rows if prod(r)["alert"])
        if a.sum():
            assert tp == truth, f"{what}: {tp} labelled frauds among the alerts, {truth} in truth"
            cohort_truth += 1
        # It settles the estimate published for the same window.
        # It settles the estimate published for the same window before it closed; a window
        # still open then (the stream's last, closed only by the idle timer) has none.
        est = estimated_at.get(start)
        if est is not None and report_index[id(est)] < report_index[id(rep)]:
            assert rep["cohort"]["estimated"] is not None, f"{what}: estimated before it closed, but carries no estimate"
            for k in ("precision", "recall", "calibration"):
                assert rep["cohort"]["estimated"][k] == est[k], f"{what}: cohort's estimate {k} {rep['cohort']['estimated'][k]} vs the estimated report's {est[k]}"
            cohort_settled += 1
        else:
            assert rep["cohort"]["estimated"] is None, f"{what}: carries an estimate no estimated report published before it"
    assert cohort_settled >= len(cohort_reports) - 1, f"only {cohort_settled} of {len(cohort_reports)} cohorts settle an estimate"

    # --- Concept drift: River's DDM on the same two error streams.
    ddms, seen, detections = {}, defaultdict(int), []
    for lm, stream, e in errors:
        d = ddms.setdefault(stream, DDM(warm_start=s["ddm"]["warm_start"], warning_threshold=s["ddm"]["warning_threshold"], drift_threshold=s["ddm"]["drift_threshold"]))
        d.update(e)
        seen[stream] += 1
        if d.drift_detected:
            detections.append({"label_ms": lm, "stream": stream, "labels_seen": seen[stream]})
            seen[stream] = 0
    engine = [{"label_ms": ms(r["concept"]["detected_at"]), "stream": r["concept"]["stream"], "labels_seen": r["concept"]["labels_seen"]} for r in retrain]
    assert engine == detections, f"concept drift: engine {engine} vs River {detections}"

    onset = s.get("onset_ms")
    first_after = None
    if onset is not None and detections:
        after = [x for x in detections if x["label_ms"] >= onset]
        if after:
            first_after = after[0]
    post_onset_labels = None
    if first_after is not None:
        post_onset_labels = sum(1 for c in calib if c[0] >= onset and c[1] <= first_after["label_ms"] and c[1] >= first_event + maturity)
    print(json.dumps({
        "realised_windows": len(realised),
        "estimated_windows": len(estimated),
        "calibrated_windows": calibrated,
        "max_deviation": dev,
        "training_windows": training_windows,
        # Matured-label calibration (as before), and the artifact's until then.
        "coverage": {k: (sum(v) / len(v) if v else None) for k, v in coverage["matured"].items()},
        "coverage_windows": len(coverage["matured"]["precision"]),
        "mean_estimate_truth_width": {k: [float(np.mean([p[j] for p in v])) if v else None for j in range(3)] for k, v in pairs["matured"].items()},
        "coverage_training": {k: (sum(v) / len(v) if v else None) for k, v in coverage["training"].items()},
        "coverage_training_windows": len(coverage["training"]["precision"]),
        # What the artifact's calibration buys before labels mature: the mean |estimate - truth|
        # of precision with it and with the raw probabilities, over the same windows.
        "precision_abs_error_training": {k: (float(np.mean(v)) if v else None) for k, v in abs_error.items()},
        "mean_estimate_truth_width_training": {k: [float(np.mean([p[j] for p in v])) if v else None for j in range(3)] for k, v in pairs["training"].items()},
        "detections": detections,
        "false_alarms_before_onset": sum(1 for x in detections if onset is None or x["label_ms"] < onset),
        "first_detection_after_onset": first_after,
        "post_onset_labels_before_detection": post_onset_labels,
        "detection_delay_seconds": (first_after["label_ms"] - onset) / 1000 if first_after else None,
        "matched_labels": len(labelled),
        "error_streams": {st: {"n": sum(1 for e in errors if e[1] == st), "rate": float(np.mean([e[2] for e in errors if e[1] == st])) if any(e[1] == st for e in errors) else None,
                               "n_after_onset_label": sum(1 for e in errors if e[1] == st and onset is not None and e[0] >= onset)} for st in ("missed_fraud", "false_alert")},
        "retained": len(retained),
        "cohort_windows": len(cohort_reports),
        "cohort_windows_exact_truth": cohort_truth,
        "cohort_windows_settled": cohort_settled,
        "changelog_labelled": sum(1 for r in retained.values() if "label" in r),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
