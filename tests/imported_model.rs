//! A model trained elsewhere, served by the engine on the real broker: the LightGBM fixture
//! (`tests/fixtures/lightgbm-small.onnx`, exported by onnxmltools; `make_onnx.py` regenerates
//! it) is imported with `driftwatch import`, and the engine's alerts and their TreeSHAP reasons
//! are compared with `driftwatch score --contributions` on the same events (the offline oracle;
//! its scores are checked against onnxruntime in `tests/python/test_onnx_import.py`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const FIELDS: &str = "input=amount,avg_amount_30d,distance_from_home_km,hour_local,txn_count_24h,account_age_days";

fn driftwatch(args: &[&str]) -> std::process::Output {
    driftwatch_ok(args, &[])
}

fn import(dir: &Path) -> PathBuf {
    let data = dir.join("train.jsonl");
    let artifact = dir.join("lightgbm.json");
    driftwatch(&["generate", "--rows", "20000", "--seed", "3", "-o", data.to_str().unwrap()]);
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lightgbm-small.onnx");
    driftwatch(&[
        "import", "--onnx", onnx.to_str().unwrap(), "--data", data.to_str().unwrap(), "--label", "is_fraud",
        "--out", artifact.to_str().unwrap(), "--input-fields", FIELDS, "--target-alert-rate", "0.05",
    ]);
    artifact
}

/// `score --contributions` per event: transaction id → (alerts?, reasons as (feature, contribution)).
fn offline(model: &Path, events: &[Vec<u8>]) -> BTreeMap<String, (bool, Vec<(String, f64)>)> {
    score_cli(model, &["--contributions"], events)
        .into_iter()
        .map(|v| {
            // Reasons: the three largest positive contributions, from the full set.
            let mut c: Vec<(String, f64)> = v["contributions"].as_object().unwrap().iter().map(|(k, x)| (k.clone(), x.as_f64().unwrap())).filter(|(_, x)| *x > 0.0).collect();
            c.sort_by(|a, b| b.1.total_cmp(&a.1));
            c.truncate(3);
            (v["transaction_id"].as_str().unwrap().to_string(), (v["is_fraud"].as_bool().unwrap(), c))
        })
        .collect()
}

#[test]
fn the_engine_serves_an_imported_lightgbm_model_with_the_offline_alerts_and_treeshap_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = import(dir.path());
    let t = Topics::new(3);
    let events = generated(6_000, 4242);
    let expected = offline(&artifact, &events);
    let n_fraud = expected.values().filter(|(f, _)| *f).count();
    assert!(n_fraud > 100, "the fixture should alert on some events ({n_fraud})");

    let model = artifact.display().to_string();
    let engine = start_engine_with_env(&t, "", &[("DRIFTWATCH_MODEL__PATH", model.as_str())]);
    produce(&t.transactions, &events);
    engine.wait_for("every event scored", Duration::from_secs(90), |m| metric(m, "driftwatch_events_scored_total{}") >= 6_000.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("Model loaded.") && log.contains(&model), "the engine loaded the imported artifact:\n{log}");

    let alerts = consume_all(&t.alerts, n_fraud, Duration::from_secs(30));
    let mut fraud_alerts = 0;
    for a in &alerts {
        let v: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
        let id = v["transaction_id"].as_str().unwrap();
        let (is_fraud, reasons) = &expected[id];
        if !v["is_fraud"].as_bool().unwrap() {
            continue; // an outlier alert: the outlier detector is the built-in one
        }
        fraud_alerts += 1;
        assert!(is_fraud, "{id}: the engine alerted, the offline scorer did not");
        let got: Vec<(String, f64)> = v["reasons"].as_array().unwrap().iter().map(|r| (r["feature"].as_str().unwrap().to_string(), r["contribution"].as_f64().unwrap())).collect();
        assert_eq!(got.len(), reasons.len(), "{id}: reasons {got:?} vs {reasons:?}");
        for ((gf, gc), (wf, wc)) in got.iter().zip(reasons) {
            assert_eq!(gf, wf, "{id}: reasons {got:?} vs {reasons:?}");
            assert!((gc - wc).abs() < 1e-9, "{id}: {gf} contribution {gc} vs {wc}");
        }
    }
    assert_eq!(fraud_alerts, n_fraud, "every event the offline scorer flags as fraud is alerted once");
}
