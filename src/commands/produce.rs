//! `driftwatch produce`: generated transactions to a real cluster at a steady rate; the demo's
//! generator thread uses the same [`feed`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::demo::DemoError;
use super::Outcome;
use crate::cli::ProduceArgs;
use crate::generate::{Generator, GeneratorConfig, Scenario};
use crate::time::format_rfc3339_ms;

/// Generated traffic: how fast, for how long, which drift, how many malformed events.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Transactions per second.
    pub rate: f64,
    /// Stop after this long (else run until stopped).
    pub duration: Option<Duration>,
    /// Drift scenario (starts at `drift_after`, else halfway through `duration`, or after 60 s).
    pub scenario: Scenario,
    /// When the scenario starts.
    pub drift_after: Option<Duration>,
    /// Every n-th event is malformed (0: none).
    pub invalid_every: u64,
    /// Generator seed.
    pub seed: u64,
    /// Also produce each transaction's fraud label to this topic when it becomes due (the
    /// generator's delays times `label_delay_scale`); labels not yet due at the end are not sent.
    pub labels_topic: Option<String>,
    /// Factor on the label delays.
    pub label_delay_scale: f64,
}

/// Runs `produce` from its command-line arguments.
pub fn execute(a: ProduceArgs) -> Result<Outcome, DemoError> {
    if let Some(path) = &a.file {
        let n = produce_file(&a.brokers, &a.topic, path, &a.key_field)?;
        eprintln!("produced {n} records from {} to {}", path.display(), a.topic);
        return Ok(Outcome::Success);
    }
    let traffic = Traffic {
        rate: a.rate,
        duration: a.duration.map(Duration::from_secs),
        scenario: a.scenario,
        drift_after: a.drift_after.map(Duration::from_secs),
        invalid_every: a.invalid_every,
        seed: a.seed,
        labels_topic: a.labels_topic.clone(),
        label_delay_scale: a.label_delay_scale,
    };
    let n = produce(&a.brokers, &a.topic, &traffic)?;
    eprintln!("produced {n} transactions to {}", a.topic);
    Ok(Outcome::Success)
}

