//! Scale-out on the real broker (`drift.aggregation = "group"`): several `driftwatch run`
//! processes in one consumer group give the drift verdicts of one, exactly once per window,
//! and a SIGKILLed instance (the aggregator itself) loses no window and counts no event twice.
//! Every event is profiled (`sample_fraction = 1`), so the oracle for each window is the raw
//! events' count in it; alerts are checked against the offline scorer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WINDOW_S: i64 = 20;
const SLIDE_S: i64 = 10;
const LATENESS_S: i64 = 2;
const PARTITIONS: i32 = 12;

/// A stream whose `country` drifts from `onset` on: 100 events per second of event time.
fn stream(rows: usize, seed: u64) -> Vec<Vec<u8>> {
    use driftwatch::generate::{Generator, GeneratorConfig, Scenario};
    Generator::new(GeneratorConfig { seed, rows: rows as u64, rate_per_sec: 100.0, scenario: Scenario::NewCountry, onset: 0.4, ..Default::default() })
        .take(rows)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect()
}

fn event_times(events: &[Vec<u8>]) -> Vec<i64> {
    events.iter().map(|e| driftwatch::time::parse_rfc3339_ms(serde_json::from_slice::<Value>(e).unwrap()["event_time"].as_str().unwrap()).unwrap()).collect()
}

/// A drifting stream, its event times, the window ends it must produce, and a fresh
/// `PARTITIONS`-partition topic for it.
fn scenario(rows: usize, seed: u64) -> (Vec<Vec<u8>>, Vec<i64>, Vec<i64>, String) {
    let events = stream(rows, seed);
    let times = event_times(&events);
    let ends = expected_ends(&times);
    let transactions = unique("tx");
    create_topic(&transactions, PARTITIONS);
    (events, times, ends, transactions)
}

/// Window ends the stream must produce: every slide boundary after the first event whose
/// window has closed by the last event's watermark.
fn expected_ends(times: &[i64]) -> Vec<i64> {
    let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    let slide = SLIDE_S * 1000;
    (first / slide + 1..=(last - LATENESS_S * 1000) / slide).map(|k| k * slide).collect()
}

struct Outputs {
    group: String,
    reports: String,
    drift_alerts: String,
    retrain: String,
    alerts: String,
    profiles: String,
}

impl Outputs {
    fn new() -> Outputs {
        Outputs { group: unique("group"), reports: unique("reports"), drift_alerts: unique("drift-alerts"), retrain: unique("retrain"), alerts: unique("alerts"), profiles: unique("profiles") }
    }
}

fn start(transactions: &str, o: &Outputs, name: &str) -> EngineProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\ntransactions_topic = \"{transactions}\"\nalerts_topic = \"{}\"\ndead_letter_topic = \"{}-dlq\"\n\
         drift_reports_topic = \"{}\"\ndrift_alerts_topic = \"{}\"\nretrain_requests_topic = \"{}\"\ndrift_profiles_topic = \"{}\"\npartitions = 3\n\
         labels_topic = \"{}-labels\"\nretained_scores_topic = \"{}-retained\"\nperformance_reports_topic = \"{}-performance\"\n\
         [kafka.consumer_options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
         [model]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[engine]\nstatistics_interval_ms = 500\n\
         [drift]\naggregation = \"group\"\nsample_fraction = 1.0\nwindow_seconds = {WINDOW_S}\nslide_seconds = {SLIDE_S}\nlateness_seconds = {LATENESS_S}\nmin_samples = 50\n\
         idle_partition_ms = 3000\ninstance_timeout_ms = 60000\nprogress_interval_ms = 500\n\
         [performance]\nenabled = true\n",
        brokers(), o.group, o.alerts, o.alerts, o.reports, o.drift_alerts, o.retrain, o.profiles, o.profiles, o.profiles, o.profiles, demo_model().display()
    );
    let e = start_with_config(&config, dir, &[]);
    e.wait_for(&format!("{name} serving"), Duration::from_secs(60), |m| metric(m, "driftwatch_ready{}") == 1.0);
    e
}

/// Reads `topic` from the start until `done` holds on what was read (deadline `timeout`).
fn read_until(topic: &str, timeout: Duration, engines: &[&EngineProcess], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", unique("reader")).set("auto.offset.reset", "earliest").create().unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            continue;
        }
        if done(&got) {
            return got;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = engines.iter().map(|e| e.log_text()).collect();
            panic!("timed out reading {topic}: {} records so far; engine logs:\n{}", got.len(), logs.join("\n-----\n"));
        }
    }
}

