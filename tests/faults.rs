//! Faults on the engine's side, on the real broker, each compared with `driftwatch score`'s
//! decisions on the same events (at a threshold where about one event in eight alerts, so a
//! skipped event cannot hide): poison input (100,000 structure-aware malformed events and one
//! event of 1,000,500 bytes), topics that refuse records (exit 5 with nothing lost; references
//! and drops), the engine killed with SIGKILL five times during a 1,000,000-event run, and a
//! 10x burst with the peak RSS reported.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

/// One test at a time: they load the 2-core machine heavily, and the kill test counts kills
/// that land while events arrive.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

const THRESHOLD: f64 = 0.02;
const ENV: &[(&str, &str)] = &[("DRIFTWATCH_MODEL__THRESHOLD", "0.02")];
/// A killed member's partitions move on after 6 s instead of 45.
const SHORT_SESSION: &str = "batch_size = 500\n[kafka.consumer_options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Where each event keyed `i<index>` landed: index → (partition, offset).
fn positions(topic: &str, n: usize) -> HashMap<usize, (i32, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("positions"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = HashMap::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < n {
        assert!(Instant::now() < deadline, "read {} of {n} events back", out.len());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if let Some(i) = m.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| k.strip_prefix('i')).and_then(|k| k.parse().ok()) {
                out.insert(i, (m.partition(), m.offset()));
            }
        }
    }
    out
}

/// Structure-aware malformed events: each starts as a valid event and breaks it one way. The
/// class index is returned with each (for the per-class check).
fn malformed(valid: &[u8], rng: &mut rand_xoshiro::Xoshiro256PlusPlus) -> (usize, Vec<u8>) {
    let text = String::from_utf8(valid.to_vec()).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(valid).unwrap();
    let numeric = ["amount", "distance_from_home_km", "hour_local", "txn_count_24h", "account_age_days", "avg_amount_30d"];
    let categorical = ["currency", "merchant_category", "country", "channel"];
    let required = ["transaction_id", "account_id", "event_time"];
    let class = rng.gen_range(0..12);
    let out: Vec<u8> = match class {
        // Truncated anywhere.
        0 => valid[..rng.gen_range(1..valid.len() - 1)].to_vec(),
        // A feature of the wrong type.
        1 => {
            let wrong = [serde_json::json!("lots"), serde_json::json!([1, 2]), serde_json::json!({"a": 1})];
            if rng.gen_bool(0.5) {
                v[numeric[rng.gen_range(0..numeric.len())]] = wrong[rng.gen_range(0..3)].clone();
            } else {
                v[categorical[rng.gen_range(0..categorical.len())]] = wrong[rng.gen_range(1..3)].clone();
            }
            serde_json::to_vec(&v).unwrap()
        }
        // Deep nesting, in an unknown field or a known one.
        2 => {
            let depth = rng.gen_range(200..5_000);
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let field = if rng.gen_bool(0.5) { "extra" } else { "amount" };
            let mut t = text.trim_end_matches('}').to_string();
            t.push_str(&format!(",\"{field}\":{nested}}}"));
            t.into_bytes()
        }
        // Huge numbers.
        3 => {
            let huge = ["1e400", "-1e400", "123456789012345678901234567890123456789e300", "1e-400"][rng.gen_range(0..4)];
            let field = numeric[rng.gen_range(0..numeric.len())];
            let old = format!("\"{field}\":{}", v[field]);
            text.replacen(&old, &format!("\"{field}\":{huge}"), 1).into_bytes()
        }
        // Invalid UTF-8 inside a string.
        4 => {
            let at = text.find("\"account_id\":\"").map(|i| i + 14).unwrap_or(2);
            let mut b = valid.to_vec();
            b.splice(at..at, [0xff, 0xfe, 0xc3]);
            b
        }
        // Duplicate keys, the second of another type.
        5 => {
            let mut t = text.trim_end_matches('}').to_string();
            t.push_str(&format!(",\"{}\":\"duplicate\"}}", numeric[rng.gen_range(0..numeric.len())]));
            t.into_bytes()
        }
        // A required field missing or null.
        6 => {
            let f = required[rng.gen_range(0..3)];
            if rng.gen_bool(0.5) {
                v.as_object_mut().unwrap().remove(f);
            } else {
                v[f] = serde_json::Value::Null;
            }
            serde_json::to_vec(&v).unwrap()
        }
        // Not an object.
        7 => [&b"[1,2,3]"[..], b"\"text\"", b"42", b"null", b"true", b"[{\"amount\":1}]"][rng.gen_range(0..6)].to_vec(),
        // A bad timestamp.
        8 => {
            v["event_time"] = [serde_json::json!("yesterday"), serde_json::json!("2026-13-45T99:00:00Z"), serde_json::json!(-1e300), serde_json::json!([2026])][rng.gen_range(0..4)].clone();
            serde_json::to_vec(&v).unwrap()
        }
        // Random bytes flipped.
        9 => {
            let mut b = valid.to_vec();
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
            }
            b
        }
        // Garbage.
        10 => (0..rng.gen_range(1..2_000)).map(|_| rng.gen()).collect(),
        // A valid prefix followed by trailing garbage.
        _ => {
            let mut b = valid.to_vec();
            b.extend_from_slice(b" {}garbage");
            b
        }
    };
    // One event per line for the offline scorer: no newline, no trailing CR, not blank.
    let mut out: Vec<u8> = out.into_iter().map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
    if out.iter().all(u8::is_ascii_whitespace) {
        out.push(b'x');
    }
    (class, out)
}

