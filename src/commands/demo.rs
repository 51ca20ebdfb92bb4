//! `driftwatch demo`: the whole loop on one machine with no setup.
//!
//! An embedded Kafka-protocol broker (librdkafka's mock cluster) unless `--brokers` is given,
//! a generator producing transactions at a steady rate (with a few malformed ones, to show the
//! dead-letter path), the engine scoring them with the shipped demo model, and a live summary
//! line per second until Ctrl-C or `--duration`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;
use thiserror::Error;

use super::produce::{feed, Traffic};
use super::Outcome;
use crate::cli::DemoArgs;
use crate::config::Config;
use crate::observe::metrics::Metrics;

/// The demo's label delays: a day of real delay is a second (chargebacks within 3–45 s,
/// legitimate transactions cleared after 30 s), so realised performance shows within a minute.
pub const DEMO_LABEL_DELAY_SCALE: f64 = 1.0 / 86_400.0;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A real cluster to use instead of the embedded one.
    pub brokers: Option<String>,
    /// Pipeline artifact.
    pub model: PathBuf,
    /// Metrics endpoint address ("" disables).
    pub metrics_listen: String,
    /// The generated traffic.
    pub traffic: Traffic,
}

/// Runs the demo from its command-line arguments.
pub fn execute(a: DemoArgs) -> Result<Outcome, DemoError> {
    crate::observe::logs::init(&crate::config::LogConfig { level: "warn".into(), ..Default::default() });
    let traffic = Traffic {
        rate: a.rate,
        duration: a.duration.map(Duration::from_secs),
        scenario: a.scenario,
        drift_after: a.drift_after.map(Duration::from_secs),
        invalid_every: a.invalid_every,
        seed: a.seed,
        labels_topic: Some(Config::default().kafka.labels_topic),
        label_delay_scale: DEMO_LABEL_DELAY_SCALE,
    };
    demo(DemoOptions { brokers: a.brokers, model: a.model, metrics_listen: a.metrics_listen, traffic }, std::io::stdout())?;
    Ok(Outcome::Success)
}

/// Why the demo failed.
#[derive(Debug, Error)]
pub enum DemoError {
    /// The embedded broker or the producer could not start.
    #[error("demo broker/producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] super::run::RunError),
    /// The topic to produce to does not exist (and the broker does not create topics).
    #[error("topic `{0}` does not exist; create it (or start `driftwatch run`, which creates its topics)")]
    MissingTopic(String),
    /// An input file could not be read or is not JSON lines.
    #[error("{0}")]
    File(String),
    /// Messages could not be delivered before the end.
    #[error("messages were still undelivered after 10 s: {0}")]
    Undelivered(rdkafka::error::KafkaError),
}

/// What the demo did, for its last line.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoReport {
    /// Transactions produced.
    pub produced: u64,
    /// Messages the engine consumed.
    pub consumed: u64,
    /// Alerts.
    pub alerts: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// Runs the demo, printing a summary line per second to `out`.
