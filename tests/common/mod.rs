//! Helpers for integration tests against the real Kafka broker started by `scripts/test`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// The broker under test. Fails, saying why, when none was started.
pub fn brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKERS").unwrap_or_else(|_| {
        panic!("DRIFTWATCH_TEST_BROKERS is not set: these tests need a real Kafka broker. Run `scripts/test`, or `scripts/kafka start` and export DRIFTWATCH_TEST_BROKERS=<its last line>.")
    })
}

/// A unique name so runs never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos % 0xffff_ffff)
}

pub struct Topics {
    pub transactions: String,
    pub alerts: String,
    pub dlq: String,
    pub group: String,
    pub reports: String,
    pub drift_alerts: String,
    pub retrain: String,
}

impl Topics {
    pub fn new(partitions: i32) -> Topics {
        let t = Topics {
            transactions: unique("tx"),
            alerts: unique("alerts"),
            dlq: unique("dlq"),
            group: unique("group"),
            reports: unique("reports"),
            drift_alerts: unique("drift-alerts"),
            retrain: unique("retrain"),
        };
        create_topic(&t.transactions, partitions);
        t
    }
}

pub fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]);
}

/// Creates a topic with topic-level settings (e.g. `max.message.bytes`).
pub fn create_topic_with(name: &str, partitions: i32, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let topic = settings.iter().fold(NewTopic::new(name, partitions, TopicReplication::Fixed(1)), |t, (k, v)| t.set(k, v));
    let res = rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("cannot reach Kafka at {} to create a topic: {e}", brokers()));
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

pub fn produce(topic: &str, events: &[Vec<u8>]) {
    produce_compressed(topic, events, "none");
}

/// Produces `events` compressed with `codec` (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn produce_compressed(topic: &str, events: &[Vec<u8>], codec: &str) {
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").set("compression.type", codec).create().unwrap();
    for (i, e) in events.iter().enumerate() {
        send_waiting(&p, topic, &format!("k{}", i % 97), e);
    }
    p.flush(Duration::from_secs(30)).expect("test producer flush");
}

/// Produces one record, waiting while the producer's queue is full.
pub fn send_waiting(p: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(topic).payload(payload).key(key);
    loop {
        match p.send(record) {
            Ok(()) => break,
            Err((_, r)) => {
                record = r;
                p.poll(Duration::from_millis(10));
            }
        }
    }
    p.poll(Duration::ZERO);
}

#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
}

/// Reads `topic` from the beginning until `expected` messages arrived and the topic is quiet
/// for `quiet`, or `timeout` passes.
pub fn consume_all(topic: &str, expected: usize, timeout: Duration) -> Vec<Received> {
    consume_all_isolated(topic, expected, timeout, "read_uncommitted")
}

/// As [`consume_all`], reading with this `isolation.level` (`read_committed` skips aborted
/// transactions' records).
pub fn consume_all_isolated(topic: &str, expected: usize, timeout: Duration, isolation: &str) -> Vec<Received> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
                    .unwrap_or_default();
                out.push(Received { key: m.key().map(<[u8]>::to_vec), payload: m.payload().unwrap_or_default().to_vec(), headers, partition: m.partition() });
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                if out.len() >= expected && quiet_since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    out
}

/// Sum of committed offsets of `group` on `topic` minus the topic's end offsets (0 = all
/// committed). Retries for 60 s while the broker is recovering (a coordinator moving after a
/// broker restart answers `NotCoordinator` for a while).
pub fn uncommitted(group: &str, topic: &str) -> i64 {
    retrying(|| uncommitted_once(group, topic))
}

