//! Broker faults with events in flight, on the real broker: frozen (SIGSTOP: connections hang
//! rather than close), frozen for longer than the producer's message timeout and the consumer's
//! session timeout, and killed with SIGKILL and started again on its data. Each run compares the
//! alerts topic with `driftwatch score`'s decisions on the same events, at a threshold where one
//! event in eight alerts (so a skipped event cannot hide). Also: SIGTERM is honoured while the
//! producer's queue is full. Its own test binary, and the tests take turns: they freeze or kill
//! the shared broker.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One broker fault at a time.
static BROKER: Mutex<()> = Mutex::new(());

/// The threshold the engine runs at (about 12 % of generated events alert).
const THRESHOLD: f64 = 0.02;

fn pid_file() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKER_PIDFILE").unwrap_or_else(|_| {
        panic!("DRIFTWATCH_TEST_BROKER_PIDFILE is not set: these tests freeze and kill the test broker. Run `scripts/test`, which exports it.")
    })
}

fn broker_pid() -> String {
    std::fs::read_to_string(pid_file()).expect("the broker's pid file").trim().to_string()
}

fn signal(sig: &str, pid: &str) {
    assert!(std::process::Command::new("kill").args([sig, pid]).status().unwrap().success(), "kill {sig} {pid}");
}

/// Starts the killed broker again on its data (`scripts/kafka resume`).
fn resume_broker() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka");
    let out = std::process::Command::new(script).arg("resume").output().unwrap();
    assert!(out.status.success(), "scripts/kafka resume failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn events(rows: usize, seed: u64) -> Arc<Vec<Vec<u8>>> {
    Arc::new(generated(rows, seed))
}

fn expected_alerts(events: &[Vec<u8>]) -> BTreeSet<String> {
    alerting_ids(&offline_decisions(events), THRESHOLD)
}

/// Every expected alert delivered, no other; returns the duplicates.
fn compare_alerts(t: &Topics, expected: &BTreeSet<String>) -> usize {
    let ids = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(60)));
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&unique).collect();
    assert!(missing.is_empty(), "{} of {} alerts lost: {:?}", missing.len(), expected.len(), &missing[..missing.len().min(5)]);
    let extra: Vec<_> = unique.difference(expected).collect();
    assert!(extra.is_empty(), "alerts the offline scorer does not raise: {:?}", &extra[..extra.len().min(5)]);
    ids.len() - unique.len()
}

const ENV: &[(&str, &str)] = &[("DRIFTWATCH_MODEL__THRESHOLD", "0.02")];

/// Short timeouts, so the outage outlasts them: deliveries time out after 5 s, a silent member
/// is out of the group after 6 s.
const SHORT_TIMEOUTS: &str = "batch_size = 500\n[kafka.producer_options]\n\"message.timeout.ms\" = \"5000\"\n[kafka.consumer_options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";

