"""Models trained elsewhere: scikit-learn, LightGBM and XGBoost, exported to ONNX by the standard
converters, imported with `driftwatch import` and scored by driftwatch's native evaluator.

Oracles: onnxruntime on the same ONNX file (scores within 1e-5, rows with missing values and
unseen categories included), the Python model's own `predict_proba` (ROC AUC within 0.001), and
the libraries' own per-feature contributions: LightGBM `pred_contrib=True`, XGBoost
`pred_contribs=True` (within 1e-5 on rows whose ONNX and native raw scores agree), and, for the
linear pipeline, coefficient x transformed value from scikit-learn's own transform.
"""
import json
import math
import pathlib

import jsonschema

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUM = ["amount", "avg_amount_30d", "distance_from_home_km", "hour_local", "txn_count_24h", "account_age_days"]
CAT = ["merchant_category", "country", "channel"]
LABEL = "is_fraud"


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _frame(rows):
    df = pd.DataFrame(rows)
    X = pd.DataFrame({c: pd.to_numeric(df[c], errors="coerce").astype(np.float32) for c in NUM})
    for c in CAT:
        # A missing category reaches the model as the empty string (README: "Bring your own model").
        X[c] = df[c].where(df[c].notna(), "").astype(str)
    return X, df[LABEL].astype(int).to_numpy()


