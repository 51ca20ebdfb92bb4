//! Engine throughput and CPU per event against bare rdkafka consumers, on the real broker, in
//! one run.
//!
//! ```text
//! scripts/bench-engine                      # starts the broker, runs this, prints the table
//! DRIFTWATCH_TEST_BROKERS=127.0.0.1:19092 BENCH_EVENTS=1000000 cargo bench --bench engine_throughput
//! ```
//!
//! Loads N generated transactions into a fresh 4-partition topic, then runs every variant once
//! untimed (warm-up: page cache, broker), then `BENCH_RUNS` (5) rounds, each running every
//! variant once in a shuffled order (seeded, printed): (a) a bare `BaseConsumer` child process
//! that only reads every message, with exactly the engine's consumer settings
//! (`Config::consumer_config`); (b) the same that also parses every payload with serde_json into
//! a `Value` (what reading JSON costs on this machine); (c) the `driftwatch run` engine (fresh
//! consumer group) until every event's offset is stored for commit, i.e. scored, alerts and dead
//! letters acknowledged, with 1 worker and drift on (5 %), drift off, exactly-once, performance
//! on (scores retained for labels, read back by the performance thread), and one worker per core. For each process: events/s (first message to last) and CPU µs per event
//! (the whole process's user + system time from /proc, start-up included, over N). Prints median
//! and spread (min–max) of each, the peak RSS (VmHWM), and ratios of medians.
//!
//! `BENCH_COMPARE_BIN=/path/to/other/driftwatch` adds that binary (1 worker, drift on) as one
//! more variant: a before/after comparison in one sitting on the same loaded topic
//! (`BENCH_COMPARE_MODEL`: the artifact that binary reads, when the format moved on since).
//! `BENCH_PYTHON=/path/to/python` (with confluent-kafka, numpy, scipy) adds the Python consumer
//! of `benches/python_consumer.py`: the same librdkafka settings, the engine's work per event
//! done as a Python service does it (`scripts/bench-engine` sets it up in the test venv).
//! `BENCH_LOAD_ONLY=1` loads the topic, prints its name and stops (to profile one process by hand).
//! `BENCH_EXTRA_MODEL=ARTIFACT` adds this engine with another artifact (e.g. an imported one).

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

/// The engine's own consumer settings, in a fresh group, without statistics: what every reader
/// that is not the engine runs with.
fn engine_consumer_settings(group_id: String) -> ClientConfig {
    let mut config = driftwatch::config::Config::default();
    config.kafka.brokers = brokers();
    config.kafka.group_id = group_id;
    let mut settings = config.consumer_config();
    settings.set("statistics.interval.ms", "0");
    settings
}

/// Child role: read `n` messages from `topic` with the engine's consumer settings (parsing each
/// payload into a `serde_json::Value` with `parse`); prints seconds from the first message,
/// bytes, peak RSS KiB and the process's CPU seconds.
fn bare_consumer(topic: &str, n: usize, parse: bool) {
    let c: BaseConsumer = engine_consumer_settings(format!("bare-{}-{parse}", std::process::id())).set("enable.auto.commit", "false").create().unwrap();
    c.subscribe(&[topic]).unwrap();
    let (mut seen, mut bytes, mut fields) = (0usize, 0usize, 0usize);
    let mut first = None;
    while seen < n {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            first.get_or_insert_with(Instant::now);
            let payload = m.payload().unwrap_or_default();
            bytes += payload.len();
            if parse {
                let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                fields += v.as_object().map_or(0, |o| o.len());
            }
            seen += 1;
        }
    }
    let secs = first.unwrap().elapsed().as_secs_f64();
    assert!(!parse || fields > 0);
    println!("{secs} {bytes} {} {}", peak_rss_kib(std::process::id()), cpu_seconds(std::process::id()));
}

/// User + system CPU seconds of a process so far (from /proc/PID/stat).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based) of the line.
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
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

/// One measured process: seconds (first message to last), peak RSS KiB, CPU seconds.
#[derive(Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    cpu: f64,
}

