//! The engine core without a broker: every route (dead letters, alerts, shadow scores, drift
//! windows, the guard's rollbacks) from plain messages to recorded outputs.

use std::sync::Arc;

use serde_json::Value;

use super::core::{Engine, Incoming, Outgoing, OutputKind, Outputs};
use crate::config::Config;
use crate::generate::{GeneratedTransaction, Generator, GeneratorConfig};
use crate::model::guard::tests::RULES;
use crate::model::lifecycle::{RegistryChange, RegistryWatch};
use crate::model::registry::Registry;
use crate::observe::metrics::Metrics;
use crate::pipeline::{Artifact, Pipeline};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json");
/// 2026-01-05T00:00:00.000Z, the generator's default start.
const FIXED_NOW: i64 = 1_767_571_200_000;

/// One emitted record, owned.
#[derive(Debug, Clone)]
struct Recorded {
    kind: OutputKind,
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    event_time_ms: Option<i64>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("outputs are JSON")
    }
    fn header(&self, key: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_ref()).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Records every output and every handled offset.
#[derive(Default)]
struct Collect {
    records: Vec<Recorded>,
    handled: Vec<(i32, i64)>,
}

impl Outputs for Collect {
    type Error = std::convert::Infallible;
    fn emit(&mut self, r: Outgoing<'_>) -> Result<(), Self::Error> {
        self.records.push(Recorded {
            kind: r.kind,
            topic: r.topic.to_string(),
            key: r.key.map(<[u8]>::to_vec),
            payload: r.payload.to_vec(),
            headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec()))).collect(),
            event_time_ms: r.event_time_ms,
        });
        Ok(())
    }
    fn handled(&mut self, partition: i32, offset: i64) {
        self.handled.push((partition, offset));
    }
}

impl Collect {
    fn of(&self, kind: OutputKind) -> Vec<&Recorded> {
        self.records.iter().filter(|r| r.kind == kind).collect()
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.drift.enabled = false;
    c
}

fn engine(config: Config) -> Engine {
    Engine::new(config, Pipeline::load(std::path::Path::new(DEMO)).unwrap(), Arc::new(Metrics::new())).with_clock(|| FIXED_NOW)
}

/// `n` events continuing seed 1 after the demo model's 50,000 training rows.
fn events(n: usize, rate_per_sec: f64) -> Vec<GeneratedTransaction> {
    Generator::new(GeneratorConfig { seed: 1, rows: 50_000 + n as u64, rate_per_sec, ..Default::default() }).skip(50_000).take(n).collect()
}

fn message<'a>(payload: &'a [u8], key: Option<&'a [u8]>, partition: i32, offset: i64, headers: Option<&'a Vec<(String, Option<Vec<u8>>)>>) -> Incoming<'a> {
    Incoming {
        payload: Some(payload),
        key,
        headers: match headers {
            Some(h) => h as &dyn super::core::HeaderSource,
            None => &super::core::NoHeaders,
        },
        topic: "transactions",
        partition,
        offset,
        timestamp_ms: Some(FIXED_NOW),
    }
}

/// Handles `payloads` on partition 0 from offset 0 with one member.
fn run(engine: &Engine, payloads: &[Vec<u8>]) -> Collect {
    let mut out = Collect::default();
    let mut member = engine.member();
    for (i, p) in payloads.iter().enumerate() {
        member.handle(&message(p, Some(b"acct"), 0, i as i64, None), &mut out).unwrap();
    }
    // As the shell does when a poll finds nothing.
    member.publish_counts();
    out
}

fn json(tx: &GeneratedTransaction) -> Vec<u8> {
    serde_json::to_vec(tx).unwrap()
}

fn metric_line(engine: &Engine, line: &str) -> bool {
    engine.metrics.encode().lines().any(|l| l == line)
}