/// Runs a broker query, again for up to 60 s while it fails (panics): the broker may be
/// recovering from a fault test.
pub fn retrying<T>(query: impl Fn() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&query)) {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => std::panic::resume_unwind(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn uncommitted_once(group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let mut gap = 0;
    for e in committed.elements() {
        let (_, high) = c.fetch_watermarks(topic, e.partition(), Duration::from_secs(10)).unwrap();
        let off = e.offset().to_raw().filter(|&o| o >= 0).unwrap_or(0);
        gap += high - off;
    }
    gap
}

pub struct EngineProcess {
    pub child: Child,
    /// The metrics endpoint's address, read from the engine's log once it has bound port 0
    /// (a port picked by the test and released before the engine binds it could be taken).
    address: std::sync::OnceLock<String>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `driftwatch run` on the test broker with these topics; `engine_extra` lines go in `[engine]`.
pub fn start_engine(t: &Topics, engine_extra: &str) -> EngineProcess {
    start_engine_with_env(t, engine_extra, &[])
}

/// As [`start_engine`], with extra environment variables (e.g. `DRIFTWATCH_MODEL__…` overrides).
pub fn start_engine_with_env(t: &Topics, engine_extra: &str, env: &[(&str, &str)]) -> EngineProcess {
    let dir = tempfile::tempdir().unwrap();
    let model = demo_model();
    let config = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\ntransactions_topic = \"{}\"\nalerts_topic = \"{}\"\ndead_letter_topic = \"{}\"\ndrift_reports_topic = \"{}\"\ndrift_alerts_topic = \"{}\"\nretrain_requests_topic = \"{}\"\nmodel_events_topic = \"{}\"\nshadow_scores_topic = \"{}\"\npartitions = 3\n[model]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[engine]\nstatistics_interval_ms = 500\n{engine_extra}\n",
        brokers(), t.group, t.transactions, t.alerts, t.dlq, t.reports, t.drift_alerts, t.retrain, t.retrain.replace("retrain", "model-events"), t.retrain.replace("retrain", "shadow"), model.display()
    );
    start_with_config(&config, dir, env)
}

/// Starts `driftwatch run` with a full configuration text (its `metrics.listen` should be
/// `127.0.0.1:0`: the address is read from the log).
pub fn start_with_config(config: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> EngineProcess {
    let path = dir.path().join("engine.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("engine.log");
    let child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", std::env::var("DRIFTWATCH_TEST_ENGINE_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    EngineProcess { child, address: std::sync::OnceLock::new(), log, _dir: dir }
}

impl EngineProcess {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics endpoint's address: waits (60 s at most) for the engine to log it.
    pub fn address(&self) -> &str {
        self.address.get_or_init(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let log = self.log_text();
                if let Some(line) = log.lines().find(|l| l.contains("Serving /metrics")) {
                    let addr = line.split("address=").nth(1).and_then(|a| a.split_whitespace().next()).unwrap_or_else(|| panic!("no address in: {line}"));
                    return addr.trim_matches('"').to_string();
                }
                assert!(Instant::now() < deadline, "the engine did not serve /metrics within 60 s; log:\n{log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    }

    /// GET a path on the engine's HTTP endpoint: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let addr = self.address();
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut s, &mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        Some((status, body))
    }

    /// Parses /metrics with the real OpenMetrics parser (prometheus_client, Python).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, body) = self.get("/metrics").expect("metrics endpoint reachable");
        assert_eq!(status, 200);
        parse_openmetrics(&body)
    }

    /// Waits until `ok` holds on the parsed metrics. A series `ok` looks up that does not
    /// exist yet (a labelled family before its first event) is "not yet"; if it never appears
    /// the wait fails saying which.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
        let deadline = Instant::now() + timeout;
        let mut last_miss = String::new();
        loop {
            if let Some((200, body)) = self.get("/metrics") {
                let m = parse_openmetrics(&body);
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ok(&m))) {
                    Ok(true) => return m,
                    Ok(false) => {}
                    Err(panic) => last_miss = panic.downcast_ref::<String>().cloned().unwrap_or_default(),
                }
            }
            if self.exited() {
                panic!("the engine exited while waiting for {what}; log:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what} {last_miss}; engine log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the engine process has ended (a zombie until reaped; `try_wait` needs `&mut`).
    pub fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|stat| stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z"))
            .unwrap_or(true)
    }

    /// Peak resident memory of the engine so far (VmHWM), bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("engine still running");
        let kb: u64 = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).expect("VmHWM in /proc/PID/status");
        kb * 1024
    }

    /// Waits for the engine to exit on its own (`timeout` at most, else fails saying `why`).
    pub fn wait_exit(&mut self, timeout: Duration, why: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() >= deadline {
                let threads = thread_dump(self.child.id());
                let _ = self.child.kill();
                panic!("{why}; log:\n{}\nthe engine's threads when it was given up on:\n{threads}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let threads = thread_dump(self.child.id());
                let _ = self.child.kill();
                panic!("engine did not stop within 40 s of SIGTERM; log:\n{}\nthe engine's threads when it was given up on:\n{threads}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log_text()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_openmetrics(text: &str) -> HashMap<String, f64> {
    let python = std::env::var("DRIFTWATCH_PYTHON").unwrap_or_else(|_| {
        panic!("DRIFTWATCH_PYTHON is not set: the metrics are checked with prometheus_client's OpenMetrics parser. Run `scripts/test`, or point it at a Python with prometheus-client installed.")
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parse_openmetrics.py");
    let mut child = Command::new(python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "OpenMetrics parser rejected the exposition: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of one series; fails when the series does not exist (a renamed metric must not
/// read as 0).
pub fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    match m.get(key) {
        Some(v) => *v,
        None => {
            let family = key.split('{').next().unwrap_or(key);
            let mut same: Vec<&String> = m.keys().filter(|k| k.starts_with(family)).collect();
            same.sort();
            panic!("metric series {key} is missing; series of that family: {same:?}")
        }
    }
}

/// The shipped demo model, which the engine tests run.
pub fn demo_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json")
}

/// `driftwatch score --model MODEL [extra args]` on `events` (one per line): its output lines.
/// `driftwatch ARGS…` with `env` added, failing the test (with its stderr) unless it succeeds.
pub fn driftwatch_ok(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch")).args(args).envs(env.iter().copied()).output().unwrap();
    assert!(out.status.success(), "driftwatch {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The demo model as version `version` (of model `name` when given), with threshold
/// `threshold` when given, written to `dir`.
pub fn demo_variant(dir: &Path, name: Option<&str>, version: &str, threshold: Option<f64>) -> PathBuf {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(demo_model()).unwrap()).unwrap();
    if let Some(name) = name {
        v["model"]["name"] = name.into();
    }
    v["model"]["version"] = version.into();
    if let Some(t) = threshold {
        v["decision"]["threshold"] = t.into();
    }
    let path = dir.join(format!("{version}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    path
}

pub fn score_cli(model: &Path, extra: &[&str], events: &[Vec<u8>]) -> Vec<serde_json::Value> {
    assert!(events.iter().all(|e| !e.contains(&b'\n')), "an event with a newline cannot be one JSON line");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["score", "--model"])
        .arg(model)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = events.iter().flat_map(|e| e.iter().copied().chain([b'\n'])).collect();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let lines: Vec<serde_json::Value> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), events.len(), "one output line per event");
    lines
}

/// The transaction ids `driftwatch score` alerts on (fraud or outlier) among `events`: the
/// offline oracle the engine's alerts are compared with.
pub fn offline_alert_ids(events: &[Vec<u8>]) -> std::collections::BTreeSet<String> {
    score_cli(&demo_model(), &[], events)
        .into_iter()
        .filter(|v| v["is_fraud"] == true || v["is_outlier"] == true)
        .map(|v| v["transaction_id"].as_str().unwrap().to_string())
        .collect()
}

/// What `driftwatch score` decides for one input line.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not scorable: the reason code.
    Invalid(String),
    /// Scored.
    Scored { id: String, score: f64, is_outlier: bool },
}

impl Decision {
    /// Whether the engine alerts on it at `threshold` (outliers alert too).
    pub fn alerts(&self, threshold: f64) -> bool {
        matches!(self, Decision::Scored { score, is_outlier, .. } if *score >= threshold || *is_outlier)
    }
}

/// `driftwatch score`'s decision for each event, in order: the offline oracle. Events must not
/// contain a newline byte (one event per line).
pub fn offline_decisions(events: &[Vec<u8>]) -> Vec<Decision> {
    score_cli(&demo_model(), &[], events)
        .into_iter()
        .map(|v| match v["reason"].as_str() {
            Some(r) => Decision::Invalid(r.to_string()),
            None => Decision::Scored {
                id: v["transaction_id"].as_str().unwrap().to_string(),
                score: v["score"].as_f64().unwrap(),
                is_outlier: v["is_outlier"].as_bool().unwrap(),
            },
        })
        .collect()
}

/// The transaction ids of alerts read from an alerts topic, in order.
pub fn alert_ids_of(alerts: &[Received]) -> Vec<String> {
    alerts.iter().map(|a| serde_json::from_slice::<serde_json::Value>(&a.payload).unwrap()["transaction_id"].as_str().unwrap().to_string()).collect()
}

/// Produces `events` keyed `i<index>` in chunks of `chunk` every `pause`, on a thread: a live
/// stream, so faults land while events are in flight.
pub fn feed(topic: &str, events: std::sync::Arc<Vec<Vec<u8>>>, chunk: usize, pause: Duration) -> std::thread::JoinHandle<()> {
    feed_from(topic, events, 0, chunk, pause)
}

/// As [`feed`], the first event keyed `i<first>` (a stream continued).
pub fn feed_from(topic: &str, events: std::sync::Arc<Vec<Vec<u8>>>, first: usize, chunk: usize, pause: Duration) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").set("message.max.bytes", "2000000").set("message.timeout.ms", "300000").create().unwrap();
        for (c, part) in events.chunks(chunk).enumerate() {
            for (j, e) in part.iter().enumerate() {
                send_waiting(&p, &topic, &format!("i{}", first + c * chunk + j), e);
            }
            std::thread::sleep(pause);
        }
        p.flush(Duration::from_secs(300)).expect("feeder flush");
    })
}

/// Waits until `group` has committed every event of `topic`, failing after `timeout`.
pub fn wait_all_committed(group: &str, topic: &str, timeout: Duration, engine: &EngineProcess) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = uncommitted(group, topic);
        if left == 0 {
            return;
        }
        assert!(!engine.exited(), "the engine exited with {left} events uncommitted; log:\n{}", engine.log_text());
        assert!(Instant::now() < deadline, "{left} events still uncommitted after {timeout:?}; log:\n{}", engine.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `rows` generated transactions (seed `seed`), as JSON.
pub fn generated(rows: usize, seed: u64) -> Vec<Vec<u8>> {
    driftwatch::generate::Generator::new(driftwatch::generate::GeneratorConfig { seed, rows: rows as u64, ..Default::default() })
        .take(rows)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect()
}

/// The transaction ids the engine alerts on at `threshold`, by the offline scorer's decisions.
pub fn alerting_ids(decisions: &[Decision], threshold: f64) -> std::collections::BTreeSet<String> {
    decisions
        .iter()
        .filter(|d| d.alerts(threshold))
        .map(|d| match d {
            Decision::Scored { id, .. } => id.clone(),
            Decision::Invalid(_) => unreachable!("an invalid event does not alert"),
        })
        .collect()
}

/// The group's committed offset per partition (0 when none), retried while the broker recovers.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> std::collections::BTreeMap<i32, i64> {
    retrying(|| {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements().iter().map(|e| (e.partition(), e.offset().to_raw().filter(|&o| o >= 0).unwrap_or(0))).collect()
    })
}

/// Each partition's end offset (high watermark), retried while the broker recovers.
pub fn end_offsets(topic: &str, partitions: i32) -> std::collections::BTreeMap<i32, i64> {
    retrying(|| {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
        (0..partitions).map(|p| (p, c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)).collect()
    })
}

/// Where each thread of process `pid` is (gdb's backtraces, function names only), for the
/// failure message of a process that did not stop: what it waits on is the finding.
pub fn thread_dump(pid: u32) -> String {
    let out = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-ex", "set pagination off", "-ex", "thread apply all bt 25"])
        .output();
    let Ok(out) = out else { return "(gdb not available)".into() };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("Thread ") {
            // Thread 21 (Thread 0x… (LWP 6428) "rdk:broker1"): → thread "rdk:broker1"
            lines.push(format!("thread {}", line.rsplit(')').nth(1).map(str::trim).unwrap_or(line)));
        } else if let Some(rest) = line.strip_prefix('#') {
            // "#3  0x… in rdkafka::…::poll (…) at src/…:12" → "  rdkafka::…::poll"
            let f = rest.split(" in ").nth(1).unwrap_or(rest);
            let f = f.split(" (").next().unwrap_or(f);
            lines.push(format!("    {f}"));
        }
    }
    if lines.is_empty() { format!("(no backtraces: {})", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")) } else { lines.join("\n") }
}