/// [`engine_run`] with extra `[engine]` lines (e.g. `delivery = "exactly_once"`); lines
/// starting `drift.` go to `[drift]` without the prefix. The run ends when `until` (a counter)
/// reaches `n`.
#[allow(clippy::too_many_arguments)]
fn engine_run_with(bin: &Path, model: &Path, topic: &str, n: usize, run: usize, workers: usize, drift: bool, extra: &str, until: &str) -> Sample {
    let drift_extra: String = extra.lines().filter_map(|l| l.strip_prefix("drift.")).map(|l| format!("{l}\n")).collect();
    let engine_extra: String = extra.lines().filter(|l| !l.starts_with("drift.")).map(|l| format!("{l}\n")).collect();
    let tag = bin.to_string_lossy().bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let run = format!("{run}-{tag:x}");
    let run = format!("{run}{}", if extra.is_empty() { "" } else { "-x" });
    let dir = std::env::temp_dir().join(format!("dw-bench-{}-{run}-{workers}-{drift}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[drift]\nenabled = {drift}\n{drift_extra}[engine]\nworkers = {workers}\n{engine_extra}\n[kafka]\nbrokers = \"{}\"\ngroup_id = \"bench-{}-{run}-{workers}-{drift}\"\ntransactions_topic = \"{topic}\"\nalerts_topic = \"{topic}-alerts\"\ndead_letter_topic = \"{topic}-dlq\"\nlabels_topic = \"{topic}-labels-{run}\"\nretained_scores_topic = \"{topic}-retained-{run}\"\ndrift_profiles_topic = \"{topic}-profiles-{run}\"\nperformance_reports_topic = \"{topic}-performance-{run}\"\n[model]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
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
        if scrape(port, until).unwrap_or(0.0) >= n as f64 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "engine exited early");
    }
    let secs = first.unwrap().elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id());
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    Sample { secs, rss_kib: rss, cpu }
}

/// The counter most variants run to: every event's outputs acknowledged.
const COMMITTED: &str = "driftwatch_events_committable_total";

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

/// What is measured: a bare reader, a reader that parses, the Python consumer, or an engine
/// configuration.
#[derive(Clone)]
enum Variant {
    Bare { parse: bool },
    Python { python: std::path::PathBuf, model: std::path::PathBuf },
    Engine { bin: std::path::PathBuf, model: std::path::PathBuf, workers: usize, drift: bool, extra: &'static str, until: &'static str },
}

fn measure(variant: &Variant, me: &Path, topic: &str, n: usize, run: usize) -> Sample {
    match variant {
        Variant::Bare { parse } => {
            let out = Command::new(me).env("BENCH_ROLE", format!("bare:{topic}:{n}:{parse}")).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let f: Vec<f64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().unwrap()).collect();
            Sample { secs: f[0], rss_kib: f[2] as u64, cpu: f[3] }
        }
        Variant::Python { python, model } => {
            let consumer = engine_consumer_settings(format!("python-{}-{run}", std::process::id()));
            let settings = consumer.config_map();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_consumer.py");
            let out = Command::new(python)
                .arg(script)
                .env("BENCH_TOPIC", topic)
                .env("BENCH_N", n.to_string())
                .env("BENCH_MODEL", model)
                .env("BENCH_CONSUMER_CONFIG", serde_json::to_string(&settings).unwrap())
                .output()
                .unwrap();
            assert!(out.status.success(), "the Python consumer failed: {}", String::from_utf8_lossy(&out.stderr));
            let f: Vec<f64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert!(f[4] > 0.0, "the Python consumer raised no alert");
            Sample { secs: f[0], rss_kib: f[2] as u64, cpu: f[3] }
        }
        Variant::Engine { bin, model, workers, drift, extra, until } => engine_run_with(bin, model, topic, n, run, *workers, *drift, extra, until),
    }
}

