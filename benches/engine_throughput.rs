//! Engine throughput against a bare rdkafka consumer, on the real broker, in one run.
//!
//! ```text
//! scripts/bench-engine                      # starts the broker, runs this, prints the table
//! DRIFTWATCH_TEST_BROKERS=127.0.0.1:19092 BENCH_EVENTS=1000000 cargo bench --bench engine_throughput
//! ```
//!
//! Loads N generated transactions into a fresh 4-partition topic, then alternates, `BENCH_RUNS`
//! times each: (a) a bare `BaseConsumer` child process that only reads every message, and
//! (b) the `driftwatch run` engine (fresh consumer group, same topic) until every event's
//! offset is stored for commit, i.e. scored, alerts/dead letters acknowledged. Prints events/s
//! per run, the medians, the ratio b/a of the medians, and each child's peak RSS (VmHWM).
//!
//! `BENCH_COMPARE_BIN=/path/to/other/driftwatch` also runs that binary (1 worker, drift on) in
//! every round, alternating which goes first, and prints both medians and their ratio: a
//! before/after comparison in one sitting on the same loaded topic (`BENCH_COMPARE_MODEL`: the
//! artifact that binary reads, when the format moved on since).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};
use rdkafka::{ClientConfig, Message};

fn brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKERS").expect("DRIFTWATCH_TEST_BROKERS must name a running broker (scripts/kafka start)")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Child role (a): read `n` messages from `topic`, print elapsed seconds from the first message.
fn bare_consumer(topic: &str, n: usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let (mut seen, mut bytes) = (0usize, 0usize);
    let mut first = None;
    while seen < n {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let secs = first.unwrap().elapsed().as_secs_f64();
    println!("{secs} {bytes} {}", peak_rss_kib(std::process::id()));
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn scrape(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Role (b): run the engine until all `n` events are committable; (seconds, peak RSS KiB).
fn engine_run(bin: &Path, model: &Path, topic: &str, n: usize, run: usize, workers: usize, drift: bool) -> (f64, u64) {
    engine_run_with(bin, model, topic, n, run, workers, drift, "")
}

/// [`engine_run`] with extra `[engine]` lines (e.g. `delivery = "exactly_once"`).
#[allow(clippy::too_many_arguments)]
fn engine_run_with(bin: &Path, model: &Path, topic: &str, n: usize, run: usize, workers: usize, drift: bool, engine_extra: &str) -> (f64, u64) {
    let tag = bin.to_string_lossy().bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let run = format!("{run}-{tag:x}");
    let run = format!("{run}{}", if engine_extra.is_empty() { "" } else { "-x" });
    let dir = std::env::temp_dir().join(format!("dw-bench-{}-{run}-{workers}-{drift}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[drift]\nenabled = {drift}\n[engine]\nworkers = {workers}\n{engine_extra}\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"bench-{}-{run}-{workers}-{drift}\"\ntransactions_topic = \"{topic}\"\nalerts_topic = \"{topic}-alerts\"\ndead_letter_topic = \"{topic}-dlq\"\n[model]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        brokers(), std::process::id(), model.display()
    );
    std::fs::write(dir.join("bench.toml"), config).unwrap();
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(dir.join("bench.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("build the release binary first (cargo build --release)");
    let mut first = None;
    let mut rss = 0;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let consumed = scrape(port, "driftwatch_events_consumed_total").unwrap_or(0.0);
        if consumed > 0.0 {
            first.get_or_insert_with(Instant::now);
        }
        rss = rss.max(peak_rss_kib(child.id()));
        if scrape(port, "driftwatch_events_committable_total").unwrap_or(0.0) >= n as f64 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "engine exited early");
    }
    let secs = first.unwrap().elapsed().as_secs_f64();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    (secs, rss)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(role) = std::env::var("BENCH_ROLE") {
        let mut parts = role.splitn(3, ':');
        assert_eq!(parts.next(), Some("bare"));
        let topic = parts.next().unwrap();
        bare_consumer(topic, parts.next().unwrap().parse().unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_usize("BENCH_EVENTS", 1_000_000);
    let runs = env_usize("BENCH_RUNS", 3);
    let topic = format!("bench-{}-{}", std::process::id(), n);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(admin.create_topics(&[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))], &AdminOptions::new())).unwrap();

    let loading = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let mut bytes = 0usize;
    // 10,000 tx/s of event time: 1 M events span 100 s, so the run measures steady-state
    // profiling; closing a window (once a minute in production) is measured in benches/drift.rs.
    let generator = driftwatch::generate::Generator::new(driftwatch::generate::GeneratorConfig { rate_per_sec: 10_000.0, ..Default::default() });
    for tx in generator.take(n) {
        let payload = serde_json::to_vec(&tx).unwrap();
        bytes += payload.len();
        let record = BaseRecord::to(&topic).payload(payload.as_slice()).key(tx.account_id.as_bytes());
        driftwatch::engine::send_with_backpressure(&producer, record).map_err(|(e, _)| e).expect("load the bench topic");
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    eprintln!("loaded {n} events ({:.0} MB) into {topic} in {:.1} s", bytes as f64 / 1e6, loading.elapsed().as_secs_f64());

    let me = std::env::current_exe().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let this_bin = target.join("release/driftwatch");
    let compare_bin = std::env::var("BENCH_COMPARE_BIN").ok().map(std::path::PathBuf::from);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let compare_model = std::env::var("BENCH_COMPARE_MODEL").map(std::path::PathBuf::from).unwrap_or_else(|_| model.clone());
    let mut compared = Vec::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut bare, mut engine, mut multi, mut no_drift) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut exactly_once = Vec::new();
    let (mut bare_rss, mut engine_rss, mut multi_rss) = (0u64, 0u64, 0u64);
    for run in 0..runs {
        let out = Command::new(&me).env("BENCH_ROLE", format!("bare:{topic}:{n}")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
        bare.push(n as f64 / f[0]);
        bare_rss = bare_rss.max(f[2] as u64);
        let compare_first = run % 2 == 1;
        if let (Some(other), true) = (&compare_bin, compare_first) {
            compared.push(n as f64 / engine_run(other, &compare_model, &topic, n, run, 1, true).0);
        }
        let (secs, rss) = engine_run(&this_bin, &model, &topic, n, run, 1, true);
        engine.push(n as f64 / secs);
        engine_rss = engine_rss.max(rss);
        if let (Some(other), false) = (&compare_bin, compare_first) {
            compared.push(n as f64 / engine_run(other, &compare_model, &topic, n, run, 1, true).0);
        }
        if let Some(c) = compared.last() {
            eprintln!("run {}: compared binary, 1 worker {c:>9.0} ev/s", run + 1);
        }
        let (secs, _) = engine_run(&this_bin, &model, &topic, n, run, 1, false);
        no_drift.push(n as f64 / secs);
        let (secs, _) = engine_run_with(&this_bin, &model, &topic, n, run, 1, true, "delivery = \"exactly_once\"");
        exactly_once.push(n as f64 / secs);
        eprintln!("run {}: engine 1 worker exactly-once {:>9.0} ev/s", run + 1, exactly_once[run]);
        let (secs, rss) = engine_run(&this_bin, &model, &topic, n, run, cores, true);
        multi.push(n as f64 / secs);
        multi_rss = multi_rss.max(rss);
        eprintln!(
            "run {}: bare consumer {:>9.0} ev/s   engine 1 worker {:>9.0} ev/s (drift off {:>9.0})   engine {cores} workers {:>9.0} ev/s",
            run + 1,
            bare[run],
            engine[run],
            no_drift[run],
            multi[run]
        );
    }
    let (mb, me_, mm, mn) = (median(&mut bare), median(&mut engine), median(&mut multi), median(&mut no_drift));
    println!("events: {n} in 4 partitions, {runs} runs each, alternating, {cores} cores");
    println!("bare rdkafka consumer:          median {mb:>9.0} events/s, peak RSS {:.0} MiB", bare_rss as f64 / 1024.0);
    println!("driftwatch engine, 1 worker:    median {me_:>9.0} events/s, peak RSS {:.0} MiB", engine_rss as f64 / 1024.0);
    println!("driftwatch engine, {cores} workers:   median {mm:>9.0} events/s, peak RSS {:.0} MiB", multi_rss as f64 / 1024.0);
    println!("driftwatch engine, 1 worker, drift off: median {mn:>9.0} events/s");
    println!("ratio engine/bare: {:.2} (1 worker), {:.2} ({cores} workers); drift profiling costs {:.1} % of 1-worker throughput", me_ / mb, mm / mb, 100.0 * (1.0 - me_ / mn));
    let meo = median(&mut exactly_once);
    println!("driftwatch engine, 1 worker, exactly-once: median {meo:>9.0} events/s ({:.2} of at-least-once)", meo / me_);
    if let Some(other) = &compare_bin {
        let mc = median(&mut compared);
        println!("compared binary {}, 1 worker: median {mc:>9.0} events/s; this/compared {:.3}", other.display(), me_ / mc);
    }
}
