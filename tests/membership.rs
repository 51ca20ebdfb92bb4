//! Static membership (`kafka.instance_id`) on the real broker: a killed instance restarted with
//! its id takes its partitions back without waiting for its session to time out; a second
//! process with the same id is refused with a clear error; exactly-once runs several instances
//! of one group when each has an id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A 60 s session: a dynamic member's partitions would wait that long after a crash.
const LONG_SESSION: &str = "[kafka.consumer_options]\n\"session.timeout.ms\" = \"60000\"\n\"heartbeat.interval.ms\" = \"3000\"";

#[test]
fn a_killed_instance_restarted_with_its_id_resumes_without_waiting_for_its_session() {
    let t = Topics::new(3);
    let events = generated(20_000, 61);
    produce(&t.transactions, &events[..10_000]);
    let env = [("DRIFTWATCH_KAFKA__INSTANCE_ID", "engine-a")];
    let first = start_engine_with_env(&t, LONG_SESSION, &env);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(60), &first);
    first.kill();
    produce(&t.transactions, &events[10_000..]);
    let restarted = Instant::now();
    let second = start_engine_with_env(&t, LONG_SESSION, &env);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(50), &second);
    let took = restarted.elapsed();
    let (status, log) = second.terminate();
    assert!(status.success(), "{log}");
    println!("SIGKILL, then restart with the same kafka.instance_id: caught up {:.1} s after the restart (session.timeout.ms = 60000)", took.as_secs_f64());
    // Dynamic membership cannot catch up before the dead member's 60 s session expires.
    assert!(took < Duration::from_secs(30), "took {took:?}: the partitions waited for the old session");
}

#[test]
fn a_second_process_with_the_same_instance_id_is_refused_clearly() {
    let t = Topics::new(2);
    produce(&t.transactions, &generated(1_000, 62));
    let env = [("DRIFTWATCH_KAFKA__INSTANCE_ID", "twin"), ("DRIFTWATCH_ENGINE__WORKERS", "1")];
    let first = start_engine_with_env(&t, "", &env);
    first.wait_for("the first instance ready", Duration::from_secs(60), |m| metric(m, "driftwatch_ready{}") == 1.0);
    let second = start_engine_with_env(&t, "", &env);
    // The newer member replaces the older one; the broker fences the older process.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.exited() && !second.exited() {
        assert!(Instant::now() < deadline, "both instances with one id kept running;\nfirst:\n{}\nsecond:\n{}", first.log_text(), second.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (fenced, other) = if first.exited() { (first, second) } else { (second, first) };
    let log = fenced.kill();
    assert!(log.contains("kafka.instance_id = \"twin\"") && log.contains("must be unique"), "the error names the duplicate id:\n{log}");
    let (status, log) = other.terminate();
    assert!(status.success(), "the surviving instance goes on: {log}");
}

#[test]
fn exactly_once_runs_several_instances_of_a_group_when_each_has_an_id() {
    let t = Topics::new(4);
    let events = generated(30_000, 63);
    let expected = offline_alert_ids(&events);
    let eos = "delivery = \"exactly_once\"\n[drift]\nenabled = false";
    let a = start_engine_with_env(&t, eos, &[("DRIFTWATCH_KAFKA__INSTANCE_ID", "eos-a")]);
    let b = start_engine_with_env(&t, eos, &[("DRIFTWATCH_KAFKA__INSTANCE_ID", "eos-b")]);
    // Both instances hold partitions before the stream starts (else the first to join reads it all).
    let deadline = Instant::now() + Duration::from_secs(60);
    let holds_partitions = |e: &EngineProcess| e.log_text().lines().any(|l| l.contains("Partitions assigned. partitions=[") && !l.contains("partitions=[]"));
    while !(holds_partitions(&a) && holds_partitions(&b)) {
        assert!(Instant::now() < deadline, "both instances never held partitions;\na:\n{}\nb:\n{}", a.log_text(), b.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    feed(&t.transactions, Arc::new(events.clone()), 1_000, Duration::from_millis(100)).join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(120), &a);
    let consumed = |e: &EngineProcess| metric(&e.metrics(), "driftwatch_events_consumed_total{}");
    let (ca, cb) = (consumed(&a), consumed(&b));
    assert!(ca > 0.0 && cb > 0.0, "both instances consumed: {ca} and {cb}");
    for e in [a, b] {
        let (status, log) = e.terminate();
        assert!(status.success(), "no instance fenced the other: {log}");
    }
    let committed = consume_all_isolated(&t.alerts, expected.len(), Duration::from_secs(60), "read_committed");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in alert_ids_of(&committed) {
        *counts.entry(id).or_default() += 1;
    }
    let seen: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(seen, expected, "exactly the offline scorer's alerts");
    assert!(counts.values().all(|&n| n == 1), "each alert once to a read_committed reader");
    println!("exactly-once with two instances ({ca} + {cb} events): {} alerts, each once", expected.len());
}