#[test]
fn every_dead_letter_reason_keeps_the_event_its_headers_and_says_why() {
    let mut c = config();
    c.engine.max_event_bytes = 2_000;
    let e = engine(c);
    let tx = &events(1, 100.0)[0];
    let mut wrong_type: Value = serde_json::to_value(tx).unwrap();
    wrong_type["amount"] = Value::from("a lot");
    let mut bad_time = serde_json::to_value(tx).unwrap();
    bad_time["event_time"] = Value::from("yesterday");
    let mut huge = serde_json::to_value(tx).unwrap();
    huge["note"] = Value::from("x".repeat(3_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"{\"transaction_id\": truncated".to_vec()),
        ("not_json", vec![0xff, 0xfe, b'{']),
        ("not_object", b"[1, 2, 3]".to_vec()),
        ("wrong_type", serde_json::to_vec(&wrong_type).unwrap()),
        ("missing_field", br#"{"amount": 5}"#.to_vec()),
        ("bad_timestamp", serde_json::to_vec(&bad_time).unwrap()),
        ("oversized", serde_json::to_vec(&huge).unwrap()),
    ];
    let own_headers = vec![("traceparent".to_string(), Some(b"00-abc-def-01".to_vec())), ("empty".to_string(), None)];
    let mut out = Collect::default();
    let mut member = e.member();
    for (i, (_, payload)) in cases.iter().enumerate() {
        member.handle(&message(payload, Some(b"k-1"), 3, 100 + i as i64, Some(&own_headers)), &mut out).unwrap();
    }
    assert_eq!(out.records.len(), cases.len(), "one dead letter each, nothing else: {:?}", out.records);
    for (i, ((reason, payload), r)) in cases.iter().zip(&out.records).enumerate() {
        assert_eq!(r.kind, OutputKind::DeadLetter);
        assert_eq!(r.topic, "transactions.dlq");
        assert_eq!(&r.payload, payload, "the event's own bytes");
        assert_eq!(r.key.as_deref(), Some(&b"k-1"[..]), "the event's own key");
        assert_eq!(r.header("dlq.reason").as_deref(), Some(*reason), "case {i}");
        assert!(r.header("dlq.error").is_some_and(|t| !t.is_empty()));
        assert_eq!(r.header("dlq.source.topic").as_deref(), Some("transactions"));
        assert_eq!(r.header("dlq.source.partition").as_deref(), Some("3"));
        assert_eq!(r.header("dlq.source.offset"), Some((100 + i).to_string()));
        assert_eq!(&r.headers[..2], &own_headers[..], "the event's headers first, unchanged");
        // Kafka Connect's DLQ headers too, for tooling built for Connect.
        assert_eq!(r.header("__connect.errors.topic").as_deref(), Some("transactions"));
        assert_eq!(r.header("__connect.errors.partition").as_deref(), Some("3"));
        assert_eq!(r.header("__connect.errors.offset"), Some((100 + i).to_string()));
        assert_eq!(r.header("__connect.errors.stage").as_deref(), Some("VALUE_CONVERTER"));
        assert_eq!(r.header("__connect.errors.exception.class.name"), Some(format!("driftwatch.InvalidEvent.{reason}")));
        assert_eq!(r.header("__connect.errors.exception.message"), r.header("dlq.error"));
    }
    assert_eq!(out.handled, (0..cases.len()).map(|i| (3, 100 + i as i64)).collect::<Vec<_>>(), "every message handled once, in order");
    assert_eq!(member.summary().dead_letters, cases.len() as u64);
    assert_eq!(member.summary().scored, 0);
    for (reason, n) in [("not_json", 2), ("not_object", 1), ("wrong_type", 1), ("missing_field", 1), ("bad_timestamp", 1), ("oversized", 1)] {
        assert!(metric_line(&e, &format!("driftwatch_events_invalid_total{{reason=\"{reason}\"}} {n}")), "{reason}: {}", e.metrics.encode());
    }
}

#[test]
fn a_tombstone_is_dead_lettered_as_not_json() {
    let e = engine(config());
    let mut out = Collect::default();
    let m = Incoming { payload: None, key: None, headers: &super::core::NoHeaders, topic: "transactions", partition: 0, offset: 9, timestamp_ms: None };
    e.member().handle(&m, &mut out).unwrap();
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].header("dlq.reason").as_deref(), Some("not_json"));
    assert_eq!(out.handled, vec![(0, 9)]);
}