/// Waits until the group's rebalance gave every instance partitions (the last one's join).
fn all_assigned(instances: &[&EngineProcess]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let assigned = |e: &EngineProcess| e.log_text().lines().filter(|l| l.contains("Partitions assigned")).last().is_some_and(|l| !l.contains("partitions=[]"));
    while !instances.iter().all(|e| assigned(e)) || instances.iter().any(|e| e.log_text().lines().last().is_some_and(|l| l.contains("revoked"))) {
        assert!(Instant::now() < deadline, "not every instance got partitions");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn end_of(r: &Value) -> i64 {
    driftwatch::time::parse_rfc3339_ms(r["window_end"].as_str().unwrap()).unwrap()
}

/// Per window end: its reports.
fn by_end(reports: &[Value]) -> BTreeMap<i64, Vec<&Value>> {
    let mut m: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for r in reports {
        m.entry(end_of(r)).or_default().push(r);
    }
    m
}

/// What must be equal between two runs: rows, and per feature the bin counts and status.
fn verdict(r: &Value) -> Value {
    let features: Vec<Value> = r["features"].as_array().unwrap().iter().map(|f| serde_json::json!([f["name"], f["current_counts"], f["status"]])).collect();
    serde_json::json!({"rows": r["current"]["rows"], "status": r["status"], "features": features, "score": [r["model_drift"]["score"]["current_counts"]]})
}

fn reports_complete(ends: &[i64]) -> impl Fn(&[Value]) -> bool + '_ {
    move |got: &[Value]| {
        let seen: BTreeSet<i64> = got.iter().map(end_of).collect();
        ends.iter().all(|e| seen.contains(e))
    }
}

/// Every window's rows against the raw events: nothing lost, nothing counted twice.
fn check_rows(run: &str, reports: &BTreeMap<i64, Vec<&Value>>, times: &[i64]) {
    for (end, rs) in reports {
        let inside = times.iter().filter(|&&t| t >= end - WINDOW_S * 1000 && t < *end).count() as u64;
        for r in rs {
            assert_eq!(r["current"]["rows"].as_u64(), Some(inside), "{run}: window ending {}: rows vs the raw events; sources {}", r["window_end"], r["sources"]);
        }
    }
}

#[test]
fn three_instances_in_one_group_give_the_verdicts_of_one_once_per_window() {
    let (events, times, ends, transactions) = scenario(14_000, 31);

    // Three instances holding partitions before the stream is written (else the first to join reads it all).
    let three = Outputs::new();
    let instances: Vec<EngineProcess> = (0..3).map(|i| start(&transactions, &three, &format!("instance {i}"))).collect();
    all_assigned(&instances.iter().collect::<Vec<_>>());
    produce(&transactions, &events);

    let one = Outputs::new();
    let single = start(&transactions, &one, "the single instance");
    let single_reports = read_until(&one.reports, Duration::from_secs(180), &[&single], reports_complete(&ends));
    let single_alerts = read_until(&one.drift_alerts, Duration::from_secs(30), &[&single], |a| !a.is_empty());
    let single_retrain = read_until(&one.retrain, Duration::from_secs(30), &[&single], |a| !a.is_empty());
    let (status, log) = single.terminate();
    assert!(status.success(), "{log}");

    let refs: Vec<&EngineProcess> = instances.iter().collect();
    let group_reports = read_until(&three.reports, Duration::from_secs(180), &refs, reports_complete(&ends));
    let group_alerts = read_until(&three.drift_alerts, Duration::from_secs(30), &refs, |a| a.len() >= single_alerts.len());
    let group_retrain = read_until(&three.retrain, Duration::from_secs(30), &refs, |a| !a.is_empty());
    wait_all_committed(&three.group, &transactions, Duration::from_secs(60), &instances[0]);
    let aggregators: Vec<f64> = instances.iter().map(|e| metric(&e.metrics(), "driftwatch_drift_aggregator{}")).collect();
    let consumed: Vec<f64> = instances.iter().map(|e| metric(&e.metrics(), "driftwatch_events_consumed_total{}")).collect();
    let profile_bytes: f64 = instances.iter().map(|e| metric(&e.metrics(), "driftwatch_drift_profile_bytes_total{}")).sum();
    // The performance thread follows the aggregator: one instance reads the retained scores.
    let retained_read: Vec<f64> = instances.iter().map(|e| metric(&e.metrics(), "driftwatch_retained_scores_read_total{}")).collect();
    let performance_log: Vec<String> = instances.iter().map(|e| e.log_text().lines().filter(|l| l.contains("performance") || l.contains("aggregator")).collect::<Vec<_>>().join("\n")).collect();
    for e in instances {
        let (status, log) = e.terminate();
        assert!(status.success(), "{log}");
    }

    assert_eq!(aggregators.iter().filter(|&&a| a == 1.0).count(), 1, "exactly one aggregator: {aggregators:?}");
    assert!(consumed.iter().all(|&c| c > 0.0), "every instance read a share: {consumed:?}");
    let readers: Vec<usize> = (0..3).filter(|&i| retained_read[i] > 0.0).collect();
    let aggregator = aggregators.iter().position(|&a| a == 1.0).unwrap();
    assert_eq!(readers, vec![aggregator], "only the aggregator runs the performance thread: retained scores read {retained_read:?}, aggregator {aggregator}; logs: {performance_log:#?}");
    let (s, g) = (by_end(&single_reports), by_end(&group_reports));
    check_rows("one instance", &s, &times);
    check_rows("three instances", &g, &times);
    assert_eq!(s.keys().collect::<Vec<_>>(), g.keys().collect::<Vec<_>>(), "the same windows");
    for (end, rs) in &g {
        assert_eq!(rs.len(), 1, "one report per window end ({end}), not one per instance");
        assert_eq!(verdict(rs[0]), verdict(s[end][0]), "window ending {end}: the group's verdict is the single instance's");
        let sources = &rs[0]["sources"];
        assert_eq!(sources["missing_partitions"], serde_json::json!([]), "{sources}");
    }
    assert!(g.values().any(|rs| rs[0]["sources"]["instances"] == 3), "some window holds panes of all three instances");
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/drift-report.schema.json");
    let schema = jsonschema::validator_for(&serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap()).unwrap();
    for r in group_reports.iter().chain(&single_reports) {
        let errors: Vec<String> = schema.iter_errors(r).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "a group report validates against its schema: {errors:?}");
    }
    let changes = |a: &[Value]| a.iter().map(|x| (x["feature"].clone(), x["to"].clone(), x["window_end"].clone())).collect::<Vec<_>>();
    assert!(!single_alerts.is_empty(), "the scenario drifts");
    assert_eq!(changes(&group_alerts), changes(&single_alerts), "the same status changes at the same windows");
    assert_eq!((group_retrain.len(), single_retrain.len()), (1, 1), "one retrain request each");
    println!(
        "1 vs 3 instances, {} events on {PARTITIONS} partitions: {} windows identical (rows, bins, statuses), {} status changes, 1 retrain request; consumed {consumed:?}; drift-profiles bytes {profile_bytes}",
        events.len(),
        g.len(),
        group_alerts.len()
    );
}