/// `driftwatch produce`: generated transactions to a real cluster at a steady rate, stamped with
/// the current time, until `opts.duration` (or forever). Returns how many were produced.
pub fn produce(brokers: &str, topic: &str, opts: &Traffic) -> Result<u64, DemoError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create()?;
    let metadata = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_some()) {
        return Err(DemoError::MissingTopic(topic.to_string()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    if let Some(d) = opts.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    feed(&producer, topic, opts, &stop, &produced);
    producer.flush(Duration::from_secs(10)).map_err(DemoError::Undelivered)?;
    Ok(produced.load(Ordering::Relaxed))
}

/// Produces a JSON-lines file to `topic` as it is, one record per line, keyed by each line's
/// `key_field` (e.g. the labels `driftwatch generate --labels-out` writes). A line that is not
/// JSON is refused with its line number before anything after it is sent.
pub fn produce_file(brokers: &str, topic: &str, path: &std::path::Path, key_field: &str) -> Result<u64, DemoError> {
    use std::io::BufRead;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").set("enable.idempotence", "true").create()?;
    let metadata = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_some()) {
        return Err(DemoError::MissingTopic(topic.to_string()));
    }
    let file = std::fs::File::open(path).map_err(|e| DemoError::File(format!("cannot read {}: {e}", path.display())))?;
    let mut n = 0u64;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DemoError::File(format!("cannot read {}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| DemoError::File(format!("{}:{}: not JSON: {e}", path.display(), i + 1)))?;
        let key = match value.get(key_field) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
            None => None,
        };
        let mut record = BaseRecord::to(topic).payload(line.as_bytes());
        if let Some(k) = &key {
            record = record.key(k.as_bytes());
        }
        crate::engine::send_with_backpressure(&producer, record).map_err(|(error, _)| DemoError::Kafka(error))?;
        n += 1;
    }
    producer.flush(Duration::from_secs(30)).map_err(DemoError::Undelivered)?;
    Ok(n)
}

/// Produces generated transactions at `opts.rate`, stamped with the current time.
pub(crate) fn feed(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, opts: &Traffic, stop: &AtomicBool, produced: &AtomicU64) {
    // Seed 1's first 50,000 rows are the demo model's training data: continue after them, so
    // the traffic comes from the same accounts but is new (no drift unless a scenario says so).
    const TRAINING_ROWS: u64 = 50_000;
    let skip = if opts.seed == 1 { TRAINING_ROWS } else { 0 };
    let onset_rows = opts.drift_after.map(|d| d.as_secs_f64()).or_else(|| opts.duration.map(|d| d.as_secs_f64() / 2.0)).unwrap_or(60.0) * opts.rate;
    let rows = skip + (onset_rows * 2.0) as u64;
    let onset = (skip as f64 + onset_rows) / rows as f64;
    let mut generator = Generator::new(GeneratorConfig { seed: opts.seed, scenario: opts.scenario, rows, onset, ..Default::default() });
    for _ in 0..skip {
        generator.next();
    }
    let started = Instant::now();
    let mut sent = 0u64;
    // Labels waiting to be due: (due ms, sequence, transaction id, payload).
    let delays = crate::generate::LabelDelays { scale: opts.label_delay_scale, ..Default::default() };
    let mut label_rng = crate::generate::LabelDelays::rng(opts.seed);
    let mut pending: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64, String, Vec<u8>)>> = std::collections::BinaryHeap::new();
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * opts.rate) as u64;
        if let Some(labels_topic) = &opts.labels_topic {
            let now = crate::time::now_ms();
            while pending.peek().is_some_and(|std::cmp::Reverse((at, ..))| *at <= now) {
                let std::cmp::Reverse((_, _, id, payload)) = pending.pop().expect("peeked");
                let record = BaseRecord::to(labels_topic.as_str()).payload(payload.as_slice()).key(id.as_bytes());
                if let Err((error, topic)) = crate::engine::send_with_backpressure(producer, record) {
                    tracing::error!(message = "Cannot produce a label; the generator stops.", %error, %topic);
                    return;
                }
            }
        }
        while sent < due {
            let mut tx = generator.next().expect("generator is endless");
            let now = crate::time::now_ms();
            tx.event_time = format_rfc3339_ms(now);
            sent += 1;
            if opts.labels_topic.is_some() {
                let (delay, source) = delays.draw(&mut label_rng, tx.is_fraud == 1);
                let label = crate::message::performance::Label { transaction_id: tx.transaction_id.clone(), label: tx.is_fraud, label_time: format_rfc3339_ms(now + delay), source: source.into() };
                pending.push(std::cmp::Reverse((now + delay, sent, tx.transaction_id.clone(), serde_json::to_vec(&label).expect("json"))));
            }
            let payload = if opts.invalid_every > 0 && sent % opts.invalid_every == 0 {
                match (sent / opts.invalid_every) % 3 {
                    0 => b"{\"transaction_id\": truncated".to_vec(),
                    1 => serde_json::to_vec(&serde_json::json!({"transaction_id": tx.transaction_id, "account_id": tx.account_id, "event_time": tx.event_time, "amount": "a lot"})).expect("json"),
                    _ => serde_json::to_vec(&serde_json::json!({"amount": tx.amount})).expect("json"),
                }
            } else {
                serde_json::to_vec(&tx).expect("json")
            };
            let record = BaseRecord::to(topic).payload(payload.as_slice()).key(tx.account_id.as_bytes());
            if let Err((error, topic)) = crate::engine::send_with_backpressure(producer, record) {
                tracing::error!(message = "Cannot produce; the generator stops.", %error, %topic);
                return;
            }
            produced.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = producer.flush(Duration::from_secs(10));
}