/// A transaction far from every training cluster (the outlier detector flags it) whose account
/// is very old (the fraud model scores it near 0).
fn outlier(tx: &GeneratedTransaction) -> Vec<u8> {
    let mut v = serde_json::to_value(tx).unwrap();
    v["account_age_days"] = Value::from(200_000);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn alerts_name_their_triggers() {
    let txs = events(2, 100.0);
    let pipeline = Pipeline::load(std::path::Path::new(DEMO)).unwrap();
    let mut decoded = pipeline.new_transaction();
    pipeline.decode_into(&outlier(&txs[1]), &mut decoded).unwrap();
    let crafted = pipeline.score(&decoded);
    assert!(crafted.is_outlier && crafted.probability < 0.5, "precondition: the crafted event is an outlier, not fraud: {crafted:?}");
    pipeline.decode_into(&json(&txs[0]), &mut decoded).unwrap();
    assert!(!pipeline.score(&decoded).is_outlier, "precondition: the plain event is not");

    let triggers = |threshold: f64, alert_on_outlier: bool| -> Vec<Vec<String>> {
        let mut c = config();
        c.model.threshold = Some(threshold);
        c.model.alert_on_outlier = alert_on_outlier;
        let out = run(&engine(c), &[json(&txs[0]), outlier(&txs[1])]);
        assert_eq!(out.handled.len(), 2);
        out.of(OutputKind::Alert).iter().map(|a| a.json()["triggers"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()).collect()
    };
    // Threshold 0: every score is at the threshold.
    assert_eq!(triggers(0.0, true), vec![vec!["fraud_score".to_string()], vec!["fraud_score".into(), "outlier".into()]]);
    // Threshold 0.999: neither scores that high; only the outlier alerts, and only if allowed.
    assert_eq!(triggers(0.999, true), vec![vec!["outlier".to_string()]]);
    assert!(triggers(0.999, false).is_empty(), "outliers alert only with model.alert_on_outlier");
}

#[test]
fn an_alert_carries_the_decision_the_reasons_and_where_it_came_from() {
    let mut c = config();
    c.model.threshold = Some(0.0);
    let e = engine(c);
    let txs = events(20, 100.0);
    let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
    let out = run(&e, &payloads);
    let alerts = out.of(OutputKind::Alert);
    assert_eq!(alerts.len(), txs.len(), "threshold 0: every event alerts");
    let pipeline = Pipeline::load(std::path::Path::new(DEMO)).unwrap();
    let mut decoded = pipeline.new_transaction();
    for (i, (a, tx)) in alerts.iter().zip(&txs).enumerate() {
        let j = a.json();
        pipeline.decode_into(&payloads[i], &mut decoded).unwrap();
        let score = pipeline.score(&decoded);
        assert_eq!(a.topic, "fraud-alerts");
        assert_eq!(a.key.as_deref(), Some(tx.account_id.as_bytes()), "keyed by account");
        assert_eq!(j["transaction_id"], tx.transaction_id.as_str());
        assert_eq!(j["account_id"], tx.account_id.as_str());
        assert_eq!(j["score"].as_f64(), Some(score.probability), "the offline scorer's probability");
        assert_eq!(j["threshold"].as_f64(), Some(0.0));
        assert_eq!(j["event_time"], tx.event_time.as_str());
        assert_eq!(j["processed_at"], "2026-01-05T00:00:00.000Z", "stamped by the engine's clock");
        assert_eq!(j["source"], serde_json::json!({"topic": "transactions", "partition": 0, "offset": i}));
        assert_eq!(j["model_version"], pipeline.artifact().model.version.as_str());
        assert!(!j["reasons"].as_array().unwrap().is_empty() && j["reasons"].as_array().unwrap().len() <= 3);
        // The same reasons the offline scorer's lines carry (built there as owned values).
        assert_eq!(j["reasons"], serde_json::to_value(crate::message::reasons_json(&pipeline, &decoded, &score)).unwrap());
        assert_eq!(a.event_time_ms, crate::time::parse_rfc3339_ms(&tx.event_time), "for the end-to-end latency");
        assert!(a.headers.is_empty(), "untraced: no headers");
    }
    assert!(metric_line(&e, &format!("driftwatch_fraud_alerts_total {}", txs.len())));
    assert!(metric_line(&e, &format!("driftwatch_events_scored_total {}", txs.len())));
}

#[test]
fn counters_reach_the_metrics_per_batch_and_when_the_member_ends() {
    let e = engine(config());
    let payloads: Vec<Vec<u8>> = events(300, 100.0).iter().map(json).collect();
    let mut out = Collect::default();
    let mut member = e.member();
    for (i, p) in payloads.iter().take(255).enumerate() {
        member.handle(&message(p, Some(b"acct"), 0, i as i64, None), &mut out).unwrap();
    }
    assert!(metric_line(&e, "driftwatch_events_consumed_total 0"), "no atomic per event: nothing published before a batch is full");
    for (i, p) in payloads.iter().enumerate().skip(255) {
        member.handle(&message(p, Some(b"acct"), 0, i as i64, None), &mut out).unwrap();
    }
    assert!(metric_line(&e, "driftwatch_events_consumed_total 256"), "one batch of {} published", super::core::PUBLISH_COUNTS_EVERY);
    drop(member);
    assert!(metric_line(&e, "driftwatch_events_consumed_total 300"), "the rest when the member ends");
    assert!(metric_line(&e, "driftwatch_events_scored_total 300"));
}

#[test]
fn shadow_scoring_follows_the_fraction_and_never_touches_production() {
    let txs = events(2_000, 100.0);
    let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut candidate = Artifact::load(std::path::Path::new(DEMO)).unwrap();
    candidate.model.version = "candidate-1".into();
    candidate.decision.threshold = 0.0;
    let path = dir.path().join("candidate.json");
    candidate.save(&path).unwrap();
    let shadowed = |fraction: f64| {
        let mut c = config();
        c.model.shadow_fraction = fraction;
        let e = engine(c);
        e.models().set_shadow(Some(Arc::new(Pipeline::load(&path).unwrap())));
        run(&e, &payloads)
    };
    let production = run(&engine(config()), &payloads);
    let all = shadowed(1.0);
    assert_eq!(all.of(OutputKind::ShadowScore).len(), txs.len(), "fraction 1: every event");
    let some = shadowed(0.3);
    let n = some.of(OutputKind::ShadowScore).len();
    // Binomial(2000, 0.3): mean 600, sd ≈ 20.5; ±5 sd.
    assert!((497..=703).contains(&n), "fraction 0.3 shadow-scored {n} of 2000");
    assert_eq!(
        some.of(OutputKind::ShadowScore).iter().map(|r| r.json()["transaction_id"].clone()).collect::<Vec<_>>(),
        shadowed(0.3).of(OutputKind::ShadowScore).iter().map(|r| r.json()["transaction_id"].clone()).collect::<Vec<_>>(),
        "the same events every time (a hash of the id decides)"
    );
    assert!(shadowed(0.0).of(OutputKind::ShadowScore).is_empty(), "fraction 0: none");
    for run in [&all, &some] {
        assert_eq!(run.of(OutputKind::Alert).len(), production.of(OutputKind::Alert).len(), "production's alerts are unchanged by shadowing");
    }
    for r in all.of(OutputKind::ShadowScore) {
        let j = r.json();
        assert_eq!(r.topic, "shadow-scores");
        assert_eq!(j["candidate_version"], "candidate-1");
        assert_eq!(j["candidate_alert"], true, "the candidate's threshold 0 alerts on everything");
        assert_eq!(j["agree"], j["production_alert"], "agree ⇔ production alerted too");
    }
}

/// Small windows, everything sampled, drift on.
fn drift_config() -> Config {
    let mut c = Config::default();
    c.drift.sample_fraction = 1.0;
    c.drift.window_seconds = 20;
    c.drift.slide_seconds = 10;
    c.drift.lateness_seconds = 0;
    c.drift.min_samples = 50;
    c
}

#[test]
fn a_closing_window_publishes_its_report_and_gauges() {
    let e = engine(drift_config());
    // 100 tx/s of event time for ~65 s, every event sampled.
    let txs = events(6_500, 100.0);
    let times: Vec<i64> = txs.iter().map(|t| crate::time::parse_rfc3339_ms(&t.event_time).unwrap()).collect();
    let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
    let out = run(&e, &payloads);
    let reports: Vec<Value> = out.of(OutputKind::DriftReport).iter().map(|r| r.json()).collect();
    // Oracle from the raw event times: a window ends on every 10 s boundary after the first event
    // up to the last event's time (lateness 0), and holds exactly the events in [end − 20 s, end).
    let (first, last) = (times[0], *times.last().unwrap());
    let expected_ends: Vec<i64> = (first / 10_000 + 1..=last / 10_000).map(|k| k * 10_000).collect();
    let ends: Vec<i64> = reports.iter().map(|r| crate::time::parse_rfc3339_ms(r["window_end"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(ends, expected_ends);
    for (r, end) in reports.iter().zip(&ends) {
        let inside = times.iter().filter(|&&t| t >= end - 20_000 && t < *end).count() as u64;
        assert_eq!(r["current"]["rows"].as_u64(), Some(inside), "window ending {}", r["window_end"]);
        assert!(r["features"].as_array().unwrap().len() >= 10);
    }
    for r in out.of(OutputKind::DriftReport) {
        assert_eq!(r.topic, "drift-reports");
        assert_eq!(r.key.as_deref(), Some(&b"card-fraud"[..]), "keyed by model name");
    }
    assert!(metric_line(&e, &format!("driftwatch_drift_windows_closed_total {}", reports.len())), "{}", e.metrics.encode());
    assert!(e.metrics.encode().contains("driftwatch_feature_drift_psi{feature=\"amount\"}"));
    assert_eq!(out.handled.len(), payloads.len());
}

/// A registry with v1 in production and v2 registered, and an engine serving v1 from it.
fn registry_engine(dir: &std::path::Path, threshold: Option<f64>) -> (Engine, Registry, std::path::PathBuf) {
    let reg_dir = dir.join("registry");
    let reg = Registry::open(&reg_dir);
    let mut paths = Vec::new();
    for v in ["v1", "v2"] {
        let mut a = Artifact::load(std::path::Path::new(DEMO)).unwrap();
        a.model.version = v.into();
        let p = dir.join(format!("{v}.json"));
        a.save(&p).unwrap();
        reg.register(&p, "test").unwrap();
        paths.push(p);
    }
    reg.promote(None, "v1", "test", "first").unwrap();
    let mut c = drift_config();
    c.model.registry = reg_dir.display().to_string();
    c.model.threshold = threshold;
    c.model.guard_windows = RULES.windows;
    c.model.guard_p99_latency_ms = 10_000.0; // latency is judged in model::guard's tests, not under a busy test runner
    let e = Engine::new(c, Pipeline::load(&paths[0]).unwrap(), Arc::new(Metrics::new())).with_clock(|| FIXED_NOW);
    (e, reg, paths[1].clone())
}

#[test]
fn the_guard_rolls_back_a_misbehaving_promotion_once_and_publishes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Threshold 0 makes every event alert: the alert rate (1.0) is far outside 3× the trained rate.
    let (e, reg, v2) = registry_engine(dir.path(), Some(0.0));
    reg.promote(None, "v2", "test", "better").unwrap();
    e.swap_pipeline(Pipeline::load(&v2).unwrap(), true).unwrap();
    let payloads: Vec<Vec<u8>> = events(6_500, 100.0).iter().map(json).collect();
    let out = run(&e, &payloads);
    let events: Vec<Value> = out.of(OutputKind::ModelEvent).iter().map(|r| r.json()).collect();
    assert_eq!(events.len(), 2, "one rollback: v2 archived, v1 restored: {events:?}");
    assert_eq!((events[0]["version"].as_str(), events[0]["to"].as_str(), events[0]["by"].as_str()), (Some("v2"), Some("archived"), Some("guard")));
    assert!(events[0]["reason"].as_str().unwrap().starts_with("v2: fraud-alert rate 1.0000 outside"), "{}", events[0]["reason"]);
    assert_eq!((events[1]["version"].as_str(), events[1]["to"].as_str()), (Some("v1"), Some("production")));
    assert_eq!(reg.production(None).unwrap().unwrap().0.version, "v1", "the registry says v1 again");
    assert!(metric_line(&e, "driftwatch_model_rollbacks_total 1"));

    // The watcher then serves v1 again, unguarded: the same misbehaviour does not cascade.
    let watch = RegistryWatch::default();
    let changes = watch.poll(&reg, None, "v2", None);
    let [RegistryChange::Promote { version, path, guarded }] = &changes[..] else { panic!("{changes:?}") };
    assert_eq!((version.as_str(), *guarded), ("v1", false));
    e.swap_pipeline(Pipeline::load(path).unwrap(), *guarded).unwrap();
    let more: Vec<Vec<u8>> = events_after(6_500, 6_500).iter().map(json).collect();
    let out = run(&e, &more);
    assert!(!out.of(OutputKind::DriftReport).is_empty(), "windows still close");
    assert!(out.of(OutputKind::ModelEvent).is_empty(), "no second rollback");
    assert!(metric_line(&e, "driftwatch_model_rollbacks_total 1"));

    // A second bad version in a row is rolled back once too, to v1 again (not to anything older).
    let mut a = Artifact::load(&v2).unwrap();
    a.model.version = "v3".into();
    let v3 = dir.path().join("v3.json");
    a.save(&v3).unwrap();
    reg.register(&v3, "test").unwrap();
    reg.promote(None, "v3", "test", "another try").unwrap();
    e.swap_pipeline(Pipeline::load(&v3).unwrap(), true).unwrap();
    let out = run(&e, &events_after(13_000, 6_500).iter().map(json).collect::<Vec<_>>());
    let events: Vec<Value> = out.of(OutputKind::ModelEvent).iter().map(|r| r.json()).collect();
    let moves: Vec<(&str, &str)> = events.iter().map(|v| (v["version"].as_str().unwrap(), v["to"].as_str().unwrap())).collect();
    assert_eq!(moves, vec![("v3", "archived"), ("v1", "production")]);
    assert_eq!(reg.production(None).unwrap().unwrap().0.version, "v1");
    assert!(metric_line(&e, "driftwatch_model_rollbacks_total 2"));
}

/// `n` events after the first `skip` of [`events`].
fn events_after(skip: usize, n: usize) -> Vec<GeneratedTransaction> {
    Generator::new(GeneratorConfig { seed: 1, rows: (50_000 + skip + n) as u64, rate_per_sec: 100.0, ..Default::default() }).skip(50_000 + skip).take(n).collect()
}

#[test]
fn a_healthy_promotion_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (e, reg, v2) = registry_engine(dir.path(), None);
    reg.promote(None, "v2", "test", "better").unwrap();
    e.swap_pipeline(Pipeline::load(&v2).unwrap(), true).unwrap();
    assert_eq!(e.models().guarded_version().as_deref(), Some("v2"));
    let payloads: Vec<Vec<u8>> = events(6_500, 100.0).iter().map(json).collect();
    let out = run(&e, &payloads);
    assert!(out.of(OutputKind::DriftReport).len() >= RULES.windows as usize, "enough windows to judge");
    assert!(out.of(OutputKind::ModelEvent).is_empty(), "kept: {:?}", out.of(OutputKind::ModelEvent));
    assert_eq!(e.models().guarded_version(), None, "passed after its windows");
    assert_eq!(reg.production(None).unwrap().unwrap().0.version, "v2");
}

#[test]
fn a_member_switches_models_between_two_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _reg, v2) = registry_engine(dir.path(), Some(0.0));
    let payloads: Vec<Vec<u8>> = events(10, 100.0).iter().map(json).collect();
    let mut out = Collect::default();
    let mut member = e.member();
    for (i, p) in payloads.iter().enumerate() {
        if i == 4 {
            e.swap_pipeline(Pipeline::load(&v2).unwrap(), false).unwrap();
        }
        member.handle(&message(p, None, 0, i as i64, None), &mut out).unwrap();
    }
    let versions: Vec<String> = out.of(OutputKind::Alert).iter().map(|a| a.json()["model_version"].as_str().unwrap().to_string()).collect();
    assert_eq!(versions, [["v1"; 4].as_slice(), ["v2"; 6].as_slice()].concat());
}


#[test]
fn sustained_drift_publishes_status_changes_and_one_retrain_request() {
    let e = engine(drift_config());
    // New countries from the first event on: `country` (and `currency`) drift in every window.
    let txs: Vec<GeneratedTransaction> =
        Generator::new(GeneratorConfig { seed: 1, rows: 60_000, rate_per_sec: 100.0, scenario: crate::generate::Scenario::NewCountry, onset: 50_000.0 / 60_000.0, ..Default::default() })
            .skip(50_000)
            .take(10_000)
            .collect();
    let out = run(&e, &txs.iter().map(json).collect::<Vec<_>>());
    let reports = out.of(OutputKind::DriftReport).len();
    assert!(reports >= 8, "enough windows: {reports}");
    let changes: Vec<Value> = out.of(OutputKind::DriftAlert).iter().map(|r| r.json()).collect();
    let country: Vec<&Value> = changes.iter().filter(|c| c["feature"] == "country").collect();
    assert_eq!(country.len(), 1, "one change for country, to red: {changes:?}");
    assert_eq!((country[0]["from"].as_str(), country[0]["to"].as_str()), (Some("green"), Some("red")));
    assert_eq!(country[0]["consecutive_windows"].as_u64(), Some(1), "the first drifted window of the episode");
    for r in out.of(OutputKind::DriftAlert) {
        assert_eq!(r.topic, "drift-alerts");
        assert_eq!(r.key.as_deref(), Some(r.json()["feature"].as_str().unwrap().as_bytes()), "keyed by feature");
    }
    let retrain = out.of(OutputKind::RetrainRequest);
    assert_eq!(retrain.len(), 1, "one request, then the cool-down");
    let request = retrain[0].json();
    assert_eq!(retrain[0].topic, "retrain-requests");
    assert!(request["features"].as_array().unwrap().iter().any(|f| f["feature"] == "country"), "{request}");
    // Records of one window come in order: report first, then its changes and request.
    let kinds: Vec<OutputKind> = out.records.iter().map(|r| r.kind).collect();
    let first_change = kinds.iter().position(|k| *k == OutputKind::DriftAlert).unwrap();
    assert_eq!(kinds[first_change - 1], OutputKind::DriftReport);
    assert!(metric_line(&e, "driftwatch_retrain_requests_total 1"));
    assert!(metric_line(&e, "driftwatch_feature_drift_status{feature=\"country\"} 2.0"), "{}", e.metrics.encode());
}

#[test]
fn a_model_without_a_timestamp_column_windows_by_the_kafka_timestamp() {
    let mut a = Artifact::load(std::path::Path::new(DEMO)).unwrap();
    a.columns.timestamp = None;
    let without_time = |from_kafka: bool| {
        let mut c = drift_config();
        c.engine.event_time_from_kafka = from_kafka;
        let e = Engine::new(c, Pipeline::new(a.clone()), Arc::new(Metrics::new())).with_clock(|| FIXED_NOW);
        let txs = events(3_000, 100.0);
        let mut out = Collect::default();
        let mut member = e.member();
        for (i, tx) in txs.iter().enumerate() {
            let mut v = serde_json::to_value(tx).unwrap();
            v.as_object_mut().unwrap().remove("event_time");
            let payload = serde_json::to_vec(&v).unwrap();
            // The broker's timestamps: 100 per second from FIXED_NOW.
            let m = Incoming { timestamp_ms: Some(FIXED_NOW + i as i64 * 10), ..message(&payload, None, 0, i as i64, None) };
            member.handle(&m, &mut out).unwrap();
        }
        out
    };
    let by_kafka = without_time(true);
    let ends: Vec<String> = by_kafka.of(OutputKind::DriftReport).iter().map(|r| r.json()["window_end"].as_str().unwrap().to_string()).collect();
    assert_eq!(ends, ["2026-01-05T00:00:10.000Z", "2026-01-05T00:00:20.000Z"], "windows follow the broker's clock");
    assert!(without_time(false).of(OutputKind::DriftReport).is_empty(), "without a clock, events are scored but not windowed");
}

/// The dead letter of `payload` with these engine limits.
fn dead_letter_of(max_event: usize, max_dead_letter: usize, payload: &[u8], own_headers: Option<&Vec<(String, Option<Vec<u8>>)>>) -> Recorded {
    let mut c = config();
    c.engine.max_event_bytes = max_event;
    c.engine.dead_letter_max_bytes = max_dead_letter;
    let e = engine(c);
    let mut out = Collect::default();
    e.member().handle(&message(payload, Some(b"k"), 0, 7, own_headers), &mut out).unwrap();
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.handled, vec![(0, 7)], "handled: its offset may be committed");
    out.records.pop().unwrap()
}