#[test]
fn poison_never_halts_the_engine_and_every_malformed_event_is_dead_lettered_with_its_reason() {
    let _turn = turn();
    let t = Topics::new(3);
    let base = generated(120_000, 31);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
    let mut inputs = Vec::with_capacity(base.len());
    let mut classes = Vec::with_capacity(base.len());
    for (i, e) in base.iter().enumerate() {
        if i % 6 == 5 {
            inputs.push(e.clone());
            classes.push(None);
        } else {
            let (c, m) = malformed(e, &mut rng);
            inputs.push(m);
            classes.push(Some(c));
        }
    }
    let mutated = classes.iter().filter(|c| c.is_some()).count();
    assert_eq!(mutated, 100_000);
    let decisions = offline_decisions(&inputs);
    // The issue's poison event: 1,000,500 bytes, written with a 2 MB producer limit.
    let mut big = br#"{"transaction_id":"t-big","note":""#.to_vec();
    big.resize(1_000_500 - 2, b'x');
    big.extend_from_slice(b"\"}");
    let mut all = inputs.clone();
    all.insert(60_000, big.clone());
    let key_of = |i: usize| if i < 60_000 { i } else if i == 60_000 { usize::MAX } else { i - 1 };

    let engine = start_engine_with_env(&t, "batch_size = 500", ENV);
    let feeder = feed(&t.transactions, Arc::new(all), 5_000, Duration::from_millis(50));
    feeder.join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(300), &engine);
    let m = engine.metrics();
    assert_eq!(metric(&m, "driftwatch_events_consumed_total{}"), 120_001.0, "every event consumed once");
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");

    let invalid: Vec<(usize, &String)> = decisions.iter().enumerate().filter_map(|(i, d)| if let Decision::Invalid(r) = d { Some((i, r)) } else { None }).collect();
    let dlq = consume_all(&t.dlq, invalid.len() + 1, Duration::from_secs(120));
    let mut by_index: HashMap<usize, &Received> = HashMap::new();
    for r in &dlq {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let i: usize = key.strip_prefix('i').and_then(|k| k.parse().ok()).unwrap_or_else(|| panic!("dead letter with key {key:?}"));
        assert!(by_index.insert(key_of(i), r).is_none(), "event {i} dead-lettered twice in a clean run");
    }
    // The big one: truncated to fit, with its size and digest.
    let b = by_index.remove(&usize::MAX).expect("the 1,000,500-byte event was dead-lettered");
    assert_eq!(b.headers.get("dlq.reason").map(String::as_str), Some("oversized"));
    assert_eq!(b.headers.get("dlq.payload").map(String::as_str), Some("truncated"));
    assert_eq!(b.headers.get("dlq.payload.original_bytes").map(String::as_str), Some("1000500"));
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&big).iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(b.headers.get("dlq.payload.original_sha256"), Some(&digest));
    assert!(big.starts_with(&b.payload) && b.payload.len() > 800_000);

    let mut wrong = Vec::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut invalid_by_class = [0usize; 12];
    for (i, d) in decisions.iter().enumerate() {
        match (d, by_index.get(&i)) {
            (Decision::Invalid(r), Some(dead)) => {
                *reasons.entry(r.as_str()).or_default() += 1;
                if let Some(c) = classes[i] {
                    invalid_by_class[c] += 1;
                }
                if dead.headers.get("dlq.reason") != Some(r) || dead.payload != inputs[i] {
                    wrong.push(format!("event {i}: offline {r}, dead letter {:?}", dead.headers.get("dlq.reason")));
                }
            }
            (Decision::Invalid(r), None) => wrong.push(format!("event {i} ({r}) was not dead-lettered")),
            (Decision::Scored { .. }, Some(dead)) => wrong.push(format!("event {i} is valid offline but was dead-lettered: {:?}", dead.headers.get("dlq.error"))),
            (Decision::Scored { .. }, None) => {}
        }
    }
    assert!(wrong.is_empty(), "{} disagreements with the offline scorer, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert_eq!(dlq.len(), invalid.len() + 1, "one dead letter each");
    let malformed_invalid: usize = invalid_by_class.iter().sum();
    assert!(malformed_invalid * 10 >= mutated * 9, "the generator made mostly invalid events: {malformed_invalid} of {mutated}");
    assert!(invalid_by_class.iter().all(|&n| n > 0), "every mutation class produced invalid events: {invalid_by_class:?}");

    let expected = alerting_ids(&decisions, THRESHOLD);
    let got: BTreeSet<String> = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(60))).into_iter().collect();
    assert_eq!(got, expected, "alerts equal the offline scorer's on the valid events");
    println!("poison: 100,000 malformed (invalid {malformed_invalid}; by class {invalid_by_class:?}), 20,000 valid, one of 1,000,500 bytes: 0 crashes, {} dead letters with the offline reasons {reasons:?}, {} alerts as offline", dlq.len(), expected.len());
}