/// The engine's consumed count, read straight from the exposition (fast enough to catch it
/// mid-backlog).
fn consumed_now(engine: &EngineProcess) -> f64 {
    engine
        .get("/metrics")
        .and_then(|(_, body)| body.lines().find(|l| l.starts_with("driftwatch_events_consumed_total "))?.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Freezes the broker for `outage` while the engine works through a backlog (its consumer has
/// prefetched events, so outputs are produced into the outage) and more events are arriving.
fn freeze_mid_stream(outage: Duration, engine_extra: &str) -> (usize, usize, String) {
    let _turn = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let t = Topics::new(3);
    let events = events(300_000, 99);
    let expected = expected_alerts(&events);
    produce(&t.transactions, &events[..250_000]);
    let engine = start_engine_with_env(&t, engine_extra, ENV);
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed_now(&engine) < 1.0 {
        assert!(Instant::now() < deadline && !engine.exited(), "the engine never started consuming; log:\n{}", engine.log_text());
        std::thread::sleep(Duration::from_millis(5));
    }
    let feeder = feed(&t.transactions, Arc::new(events[250_000..].to_vec()), 1_000, Duration::from_millis(100));
    let pid = broker_pid();
    signal("-STOP", &pid);
    let at_freeze = consumed_now(&engine);
    let frozen = Instant::now();
    std::thread::sleep(outage);
    // The outputs produced into the outage wait: the age the alert rule watches has grown.
    let waiting = engine.metrics();
    signal("-CONT", &pid);
    let outage = frozen.elapsed();
    let oldest = waiting.iter().filter(|(k, _)| k.starts_with("driftwatch_output_oldest_unacked_age_seconds{")).map(|(_, v)| *v).fold(f64::NAN, f64::max);
    assert!(oldest >= outage.as_secs_f64() / 2.0, "oldest unacknowledged output {oldest} s during a {outage:?} outage");
    assert!(at_freeze < 250_000.0, "frozen while the engine was still working through the backlog ({at_freeze} consumed)");
    assert!(!feeder.is_finished(), "the outage happened with events still arriving");
    feeder.join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(180), &engine);
    let m = engine.metrics();
    let failures = metric(&m, "driftwatch_producer_errors_total{}") as usize;
    assert!(metric(&m, "driftwatch_events_committable_total{}") >= 300_000.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let duplicates = compare_alerts(&t, &expected);
    println!(
        "broker frozen {:.1} s at {at_freeze} of 300,000 events ({engine_extra:?}): oldest unacknowledged output {oldest:.1} s at the end of the outage; {} alerts expected, all delivered, {duplicates} duplicates, {failures} failed deliveries retried",
        outage.as_secs_f64(),
        expected.len()
    );
    (duplicates, failures, log)
}

#[test]
fn a_broker_frozen_mid_stream_loses_nothing() {
    freeze_mid_stream(Duration::from_secs(8), "batch_size = 500");
}

#[test]
fn a_broker_gone_longer_than_the_message_and_session_timeouts_loses_nothing() {
    // 15 s: three message timeouts and more than two session timeouts.
    let (_, failures, log) = freeze_mid_stream(Duration::from_secs(15), SHORT_TIMEOUTS);
    assert!(failures > 0, "deliveries timed out during the outage and were retried; log:\n{log}");
    assert!(!log.contains("for good"), "a timeout is retriable, never a permanent refusal:\n{log}");
}

#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_nothing() {
    let _turn = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let t = Topics::new(3);
    let events = events(40_000, 98);
    let expected = expected_alerts(&events);
    let engine = start_engine_with_env(&t, SHORT_TIMEOUTS, ENV);
    let feeder = feed(&t.transactions, events.clone(), 1_000, Duration::from_millis(150));
    engine.wait_for("part of the stream consumed", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= 5_000.0);
    let killed = Instant::now();
    signal("-KILL", &broker_pid());
    std::thread::sleep(Duration::from_secs(3));
    resume_broker();
    let down = killed.elapsed();
    assert!(!feeder.is_finished(), "the broker died with events still arriving");
    feeder.join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(180), &engine);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let duplicates = compare_alerts(&t, &expected);
    println!("broker SIGKILLed and restarted mid-stream (down {:.1} s): {} alerts expected, all delivered, {duplicates} duplicates", down.as_secs_f64(), expected.len());
}

#[test]
fn sigterm_is_honoured_while_the_producer_queue_is_full() {
    let _turn = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let t = Topics::new(3);
    let events = events(60_000, 97);
    produce(&t.transactions, &events);
    // Threshold 0: every event alerts; a 1,000-message producer queue fills in milliseconds
    // once the broker stops answering.
    let extra = "shutdown_timeout_ms = 5000\n[kafka.producer_options]\n\"queue.buffering.max.messages\" = \"1000\"";
    let engine = start_engine_with_env(&t, extra, &[("DRIFTWATCH_MODEL__THRESHOLD", "0.0")]);
    engine.wait_for("events flowing", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= 2_000.0);
    let pid = broker_pid();
    signal("-STOP", &pid);
    // The queue is full when consumption stops moving.
    let mut last = -1.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = metric(&engine.metrics(), "driftwatch_events_consumed_total{}");
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "consumption never stopped with the broker frozen");
        last = now;
    }
    let asked = Instant::now();
    let _ = std::process::Command::new("kill").args(["-TERM", &engine.child.id().to_string()]).status();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    while !engine.exited() {
        if Instant::now() > stop_deadline {
            signal("-CONT", &pid);
            panic!("the engine ignored SIGTERM for 20 s with a full queue; log:\n{}", engine.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = asked.elapsed();
    signal("-CONT", &pid);
    let log = engine.kill();
    // Within the timeout (the exit is seen by polling every 50 ms).
    assert!(took < Duration::from_millis(5_000 + 50), "stopped {took:?} after SIGTERM, shutdown_timeout_ms = 5000; log:\n{log}");
    println!("SIGTERM with a full producer queue and a frozen broker: exited after {:.2} s (shutdown_timeout_ms = 5000)", took.as_secs_f64());
    // Nothing lost: a new engine delivers every alert (every event alerts at threshold 0).
    let again = start_engine_with_env(&t, "", &[("DRIFTWATCH_MODEL__THRESHOLD", "0.0")]);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(120), &again);
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
    let ids: BTreeSet<String> = alert_ids_of(&consume_all(&t.alerts, events.len(), Duration::from_secs(60))).into_iter().collect();
    assert_eq!(ids.len(), events.len(), "every event's alert delivered across the interrupted shutdown");
}