pub fn demo(opts: DemoOptions, mut out: impl Write) -> Result<DemoReport, DemoError> {
    let mut config = Config::default();
    config.kafka.group_id = "driftwatch-demo".into();
    config.model.path = opts.model.clone();
    config.metrics.listen = opts.metrics_listen.clone();
    config.engine.statistics_interval_ms = 1000;
    // Short windows so drift shows within a minute: 30 s sliding by 10 s, 20 % sampled.
    config.drift.window_seconds = 30;
    config.drift.slide_seconds = 10;
    config.drift.lateness_seconds = 3;
    config.drift.sample_fraction = 0.2;
    // Labels (produced by the generator with compressed delays) joined to scores: 20 s windows.
    config.performance.enabled = true;
    config.performance.window_seconds = 20;
    config.performance.label_window_seconds = 20;
    config.performance.idle_close_seconds = 5;
    config.performance.lateness_seconds = 5;
    config.performance.label_maturity_seconds = 50;
    // The mock cluster must outlive every client.
    let mock = match &opts.brokers {
        Some(b) => {
            config.kafka.brokers = b.clone();
            None
        }
        None => {
            let mock = MockCluster::new(1)?;
            let k = &config.kafka;
            for topic in [&k.transactions_topic, &k.alerts_topic, &k.dead_letter_topic, &k.drift_reports_topic, &k.drift_alerts_topic, &k.retrain_requests_topic, &k.labels_topic, &k.retained_scores_topic, &k.performance_reports_topic] {
                mock.create_topic(topic, config.kafka.partitions, 1)?;
            }
            config.kafka.brokers = mock.bootstrap_servers();
            config.kafka.create_topics = false;
            Some(mock)
        }
    };
    let _ = writeln!(
        out,
        "driftwatch demo: broker {} ({}), {} tx/s, model {}; Ctrl-C to stop",
        config.kafka.brokers,
        if mock.is_some() { "embedded mock cluster" } else { "external" },
        opts.traffic.rate,
        opts.model.display()
    );

    let metrics = Arc::new(Metrics::new());
    let shutdown = Arc::new(AtomicBool::new(false));
    let engine = {
        let (config, metrics, shutdown) = (config.clone(), metrics.clone(), shutdown.clone());
        std::thread::spawn(move || super::run::run(config, metrics, shutdown))
    };

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "5")
        .create()?;
    let stop_producing = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let feeder = {
        let (stop, produced, topic, traffic) = (stop_producing.clone(), produced.clone(), config.kafka.transactions_topic.clone(), opts.traffic.clone());
        std::thread::spawn(move || feed(&producer, &topic, &traffic, &stop, &produced))
    };

    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while !shutdown.load(Ordering::Relaxed) && !engine.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if last.0.elapsed() >= Duration::from_secs(1) {
            let consumed = metrics.events_consumed.get();
            let rate = (consumed - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), consumed);
            let _ = writeln!(out, "{}", summary_line(&metrics, started.elapsed(), rate));
        }
        if opts.traffic.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    stop_producing.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    // Let the engine catch up with what was produced, then stop it.
    let catch_up = Instant::now();
    while metrics.events_consumed.get() < produced.load(Ordering::Relaxed) && catch_up.elapsed() < Duration::from_secs(10) && !engine.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    shutdown.store(true, Ordering::Relaxed);
    let summary = engine.join().expect("engine thread panicked")?;
    drop(mock);
    let report = DemoReport { produced: produced.load(Ordering::Relaxed), consumed: summary.consumed, alerts: summary.alerts, dead_letters: summary.dead_letters };
    let _ = writeln!(
        out,
        "done: produced {}, consumed {}, alerts {}, dead letters {}",
        report.produced, report.consumed, report.alerts, report.dead_letters
    );
    Ok(report)
}

fn summary_line(m: &Metrics, elapsed: Duration, rate: f64) -> String {
    let text = m.encode();
    let scored = m.events_scored.get().max(1) as f64;
    let invalid: u64 = crate::observe::metrics::sum_of(&text, "driftwatch_events_invalid_total");
    let q = |name: &str, p: f64| crate::observe::metrics::histogram_quantile(&text, name, p).map_or("-".to_string(), format_seconds);
    let shown = |value: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("driftwatch_feature_drift_status{") && l.ends_with(value))
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect()
    };
    let (red, amber) = (shown(" 2.0"), shown(" 1.0"));
    let drift = match (m.drift_windows_closed.get(), red.is_empty(), amber.is_empty()) {
        (0, _, _) => "drift: first window pending".to_string(),
        (_, true, true) => "drift: green".to_string(),
        (_, true, false) => format!("drift: amber {}", amber.join(",")),
        _ => format!("drift: RED {}", red.join(",")),
    };
    let realised = |metric: &str| {
        let prefix = "driftwatch_model_performance{";
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains("role=\"production\"") && l.contains("kind=\"realised\"") && l.contains(&format!("metric=\"{metric}\"")) && l.contains("bound=\"value\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or("-".to_string(), |v| format!("{v:.2}"))
    };
    let labels = text.lines().find(|l| l.starts_with("driftwatch_labels_total{") && l.contains("\"matched\"")).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0);
    format!(
        "t={:>4}s  {:>7.0} ev/s  scored {:>8}  fraud {:>5.2}%  outliers {:>5.2}%  invalid {:>4}  score p50 {} p99 {}  end-to-end p50 {} p99 {}  {drift}  labels {labels:.0} precision {} recall {}",
        elapsed.as_secs(),
        rate,
        m.events_scored.get(),
        100.0 * m.fraud_alerts.get() as f64 / scored,
        100.0 * m.outliers.get() as f64 / scored,
        invalid,
        q("driftwatch_score_latency_seconds", 0.5),
        q("driftwatch_score_latency_seconds", 0.99),
        q("driftwatch_end_to_end_latency_seconds", 0.5),
        q("driftwatch_end_to_end_latency_seconds", 0.99),
        realised("precision"),
        realised("recall"),
    )
}

fn format_seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}
