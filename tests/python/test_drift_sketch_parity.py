"""Streaming KS and Wasserstein against scipy on the same windows.

`driftwatch drift --model … --window-minutes … --sample 1` replays a file through the engine's
windows; each window's KS D and Wasserstein-1 come from KLL sketches and the model's stored
reference. Every one must equal scipy's `ks_2samp` / `wasserstein_distance` on the window's raw
values against the raw training data within the error bound the report states, for continuous
(amount, distance), discrete (txn_count_24h, hour_local) and binary (is_new_device) features.
"""
import json
import pathlib

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

ROOT = pathlib.Path(__file__).resolve().parents[2]


def rfc3339_ms(s):
    from datetime import datetime
    return int(round(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000))


def test_streaming_ks_and_wasserstein_equal_scipy_within_their_bounds(driftwatch, tmp_path):
    stream = tmp_path / "stream.jsonl"
    # Seed 1's first 50,000 rows are the demo model's training data; the next 36,000, at 20
    # events per second, fill three 10-minute windows of 12,000 events.
    driftwatch("generate", "--rows", 86000, "--seed", 1, "--rate", 20, "--output", stream)
    lines = stream.read_text().splitlines()
    training = [json.loads(l) for l in lines[:50000]]
    current = tmp_path / "current.jsonl"
    current.write_text("\n".join(lines[50000:]) + "\n")
    rows = [json.loads(l) for l in lines[50000:]]
    times = np.array([rfc3339_ms(r["event_time"]) for r in rows])
    out = driftwatch("drift", "--model", ROOT / "models/demo.json", "--current", current, "--window-minutes", 10, "--slide-minutes", 10,
                     "--sample", 1, "--lateness-seconds", 0, "--format", "json").stdout.decode()
    windows = [json.loads(l)["report"] for l in out.splitlines()]
    assert len(windows) >= 3
    checked = {}
    for w in windows:
        start, end = rfc3339_ms(w["window_start"]), rfc3339_ms(w["window_end"])
        inside = [r for r, t in zip(rows, times) if start <= t < end]
        assert w["current"]["rows"] == len(inside), w["window_end"]
        for f in w["features"]:
            if f["kind"] != "numeric" or f["ks"] is None:
                continue
            name = f["name"]
            vals = lambda rs: np.array([float(r[name]) for r in rs if r.get(name) is not None])
            cur, ref = vals(inside), vals(training)
            d = ks_2samp(cur, ref).statistic
            bound = f["ks"]["rank_error"]
            assert abs(f["ks"]["statistic"] - d) <= bound + 1e-9, f"{name} {w['window_end']}: D {f['ks']['statistic']} vs scipy {d} (bound {bound})"
            wd = wasserstein_distance(cur, ref)
            wbound = f["wasserstein"]["error_bound"]
            assert abs(f["wasserstein"]["distance"] - wd) <= wbound + 1e-9 * max(1.0, wd), f"{name}: W {f['wasserstein']['distance']} vs scipy {wd} (bound {wbound})"
            checked.setdefault(name, []).append((abs(f["ks"]["statistic"] - d), bound))
    assert {"amount", "distance_from_home_km", "txn_count_24h", "hour_local", "is_new_device"} <= set(checked), checked.keys()
    # Discrete and binary features carry their exact support: only the sketch's error remains,
    # and D is then far inside it (the step at each value is compared on the same side).
    for name in ("is_new_device", "hour_local", "txn_count_24h"):
        for err, bound in checked[name]:
            assert bound < 0.02 and err < bound, f"{name}: error {err}, bound {bound}"