#[test]
fn a_topic_refusing_alerts_stops_the_engine_with_exit_5_and_nothing_is_lost() {
    let _turn = turn();
    let t = Topics::new(2);
    // Alerts are ~700 bytes: a 200-byte limit refuses every one (a misconfigured topic).
    create_topic_with(&t.alerts, 1, &[("max.message.bytes", "200")]);
    let events = generated(5_000, 41);
    let decisions = offline_decisions(&events);
    let expected = alerting_ids(&decisions, THRESHOLD);
    feed(&t.transactions, Arc::new(events.clone()), 5_000, Duration::ZERO).join().unwrap();
    let mut engine = start_engine_with_env(&t, "batch_size = 50", ENV);
    let status = engine.wait_exit(Duration::from_secs(60), "the engine kept running with every alert refused");
    let log = engine.log_text();
    assert_eq!(status.code(), Some(5), "exit 5; log:\n{log}");
    assert!(log.contains(&format!("refused a fraud alert for topic `{}`", t.alerts)), "the error names the output and topic:\n{log}");
    // Nothing past the first alerting event of each partition was committed.
    let at = positions(&t.transactions, events.len());
    let mut first_alert: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        if d.alerts(THRESHOLD) {
            let (p, o) = at[&i];
            let e = first_alert.entry(p).or_insert(o);
            *e = (*e).min(o);
        }
    }
    let done = committed_offsets(&t.group, &t.transactions, 2);
    for (p, first) in &first_alert {
        assert!(done[p] <= *first, "partition {p}: committed {} past the refused alert's event at {first}", done[p]);
    }
    drop(engine);
    // The cause fixed, a restart delivers every alert.
    let fix = AlterConfig::new(ResourceSpecifier::Topic(&t.alerts)).set("max.message.bytes", "1048588");
    for r in block_on(admin().alter_configs(&[fix], &AdminOptions::new())).unwrap() {
        r.unwrap_or_else(|(_, e)| panic!("altering the alerts topic: {e}"));
    }
    let again = start_engine_with_env(&t, "batch_size = 50", ENV);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(120), &again);
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
    let got: BTreeSet<String> = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(60))).into_iter().collect();
    assert_eq!(got, expected, "after the fix, every alert is delivered");
    println!("alerts topic refusing records: exit 5, committed {done:?} (first alerting offsets {first_alert:?}); after the fix all {} alerts delivered", expected.len());
}