#[test]
fn killing_the_aggregator_mid_window_loses_no_window_and_counts_no_event_twice() {
    let (events, times, ends, transactions) = scenario(16_000, 32);
    let o = Outputs::new();
    let mut instances: Vec<Option<EngineProcess>> = (0..3).map(|i| Some(start(&transactions, &o, &format!("instance {i}")))).collect();
    all_assigned(&instances.iter().flatten().collect::<Vec<_>>());
    // A live stream: 16,000 events over ~32 s of wall time (~160 s of event time).
    let feeder = feed(&transactions, Arc::new(events.clone()), 500, Duration::from_millis(1000));
    // Once the group has published windows, SIGKILL the instance that aggregates them.
    let refs: Vec<&EngineProcess> = instances.iter().flatten().collect();
    read_until(&o.reports, Duration::from_secs(120), &refs, |r| r.len() >= 3);
    let victim = instances.iter().position(|e| metric(&e.as_ref().unwrap().metrics(), "driftwatch_drift_aggregator{}") == 1.0).expect("an aggregator");
    let consumed_before = metric(&instances[victim].as_ref().unwrap().metrics(), "driftwatch_events_consumed_total{}");
    instances[victim].take().unwrap().kill();
    let killed_at = Instant::now();
    feeder.join().unwrap();

    let survivors: Vec<&EngineProcess> = instances.iter().flatten().collect();
    let reports = read_until(&o.reports, Duration::from_secs(240), &survivors, reports_complete(&ends));
    let took_over = killed_at.elapsed();
    wait_all_committed(&o.group, &transactions, Duration::from_secs(120), survivors[0]);
    let expected_alerts = offline_alert_ids(&events);
    let alerts = read_until(&o.alerts, Duration::from_secs(60), &survivors, |a| a.iter().map(|x| x["transaction_id"].as_str().unwrap()).collect::<BTreeSet<_>>().len() >= expected_alerts.len());
    let new_aggregator: Vec<f64> = survivors.iter().map(|e| metric(&e.metrics(), "driftwatch_drift_aggregator{}")).collect();

    let by = by_end(&reports);
    check_rows("after the kill", &by, &times);
    let expected: BTreeSet<i64> = ends.iter().copied().collect();
    assert_eq!(by.keys().copied().filter(|e| expected.contains(e)).count(), expected.len(), "every window published");
    let republished: usize = by.values().map(|rs| rs.len() - 1).sum();
    for (end, rs) in &by {
        for r in rs {
            assert_eq!(verdict(r), verdict(rs[0]), "a window published again (at least once) is the same verdict ({end})");
        }
    }
    assert_eq!(new_aggregator.iter().filter(|&&a| a == 1.0).count(), 1, "a survivor took over: {new_aggregator:?}");
    // Alerts: exactly the offline scorer's decisions (duplicates of re-read events allowed).
    let got: BTreeSet<String> = alerts.iter().map(|a| a["transaction_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, expected_alerts, "alerts equal the offline scorer's decisions");
    println!(
        "SIGKILL of the aggregator after {consumed_before} of its events: {} windows complete and exact, {republished} republished (identical), last window {:.1} s after the kill; {} alerts = offline ({} records)",
        by.len(),
        took_over.as_secs_f64(),
        got.len(),
        alerts.len()
    );
}