fn wire_size(r: &Recorded) -> usize {
    r.key.as_ref().map_or(0, Vec::len) + r.payload.len() + r.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_dead_letter_too_large_for_kafka_is_truncated_with_size_and_digest() {
    // The issue's event: 1,000,500 bytes, accepted by a broker with default limits, too large
    // for librdkafka's default message.max.bytes (1,000,000) once it carries our headers.
    let mut payload = br#"{"transaction_id":"t-1","note":""#.to_vec();
    payload.resize(1_000_500 - 2, b'x');
    payload.extend_from_slice(b"\"}");
    let own = vec![("traceparent".to_string(), Some(b"00-abc-def-01".to_vec()))];
    let r = dead_letter_of(64 * 1024, 900_000, &payload, Some(&own));
    assert_eq!(r.header("dlq.reason").as_deref(), Some("oversized"));
    assert_eq!(r.header("dlq.payload").as_deref(), Some("truncated"));
    assert_eq!(r.header("dlq.payload.original_bytes").as_deref(), Some("1000500"));
    assert_eq!(r.header("dlq.payload.original_sha256"), Some(sha256_hex(&payload)));
    assert!(payload.starts_with(&r.payload) && r.payload.len() > 800_000, "the event's first bytes: {}", r.payload.len());
    assert!(wire_size(&r) <= 900_000, "fits: {}", wire_size(&r));
    assert_eq!(r.header("traceparent").as_deref(), Some("00-abc-def-01"), "the event's headers kept");
    // Within the limit, a dead letter is the whole event, without size headers.
    let small = dead_letter_of(1_000, 900_000, &payload[..2_000], None);
    assert_eq!((small.payload.len(), small.header("dlq.payload")), (2_000, None));
}

#[test]
fn a_dead_letter_whose_headers_alone_do_not_fit_is_a_reference() {
    let payload = vec![b'{'; 10_000];
    let own = vec![("huge".to_string(), Some(vec![b'h'; 6_000]))];
    let r = dead_letter_of(64 * 1024, 8_192, &payload, Some(&own));
    assert_eq!(r.header("dlq.payload").as_deref(), Some("omitted"));
    assert!(r.payload.is_empty());
    assert_eq!(r.header("huge"), None, "the event's headers left out");
    assert_eq!(r.header("dlq.source.offset").as_deref(), Some("7"), "the reference to the event");
    assert_eq!(r.header("dlq.payload.original_bytes").as_deref(), Some("10000"));
    assert_eq!(r.header("dlq.payload.original_sha256"), Some(sha256_hex(&payload)));
    assert!(wire_size(&r) <= 8_192);
}

/// One far-future event among `n` ordinary ones (100 tx/s), with this policy; returns the
/// outputs and the engine.
fn with_a_far_future_event(policy: crate::config::OutOfBounds, time: Value) -> (Collect, Engine) {
    let mut c = drift_config();
    c.engine.event_time_out_of_bounds = policy;
    // The clock: the stream's own time (the generator's events are in the past of now).
    let e = Engine::new(c, Pipeline::load(std::path::Path::new(DEMO)).unwrap(), Arc::new(Metrics::new())).with_clock(|| FIXED_NOW + 600_000);
    let mut payloads: Vec<Vec<u8>> = events(6_500, 100.0).iter().map(json).collect();
    let mut odd: Value = serde_json::from_slice(&payloads[1_000]).unwrap();
    odd["event_time"] = time;
    odd["amount"] = Value::from(9_999_999.0);
    payloads[1_000] = serde_json::to_vec(&odd).unwrap();
    (run(&e, &payloads), e)
}

#[test]
fn an_event_from_the_far_future_is_scored_but_cannot_stop_the_windows() {
    let (out, e) = with_a_far_future_event(crate::config::OutOfBounds::Score, Value::from("9999-01-01T00:00:00Z"));
    // Without the bound, this event moves the watermark to year 9999 and every later event is
    // late: no window after it would close.
    let reports = out.of(OutputKind::DriftReport);
    assert!(reports.len() >= 5, "windows keep closing after it: {}", reports.len());
    assert!(metric_line(&e, "driftwatch_drift_late_events_total 0"), "no event became late");
    assert!(metric_line(&e, "driftwatch_event_time_out_of_bounds_total{reason=\"future\"} 1"));
    assert_eq!(out.of(OutputKind::DeadLetter).len(), 0, "scored, not dead-lettered");
    assert_eq!(out.handled.len(), 6_500);
}

#[test]
fn out_of_bounds_events_can_be_dead_lettered_and_overflowing_times_are_bad_timestamps() {
    let (out, e) = with_a_far_future_event(crate::config::OutOfBounds::DeadLetter, Value::from("9999-01-01T00:00:00Z"));
    let dead = out.of(OutputKind::DeadLetter);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason").as_deref(), Some("event_time_out_of_bounds"));
    assert!(dead[0].header("dlq.error").unwrap().contains("engine.event_time_max_future_ms"), "{:?}", dead[0].header("dlq.error"));
    assert!(metric_line(&e, "driftwatch_events_invalid_total{reason=\"event_time_out_of_bounds\"} 1"));
    // 1e19 (read as nanoseconds by its magnitude: year 2286) is out of bounds, not an overflow.
    let (out, e) = with_a_far_future_event(crate::config::OutOfBounds::Score, Value::from(1e19));
    assert!(out.of(OutputKind::DeadLetter).is_empty());
    assert!(metric_line(&e, "driftwatch_event_time_out_of_bounds_total{reason=\"future\"} 1"));
    assert!(out.of(OutputKind::DriftReport).len() >= 5);
    // 1e300 is beyond any representable date: refused before any arithmetic.
    let (out, _) = with_a_far_future_event(crate::config::OutOfBounds::Score, Value::from(1e300));
    let dead = out.of(OutputKind::DeadLetter);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("dlq.reason").as_deref(), Some("bad_timestamp"));
    assert!(out.of(OutputKind::DriftReport).len() >= 5);
}