#[test]
fn small_topic_limits_turn_dead_letters_into_references_and_drop_drift_reports() {
    let _turn = turn();
    let t = Topics::new(2);
    create_topic_with(&t.dlq, 1, &[("max.message.bytes", "4096")]);
    create_topic_with(&t.reports, 1, &[("max.message.bytes", "1000")]);
    // 100 tx/s of event time: 20-s windows close every 10 s of event time.
    let mut events: Vec<Vec<u8>> = Generator::new(GeneratorConfig { seed: 5, rows: 8_000, rate_per_sec: 100.0, ..Default::default() }).take(8_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    let broken: Vec<usize> = (0..20).map(|i| 100 + i * 300).collect();
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
    for &i in &broken {
        // 10 KB of random letters (the producer compresses; these stay over 4 KB): fine for the
        // engine (64 KiB), too large for the 4 KB dead-letter topic.
        let pad: String = (0..10_000).map(|_| rng.gen_range(b'a'..=b'z') as char).collect();
        events[i] = format!("{{\"transaction_id\": \"broken-{i}\", \"pad\": \"{pad}\"").into_bytes();
    }
    let decisions = offline_decisions(&events);
    let expected = alerting_ids(&decisions, THRESHOLD);
    let drift = "batch_size = 200\n[drift]\nsample_fraction = 0.5\nwindow_seconds = 20\nslide_seconds = 10\nlateness_seconds = 5\nmin_samples = 50";
    let engine = start_engine_with_env(&t, drift, ENV);
    feed(&t.transactions, Arc::new(events.clone()), 1_000, Duration::from_millis(100)).join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(120), &engine);
    let m = engine.metrics();
    let dropped = metric(&m, &format!("driftwatch_outputs_dropped_total{{topic={}}}", t.reports));
    assert!(dropped >= 1.0, "drift reports refused by their topic were dropped and counted");
    assert_eq!(metric(&m, "driftwatch_dead_letters_reduced_total{reason=omitted}"), 20.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "non-critical refusals and too-large dead letters do not stop the engine: {log}");
    let dlq = consume_all(&t.dlq, 20, Duration::from_secs(60));
    assert_eq!(dlq.len(), 20);
    for d in &dlq {
        assert_eq!(d.headers.get("dlq.payload").map(String::as_str), Some("omitted"));
        assert!(d.payload.is_empty());
        assert_eq!(d.headers.get("dlq.reason").map(String::as_str), Some("not_json"));
        let size: usize = d.headers["dlq.payload.original_bytes"].parse().unwrap();
        assert!(size > 10_000, "{size}");
        assert!(d.headers.contains_key("dlq.source.offset"), "the reference to the event");
    }
    let got: BTreeSet<String> = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(60))).into_iter().collect();
    assert_eq!(got, expected);
    println!("small topic limits: 20 dead letters produced as references, {dropped} drift reports dropped and counted, {} alerts as offline", expected.len());
}

#[test]
fn five_sigkills_during_a_million_events_lose_nothing_and_duplicates_are_bounded() {
    let _turn = turn();
    let partitions = 4;
    let t = Topics::new(partitions);
    let n = 1_000_000;
    let events = Arc::new(generated(n, 2024));
    let decisions = offline_decisions(&events);
    let expected = alerting_ids(&decisions, THRESHOLD);
    // About 60 s of stream: the kills land while events arrive and are in flight.
    let feeder = feed(&t.transactions, events.clone(), 10_000, Duration::from_millis(550));
    let mut windows = Vec::new();
    let mut mid_stream = 0;
    let kills = 5;
    for k in 0..kills {
        let engine = start_engine_with_env(&t, SHORT_SESSION, ENV);
        let before = committed_offsets(&t.group, &t.transactions, partitions).values().sum::<i64>();
        engine.wait_for("this run to handle events", Duration::from_secs(90), |m| metric(m, "driftwatch_events_consumed_total{}") >= 20_000.0);
        // ... and to commit some (librdkafka commits stored offsets every second).
        let deadline = Instant::now() + Duration::from_secs(30);
        while committed_offsets(&t.group, &t.transactions, partitions).values().sum::<i64>() <= before {
            assert!(Instant::now() < deadline, "run {k} committed nothing in 30 s; log:\n{}", engine.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        mid_stream += usize::from(!feeder.is_finished());
        let log = engine.kill();
        assert!(!log.contains("ERROR"), "run {k} was healthy until killed: {log}");
        // What the next run re-reads: from the committed offsets to what had been written.
        windows.push((committed_offsets(&t.group, &t.transactions, partitions), end_offsets(&t.transactions, partitions)));
    }
    assert!(mid_stream >= 4, "only {mid_stream} of {kills} kills hit while events were still arriving");
    feeder.join().unwrap();
    let last = start_engine_with_env(&t, SHORT_SESSION, ENV);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(300), &last);
    let (status, log) = last.terminate();
    assert!(status.success(), "{log}");

    let ids = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(120)));
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&unique).collect();
    assert!(missing.is_empty(), "{} alerts lost: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(unique, expected, "exactly the offline scorer's alerts");
    // A duplicate can only come from an event re-read after a kill: one in a window between
    // the committed offset and the end of the partition at that moment.
    let at = positions(&t.transactions, n);
    let mut rereadable_alerts = 0usize;
    for (i, d) in decisions.iter().enumerate() {
        if d.alerts(THRESHOLD) {
            let (p, o) = at[&i];
            rereadable_alerts += windows.iter().filter(|(c, h)| c[&p] <= o && o < h[&p]).count();
        }
    }
    let duplicates = ids.len() - unique.len();
    println!(
        "{kills} SIGKILLs ({mid_stream} while events arrived) in a {n}-event run: {} alerts expected, all delivered, {duplicates} duplicates (bound from the uncommitted windows at the kills: {rereadable_alerts})",
        expected.len()
    );
    assert!(duplicates <= rereadable_alerts, "{duplicates} duplicates, more than the {rereadable_alerts} alerting events that could be re-read");
}