@pytest.fixture(scope="module")
def data(driftwatch, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    train, held = d / "train.jsonl", d / "held.jsonl"
    driftwatch("generate", "--rows", 30000, "--seed", 21, "--output", train)
    driftwatch("generate", "--rows", 6000, "--seed", 22, "--output", held)
    rows = _rows(held)
    rng = np.random.default_rng(5)
    for r in rows:
        # Missing values and categories never seen in training, in every column.
        for c in NUM:
            if rng.random() < 0.03:
                r[c] = None
        for c in CAT:
            u = rng.random()
            if u < 0.03:
                r[c] = None
            elif u < 0.06:
                r[c] = f"unseen-{c}-{int(rng.integers(0, 9))}"
    with open(held, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return d, train, held, rows


SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "schemas"


def _score(driftwatch, artifact, held):
    # The imported artifact and the score lines are what the schemas say (a real validator).
    jsonschema.validate(json.loads(pathlib.Path(artifact).read_text()), json.loads((SCHEMAS / "pipeline.schema.json").read_text()))
    out = driftwatch("score", "--model", artifact, "--input", held, "--contributions").stdout.decode().splitlines()
    lines = [json.loads(l) for l in out]
    assert all("error" not in l for l in lines), [l for l in lines if "error" in l][:3]
    line_schema = json.loads((SCHEMAS / "score-line.schema.json").read_text())
    for l in lines[:200]:
        jsonschema.validate(l, line_schema)
    # The registry takes it like any artifact.
    registry = pathlib.Path(artifact).parent / f"registry-{pathlib.Path(artifact).stem}"
    version = json.loads(pathlib.Path(artifact).read_text())["model"]["version"]
    driftwatch("model", "register", "--registry", registry, str(artifact))
    driftwatch("model", "promote", "--registry", registry, version)
    assert version in driftwatch("model", "list", "--registry", registry).stdout.decode()
    return lines


def _ort_positive(onx_path, feeds):
    sess = ort.InferenceSession(str(onx_path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    probs = outs[names.index(next(n for n in names if "prob" in n))]
    if isinstance(probs, list):  # ZipMap: a list of {label: probability}
        return np.array([p[1] for p in probs], dtype=np.float64)
    return np.asarray(probs, dtype=np.float64)[:, 1]


REPORT = {}


def _record(kind, **figures):
    REPORT[kind] = figures
    print(f"PARITY {kind}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _sklearn_case(driftwatch, data, kind):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    d, train, held, held_rows = data
    Xtr, ytr = _frame(_rows(train))
    Xte, yte = _frame(held_rows)
    pre = ColumnTransformer([
        ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]), NUM),
        ("cat", Pipeline([("imp", SimpleImputer(missing_values="", strategy="constant", fill_value="missing")),
                          ("oh", OneHotEncoder(handle_unknown="ignore"))]), CAT),
    ])
    clf = LogisticRegression(max_iter=3000) if kind == "sklearn_logistic" else RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0, n_jobs=1)
    model = Pipeline([("pre", pre), ("clf", clf)]).fit(Xtr, ytr)
    types = [(c, FloatTensorType([None, 1])) for c in NUM] + [(c, StringTensorType([None, 1])) for c in CAT]
    onx = convert_sklearn(model, initial_types=types, target_opset={"": 17, "ai.onnx.ml": 3})
    path = d / f"{kind}.onnx"
    path.write_bytes(onx.SerializeToString())
    artifact = d / f"{kind}.json"
    driftwatch("import", "--onnx", path, "--data", train, "--label", LABEL, "--out", artifact)
    lines = _score(driftwatch, artifact, held)
    ours = np.array([l["score"] for l in lines])
    feeds = {c: Xte[c].to_numpy(np.float32).reshape(-1, 1) for c in NUM}
    feeds.update({c: Xte[c].to_numpy(object).reshape(-1, 1) for c in CAT})
    theirs = _ort_positive(path, feeds)
    python = model.predict_proba(Xte)[:, 1]
    return model, lines, ours, theirs, python, yte, Xte


@pytest.mark.parametrize("kind", ["sklearn_logistic", "sklearn_forest"])
def test_sklearn_pipeline_matches_onnxruntime(driftwatch, data, kind):
    model, lines, ours, theirs, python, y, Xte = _sklearn_case(driftwatch, data, kind)
    held_rows = data[3]
    missing = np.array([any(r[c] is None for c in NUM + CAT) for r in held_rows])
    unseen = np.array([any(isinstance(r[c], str) and r[c].startswith("unseen-") for c in CAT) for r in held_rows])
    assert missing.sum() > 500 and unseen.sum() > 500
    d_score = np.abs(ours - theirs)
    auc_ours, auc_python = roc_auc_score(y, ours), roc_auc_score(y, python)
    figures = dict(rows=len(ours), max_abs_diff_vs_onnxruntime=f"{d_score.max():.2e}",
                   max_diff_missing=f"{d_score[missing].max():.2e}", max_diff_unseen=f"{d_score[unseen].max():.2e}",
                   auc_driftwatch=f"{auc_ours:.5f}", auc_python=f"{auc_python:.5f}")
    if kind == "sklearn_logistic":
        # Contributions: coefficient x transformed value, summed over each input's columns.
        pre, clf = model.named_steps["pre"], model.named_steps["clf"]
        t = pre.transform(Xte)
        t = t.toarray() if hasattr(t, "toarray") else np.asarray(t)
        names = pre.get_feature_names_out()
        per_col = t * clf.coef_[0]
        worst = 0.0
        for field in NUM + CAT:
            cols = [i for i, n in enumerate(names) if n == f"num__{field}" or n.startswith(f"cat__{field}_")]
            expected = per_col[:, cols].sum(axis=1)
            got = np.array([l["contributions"][field] for l in lines])
            worst = max(worst, float(np.abs(got - expected).max()))
        figures["max_abs_diff_contribution"] = f"{worst:.2e}"
        assert worst < 1e-4, f"linear contributions differ from scikit-learn's by {worst}"
    _record(kind, **figures)
    assert d_score.max() < 1e-5, f"{kind}: max |driftwatch - onnxruntime| = {d_score.max()}"
    assert abs(auc_ours - auc_python) < 0.001, f"{kind}: ROC AUC {auc_ours} vs Python model {auc_python}"


def _booster_case(driftwatch, data, kind):
    from onnxmltools.convert.common.data_types import FloatTensorType

    d, train, held, held_rows = data
    Xtr, ytr = _frame(_rows(train))
    Xte, yte = _frame(held_rows)
    A, B = Xtr[NUM].to_numpy(np.float32), Xte[NUM].to_numpy(np.float32)
    if kind == "lightgbm":
        import lightgbm
        from onnxmltools import convert_lightgbm
        model = lightgbm.LGBMClassifier(n_estimators=80, max_depth=6, num_leaves=40, learning_rate=0.1, verbose=-1).fit(A, ytr)
        onx = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, len(NUM)]))], target_opset=15)
        native_raw = model.predict(B, raw_score=True)
        native_contrib = model.predict(B, pred_contrib=True)
        # LightGBM splits in float64; the ONNX file keeps float32 thresholds, so a value equal
        # to a rounded threshold takes the other branch there (a path the raw score may not show).
        splits = []

        def walk(n):
            if "split_index" in n:
                splits.append((n["split_feature"], n["threshold"]))
                walk(n["left_child"])
                walk(n["right_child"])

        for tree in model.booster_.dump_model()["tree_info"]:
            walk(tree["tree_structure"])
        tie = np.zeros(len(B), dtype=bool)
        for f, thr in splits:
            t32 = np.float32(thr)
            if float(t32) != thr:
                tie |= (B[:, f] == t32) & (B[:, f].astype(np.float64) > thr)
    else:
        import xgboost
        from onnxmltools import convert_xgboost
        model = xgboost.XGBClassifier(n_estimators=80, max_depth=6, learning_rate=0.1, n_jobs=1).fit(A, ytr)
        onx = convert_xgboost(model, initial_types=[("input", FloatTensorType([None, len(NUM)]))], target_opset=15)
        booster = model.get_booster()
        dm = xgboost.DMatrix(B)
        native_raw = booster.predict(dm, output_margin=True)
        native_contrib = booster.predict(dm, pred_contribs=True)
        tie = np.zeros(len(B), dtype=bool)  # XGBoost splits in float32, as ONNX does
    path = d / f"{kind}.onnx"
    path.write_bytes(onx.SerializeToString())
    artifact = d / f"{kind}.json"
    driftwatch("import", "--onnx", path, "--data", train, "--label", LABEL, "--out", artifact,
               "--input-fields", "input=" + ",".join(NUM))
    lines = _score(driftwatch, artifact, held)
    theirs = _ort_positive(path, {"input": B})
    python = model.predict_proba(B)[:, 1]
    return lines, theirs, python, yte, native_raw, np.asarray(native_contrib, dtype=np.float64), tie


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_gradient_boosting_matches_onnxruntime_and_its_own_contributions(driftwatch, data, kind):
    lines, theirs, python, y, native_raw, native_contrib, tie = _booster_case(driftwatch, data, kind)
    ours = np.array([l["score"] for l in lines])
    d_score = np.abs(ours - theirs)
    auc_ours, auc_python = roc_auc_score(y, ours), roc_auc_score(y, python)
    # Raw scores: ours is base_value + sum of contributions (TreeSHAP's local accuracy).
    ours_raw = np.array([l["base_value"] + sum(l["contributions"].values()) for l in lines])
    onnx_raw = np.log(theirs) - np.log1p(-theirs)
    # Rows whose ONNX (float32 thresholds) and native (float64) trees take the same paths: ours
    # evaluates the ONNX splits exactly (its scores match onnxruntime's), so compare our raw
    # score, which is not rounded to float32 the way onnxruntime's probability is.
    # LightGBM sums in float64; XGBoost's margin is float32 (80 float32 additions: ~1e-5).
    agree = (np.abs(ours_raw - native_raw) < (1e-6 if kind == "lightgbm" else 3e-5)) & ~tie
    ours_contrib = np.array([[l["contributions"][c] for c in NUM] for l in lines])
    d_contrib = np.abs(ours_contrib[agree] - native_contrib[agree, :len(NUM)])
    d_base = np.abs(np.array([l["base_value"] for l in lines])[agree] - native_contrib[agree, len(NUM)])
    # Reasons on alerts are the largest positive contributions.
    alerts = [l for l in lines if l["is_fraud"]]
    assert alerts, "no alert in the held-out rows"
    for l in alerts:
        top = sorted(((v, k) for k, v in l["contributions"].items() if v > 0), reverse=True)[:3]
        assert [r["feature"] for r in l["reasons"]] == [k for _, k in top]
    _record(kind, rows=len(ours), max_abs_diff_vs_onnxruntime=f"{d_score.max():.2e}",
            rows_where_onnx_and_native_raw_agree=int(agree.sum()), rows_on_a_float32_tie=int(tie.sum()),
            max_abs_diff_contribution=f"{d_contrib.max():.2e}", max_abs_diff_base=f"{d_base.max():.2e}",
            max_raw_diff_vs_onnxruntime=f"{np.abs(ours_raw - onnx_raw).max():.2e}",
            auc_driftwatch=f"{auc_ours:.5f}", auc_python=f"{auc_python:.5f}")
    assert d_score.max() < 1e-5, f"{kind}: max |driftwatch - onnxruntime| = {d_score.max()}"
    assert agree.mean() > 0.95, f"only {agree.mean():.3f} of rows agree between ONNX and {kind}"
    assert d_contrib.max() < 1e-5, f"{kind}: TreeSHAP differs from the library's by {d_contrib.max()}"
    assert abs(auc_ours - auc_python) < 0.001, f"{kind}: ROC AUC {auc_ours} vs Python model {auc_python}"