#[test]
fn an_old_event_is_out_of_bounds_only_with_a_maximum_age() {
    let mut c = drift_config();
    c.engine.event_time_max_age_ms = 60_000;
    let e = engine(c);
    let tx = &events(1, 100.0)[0];
    let mut old: Value = serde_json::to_value(tx).unwrap();
    old["event_time"] = Value::from("2025-01-01T00:00:00Z");
    let mut out = Collect::default();
    e.member().handle(&message(&serde_json::to_vec(&old).unwrap(), None, 0, 0, None), &mut out).unwrap();
    assert!(metric_line(&e, "driftwatch_event_time_out_of_bounds_total{reason=\"too_old\"} 1"), "a year before its Kafka timestamp");
    let e = engine(drift_config());
    e.member().handle(&message(&serde_json::to_vec(&old).unwrap(), None, 0, 0, None), &mut out).unwrap();
    assert!(metric_line(&e, "driftwatch_event_time_out_of_bounds_total{reason=\"too_old\"} 0"), "no age bound by default");
}

/// Group aggregation: the panes two instances publish for four partitions, merged by the
/// aggregator, give the windows one local engine gives on the whole stream.
mod group {
    use super::*;
    use crate::drift::aggregate::{Aggregator, Applied};
    use crate::message::profile::ProfileRecord;

