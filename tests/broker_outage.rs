//! The broker goes away mid-stream (frozen with SIGSTOP, so connections hang rather than
//! close) and comes back: the engine keeps running, loses nothing, and commits everything.
//! Its own test binary, so freezing the shared broker cannot disturb other tests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};

fn broker_pid() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKER_PID").unwrap_or_else(|_| {
        panic!("DRIFTWATCH_TEST_BROKER_PID is not set: this test freezes the test broker. Run `scripts/test`, which exports it.")
    })
}

fn signal(sig: &str, pid: &str) {
    assert!(std::process::Command::new("kill").args([sig, pid]).status().unwrap().success(), "kill {sig} {pid}");
}

#[test]
fn a_broker_outage_mid_stream_loses_nothing() {
    let pid = broker_pid();
    let t = Topics::new(3);
    let events: Vec<Vec<u8>> =
        Generator::new(GeneratorConfig { seed: 99, rows: 20_000, ..Default::default() }).take(20_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    produce(&t.transactions, &events[..10_000]);
    let engine = start_engine(&t, "batch_size = 500");
    engine.wait_for("the first part consumed", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= 10_000.0);

    // Freeze the broker for 8 s while the engine is running.
    signal("-STOP", &pid);
    let frozen = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    signal("-CONT", &pid);
    let outage = frozen.elapsed();
    assert!(engine.get("/healthz").is_some_and(|(s, _)| s == 200), "engine survived the outage; log:\n{}", engine.log_text());

    produce(&t.transactions, &events[10_000..]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while uncommitted(&t.group, &t.transactions) != 0 {
        assert!(Instant::now() < deadline, "engine did not catch up after the outage; log:\n{}", engine.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = engine.metrics();
    assert!(metric(&m, "driftwatch_events_consumed_total{}") >= 20_000.0);
    assert_eq!(metric(&m, "driftwatch_events_committable_total{}"), metric(&m, "driftwatch_events_consumed_total{}"));
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    println!("broker frozen for {:.1} s mid-stream: all 20000 events processed and committed", outage.as_secs_f64());
}