fn main() {
    if let Ok(role) = std::env::var("BENCH_ROLE") {
        let parts: Vec<&str> = role.split(':').collect();
        assert_eq!(parts[0], "bare");
        bare_consumer(parts[1], parts[2].parse().unwrap(), parts[3] == "true");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_usize("BENCH_EVENTS", 1_000_000);
    let runs = env_usize("BENCH_RUNS", 5);
    let seed = env_usize("BENCH_SEED", 1) as u64;
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
    if std::env::var("BENCH_LOAD_ONLY").is_ok() {
        // For profiling one process by hand (perf record … driftwatch run) on the loaded topic.
        println!("{topic}");
        return;
    }

    let me = std::env::current_exe().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let this_bin = target.join("release/driftwatch");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engine = |workers, drift, extra| Variant::Engine { bin: this_bin.clone(), model: model.clone(), workers, drift, extra, until: COMMITTED };
    let to_consumed = |extra| Variant::Engine { bin: this_bin.clone(), model: model.clone(), workers: 1, drift: true, extra, until: "driftwatch_events_consumed_total" };
    let mut variants: Vec<(String, Variant)> = vec![
        ("bare consumer (reads)".into(), Variant::Bare { parse: false }),
        ("bare consumer + serde_json::Value".into(), Variant::Bare { parse: true }),
        ("engine, 1 worker, drift 5 %".into(), engine(1, true, "")),
        ("engine, 1 worker, drift off".into(), engine(1, false, "")),
        ("engine, 1 worker, exactly-once".into(), engine(1, true, "delivery = \"exactly_once\"")),
        // Scores retained for labels (every alert + 5 %), the performance thread reading them back.
        ("engine, 1 worker, drift 5 %, performance on".into(), engine(1, true, "[performance]\nenabled = true")),
        // Group drift aggregation against its local twin, both timed to the last event consumed
        // (group mode commits an event once its pane is published, up to a slide later).
        ("engine, 1 worker, drift 5 % local, to consumed".into(), to_consumed("")),
        ("engine, 1 worker, drift 5 % group, to consumed".into(), to_consumed("drift.aggregation = \"group\"")),
        (format!("engine, {cores} workers, drift 5 %"), engine(cores, true, "")),
    ];
    let python = std::env::var("BENCH_PYTHON").ok().filter(|p| !p.is_empty());
    if let Some(python) = &python {
        variants.push(("Python consumer (confluent-kafka, numpy, scipy)".into(), Variant::Python { python: python.into(), model: model.clone() }));
    }
    if let Ok(extra_model) = std::env::var("BENCH_EXTRA_MODEL") {
        variants.push((format!("engine with {extra_model}, 1 worker, drift 5 %"), Variant::Engine { bin: this_bin.clone(), model: extra_model.into(), workers: 1, drift: true, extra: "", until: COMMITTED }));
    }
    if let Ok(other) = std::env::var("BENCH_COMPARE_BIN") {
        let other_model = std::env::var("BENCH_COMPARE_MODEL").map(std::path::PathBuf::from).unwrap_or_else(|_| model.clone());
        variants.push((format!("compared {other}, 1 worker, drift 5 %"), Variant::Engine { bin: other.into(), model: other_model, workers: 1, drift: true, extra: "", until: COMMITTED }));
    }
    // Warm-up: every variant once, untimed.
    for (i, (_, v)) in variants.iter().enumerate() {
        measure(v, &me, &topic, n, 1000 + i);
    }
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for run in 0..runs {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        order.shuffle(&mut rng);
        for &i in &order {
            let s = measure(&variants[i].1, &me, &topic, n, run * 100 + i);
            eprintln!("round {} {:<45} {:>9.0} ev/s {:>6.2} µs CPU/event", run + 1, variants[i].0, n as f64 / s.secs, s.cpu * 1e6 / n as f64);
            samples[i].push(s);
        }
    }
    println!("events: {n} in 4 partitions, {runs} rounds after a warm-up, shuffled order (BENCH_SEED={seed}), {cores} cores");
    println!("{:<46} {:>22} {:>24} {:>9}", "variant", "events/s median (min–max)", "CPU µs/event median (min–max)", "peak RSS");
    let mut rate_median = Vec::new();
    let mut cpu_median = Vec::new();
    for ((name, _), s) in variants.iter().zip(&samples) {
        let rates: Vec<f64> = s.iter().map(|x| n as f64 / x.secs).collect();
        let cpus: Vec<f64> = s.iter().map(|x| x.cpu * 1e6 / n as f64).collect();
        let (rl, rh) = spread(&rates);
        let (cl, ch) = spread(&cpus);
        let rss = s.iter().map(|x| x.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        println!("{name:<46} {:>9.0} ({rl:.0}–{rh:.0}) {:>8.2} ({cl:.2}–{ch:.2}) {rss:>6.0} MiB", median(&rates), median(&cpus));
        rate_median.push(median(&rates));
        cpu_median.push(median(&cpus));
    }
    println!(
        "ratios of medians: engine (1 worker, drift) / bare reader: {:.2} in events/s, {:.2}x the CPU per event; / reader that parses: {:.2} in events/s",
        rate_median[2] / rate_median[0],
        cpu_median[2] / cpu_median[0],
        rate_median[2] / rate_median[1]
    );
    println!("drift profiling costs {:.1} % of 1-worker throughput; exactly-once runs at {:.2} of at-least-once", 100.0 * (1.0 - rate_median[2] / rate_median[3]), rate_median[4] / rate_median[2]);
    println!(
        "group drift aggregation / local (1 worker, to the last event consumed): {:.3} in events/s, {:.3}x the CPU per event",
        rate_median[7] / rate_median[6],
        cpu_median[7] / cpu_median[6]
    );
    if python.is_some() {
        let at = variants.iter().position(|(_, v)| matches!(v, Variant::Python { .. })).unwrap();
        println!("engine (1 worker, drift) / Python consumer: {:.1}x in events/s, {:.3} of its CPU per event", rate_median[2] / rate_median[at], cpu_median[2] / cpu_median[at]);
    }
    if std::env::var("BENCH_COMPARE_BIN").is_ok() {
        let last = variants.len() - 1;
        println!("this / compared binary (1 worker, drift): {:.3} in events/s, {:.3} in CPU per event", rate_median[2] / rate_median[last], cpu_median[2] / cpu_median[last]);
    }
}
