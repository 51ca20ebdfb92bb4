"""The Python anchor of benches/engine_throughput.rs: what a team writes instead of driftwatch.

A confluent-kafka consumer with the engine's own librdkafka settings, doing the engine's work
per event the way a Python service does it: `json.loads`, the required fields checked, the
demo artifact's preprocessing (imputation, standardisation, one-hot over the top levels), the
logistic score, the distance to the nearest k-means centroid with numpy, an alert produced to
Kafka for scores over the threshold or outliers, 5 % of events sampled by a hash of their id
into per-minute windows, and each window compared with the training reference (PSI over the
reference bins with numpy, a chi-square test with scipy) when it closes.

Run by the bench (`BENCH_ROLE=python`); reads its settings from the environment and prints
`seconds bytes peak_rss_kib cpu_seconds alerts` (seconds from the first message to the last).
"""

import json
import math
import os
import resource
import sys
import time
import zlib
from datetime import datetime

import numpy as np
from confluent_kafka import Consumer, Producer
from scipy import stats


def main() -> None:
    topic, n = os.environ["BENCH_TOPIC"], int(os.environ["BENCH_N"])
    settings = json.loads(os.environ["BENCH_CONSUMER_CONFIG"])
    artifact = json.load(open(os.environ["BENCH_MODEL"]))
    threshold = artifact["decision"]["threshold"]
    columns = artifact["columns"]
    numeric = artifact["features"]["numeric"]
    categorical = artifact["features"]["categorical"]
    coef = artifact["logistic"]["coefficients"]
    intercept = artifact["logistic"]["intercept"] + artifact["logistic"]["prior_correction"]
    centroids = np.array(artifact["outlier"]["centroids"])
    outlier_threshold = artifact["outlier"]["threshold"]
    width = len(artifact["design_columns"])
    # Design layout: numerics, their missing indicators, then per categorical its levels, other, missing.
    offsets, at = [], len(numeric) + sum(1 for f in numeric if f["missing_indicator"])
    for f in categorical:
        offsets.append(at)
        at += len(f["levels"]) + 2
    assert at == width, (at, width)
    levels = [{v: j for j, v in enumerate(f["levels"])} for f in categorical]
    reference = {f["name"]: f for f in artifact["reference"]["numeric"]}

    consumer = Consumer({**settings, "enable.auto.commit": True})
    producer = Producer({"bootstrap.servers": settings["bootstrap.servers"], "linger.ms": 5})
    consumer.subscribe([topic])
    alerts_topic = topic + "-python-alerts"
    seen, size, alerts, first = 0, 0, 0, None
    window, samples = None, {f["name"]: [] for f in numeric}
    x = np.zeros(width)

    def close(samples: dict) -> None:
        for name, values in samples.items():
            ref = reference[name]
            expected = np.array(ref["counts"], dtype=float)
            observed = np.bincount(np.searchsorted(ref["edges"], values, side="right"), minlength=len(expected)).astype(float)
            p = (observed + 0.5) / (observed.sum() + 0.5 * len(observed))
            q = (expected + 0.5) / (expected.sum() + 0.5 * len(expected))
            psi = float(np.sum((p - q) * np.log(p / q)))
            if observed.sum() > 0:
                stats.chisquare(observed, q * observed.sum())
            values.clear()
            assert math.isfinite(psi)

    while seen < n:
        m = consumer.poll(0.1)
        if m is None or m.error():
            continue
        if first is None:
            first = time.monotonic()
        seen += 1
        payload = m.value()
        size += len(payload)
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(event, dict) or any(event.get(columns[c]) is None for c in ("id", "key", "timestamp")):
            continue
        event_time = datetime.fromisoformat(event[columns["timestamp"]])
        x[:] = 0.0
        logit = intercept
        for i, f in enumerate(numeric):
            v = event.get(f["name"])
            if v is None:
                v = f["fill_value"]
            z = (float(v) - f["mean"]) / f["std"]
            x[i] = z
            logit += coef[i] * z
        for i, f in enumerate(categorical):
            v = event.get(f["name"])
            j = len(f["levels"]) + 1 if v is None else levels[i].get(str(v), len(f["levels"]))
            x[offsets[i] + j] = 1.0
            logit += coef[offsets[i] + j]
        probability = 1.0 / (1.0 + math.exp(-logit))
        distance = math.sqrt(max(float(np.min(np.sum((centroids - x) ** 2, axis=1))), 0.0))
        if probability >= threshold or distance >= outlier_threshold:
            alerts += 1
            alert = {"transaction_id": event[columns["id"]], "account_id": event[columns["key"]], "score": probability, "outlier_score": distance, "event_time": event[columns["timestamp"]]}
            producer.produce(alerts_topic, json.dumps(alert).encode(), key=str(event[columns["key"]]).encode())
            producer.poll(0)
        minute = int(event_time.timestamp()) // 60
        if window is not None and minute > window:
            close(samples)
        window = minute if window is None else max(window, minute)
        if zlib.crc32(event[columns["id"]].encode()) % 100 < 5:
            for f in numeric:
                v = event.get(f["name"])
                if v is not None:
                    samples[f["name"]].append(float(v))
    close(samples)
    seconds = time.monotonic() - first
    producer.flush(30)
    consumer.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(seconds, size, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, alerts)


if __name__ == "__main__":
    sys.exit(main())