    fn group_config() -> Config {
        let mut c = drift_config();
        c.drift.aggregation = crate::config::Aggregation::Group;
        c
    }

    /// Each event to partition `i % 4`; instance `a` reads partitions 0–1, `b` 2–3, members
    /// interleaved event by event. Returns the `drift-profiles` records in the order produced.
    fn two_instances(payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let (a, b) = (engine(group_config()), engine(group_config()));
        let (mut ma, mut mb) = (a.member(), b.member());
        let mut out = Collect::default();
        let mut offsets = [0i64; 4];
        for (i, p) in payloads.iter().enumerate() {
            let partition = (i % 4) as i32;
            let m = if partition < 2 { &mut ma } else { &mut mb };
            m.handle(&message(p, Some(b"acct"), partition, offsets[partition as usize], None), &mut out).unwrap();
            offsets[partition as usize] += 1;
        }
        assert!(out.of(OutputKind::DriftReport).is_empty(), "instances publish no verdicts of their own");
        ma.drift_tick(&[0, 1], |_| false, &mut out).unwrap();
        mb.drift_tick(&[2, 3], |_| false, &mut out).unwrap();
        out.of(OutputKind::DriftProfile).iter().map(|r| r.payload.clone()).collect()
    }

    fn aggregator(partitions: Vec<i32>) -> Aggregator {
        let pipeline = Pipeline::load(std::path::Path::new(DEMO)).unwrap();
        Aggregator::new(&pipeline, &group_config().drift.to_config(), partitions, 30_000, 0)
    }

