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
}

/// Runs `produce` from its command-line arguments.
pub fn execute(a: ProduceArgs) -> Result<Outcome, DemoError> {
    let traffic = Traffic { rate: a.rate, duration: a.duration.map(Duration::from_secs), scenario: a.scenario, drift_after: a.drift_after.map(Duration::from_secs), invalid_every: a.invalid_every, seed: a.seed };
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
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * opts.rate) as u64;
        while sent < due {
            let mut tx = generator.next().expect("generator is endless");
            tx.event_time = format_rfc3339_ms(crate::time::now_ms());
            sent += 1;
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