#[test]
fn a_tenfold_burst_is_absorbed_with_bounded_memory() {
    let _turn = turn();
    let t = Topics::new(4);
    let events = Arc::new(generated(400_000, 77));
    let engine = start_engine_with_env(&t, "", ENV);
    // 10 s at 10,000 events/s, then 300,000 at once (a 10x burst and more), then quiet.
    feed(&t.transactions, Arc::new(events[..100_000].to_vec()), 10_000, Duration::from_secs(1)).join().unwrap();
    engine.wait_for("the steady part handled", Duration::from_secs(60), |m| metric(m, "driftwatch_events_committable_total{}") >= 100_000.0);
    let steady = engine.peak_rss();
    feed(&t.transactions, Arc::new(events[100_000..].to_vec()), 300_000, Duration::ZERO).join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(180), &engine);
    let burst = engine.peak_rss();
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("peak RSS: {:.0} MiB after the steady part, {:.0} MiB after a burst of 300,000 events", mib(steady), mib(burst));
    assert!(burst < 512 * 1024 * 1024, "peak RSS {:.0} MiB under a burst", mib(burst));
}

#[test]
fn a_deleted_alerts_topic_stops_the_engine_with_exit_5_and_nothing_is_lost() {
    let _turn = turn();
    let t = Topics::new(2);
    let events = generated(20_000, 43);
    let decisions = offline_decisions(&events);
    let mut engine = start_engine_with_env(&t, "batch_size = 200", ENV);
    feed(&t.transactions, Arc::new(events[..5_000].to_vec()), 5_000, Duration::ZERO).join().unwrap();
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(60), &engine);
    // Someone deletes the alerts topic under the running engine (the broker does not
    // auto-create topics), then more events arrive.
    for r in block_on(admin().delete_topics(&[&t.alerts], &AdminOptions::new())).unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("deleting {t}: {e}"));
    }
    let feeder = feed_from(&t.transactions, Arc::new(events[5_000..].to_vec()), 5_000, 15_000, Duration::ZERO);
    let status = engine.wait_exit(Duration::from_secs(120), "the engine kept running without its alerts topic");
    feeder.join().unwrap();
    let log = engine.log_text();
    assert_eq!(status.code(), Some(5), "exit 5; log:\n{log}");
    assert!(log.contains(&format!("refused a fraud alert for topic `{}`", t.alerts)), "{log}");
    let why = log.lines().find(|l| l.contains("refused a fraud alert")).unwrap_or_default().to_string();
    drop(engine);
    // The topic back, a restart delivers every alert of the events after the deletion.
    create_topic(&t.alerts, 2);
    let again = start_engine_with_env(&t, "batch_size = 200", ENV);
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(120), &again);
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
    let expected = alerting_ids(&decisions[5_000..], THRESHOLD);
    let got: BTreeSet<String> = alert_ids_of(&consume_all(&t.alerts, expected.len(), Duration::from_secs(60))).into_iter().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} alerts lost: {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(got.is_subset(&expected), "only the offline scorer's alerts");
    println!("alerts topic deleted under the engine: exit 5 ({why}); recreated, a restart delivered all {} alerts of the later events", expected.len());
}
