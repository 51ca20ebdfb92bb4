//! Exactly-once on the real broker: the engine killed with SIGKILL several times during a
//! stream; a `read_committed` reader of `fraud-alerts` sees every expected alert exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};

/// Exactly-once, and a short session so a killed member's partitions move on in seconds.
const EOS: &str = "delivery = \"exactly_once\"\ntransaction_interval_ms = 100\n[drift]\nenabled = false\n[kafka.consumer_options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";

#[test]
fn sigkill_during_a_stream_never_loses_or_repeats_a_committed_alert() {
    let t = Topics::new(3);
    let events: Vec<Vec<u8>> = Generator::new(GeneratorConfig { seed: 1, rows: 90_000, ..Default::default() }).take(90_000).skip(50_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    let expected = offline_alert_ids(&events);
    // Events keep arriving while the engine is killed and restarted.
    let feeder = feed(&t.transactions, std::sync::Arc::new(events.clone()), 1_000, Duration::from_millis(800));
    let kills = 4;
    let mut mid_stream = 0;
    for k in 0..kills {
        let engine = start_engine(&t, EOS);
        engine.wait_for("some events handled", Duration::from_secs(60), |m| metric(m, "driftwatch_events_consumed_total{}") >= 1_000.0);
        mid_stream += usize::from(!feeder.is_finished());
        let log = engine.kill();
        assert!(log.contains("exactly_once") && !log.contains("ERROR"), "member {k} ran exactly-once: {log}");
    }
    assert!(mid_stream >= 2, "only {mid_stream} of {kills} kills hit while events were still arriving");
    feeder.join().unwrap();
    let last = start_engine(&t, EOS);
    last.wait_for("the last engine up", Duration::from_secs(60), |m| metric(m, "driftwatch_ready{}") >= 1.0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while uncommitted(&t.group, &t.transactions) != 0 {
        assert!(Instant::now() < deadline, "the last engine did not finish; log:\n{}", last.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, log) = last.terminate();
    assert!(status.success(), "{log}");

    let committed = consume_all_isolated(&t.alerts, expected.len(), Duration::from_secs(60), "read_committed");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in &committed {
        let id = serde_json::from_slice::<serde_json::Value>(&a.payload).unwrap()["transaction_id"].as_str().unwrap().to_string();
        *counts.entry(id).or_default() += 1;
    }
    let seen: BTreeSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&seen).collect();
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, &n)| n > 1).collect();
    let everything = consume_all_isolated(&t.alerts, expected.len(), Duration::from_secs(30), "read_uncommitted").len();
    println!(
        "exactly-once over {kills} SIGKILLs ({mid_stream} while events arrived): {} alerts expected, {} read_committed ({} distinct), {} records including aborted transactions",
        expected.len(),
        committed.len(),
        seen.len(),
        everything
    );
    assert!(missing.is_empty(), "{} alerts lost: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(repeated.is_empty(), "{} alerts repeated: {:?}", repeated.len(), &repeated[..repeated.len().min(5)]);
    assert_eq!(seen, expected, "exactly the offline scorer's alerts");
    assert_eq!(committed.len(), expected.len());
}