    fn counts(r: &crate::drift::window::WindowReport) -> Vec<(String, Vec<u64>)> {
        r.drift.features.iter().chain(std::iter::once(&r.model_drift.score)).map(|f| (f.bins.name.clone(), f.bins.current_counts.clone())).collect()
    }

    #[test]
    fn two_instances_give_the_windows_of_one() {
        let txs = events(6_500, 100.0);
        let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
        let local: Vec<crate::drift::window::WindowReport> = run(&engine(drift_config()), &payloads).of(OutputKind::DriftReport).iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect();
        let records = two_instances(&payloads);
        let mut agg = aggregator(vec![0, 1, 2, 3]);
        let mut windows = Vec::new();
        for (offset, bytes) in records.iter().enumerate() {
            let applied = agg.apply(ProfileRecord::from_bytes(bytes).unwrap(), offset as i64, 1);
            assert!(matches!(applied, Applied::Accepted | Applied::State), "{applied:?}");
            windows.extend(agg.due(1));
        }
        // The group's watermark is the slowest partition's: at most the last window may be pending.
        assert!(windows.len() + 1 >= local.len() && windows.len() <= local.len(), "{} windows vs {} local", windows.len(), local.len());
        assert!(windows.len() >= 4);
        for (g, l) in windows.iter().zip(&local) {
            assert_eq!((&g.report.window_start, &g.report.window_end), (&l.window_start, &l.window_end));
            assert_eq!(g.report.drift.current.rows, l.drift.current.rows);
            assert_eq!(counts(&g.report), counts(l), "window ending {}", l.window_end);
            let sources = g.report.sources.as_ref().unwrap();
            assert_eq!((sources.instances, sources.partitions.clone()), (1, vec![0, 1, 2, 3]), "one engine process name per test process");
            assert!(sources.missing_partitions.is_empty());
        }
    }

    #[test]
    fn a_pane_read_twice_counts_once_and_a_fuller_reread_replaces_it() {
        let txs = events(6_500, 100.0);
        let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
        let records = two_instances(&payloads);
        let once = {
            let mut agg = aggregator(vec![0, 1, 2, 3]);
            let mut w = Vec::new();
            for (o, r) in records.iter().enumerate() {
                agg.apply(ProfileRecord::from_bytes(r).unwrap(), o as i64, 1);
                w.extend(agg.due(1));
            }
            w
        };
        // Every pane record delivered twice (a redelivery, or a second reader of the same offsets).
        let mut agg = aggregator(vec![0, 1, 2, 3]);
        let mut twice = Vec::new();
        let mut duplicates = 0;
        for (o, r) in records.iter().enumerate() {
            for k in 0..2 {
                let rec = ProfileRecord::from_bytes(r).unwrap();
                let is_pane = matches!(rec, ProfileRecord::Pane(..));
                let applied = agg.apply(rec, (2 * o + k) as i64, 1);
                if k == 1 && is_pane {
                    assert!(matches!(applied, Applied::Duplicate | Applied::Late), "{applied:?}");
                    duplicates += 1;
                }
            }
            twice.extend(agg.due(1));
        }
        assert!(duplicates > 10);
        assert_eq!(once.len(), twice.len());
        for (a, b) in once.iter().zip(&twice) {
            assert_eq!(counts(&a.report), counts(&b.report));
        }
        // A part covering offsets 0..=10 of partition 0, then the whole pane (0..=last) read
        // again by the partition's next owner: the whole replaces the part.
        let pane = records.iter().map(|r| ProfileRecord::from_bytes(r).unwrap()).find_map(|r| match r {
            ProfileRecord::Pane(h, p) if h.partition == 0 => Some((h, p)),
            _ => None,
        }).unwrap();
        let mut agg = aggregator(vec![0]);
        let mut part = pane.clone();
        part.0.last_offset = part.0.first_offset + 10;
        assert_eq!(agg.apply(ProfileRecord::Pane(part.0, part.1), 0, 1), Applied::Accepted);
        assert_eq!(agg.apply(ProfileRecord::Pane(pane.0.clone(), pane.1.clone()), 1, 1), Applied::Replaced);
        assert_eq!(agg.parts_held(), 1);
        // A part overlapping without covering it is the same events again: dropped.
        let mut overlap = pane.clone();
        overlap.0.first_offset += 1;
        overlap.0.last_offset += 100;
        assert_eq!(agg.apply(ProfileRecord::Pane(overlap.0, overlap.1), 2, 1), Applied::Duplicate);
    }

