"""The artifact's probability calibration against scikit-learn's IsotonicRegression.

`driftwatch train` (and `import`) fit isotonic regression on the held-out split and store it in
the artifact; the engine's estimated performance uses it until matured labels exist. Here:
- the held-out rows `--holdout-out` lists are what the pipeline scores (checked with
  `driftwatch score` on those rows of the data file) and carry the file's labels;
- scikit-learn's `IsotonicRegression(out_of_bounds="clip")` fitted on them predicts what the
  artifact's blocks predict (scikit-learn's interpolation: constant in a block, linear between);
- on a separate file, the calibrated probabilities are closer to the observed fraud rate among
  alerts than the raw ones (the figure the README's *Model performance* section quotes).
"""
import json
import pathlib

import numpy as np
from sklearn.isotonic import IsotonicRegression

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIELDS = "input=amount,avg_amount_30d,distance_from_home_km,hour_local,txn_count_24h,account_age_days"


def _lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def _points(blocks):
    """The artifact's blocks as scikit-learn's (X_thresholds_, y_thresholds_) before trimming."""
    xs, ys = [], []
    for b in blocks:
        rate = b["positives"] / b["rows"]
        xs += [b["from"], b["to"]] if b["to"] > b["from"] else [b["from"]]
        ys += [rate, rate] if b["to"] > b["from"] else [rate]
    return np.array(xs), np.array(ys)


def _score(driftwatch, model, rows, tmp_path, name):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = [json.loads(l) for l in driftwatch("score", "--model", model, "--input", path).stdout.splitlines()]
    assert len(out) == len(rows) and all("error" not in o for o in out)
    return np.array([o["score"] for o in out])


def _check_against_sklearn(driftwatch, model, data, holdout, tmp_path):
    artifact = json.loads(model.read_text())
    c = artifact["calibration"]
    rows = _lines(data)
    held = _lines(holdout)
    assert len(held) == artifact["training"]["holdout_rows"] == c["rows"]
    # The listed rows are the file's rows, scored as the pipeline scores them.
    picked = [rows[h["row"]] for h in held]
    assert [int(r["is_fraud"]) for r in picked] == [h["label"] for h in held]
    p = np.array([h["score"] for h in held])
    y = np.array([h["label"] for h in held])
    assert sum(y) == c["positives"]
    np.testing.assert_allclose(_score(driftwatch, model, picked, tmp_path, "held.jsonl"), p, rtol=0, atol=1e-12)

    iso = IsotonicRegression(out_of_bounds="clip").fit(p, y)
    xs, ys = _points(c["blocks"])
    grid = np.concatenate([np.linspace(0, 1, 2001), p, [p.min() - 1e-3, p.max() + 1e-3]])
    np.testing.assert_allclose(np.interp(grid, xs, ys), iso.predict(grid), rtol=0, atol=1e-12)
    return artifact, xs, ys


def test_train_calibration_equals_sklearn_isotonic_and_corrects_the_top_scores(driftwatch, tmp_path):
    train, test, model, holdout = tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "model.json", tmp_path / "holdout.jsonl"
    driftwatch("generate", "--rows", 50000, "--seed", 1, "--output", train)
    driftwatch("generate", "--rows", 100000, "--seed", 31, "--output", test)
    driftwatch("train", "--data", train, "--label", "is_fraud", "--out", model, "--holdout-out", holdout)
    artifact, xs, ys = _check_against_sklearn(driftwatch, model, train, holdout, tmp_path)

    # On data it was not fitted on: the fraud rate among alerts, the mean raw probability and
    # the mean calibrated probability there.
    test_rows = _lines(test)
    raw = _score(driftwatch, model, test_rows, tmp_path, "test-scored.jsonl")
    y = np.array([int(r["is_fraud"]) for r in test_rows])
    alert = raw >= artifact["decision"]["threshold"]
    truth, mean_raw, mean_cal = y[alert].mean(), raw[alert].mean(), np.interp(raw[alert], xs, ys).mean()
    print(f"alerts {alert.sum()}: fraud rate {truth:.4f}, mean raw probability {mean_raw:.4f}, mean calibrated {mean_cal:.4f}")
    assert abs(mean_cal - truth) < abs(mean_raw - truth), (truth, mean_raw, mean_cal)
    # `--calibration none` leaves the section out.
    none = tmp_path / "none.json"
    driftwatch("train", "--data", train, "--label", "is_fraud", "--out", none, "--calibration", "none")
    assert "calibration" not in json.loads(none.read_text())


def test_an_imported_model_is_calibrated_on_its_held_out_split_too(driftwatch, tmp_path):
    data, model, holdout = tmp_path / "train.jsonl", tmp_path / "lgbm.json", tmp_path / "holdout.jsonl"
    driftwatch("generate", "--rows", 20000, "--seed", 3, "--output", data)
    driftwatch("import", "--onnx", ROOT / "tests/fixtures/lightgbm-small.onnx", "--data", data, "--label", "is_fraud",
               "--out", model, "--input-fields", FIELDS, "--holdout-out", holdout)
    _check_against_sklearn(driftwatch, model, data, holdout, tmp_path)