def test_an_unsupported_operator_is_refused_naming_it(driftwatch, data, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("amount", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([helper.make_node("Erf", ["amount"], ["y"], name="the_erf_node")], "g", [x], [y])
    path = tmp_path / "erf.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    import subprocess
    from conftest import _binary
    proc = subprocess.run([str(_binary()), "import", "--onnx", str(path), "--data", str(data[1]), "--label", LABEL,
                           "--out", str(tmp_path / "a.json")], capture_output=True, text=True)
    assert proc.returncode == 1, proc
    assert "`Erf`" in proc.stderr and "the_erf_node" in proc.stderr, proc.stderr
    assert not (tmp_path / "a.json").exists()


def test_builtin_model_on_the_same_held_out_rows(driftwatch, data):
    """The figure the imported models are compared with in the README: `driftwatch train` on the
    same training file, scored on the same held-out rows (missing values and unseen categories)."""
    d, train, held, held_rows = data
    artifact = d / "builtin.json"
    driftwatch("train", "--data", train, "--label", LABEL, "--out", artifact)
    lines = _score(driftwatch, artifact, held)
    y = np.array([int(r[LABEL]) for r in held_rows])
    auc = roc_auc_score(y, [l["score"] for l in lines])
    # Contributions of the built-in model add up to its log-odds.
    for l in lines[:500]:
        logit = math.log(l["score"]) - math.log1p(-l["score"])
        assert abs(l["base_value"] + sum(l["contributions"].values()) - logit) < 1e-6
    _record("builtin", rows=len(lines), auc_driftwatch=f"{auc:.5f}")
    assert auc > 0.7, f"built-in model ROC AUC {auc}"