    #[test]
    fn a_successor_replaying_from_the_commit_point_continues_where_the_aggregator_stopped() {
        let txs = events(6_500, 100.0);
        let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
        let mut records = two_instances(&payloads);
        let mut first = aggregator(vec![0, 1, 2, 3]);
        let mut reports = Vec::new();
        let half = records.len() / 2;
        let mut commit_at = 0;
        let mut o = 0;
        while o < half {
            first.apply(ProfileRecord::from_bytes(&records[o]).unwrap(), o as i64, 1);
            let closed = first.due(1);
            if !closed.is_empty() {
                reports.extend(closed.into_iter().map(|c| c.report));
                // The checkpoint goes into the topic right after; the commit is the oldest needed record.
                records.insert(o + 1, ProfileRecord::Checkpoint(Box::new(first.checkpoint().unwrap())).to_bytes());
                o += 1;
                commit_at = first.oldest_needed_offset().unwrap_or(o as i64).min(o as i64) as usize;
            }
            o += 1;
        }
        assert!(!reports.is_empty(), "the first aggregator published windows before it died");
        // The first dies; the successor replays from the commit point, then goes on.
        let mut next = aggregator(vec![0, 1, 2, 3]);
        for (i, r) in records.iter().enumerate().skip(commit_at).take(o - commit_at) {
            next.apply(ProfileRecord::from_bytes(r).unwrap(), i as i64, 1);
        }
        let mut after = Vec::new();
        for (i, r) in records.iter().enumerate().skip(o) {
            if !matches!(ProfileRecord::from_bytes(r).unwrap(), ProfileRecord::Checkpoint(_)) {
                next.apply(ProfileRecord::from_bytes(r).unwrap(), i as i64, 1);
            }
            after.extend(next.due(1).into_iter().map(|c| c.report));
        }
        // Oracle: one aggregator that never died.
        let mut whole = aggregator(vec![0, 1, 2, 3]);
        let mut all = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if !matches!(ProfileRecord::from_bytes(r).unwrap(), ProfileRecord::Checkpoint(_)) {
                whole.apply(ProfileRecord::from_bytes(r).unwrap(), i as i64, 1);
            }
            all.extend(whole.due(1).into_iter().map(|c| c.report));
        }
        let ends = |rs: &[crate::drift::window::WindowReport]| rs.iter().map(|r| r.window_end.clone()).collect::<Vec<_>>();
        let mut joined = reports.clone();
        joined.extend(after.iter().cloned());
        assert_eq!(ends(&joined), ends(&all), "no window lost or published twice across the takeover");
        for (a, b) in joined.iter().zip(&all) {
            assert_eq!(counts(a), counts(b), "window ending {}", a.window_end);
        }
    }

    #[test]
    fn a_quiet_partitions_progress_counts_every_event_not_only_the_sampled_ones() {
        let mut c = group_config();
        c.drift.sample_fraction = 0.05;
        let e = engine(c);
        let mut m = e.member();
        let mut out = Collect::default();
        let txs = events(200, 100.0);
        let newest = txs.iter().map(|t| crate::time::parse_rfc3339_ms(&t.event_time).unwrap()).max().unwrap();
        for (i, t) in txs.iter().enumerate() {
            m.handle(&message(&json(t), Some(b"acct"), 0, i as i64, None), &mut out).unwrap();
        }
        // Caught up: but events were read since the last tick, so not idle.
        m.drift_tick(&[0], |_| true, &mut out).unwrap();
        let progress = out.of(OutputKind::DriftProfile).iter().find_map(|r| match ProfileRecord::from_bytes(&r.payload).unwrap() {
            ProfileRecord::Progress(p) => Some(p),
            _ => None,
        });
        let p = progress.expect("a progress record").partitions[0];
        assert_eq!((p.partition, p.watermark_ms, p.idle), (0, newest, false), "the newest event time (lateness 0), sampled or not; active, so not idle");
    }

    #[test]
    fn a_silent_partition_is_waited_for_until_the_instance_timeout_and_named() {
        let txs = events(3_000, 100.0);
        let payloads: Vec<Vec<u8>> = txs.iter().map(json).collect();
        let records = two_instances(&payloads);
        // Partition 4 exists but its owner never says anything.
        let mut agg = aggregator(vec![0, 1, 2, 3, 4]);
        for (o, r) in records.iter().enumerate() {
            agg.apply(ProfileRecord::from_bytes(r).unwrap(), o as i64, 1_000);
        }
        assert!(agg.due(1_000).is_empty(), "waits for partition 4 within the timeout");
        let closed = agg.due(31_000);
        assert!(!closed.is_empty());
        assert_eq!(closed[0].report.sources.as_ref().unwrap().missing_partitions, vec![4]);
    }
}
