//! The engine against a real Apache Kafka broker (started by `scripts/test`), run as the real
//! `driftwatch run` process. Every test uses fresh random topic and group names.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};

/// What `driftwatch score` decides for these events: (alert ids, fraud count, outlier count).
fn expected_from_score_cli(events: &[Vec<u8>]) -> (BTreeSet<String>, usize, usize) {
    let (mut ids, mut fraud, mut outliers) = (BTreeSet::new(), 0, 0);
    for v in score_cli(&demo_model(), &[], events) {
        let (f, o) = (v["is_fraud"].as_bool().unwrap(), v["is_outlier"].as_bool().unwrap());
        fraud += usize::from(f);
        outliers += usize::from(o);
        if f || o {
            ids.insert(v["transaction_id"].as_str().unwrap().to_string());
        }
    }
    (ids, fraud, outliers)
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    jsonschema::validator_for(&serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()).unwrap()
}

fn alert_ids(alerts: &[Received]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| serde_json::from_slice::<serde_json::Value>(&a.payload).unwrap()["transaction_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_valid_event_is_scored_and_every_malformed_one_is_dead_lettered() {
    let t = Topics::new(3);
    let valid = generated(4000, 123);
    let tx = |extra: &str| format!(r#"{{"transaction_id":"bad-{}","account_id":"acct-1","event_time":"2026-01-05T00:00:00Z"{extra}}}"#, extra.len());
    let oversized = format!(r#"{{"transaction_id":"big","account_id":"a","event_time":"2026-01-05T00:00:00Z","pad":"{}"}}"#, "x".repeat(3000));
    let malformed: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not_json"),
        (b"[1,2,3]".to_vec(), "not_object"),
        (tx(r#","amount":"12.50""#).into_bytes(), "wrong_type"),
        (tx(r#","amount":{"value":1}"#).into_bytes(), "wrong_type"),
        (br#"{"transaction_id":"m1","event_time":"2026-01-05T00:00:00Z"}"#.to_vec(), "missing_field"),
        (br#"{"transaction_id":"m2","account_id":"a","event_time":"yesterday"}"#.to_vec(), "bad_timestamp"),
        (oversized.into_bytes(), "oversized"),
        (Vec::new(), "not_json"),
        (vec![0xff, 0xfe, 0x00, 0x7b], "not_json"),
    ];
    let mut all = Vec::new();
    for (i, e) in valid.iter().enumerate() {
        all.push(e.clone());
        if i % 400 == 17 {
            all.push(malformed[(i / 400) % malformed.len()].0.clone());
        }
    }
    let mut expected_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &all {
        if let Some((_, r)) = malformed.iter().find(|(m, _)| m == e) {
            *expected_reasons.entry(r).or_default() += 1;
        }
    }
    // Every kind at least once.
    for (m, r) in &malformed {
        if !all.contains(m) {
            all.push(m.clone());
            *expected_reasons.entry(r).or_default() += 1;
        }
    }
    let n_bad: usize = expected_reasons.values().sum();
    produce(&t.transactions, &all);

    let (expected_ids, expected_fraud, expected_outliers) = expected_from_score_cli(&valid);
    let engine = start_engine(&t, "max_event_bytes = 2048");
    let total = all.len() as f64;
    engine.wait_for("every event consumed", Duration::from_secs(90), |m| metric(m, "driftwatch_events_consumed_total{}") >= total);

    let alerts = consume_all(&t.alerts, expected_ids.len(), Duration::from_secs(60));
    let dead = consume_all(&t.dlq, n_bad, Duration::from_secs(60));

    // Alerts: exactly the decisions of `driftwatch score`, each once, valid against the schema.
    let ids = alert_ids(&alerts);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "no duplicates in a clean run");
    assert_eq!(unique, expected_ids, "alerts differ from `driftwatch score` decisions");
    let alert_schema = schema("fraud-alert.schema.json");
    for a in &alerts {
        let v: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
        let errors: Vec<String> = alert_schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?} in {v}");
        assert_eq!(a.key.as_deref(), Some(v["account_id"].as_str().unwrap().as_bytes()), "alerts are keyed by account");
        assert_eq!(v["model_version"], "demo-1");
        assert_eq!(v["source"]["topic"], t.transactions.as_str());
    }

    // Dead letters: original bytes untouched, with reason and source position in headers.
    assert_eq!(dead.len(), n_bad, "every malformed event is dead-lettered once");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for d in &dead {
        let reason = d.headers.get("dlq.reason").expect("reason header").clone();
        let original = malformed.iter().find(|(m, _)| *m == d.payload).unwrap_or_else(|| panic!("payload changed: {:?}", String::from_utf8_lossy(&d.payload)));
        assert_eq!(reason, original.1, "reason for {:?}", String::from_utf8_lossy(&d.payload));
        assert_eq!(d.headers.get("dlq.source.topic"), Some(&t.transactions));
        assert!(d.headers.get("dlq.source.offset").unwrap().parse::<i64>().is_ok());
        assert!(d.headers.get("dlq.source.partition").unwrap().parse::<i32>().is_ok());
        assert!(!d.headers.get("dlq.error").unwrap().is_empty());
        *reasons.entry(reason).or_default() += 1;
    }
    let expected_reasons: BTreeMap<String, usize> = expected_reasons.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(reasons, expected_reasons);

    // Metrics, parsed by the OpenMetrics parser, match the counts.
    let m = engine.wait_for("deliveries acknowledged", Duration::from_secs(30), |m| {
        metric(m, &format!("driftwatch_messages_produced_total{{topic={}}}", t.alerts)) >= expected_ids.len() as f64
    });
    assert_eq!(metric(&m, "driftwatch_events_consumed_total{}"), total);
    assert_eq!(metric(&m, "driftwatch_events_scored_total{}"), valid.len() as f64);
    assert_eq!(metric(&m, "driftwatch_fraud_alerts_total{}"), expected_fraud as f64);
    assert_eq!(metric(&m, "driftwatch_outliers_total{}"), expected_outliers as f64);
    // One consumed event in 16 is timed (the 1st, 17th, …, of those that decode).
    let latency_count = metric(&m, "driftwatch_score_latency_seconds_count{}");
    let most = (all.len() as f64 / driftwatch::engine::LATENCY_SAMPLE_EVERY as f64).ceil();
    assert!(latency_count >= most - n_bad as f64 && latency_count <= most, "{latency_count} events timed, {most} at most");
    assert!(metric(&m, "driftwatch_end_to_end_latency_seconds_count{}") >= expected_ids.len() as f64);
    for (reason, n) in &reasons {
        assert_eq!(metric(&m, &format!("driftwatch_events_invalid_total{{reason={reason}}}")), *n as f64, "{reason}");
    }
    assert_eq!(metric(&m, &format!("driftwatch_messages_produced_total{{topic={}}}", t.dlq)), n_bad as f64);
    assert_eq!(metric(&m, "driftwatch_model_info{name=card-fraud,version=demo-1}"), 1.0);
    assert_eq!(metric(&m, "driftwatch_ready{}"), 1.0);
    assert_eq!(metric(&m, "driftwatch_producer_errors_total{}"), 0.0);
    let lag = |m: &HashMap<String, f64>| m.iter().filter(|(k, _)| k.starts_with("driftwatch_consumer_lag{")).map(|(_, v)| *v).collect::<Vec<_>>();
    let caught_up = engine.wait_for("consumer lag 0 on every partition", Duration::from_secs(20), |m| {
        let l = lag(m);
        l.len() == 3 && l.iter().all(|&v| v == 0.0)
    });
    assert_eq!(lag(&caught_up).len(), 3, "one lag gauge per partition");
    assert_eq!(engine.get("/readyz").unwrap().0, 200);
    assert_eq!(engine.get("/healthz").unwrap().0, 200);

    // SIGTERM: clean exit with every offset committed.
    let (status, log) = engine.terminate();
    assert!(status.success(), "engine exited with {status}; log:\n{log}");
    assert_eq!(uncommitted(&t.group, &t.transactions), 0, "all offsets committed at shutdown; log:\n{log}");
}

/// A live stream stopped mid-way (SIGKILL or SIGTERM) and finished by a second engine. Returns
/// (alerts expected, alerts delivered, duplicates, the bound on duplicates: alerting events
/// between the committed offsets and the partition ends at the stop, which are all a second
/// engine can read again).
fn restart_run(kill_hard: bool) -> (usize, usize, usize, usize) {
    let t = Topics::new(3);
    let events = generated(60_000, if kill_hard { 321 } else { 322 });
    let (expected_ids, _, _) = expected_from_score_cli(&events);
    // A live stream: 60,000 events over about 6 s, so the stop lands mid-stream.
    let feeder = feed(&t.transactions, std::sync::Arc::new(events.clone()), 1_000, Duration::from_millis(100));

    let first = start_engine(&t, "batch_size = 500");
    first.wait_for("part of the stream consumed", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= 8000.0);
    let log = if kill_hard {
        first.kill()
    } else {
        let (status, log) = first.terminate();
        assert!(status.success(), "{log}");
        log
    };
    assert!(!feeder.is_finished(), "stopped while events were still arriving");
    let (committed, ends) = (committed_offsets(&t.group, &t.transactions, 3), end_offsets(&t.transactions, 3));
    assert!(committed.iter().zip(&ends).any(|(c, e)| c.1 < e.1), "stopped mid-stream, as intended; log:\n{log}");

    let second = start_engine(&t, "batch_size = 500");
    feeder.join().unwrap();
    // Exactly 0: a committed offset past the end would mean skipped events.
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(90), &second);
    let (status, log) = second.terminate();
    assert!(status.success(), "{log}");

    let alerts = consume_all(&t.alerts, expected_ids.len(), Duration::from_secs(60));
    let ids = alert_ids(&alerts);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = expected_ids.difference(&unique).collect();
    assert!(missing.is_empty(), "{} alerts lost across the restart (kill_hard={kill_hard}): {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(unique.is_subset(&expected_ids), "alerts that `driftwatch score` would not raise");
    // The bound: alerting events in [committed, end) at the stop, per partition.
    let source = consume_all(&t.transactions, events.len(), Duration::from_secs(60));
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rereadable = 0;
    for m in &source {
        let offset = offsets.entry(m.partition).or_default();
        let id = serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["transaction_id"].as_str().unwrap().to_string();
        if expected_ids.contains(&id) && committed[&m.partition] <= *offset && *offset < ends[&m.partition] {
            rereadable += 1;
        }
        *offset += 1;
    }
    (expected_ids.len(), ids.len(), ids.len() - unique.len(), rereadable)
}

#[test]
fn a_crash_mid_stream_loses_nothing_and_duplicates_are_counted() {
    let (expected, delivered, duplicates, bound) = restart_run(true);
    println!("kill -9 mid-stream: {expected} alerts expected, {delivered} delivered, {duplicates} duplicates (at most {bound} alerting events could be re-read)");
    assert!(duplicates <= bound, "{duplicates} duplicates, more than the {bound} alerting events after the committed offsets");
}

#[test]
fn a_graceful_restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    let (expected, delivered, duplicates, _) = restart_run(false);
    println!("SIGTERM mid-stream: {expected} alerts expected, {delivered} delivered, {duplicates} duplicates");
    assert_eq!(duplicates, 0, "a graceful stop commits everything it produced");
}

fn run_expecting_failure(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "expected failure for:\n{config}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn broken_configuration_missing_model_and_unreachable_broker_fail_with_clear_errors() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let err = run_expecting_failure("[kafka]\nbrokres = \"x\"\n");
    assert!(err.contains("unknown field") && err.contains("brokres"), "{err}");
    let err = run_expecting_failure("[model]\npath = \"/nonexistent/model.json\"\n");
    assert!(err.contains("cannot read model file /nonexistent/model.json"), "{err}");
    let err = run_expecting_failure(&format!("[kafka]\nbrokers = \"127.0.0.1:1\"\n[model]\npath = \"{}\"\n[metrics]\nlisten = \"\"\n", model.display()));
    // The probe names what librdkafka reported, not only that the metadata request failed.
    assert!(err.contains("cannot use Kafka at 127.0.0.1:1") && err.contains("Connection refused"), "{err}");
    let t = Topics {
        transactions: unique("absent"),
        alerts: unique("absent"),
        dlq: unique("absent"),
        group: unique("g"),
        reports: unique("absent"),
        drift_alerts: unique("absent"),
        retrain: unique("absent"),
    };
    let err = run_expecting_failure(&format!(
        "[kafka]\nbrokers = \"{}\"\ntransactions_topic = \"{}\"\nalerts_topic = \"{}\"\ndead_letter_topic = \"{}\"\ncreate_topics = false\n[model]\npath = \"{}\"\n[metrics]\nlisten = \"\"\n",
        brokers(), t.transactions, t.alerts, t.dlq, model.display()
    ));
    assert!(err.contains("do not exist") && err.contains(&t.transactions), "{err}");
}

#[test]
fn drift_reports_status_changes_and_retrain_requests_are_published() {
    let t = Topics::new(3);
    // 40 minutes of event time at 50 tx/s; from minute 20, 15 % of traffic comes from a new country.
    let rows = 120_000u64;
    let cfg = GeneratorConfig { seed: 1, rows, rate_per_sec: 50.0, scenario: driftwatch::generate::Scenario::NewCountry, onset: 0.5, ..Default::default() };
    let events: Vec<Vec<u8>> = Generator::new(cfg).take(rows as usize).skip(50_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    produce(&t.transactions, &events);
    let engine = start_engine(
        &t,
        "[drift]\nsample_fraction = 0.2\nwindow_seconds = 240\nslide_seconds = 120\nlateness_seconds = 120\n[drift.hysteresis]\nretrain_after_windows = 2\nretrain_cooldown = 100",
    );
    let m = engine.wait_for("drift windows closed", Duration::from_secs(90), |m| {
        metric(m, "driftwatch_events_consumed_total{}") >= events.len() as f64 && metric(m, "driftwatch_retrain_requests_total{}") >= 1.0
    });
    assert_eq!(metric(&m, "driftwatch_feature_drift_status{feature=country}"), 2.0, "country shown red");
    assert!(metric(&m, "driftwatch_feature_drift_psi{feature=country}") >= 0.25);
    assert_eq!(m.get("driftwatch_feature_drift_status{feature=hour_local}"), Some(&0.0), "an undrifted feature is reported, and green");
    assert!(metric(&m, "driftwatch_drift_window_samples{}") > 100.0);
    let windows = metric(&m, "driftwatch_drift_windows_closed_total{}") as usize;
    assert!(windows >= 10, "{windows} windows");

    let reports = consume_all(&t.reports, windows, Duration::from_secs(30));
    assert_eq!(reports.len(), windows, "one report per closed window");
    let report_schema = schema("drift-report.schema.json");
    for r in &reports {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let errors: Vec<String> = report_schema.iter_errors(&v).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let changes = consume_all(&t.drift_alerts, 1, Duration::from_secs(30));
    let alert_schema = schema("drift-alert.schema.json");
    let mut to_red = Vec::new();
    for c in &changes {
        let v: serde_json::Value = serde_json::from_slice(&c.payload).unwrap();
        assert!(alert_schema.is_valid(&v), "{v}");
        assert_eq!(c.key.as_deref(), Some(v["feature"].as_str().unwrap().as_bytes()), "keyed by feature");
        if v["to"] == "red" {
            to_red.push(v["feature"].as_str().unwrap().to_string());
        }
    }
    assert!(to_red.contains(&"country".to_string()) && to_red.contains(&"currency".to_string()), "{to_red:?}");
    let requests = consume_all(&t.retrain, 1, Duration::from_secs(30));
    assert_eq!(requests.len(), 1, "one request, then the cool-down");
    let v: serde_json::Value = serde_json::from_slice(&requests[0].payload).unwrap();
    assert!(schema("retrain-request.schema.json").is_valid(&v), "{v}");
    assert!(v["features"].as_array().unwrap().iter().any(|f| f["feature"] == "country"), "{v}");
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(uncommitted(&t.group, &t.transactions), 0);
}

#[test]
fn registry_stage_changes_are_published_to_model_events() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("model-events");
    create_topic(&topic, 1);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(["model", "--registry"])
            .arg(dir.path())
            .args(["--brokers", &brokers(), "--events-topic", &topic, "--by", "ci"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["register", model.to_str().unwrap()]);
    run(&["promote", "demo-1", "--reason", "first release"]);
    let events = consume_all(&topic, 2, Duration::from_secs(30));
    assert_eq!(events.len(), 2);
    let s = schema("model-event.schema.json");
    let parsed: Vec<serde_json::Value> = events.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect();
    for (e, v) in events.iter().zip(&parsed) {
        assert!(s.is_valid(v), "{v}");
        assert_eq!(e.key.as_deref(), Some(&b"card-fraud"[..]));
    }
    assert_eq!((parsed[0]["to"].as_str(), parsed[1]["to"].as_str()), (Some("candidate"), Some("production")));
    assert_eq!(parsed[1]["reason"], "first release");
    assert_eq!(parsed[1]["by"], "ci");
}

/// Runs `driftwatch model --registry REG ARGS…`, failing the test on error.
fn model_cli(reg: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch")).args(["model", "--registry"]).arg(reg).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn promoting_under_load_switches_cleanly_and_a_corrupt_artifact_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    let cli = |args: &[&str]| model_cli(&reg, args);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let v2_path = demo_variant(dir.path(), None, "demo-2", None);
    cli(&["register", demo.to_str().unwrap()]);
    cli(&["register", v2_path.to_str().unwrap()]);
    cli(&["promote", "demo-1"]);

    let t = Topics::new(3);
    let events = generated(40_000, 555);
    let feeder = feed(&t.transactions, std::sync::Arc::new(events.clone()), 1_000, Duration::from_millis(100));
    let reg_text = reg.display().to_string();
    let engine = start_engine_with_env(
        &t,
        "[drift]\nenabled = false",
        &[("DRIFTWATCH_MODEL__REGISTRY", reg_text.as_str()), ("DRIFTWATCH_MODEL__REGISTRY_POLL_MS", "100")],
    );
    engine.wait_for("part of the stream scored by demo-1", Duration::from_secs(60), |m| metric(m, "driftwatch_events_scored_total{}") >= 10_000.0);
    cli(&["promote", "demo-2", "--reason", "under load"]);
    engine.wait_for("demo-2 serving", Duration::from_secs(30), |m| metric(m, "driftwatch_model_info{name=card-fraud,version=demo-2}") == 1.0);

    // A production version whose file is damaged on disk (index edited by hand): refused.
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(reg.join("index.json")).unwrap()).unwrap();
    let mut v3 = index["models"]["card-fraud"]["versions"][1].clone();
    v3["version"] = "demo-3".into();
    v3["file"] = "artifacts/card-fraud/demo-3.json".into();
    v3["stage"] = "production".into();
    index["models"]["card-fraud"]["versions"][1]["stage"] = "archived".into();
    index["models"]["card-fraud"]["versions"].as_array_mut().unwrap().push(v3);
    std::fs::write(reg.join("artifacts/card-fraud/demo-3.json"), b"{\"format_version\": 1, \"truncated").unwrap();
    std::fs::write(reg.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let m = engine.wait_for("the corrupt artifact refused", Duration::from_secs(30), |m| metric(m, "driftwatch_model_reload_failures_total{}") >= 1.0);
    assert_eq!(metric(&m, "driftwatch_model_info{name=card-fraud,version=demo-2}"), 1.0, "the running model stays");

    feeder.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while uncommitted(&t.group, &t.transactions) != 0 {
        assert!(std::time::Instant::now() < deadline, "engine did not finish; log:\n{}", engine.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
    let m = engine.metrics();
    assert_eq!(metric(&m, "driftwatch_events_scored_total{}"), events.len() as f64, "every event scored exactly once");
    assert_eq!(metric(&m, "driftwatch_model_reloads_total{}"), 1.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("Refused the registry's production model"), "{log}");

    let (expected, _, _) = expected_from_score_cli(&events);
    let alerts = consume_all(&t.alerts, expected.len(), Duration::from_secs(30));
    let parsed: Vec<serde_json::Value> = alerts.iter().map(|a| serde_json::from_slice(&a.payload).unwrap()).collect();
    let ids: BTreeSet<&str> = parsed.iter().map(|a| a["transaction_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), parsed.len(), "no event alerted twice");
    assert_eq!(ids.len(), expected.len(), "no alert lost across the swap");
    // Per partition, in offset order, the version switches once: demo-1 … demo-1, demo-2 … demo-2.
    let mut by_partition: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for a in &parsed {
        by_partition.entry(a["source"]["partition"].as_i64().unwrap()).or_default().push((a["source"]["offset"].as_i64().unwrap(), a["model_version"].as_str().unwrap().to_string()));
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (p, mut list) in by_partition {
        list.sort();
        let versions: Vec<&str> = list.iter().map(|(_, v)| v.as_str()).collect();
        let switch = versions.iter().position(|v| *v == "demo-2").unwrap_or(versions.len());
        assert!(versions[..switch].iter().all(|v| *v == "demo-1") && versions[switch..].iter().all(|v| *v == "demo-2"), "partition {p}: {versions:?}");
        seen.extend(versions.iter().map(|v| v.to_string()));
    }
    assert_eq!(seen, BTreeSet::from(["demo-1".to_string(), "demo-2".to_string()]), "both versions alerted");
}

#[test]
fn a_misbehaving_model_is_rolled_back_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    let cli = |args: &[&str]| model_cli(&reg, args);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    // A model that alerts on everything: threshold 0.
    let bad_path = demo_variant(dir.path(), None, "demo-alerts-everything", Some(0.0));
    cli(&["register", demo.to_str().unwrap()]);
    cli(&["register", bad_path.to_str().unwrap()]);
    cli(&["promote", "demo-1"]);

    let t = Topics::new(3);
    // 30,000 events at 100/s of event time: 300 s of windows (20 s long, sliding by 10 s).
    let events: Vec<Vec<u8>> = Generator::new(GeneratorConfig { seed: 1, rows: 80_000, rate_per_sec: 100.0, ..Default::default() })
        .skip(50_000)
        .take(30_000)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    let reg_text = reg.display().to_string();
    let engine = start_engine_with_env(
        &t,
        "[drift]\nsample_fraction = 0.5\nwindow_seconds = 20\nslide_seconds = 10\nlateness_seconds = 5\nmin_samples = 50",
        &[("DRIFTWATCH_MODEL__REGISTRY", reg_text.as_str()), ("DRIFTWATCH_MODEL__REGISTRY_POLL_MS", "100"), ("DRIFTWATCH_MODEL__GUARD_WINDOWS", "3")],
    );
    produce(&t.transactions, &events[..5_000]);
    engine.wait_for("demo-1 scoring", Duration::from_secs(60), |m| metric(m, "driftwatch_events_scored_total{}") >= 5_000.0);
    cli(&["promote", "demo-alerts-everything", "--reason", "deliberately bad"]);
    engine.wait_for("the bad model serving", Duration::from_secs(30), |m| metric(m, "driftwatch_model_info{name=card-fraud,version=demo-alerts-everything}") == 1.0);
    produce(&t.transactions, &events[5_000..]);
    let m = engine.wait_for("the guard's rollback", Duration::from_secs(60), |m| {
        metric(m, "driftwatch_model_rollbacks_total{}") >= 1.0 && metric(m, "driftwatch_model_info{name=card-fraud,version=demo-1}") == 1.0
    });
    assert_eq!(metric(&m, "driftwatch_model_info{name=card-fraud,version=demo-alerts-everything}"), 0.0);
    // One rollback only: the restored version serves the rest of the stream (every event
    // handled and committed) without another.
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(90), &engine);
    assert_eq!(metric(&engine.metrics(), "driftwatch_model_rollbacks_total{}"), 1.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    // The registry records who rolled back and why; the change is on model-events.
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(reg.join("index.json")).unwrap()).unwrap();
    let bad_entry = index["models"]["card-fraud"]["versions"].as_array().unwrap().iter().find(|v| v["version"] == "demo-alerts-everything").unwrap().clone();
    let last = bad_entry["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["to"].as_str(), last["by"].as_str()), (Some("archived"), Some("guard")), "{last}");
    assert!(last["reason"].as_str().unwrap().contains("fraud-alert rate"), "{last}");
    let events = consume_all(&t.retrain.replace("retrain", "model-events"), 2, Duration::from_secs(30));
    let s = schema("model-event.schema.json");
    let parsed: Vec<serde_json::Value> = events.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect();
    assert!(parsed.iter().all(|v| s.is_valid(v)), "{parsed:?}");
    assert!(parsed.iter().any(|v| v["version"] == "demo-1" && v["to"] == "production" && v["by"] == "guard"), "{parsed:?}");
}

#[test]
fn a_candidate_is_shadow_scored_without_touching_production_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    let cli = |args: &[&str]| model_cli(&reg, args);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let path = demo_variant(dir.path(), None, "demo-eager", Some(0.0));
    cli(&["register", demo.to_str().unwrap()]);
    cli(&["promote", "demo-1"]);
    cli(&["register", path.to_str().unwrap()]);

    let t = Topics::new(3);
    let events = generated(2_000, 808);
    let reg_text = reg.display().to_string();
    let engine = start_engine_with_env(
        &t,
        "[drift]\nenabled = false",
        &[("DRIFTWATCH_MODEL__REGISTRY", reg_text.as_str()), ("DRIFTWATCH_MODEL__REGISTRY_POLL_MS", "100"), ("DRIFTWATCH_MODEL__SHADOW_FRACTION", "1.0")],
    );
    // The watcher loads the candidate before the events arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !engine.log_text().contains("Shadow candidate changed.") {
        assert!(std::time::Instant::now() < deadline && !engine.exited(), "the candidate was never loaded; log:\n{}", engine.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    produce(&t.transactions, &events);
    let m = engine.wait_for("every event shadow-scored", Duration::from_secs(60), |m| metric(m, "driftwatch_shadow_scored_total{}") >= 2_000.0);
    let (expected, _, _) = expected_from_score_cli(&events);
    assert_eq!(metric(&m, "driftwatch_shadow_alerts_total{}"), 2_000.0, "threshold 0 alerts on everything");
    let agree = metric(&m, "driftwatch_shadow_agreement_total{agree=true}");
    let disagree = metric(&m, "driftwatch_shadow_agreement_total{agree=false}");
    assert_eq!((agree, disagree), (expected.len() as f64, (2_000 - expected.len()) as f64), "agreement = production's alerts");
    assert!(metric(&m, "driftwatch_shadow_score_latency_seconds_count{}") >= 2_000.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let shadow = consume_all(&t.retrain.replace("retrain", "shadow"), 2_000, Duration::from_secs(30));
    assert_eq!(shadow.len(), 2_000);
    let s = schema("shadow-score.schema.json");
    for m in shadow.iter().take(200) {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert!(s.is_valid(&v), "{v}");
        assert_eq!((v["production_version"].as_str(), v["candidate_version"].as_str()), (Some("demo-1"), Some("demo-eager")));
    }
    // Production's alerts are production's only.
    let alerts = consume_all(&t.alerts, expected.len(), Duration::from_secs(30));
    assert_eq!(alerts.len(), expected.len());
}

#[test]
fn input_in_every_compression_codec_is_scored() {
    let t = Topics::new(2);
    let cfg = GeneratorConfig { seed: 1, rows: 54_000, ..Default::default() };
    let events: Vec<Vec<u8>> = Generator::new(cfg).take(54_000).skip(50_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    // A quarter of the events in each codec Kafka producers use.
    for (codec, chunk) in ["gzip", "snappy", "lz4", "zstd"].iter().zip(events.chunks(1_000)) {
        produce_compressed(&t.transactions, chunk, codec);
    }
    let (expected, _, _) = expected_from_score_cli(&events);
    let engine = start_engine(&t, "[drift]\nenabled = false");
    engine.wait_for("every event scored", Duration::from_secs(60), |m| metric(m, "driftwatch_events_scored_total{}") >= events.len() as f64);
    let alerts = consume_all(&t.alerts, expected.len(), Duration::from_secs(30));
    let got: BTreeSet<String> = alert_ids(&alerts).into_iter().collect();
    assert_eq!(got, expected, "alerts equal the offline scorer's on input in four codecs");
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("Decompression") && !log.contains("codec"), "no codec errors: {log}");
}
