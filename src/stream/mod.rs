//! The Kafka shell around the scoring core: consume `transactions`, decode and score each
//! event, produce alerts and dead letters, and commit offsets only once every output of the
//! events before them has been acknowledged (at-least-once).
//!
//! Threads: the engine loop runs on the caller's thread with a [`BaseConsumer`] (its
//! rebalance callbacks run inside `poll`, on the same thread); the [`ThreadedProducer`]'s
//! delivery callbacks run on librdkafka's polling thread and only touch atomics and a retry
//! channel. Offsets are stored with `enable.auto.offset.store=false` and committed by
//! librdkafka's auto-commit, on revoke (after flushing the producer) and on shutdown.
//! See <https://github.com/confluentinc/librdkafka/blob/master/INTRODUCTION.md#at-least-once-processing>.

pub mod tracker;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use opentelemetry::trace::{Span as _, TraceContextExt as _};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use thiserror::Error;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::event::{dlq_headers, reasons_json, FraudAlert, SourcePosition};
use crate::generate::format_rfc3339_ms;
use crate::drift::stream::{ClosedWindow, StreamDrift};
use crate::metrics::{FeatureLabel, Metrics, PartitionLabels, ReasonLabel, StatusLabel, TopicLabel};
use crate::pipeline::{Pipeline, Score};
use tracker::{OffsetTracker, PendingOutput};

/// Errors that stop the engine. Each says whose problem it is.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Kafka is unreachable or refused a request (external; retrying later may help).
    #[error("Kafka error while {context}: {source}")]
    Kafka {
        /// What the engine was doing.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A topic the engine needs does not exist and creating topics is off (configuration).
    #[error("topic(s) {0} do not exist; create them or set kafka.create_topics = true")]
    MissingTopics(String),
    /// Outputs were still unacknowledged when shutdown gave up; their events will be re-read.
    #[error("{0} events' outputs were not acknowledged before the shutdown timeout; their offsets were not committed and they will be processed again")]
    Unacknowledged(u64),
}

fn kafka(context: &str) -> impl FnOnce(KafkaError) -> EngineError + '_ {
    move |source| EngineError::Kafka { context: context.to_string(), source }
}

/// What one run of the engine did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Events scored.
    pub scored: u64,
    /// Alerts produced.
    pub alerts: u64,
    /// Events dead-lettered.
    pub dead_letters: u64,
}

/// Creates the engine's topics when absent (if allowed), or names the missing ones.
pub async fn ensure_topics(config: &Config) -> Result<(), EngineError> {
    let k = &config.kafka;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create().map_err(kafka("creating the admin client"))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| EngineError::Kafka { context: format!("fetching metadata from {}", k.brokers), source: e })?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let mut wanted = vec![&k.transactions_topic, &k.alerts_topic, &k.dead_letter_topic];
    if config.drift.enabled {
        wanted.extend([&k.drift_reports_topic, &k.drift_alerts_topic, &k.retrain_requests_topic]);
    }
    if !config.model.registry.is_empty() {
        wanted.push(&k.model_events_topic);
        if config.model.shadow_fraction > 0.0 {
            wanted.push(&k.shadow_scores_topic);
        }
    }
    let missing: Vec<&String> = wanted.into_iter().filter(|t| !existing.contains(&t.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !k.create_topics {
        return Err(EngineError::MissingTopics(missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")));
    }
    let new: Vec<NewTopic> = missing.iter().map(|t| NewTopic::new(t, k.partitions, TopicReplication::Fixed(k.replication_factor))).collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .map_err(kafka("creating topics"))?;
    for r in results {
        match r {
            Ok(topic) => info!(message = "Created topic.", topic = %topic, partitions = k.partitions),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(EngineError::Kafka { context: format!("creating topic `{topic}`"), source: KafkaError::AdminOp(code) })
            }
        }
    }
    Ok(())
}

/// What a delivery callback needs to know about one produced message.
struct Delivery {
    pending: PendingOutput,
    /// Event time of the transaction, for alerts' end-to-end latency.
    alert_event_time_ms: Option<i64>,
}

/// A message whose delivery failed, to be produced again by the engine loop.
struct Retry {
    message: OwnedMessage,
    delivery: Box<Delivery>,
}

struct DeliveryContext {
    metrics: Arc<Metrics>,
    retries: Mutex<Sender<Retry>>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        warn!(message = "Producer error.", %error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        match result {
            Ok(message) => {
                self.metrics.messages_produced.get_or_create(&TopicLabel { topic: message.topic().to_string() }).inc();
                if let Some(t) = delivery.alert_event_time_ms {
                    self.metrics.end_to_end_latency.observe((now_ms() - t).max(0) as f64 / 1000.0);
                }
                delivery.pending.done();
            }
            Err((error, message)) => {
                self.metrics.producer_errors.inc();
                warn!(message = "Delivery failed; producing again.", %error, topic = message.topic());
                let retry = Retry { message: message.detach(), delivery };
                if self.retries.lock().map(|tx| tx.send(retry).is_err()).unwrap_or(true) {
                    error!(message = "Engine stopped before a failed delivery could be retried; its offset stays uncommitted.");
                }
            }
        }
    }
}

type Output = ThreadedProducer<DeliveryContext>;

struct ConsumerCtx {
    metrics: Arc<Metrics>,
    producer: Arc<Output>,
    tracker: Arc<Mutex<OffsetTracker>>,
    topic: String,
}

impl ClientContext for ConsumerCtx {
    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Statistics>(statistics) {
            Ok(stats) => self.stats(stats),
            Err(error) => warn!(message = "Could not parse librdkafka statistics; lag metrics are stale.", %error),
        }
    }

    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (p, part) in &topic.partitions {
                // librdkafka's own `consumer_lag` stays -1 in cases where the lag is known (seen
                // with librdkafka 2.12 when the committed offset is one past its high watermark),
                // so compute it from the same statistics: high watermark − group position.
                let position = part.committed_offset.max(part.app_offset);
                if *p >= 0 && part.hi_offset >= 0 && position >= 0 {
                    let labels = PartitionLabels { topic: self.topic.clone(), partition: p.to_string() };
                    self.metrics.consumer_lag.get_or_create(&labels).set((part.hi_offset - position).max(0));
                }
            }
        }
        let any_up = stats.brokers.values().any(|b| b.state == "UP");
        self.metrics.ready.set(i64::from(any_up));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.metrics.ready.set(0);
        }
        warn!(message = "Consumer error.", %error, reason);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Finish what we have so the next owner starts where we stopped.
            if let Err(error) = self.producer.flush(Duration::from_secs(10)) {
                warn!(message = "Outputs still in flight at revoke; those events will be processed again by the next owner.", %error);
            }
            let done = self.tracker.lock().map(|mut t| {
                t.seal();
                t.take_done()
            });
            if let Ok(Some(done)) = done {
                store(consumer, &self.topic, &done.offsets, &self.metrics, done.events);
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => warn!(message = "Failed to commit offsets at revoke.", %error),
            }
            info!(message = "Partitions revoked.", count = partitions.count());
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.metrics.ready.set(1);
            let list: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            info!(message = "Partitions assigned.", partitions = ?list);
        }
    }
}

fn store<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, offsets: &[(i32, i64)], metrics: &Metrics, events: u64) {
    // `rd_kafka_offsets_store` stores exactly the offsets given (the next offset to read);
    // the legacy per-partition `store_offset` would add one more and skip an event.
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for &(partition, next) in offsets {
        if let Err(error) = tpl.add_partition_offset(topic, partition, Offset::Offset(next)) {
            warn!(message = "Invalid offset.", %error, partition, offset = next);
        }
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => {}
        // Not assigned any more: the new owner re-reads these events (duplicates, never loss).
        Err(error) => debug!(message = "Could not store offsets.", %error),
    }
    metrics.events_committable.inc_by(events);
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Drift state shared by the engine's workers: one set of windows per process.
struct SharedDrift {
    state: Mutex<StreamDrift>,
    /// `StreamDrift::close_due_ms`, readable without the lock: unsampled events before it skip the lock.
    due_ms: AtomicI64,
    /// Profiled share of traffic (the sampling decision is made outside the lock).
    sample_fraction: f64,
}

/// The engine: consumer-group members scoring with one pipeline, and drift windows.
pub struct Engine {
    config: Config,
    /// The serving pipeline; replaced whole by the registry watcher (hot reload).
    pipeline: std::sync::RwLock<Arc<Pipeline>>,
    /// Bumped on every swap; members compare it per message (one atomic load).
    generation: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
    drift: Option<SharedDrift>,
    /// Traces for events that carry (or are sampled into) a trace.
    telemetry: Option<crate::tracing_otel::Telemetry>,
    /// Watches a newly swapped-in model and rolls it back when it misbehaves.
    guard: Mutex<Option<Guard>>,
    /// The registry's newest candidate, shadow-scored on a share of events.
    shadow: std::sync::RwLock<Option<Arc<Pipeline>>>,
    /// Bumped when the candidate changes.
    shadow_generation: std::sync::atomic::AtomicU64,
}

/// The automatic-rollback guard's state for one newly serving version.
struct Guard {
    version: String,
    windows_left: u32,
    /// Sampled decode+score latencies (µs) since the swap.
    latency_us: hdrhistogram::Histogram<u64>,
}

impl Engine {
    /// An engine for this configuration and pipeline.
    pub fn new(config: Config, pipeline: Pipeline, metrics: Arc<Metrics>) -> Engine {
        Engine::describe_model(&metrics, &pipeline, 1);
        let drift = config.drift.enabled.then(|| {
            let state = StreamDrift::new(&pipeline, config.drift.to_config());
            SharedDrift { due_ms: AtomicI64::new(state.close_due_ms()), state: Mutex::new(state), sample_fraction: config.drift.sample_fraction }
        });
        Engine {
            config,
            pipeline: std::sync::RwLock::new(Arc::new(pipeline)),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics,
            drift,
            telemetry: None,
            guard: Mutex::new(None),
            shadow: std::sync::RwLock::new(None),
            shadow_generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn describe_model(metrics: &Metrics, pipeline: &Pipeline, value: i64) {
        let a = pipeline.artifact();
        metrics.model_info.get_or_create(&crate::metrics::ModelLabels { name: a.model.name.clone(), version: a.model.version.clone() }).set(value);
        if value == 1 {
            metrics.trained_outlier_rate.set(a.reference.outlier_rate);
            metrics.trained_alert_rate.set(a.reference.alert_rate);
        }
    }

    /// The pipeline serving now.
    pub fn current_pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.read().expect("pipeline lock").clone()
    }

    /// Replaces the serving pipeline after checking it fits the live events: the same id, key
    /// and timestamp columns (features may change). Members switch between two messages, so each
    /// event is scored once, by one version. Drift windows restart against the new reference.
    /// `guarded`: watch the new version with the rollback guard (promotions are; the target of a
    /// rollback is not, or a traffic shift that upsets both versions would cascade rollbacks).
    pub fn swap_pipeline(&self, new: Pipeline, guarded: bool) -> Result<(), String> {
        let old = self.current_pipeline();
        let (a, b) = (&old.artifact().columns, &new.artifact().columns);
        if (&a.id, &a.key, &a.timestamp) != (&b.id, &b.key, &b.timestamp) {
            return Err(format!(
                "{} {} does not fit the live events: its id/key/timestamp columns {:?}/{:?}/{:?} differ from {:?}/{:?}/{:?}",
                new.artifact().model.name,
                new.artifact().model.version,
                b.id,
                b.key,
                b.timestamp,
                a.id,
                a.key,
                a.timestamp
            ));
        }
        if let Some(d) = &self.drift {
            let state = StreamDrift::new(&new, self.config.drift.to_config());
            d.due_ms.store(state.close_due_ms(), Ordering::Relaxed);
            *d.state.lock().expect("drift lock") = state;
        }
        Engine::describe_model(&self.metrics, &old, 0);
        Engine::describe_model(&self.metrics, &new, 1);
        info!(message = "Model swapped.", from = %old.artifact().model.version, to = %new.artifact().model.version);
        let version = new.artifact().model.version.clone();
        *self.pipeline.write().expect("pipeline lock") = Arc::new(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.guard.lock().expect("guard lock");
        *guard = (guarded && self.config.model.guard_windows > 0 && self.drift.is_some() && !self.config.model.registry.is_empty()).then(|| Guard {
            version,
            windows_left: self.config.model.guard_windows,
            latency_us: hdrhistogram::Histogram::new(3).expect("valid precision"),
        });
        self.metrics.model_reloads.inc();
        Ok(())
    }

    /// Loads the newest candidate for shadow scoring when it changed (none: shadowing stops).
    fn refresh_shadow(&self, registry: &crate::registry::Registry, name: Option<&str>, refused: &mut Option<(String, String)>) {
        let candidate = match registry.latest_candidate(name) {
            Ok(c) => c,
            Err(_) => return,
        };
        let current = self.shadow.read().expect("shadow lock").as_ref().map(|p| p.artifact().model.version.clone());
        let wanted = candidate.as_ref().map(|(e, _)| e.version.clone());
        if current == wanted {
            return;
        }
        let loaded = match candidate {
            None => None,
            Some((entry, path)) => {
                let key = (entry.version.clone(), entry.artifact_sha256.clone());
                if refused.as_ref() == Some(&key) {
                    return;
                }
                match Pipeline::load(&path) {
                    Ok(p) => Some(Arc::new(p)),
                    Err(error) => {
                        self.metrics.model_reload_failures.inc();
                        error!(message = "Refused a candidate for shadow scoring.", version = %entry.version, %error);
                        *refused = Some(key);
                        return;
                    }
                }
            }
        };
        info!(message = "Shadow candidate changed.", from = ?current, to = ?wanted);
        *self.shadow.write().expect("shadow lock") = loaded;
        self.shadow_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Checks a closed window against the guard; rolls the registry back when the new model
    /// misbehaves and returns the stage changes to publish.
    fn guard_check(&self, w: &ClosedWindow, serving: &str) -> Vec<crate::registry::ModelEvent> {
        let mut slot = self.guard.lock().expect("guard lock");
        let Some(g) = slot.as_mut() else { return Vec::new() };
        if g.version != serving || w.report.drift.current.rows < self.config.drift.min_samples {
            return Vec::new();
        }
        let c = &self.config.model;
        let (alerts, outliers) = (&w.report.model_drift.alert_rate, &w.report.model_drift.outlier_rate);
        let p99_ms = g.latency_us.value_at_quantile(0.99) as f64 / 1000.0;
        let reason = if alerts.observed > alerts.expected * c.guard_alert_rate_factor || alerts.observed < alerts.expected / c.guard_alert_rate_factor {
            Some(format!("fraud-alert rate {:.4} outside {:.4}–{:.4} (trained {:.4})", alerts.observed, alerts.expected / c.guard_alert_rate_factor, alerts.expected * c.guard_alert_rate_factor, alerts.expected))
        } else if outliers.observed > outliers.expected + c.guard_outlier_margin {
            Some(format!("outlier rate {:.4} above the trained {:.4} + {}", outliers.observed, outliers.expected, c.guard_outlier_margin))
        } else if !g.latency_us.is_empty() && p99_ms > c.guard_p99_latency_ms {
            Some(format!("p99 scoring latency {p99_ms:.3} ms above {} ms", c.guard_p99_latency_ms))
        } else {
            None
        };
        let Some(reason) = reason else {
            g.windows_left -= 1;
            if g.windows_left == 0 {
                info!(message = "Guard passed the new model.", version = %g.version);
                *slot = None;
            }
            return Vec::new();
        };
        let version = g.version.clone();
        *slot = None;
        drop(slot);
        let registry = crate::registry::Registry::open(std::path::Path::new(&c.registry));
        let name = (!c.registry_name.is_empty()).then_some(c.registry_name.as_str());
        match registry.rollback(name, "guard", &format!("{version}: {reason}")) {
            Ok(events) => {
                self.metrics.model_rollbacks.inc();
                error!(message = "Rolled back a misbehaving model.", %version, %reason);
                events
            }
            Err(error) => {
                error!(message = "Guard could not roll back.", %version, %reason, %error);
                Vec::new()
            }
        }
    }

    /// Polls the registry and swaps in a new production version; refuses (and remembers) one
    /// that does not load or fit, keeping the running model.
    fn watch_registry(&self, stop: &AtomicBool) {
        let m = &self.config.model;
        let registry = crate::registry::Registry::open(std::path::Path::new(&m.registry));
        let name = (!m.registry_name.is_empty()).then_some(m.registry_name.as_str());
        let mut refused: Option<(String, String)> = None;
        while !stop.load(Ordering::Relaxed) {
            let wake = Instant::now() + Duration::from_millis(m.registry_poll_ms);
            while Instant::now() < wake && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if m.shadow_fraction > 0.0 {
                self.refresh_shadow(&registry, name, &mut refused);
            }
            let (entry, path) = match registry.production(name) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(error) => {
                    warn!(message = "Cannot read the model registry; the running model stays.", %error);
                    continue;
                }
            };
            let current = self.current_pipeline().artifact().model.version.clone();
            let key = (entry.version.clone(), entry.artifact_sha256.clone());
            if entry.version == current || refused.as_ref() == Some(&key) {
                continue;
            }
            // A version restored by a rollback is not put under the guard again.
            let promoted = entry.history.last().is_none_or(|c| !c.reason.starts_with(crate::registry::ROLLBACK_REASON_PREFIX));
            match Pipeline::load(&path).map_err(|e| e.to_string()).and_then(|p| self.swap_pipeline(p, promoted)) {
                Ok(()) => refused = None,
                Err(reason) => {
                    self.metrics.model_reload_failures.inc();
                    error!(message = "Refused the registry's production model; the running model stays.", version = %entry.version, %reason);
                    refused = Some(key);
                }
            }
        }
    }

    /// Traces events with this tracer.
    pub fn with_telemetry(mut self, telemetry: Option<crate::tracing_otel::Telemetry>) -> Engine {
        self.telemetry = telemetry;
        self
    }

    /// Runs `engine.workers` group members until `shutdown` is set, then each drains,
    /// flushes and commits. If one member fails, the others stop too and its error is returned.
    pub fn run(&self, shutdown: &AtomicBool) -> Result<RunSummary, EngineError> {
        let watcher_stop = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            if !self.config.model.registry.is_empty() {
                s.spawn(|| self.watch_registry(&watcher_stop));
            }
            let result = self.run_members(shutdown);
            watcher_stop.store(true, Ordering::Relaxed);
            result
        });
        if let Some(t) = &self.telemetry {
            t.shutdown();
        }
        result
    }

    fn run_members(&self, shutdown: &AtomicBool) -> Result<RunSummary, EngineError> {
        let workers = self.config.engine.effective_workers();
        if workers == 1 {
            return self.run_member(shutdown, 0);
        }
        let stop_all = AtomicBool::new(false);
        std::thread::scope(|s| {
            let members: Vec<_> = (0..workers)
                .map(|i| {
                    let stop_all = &stop_all;
                    s.spawn(move || {
                        let result = self.run_member(stop_all, i);
                        if result.is_err() {
                            stop_all.store(true, Ordering::Relaxed);
                        }
                        result
                    })
                })
                .collect();
            while !stop_all.load(Ordering::Relaxed) && !members.iter().all(|m| m.is_finished()) {
                if shutdown.load(Ordering::Relaxed) {
                    stop_all.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut total = RunSummary::default();
            let mut first_error = None;
            for m in members {
                match m.join().expect("engine member panicked") {
                    Ok(r) => {
                        total.consumed += r.consumed;
                        total.scored += r.scored;
                        total.alerts += r.alerts;
                        total.dead_letters += r.dead_letters;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(total), Err)
        })
    }

    /// One consumer-group member: its own consumer, producer and offset tracker.
    fn run_member(&self, shutdown: &AtomicBool, member: usize) -> Result<RunSummary, EngineError> {
        let cfg = &self.config;
        let topic = cfg.kafka.transactions_topic.clone();
        let (retry_tx, retry_rx) = channel();
        let client_id = cfg.kafka.options.get("client.id").cloned().unwrap_or_else(|| "driftwatch".into());
        let producer: Arc<Output> = Arc::new(
            cfg.producer_config()
                .set("client.id", format!("{client_id}-{member}"))
                .create_with_context(DeliveryContext { metrics: self.metrics.clone(), retries: Mutex::new(retry_tx) })
                .map_err(kafka("creating the producer"))?,
        );
        let tracker = Arc::new(Mutex::new(OffsetTracker::new(cfg.engine.batch_size)));
        let consumer: BaseConsumer<ConsumerCtx> = cfg
            .consumer_config()
            .set("client.id", format!("{client_id}-{member}"))
            .create_with_context(ConsumerCtx { metrics: self.metrics.clone(), producer: producer.clone(), tracker: tracker.clone(), topic: topic.clone() })
            .map_err(kafka("creating the consumer"))?;
        consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| EngineError::Kafka { context: format!("connecting to {}", cfg.kafka.brokers), source: e })?;
        consumer.subscribe(&[&topic]).map_err(kafka("subscribing"))?;
        let pipeline = self.current_pipeline();
        info!(message = "Engine member started.", member, topic = %topic, group = %cfg.kafka.group_id, model = %pipeline.artifact().model.version);

        let mut loop_state = LoopState {
            engine: self,
            producer: &producer,
            tx: pipeline.new_transaction(),
            generation: self.generation.load(Ordering::Acquire),
            pipeline,
            shadow: None,
            shadow_generation: u64::MAX,
            shadow_tx: crate::pipeline::Transaction::default(),
            alert_buf: Vec::with_capacity(1024),
            summary: RunSummary::default(),
            threshold: cfg.model.threshold,
        };
        let poll_timeout = Duration::from_millis(cfg.engine.poll_timeout_ms);
        while !shutdown.load(Ordering::Relaxed) {
            loop_state.resend_failed(&retry_rx)?;
            match consumer.poll(poll_timeout) {
                None => tracker.lock().expect("tracker lock").seal(),
                Some(Err(error)) => {
                    self.metrics.kafka_errors.inc();
                    warn!(message = "Consumer error.", %error);
                }
                Some(Ok(message)) => {
                    let mut t = tracker.lock().expect("tracker lock");
                    loop_state.handle(&message, &mut t)?;
                    if loop_state.summary.consumed % 64 == 0 {
                        t.seal_if_older_than(cfg.engine.poll_timeout_ms);
                    }
                }
            }
            let done = tracker.lock().expect("tracker lock").take_done();
            if let Some(done) = done {
                store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
            }
        }

        info!(message = "Shutting down: flushing outputs and committing offsets.");
        tracker.lock().expect("tracker lock").seal();
        let deadline = Instant::now() + Duration::from_millis(cfg.engine.shutdown_timeout_ms);
        loop {
            loop_state.resend_failed(&retry_rx)?;
            let _ = producer.flush(Duration::from_millis(200));
            let done = tracker.lock().expect("tracker lock").take_done();
            if let Some(done) = done {
                store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
            }
            if tracker.lock().expect("tracker lock").outstanding_events() == 0 || Instant::now() >= deadline {
                break;
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => warn!(message = "Failed to commit offsets at shutdown.", %error),
        }
        self.metrics.ready.set(0);
        let left = tracker.lock().expect("tracker lock").outstanding_events();
        drop(consumer);
        if left > 0 {
            return Err(EngineError::Unacknowledged(left));
        }
        info!(message = "Engine stopped.", consumed = loop_state.summary.consumed, alerts = loop_state.summary.alerts, dead_letters = loop_state.summary.dead_letters);
        Ok(loop_state.summary)
    }
}

/// The score-latency histogram observes one event in this many (counted over consumed messages).
pub const LATENCY_SAMPLE_EVERY: u64 = 16;

struct LoopState<'a> {
    engine: &'a Engine,
    /// This member's view of the serving pipeline and its generation.
    pipeline: Arc<Pipeline>,
    generation: u64,
    /// This member's view of the shadow candidate, its generation and decode buffer.
    shadow: Option<Arc<Pipeline>>,
    shadow_generation: u64,
    shadow_tx: crate::pipeline::Transaction,
    producer: &'a Output,
    tx: crate::pipeline::Transaction,
    alert_buf: Vec<u8>,
    summary: RunSummary,
    threshold: Option<f64>,
}

impl LoopState<'_> {
    fn handle(&mut self, message: &BorrowedMessage<'_>, tracker: &mut OffsetTracker) -> Result<(), EngineError> {
        let e = self.engine;
        let generation = e.generation.load(Ordering::Acquire);
        if generation != self.generation {
            // Between two messages: this one and all later ones use the new version.
            self.pipeline = e.current_pipeline();
            self.tx = self.pipeline.new_transaction();
            self.generation = generation;
        }
        let m = &e.metrics;
        m.events_consumed.inc();
        self.summary.consumed += 1;
        let payload = message.payload().unwrap_or(&[]);
        let telemetry = e.telemetry.as_ref();
        let trace = telemetry.and_then(|t| t.start_event(message));
        let outcome = if payload.len() > e.config.engine.max_event_bytes {
            Err(("oversized", format!("event of {} bytes exceeds engine.max_event_bytes = {}", payload.len(), e.config.engine.max_event_bytes)))
        } else {
            // Timing every event costs two clock reads (~6 % of the loop): time one in 16.
            let started = (self.summary.consumed % LATENCY_SAMPLE_EVERY == 1).then(Instant::now);
            let decode_span = trace.as_ref().zip(telemetry).map(|(cx, t)| t.child(cx, "decode"));
            let decoded = self.pipeline.decode_into(payload, &mut self.tx);
            if let Some(mut span) = decode_span {
                if let Err(err) = &decoded {
                    span.set_status(opentelemetry::trace::Status::error(err.reason()));
                }
                span.end();
            }
            match decoded {
                Ok(()) => {
                    let score_span = trace.as_ref().zip(telemetry).map(|(cx, t)| t.child(cx, "score"));
                    let mut score = self.pipeline.score(&self.tx);
                    if let Some(started) = started {
                        let elapsed = started.elapsed();
                        m.score_latency.observe(elapsed.as_secs_f64());
                        if let Some(g) = e.guard.lock().expect("guard lock").as_mut() {
                            let _ = g.latency_us.record(elapsed.as_micros() as u64);
                        }
                    }
                    if let Some(t) = self.threshold {
                        score.is_fraud = score.probability >= t;
                    }
                    if let Some(mut span) = score_span {
                        span.set_attribute(opentelemetry::KeyValue::new("driftwatch.score", score.probability));
                        span.set_attribute(opentelemetry::KeyValue::new("driftwatch.is_fraud", score.is_fraud));
                        span.set_attribute(opentelemetry::KeyValue::new("driftwatch.is_outlier", score.is_outlier));
                        span.end();
                    }
                    Ok(score)
                }
                Err(err) => Err((err.reason(), err.to_string())),
            }
        };
        match outcome {
            Ok(score) => {
                m.events_scored.inc();
                self.summary.scored += 1;
                if score.is_outlier {
                    m.outliers.inc();
                }
                if score.is_fraud {
                    m.fraud_alerts.inc();
                }
                if score.is_fraud || (score.is_outlier && e.config.model.alert_on_outlier) {
                    self.produce_alert(message, &score, tracker, trace.as_ref())?;
                }
                self.observe_drift(&score, tracker)?;
                self.shadow_score(message, payload, &score, tracker)?;
            }
            Err((reason, text)) => {
                m.events_invalid.get_or_create(&ReasonLabel { reason: reason.to_string() }).inc();
                self.summary.dead_letters += 1;
                // The event's own headers (trace context among them) go along, then ours.
                let headers = message.headers().map_or_else(|| OwnedHeaders::new_with_capacity(5), |h| h.detach())
                    .insert(Header { key: dlq_headers::REASON, value: Some(reason) })
                    .insert(Header { key: dlq_headers::ERROR, value: Some(&text) })
                    .insert(Header { key: dlq_headers::TOPIC, value: Some(message.topic()) })
                    .insert(Header { key: dlq_headers::PARTITION, value: Some(&message.partition().to_string()) })
                    .insert(Header { key: dlq_headers::OFFSET, value: Some(&message.offset().to_string()) });
                let delivery = Box::new(Delivery { pending: tracker.add_output(), alert_event_time_ms: None });
                let mut record = BaseRecord::with_opaque_to(&e.config.kafka.dead_letter_topic, delivery).payload(payload).headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                send(self.producer, record)?;
            }
        }
        tracker.record(message.partition(), message.offset());
        if let Some(cx) = trace {
            cx.span().end();
        }
        Ok(())
    }

    fn produce_alert(&mut self, message: &BorrowedMessage<'_>, score: &Score, tracker: &mut OffsetTracker, trace: Option<&opentelemetry::Context>) -> Result<(), EngineError> {
        let e = self.engine;
        let pipeline = self.pipeline.clone();
        let model = &pipeline.artifact().model;
        let mut triggers = Vec::with_capacity(2);
        if score.is_fraud {
            triggers.push("fraud_score");
        }
        if score.is_outlier {
            triggers.push("outlier");
        }
        let key = if self.tx.key.is_empty() { &self.tx.id } else { &self.tx.key };
        let alert = FraudAlert {
            transaction_id: &self.tx.id,
            account_id: &self.tx.key,
            score: score.probability,
            threshold: self.threshold.unwrap_or(pipeline.artifact().decision.threshold),
            is_fraud: score.is_fraud,
            outlier_score: score.outlier_score,
            is_outlier: score.is_outlier,
            triggers,
            reasons: reasons_json(&pipeline, &self.tx, score),
            model: &model.name,
            model_version: &model.version,
            event_time: self.tx.event_time_ms.map(format_rfc3339_ms),
            processed_at: format_rfc3339_ms(now_ms()),
            source: SourcePosition { topic: message.topic(), partition: message.partition(), offset: message.offset() },
        };
        self.alert_buf.clear();
        serde_json::to_writer(&mut self.alert_buf, &alert).expect("alert serialises");
        self.summary.alerts += 1;
        let delivery = Box::new(Delivery { pending: tracker.add_output(), alert_event_time_ms: self.tx.event_time_ms });
        let mut record = BaseRecord::with_opaque_to(&e.config.kafka.alerts_topic, delivery).payload(self.alert_buf.as_slice()).key(key.as_bytes());
        // A traced event's alert carries the trace on (W3C traceparent), from a producer span.
        let publish = trace.zip(e.telemetry.as_ref()).map(|(cx, t)| t.publish(cx, &e.config.kafka.alerts_topic, key));
        if let Some((_, headers)) = &publish {
            let mut h = OwnedHeaders::new_with_capacity(headers.0.len());
            for (k, v) in &headers.0 {
                h = h.insert(Header { key: k, value: Some(v) });
            }
            record = record.headers(h);
        }
        let sent = send(self.producer, record);
        if let Some((mut span, _)) = publish {
            span.end();
        }
        sent
    }

    /// Scores a share of events with the candidate too and publishes both decisions.
    fn shadow_score(&mut self, message: &BorrowedMessage<'_>, payload: &[u8], score: &Score, tracker: &mut OffsetTracker) -> Result<(), EngineError> {
        let e = self.engine;
        let fraction = e.config.model.shadow_fraction;
        if fraction <= 0.0 {
            return Ok(());
        }
        let generation = e.shadow_generation.load(Ordering::Acquire);
        if generation != self.shadow_generation {
            self.shadow = e.shadow.read().expect("shadow lock").clone();
            self.shadow_tx = self.shadow.as_ref().map(|p| p.new_transaction()).unwrap_or_default();
            self.shadow_generation = generation;
        }
        let Some(candidate) = self.shadow.clone() else { return Ok(()) };
        if !crate::drift::stream::in_sample(&self.tx, fraction) {
            return Ok(());
        }
        let started = Instant::now();
        let Ok(()) = candidate.decode_into(payload, &mut self.shadow_tx) else { return Ok(()) };
        let shadow = candidate.score(&self.shadow_tx);
        let elapsed = started.elapsed();
        let m = &e.metrics;
        let alert = |s: &Score| s.is_fraud || (s.is_outlier && e.config.model.alert_on_outlier);
        let (production_alert, candidate_alert) = (alert(score), alert(&shadow));
        m.shadow_scored.inc();
        m.shadow_latency.observe(elapsed.as_secs_f64());
        m.shadow_alerts.inc_by(u64::from(candidate_alert));
        m.shadow_agreement.get_or_create(&crate::metrics::AgreeLabel { agree: (production_alert == candidate_alert).to_string() }).inc();
        let message_json = crate::event::ShadowScore {
            transaction_id: &self.tx.id,
            production_version: &self.pipeline.artifact().model.version,
            candidate_version: &candidate.artifact().model.version,
            production_score: score.probability,
            candidate_score: shadow.probability,
            production_alert,
            candidate_alert,
            agree: production_alert == candidate_alert,
            candidate_latency_us: elapsed.as_secs_f64() * 1e6,
            source: SourcePosition { topic: message.topic(), partition: message.partition(), offset: message.offset() },
        };
        let payload = serde_json::to_vec(&message_json).expect("shadow score serialises");
        let delivery = Box::new(Delivery { pending: tracker.add_output(), alert_event_time_ms: None });
        send(self.producer, BaseRecord::with_opaque_to(&e.config.kafka.shadow_scores_topic, delivery).payload(payload.as_slice()).key(self.tx.id.as_bytes()))
    }

    /// Feeds the drift windows; publishes the windows this event's time closes.
    fn observe_drift(&mut self, score: &Score, tracker: &mut OffsetTracker) -> Result<(), EngineError> {
        let Some(drift) = &self.engine.drift else { return Ok(()) };
        let due = self.tx.event_time_ms.is_none_or(|t| t >= drift.due_ms.load(Ordering::Relaxed));
        if !due && !crate::drift::stream::in_sample(&self.tx, drift.sample_fraction) {
            return Ok(());
        }
        let closed = {
            let mut state = drift.state.lock().expect("drift lock");
            let late_before = state.late_events();
            let closed = state.observe(&self.tx, score);
            self.engine.metrics.drift_late_events.inc_by(state.late_events() - late_before);
            drift.due_ms.store(state.close_due_ms(), Ordering::Relaxed);
            closed
        };
        for window in closed {
            self.publish_window(&window, tracker)?;
        }
        Ok(())
    }

    /// Produces a closed window's report, status changes and retrain request, and updates the gauges.
    fn publish_window(&mut self, w: &ClosedWindow, tracker: &mut OffsetTracker) -> Result<(), EngineError> {
        let e = self.engine;
        let (m, k) = (&e.metrics, &e.config.kafka);
        let pipeline = self.pipeline.clone();
        let model = &pipeline.artifact().model;
        m.drift_windows_closed.inc();
        if let Some(t) = &e.telemetry {
            t.window_span(&w.report.window_end, w.report.drift.features.len(), crate::drift::status_name(w.report.drift.status));
        }
        m.drift_window_samples.set(w.report.drift.current.rows as i64);
        m.drift_outlier_rate.set(w.report.model_drift.outlier_rate.observed);
        m.drift_alert_rate.set(w.report.model_drift.alert_rate.observed);
        let state = e.drift.as_ref().expect("drift enabled").state.lock().expect("drift lock");
        for f in w.report.drift.features.iter().chain(std::iter::once(&w.report.model_drift.score)) {
            let label = FeatureLabel { feature: f.bins.name.clone() };
            let shown = match state.monitor().shown(&f.bins.name) {
                crate::drift::Status::Red => 2.0,
                crate::drift::Status::Amber => 1.0,
                _ => 0.0,
            };
            m.drift_status.get_or_create(&label).set(shown);
            m.drift_psi.get_or_create(&label).set(f.psi);
            m.drift_kl.get_or_create(&label).set(f.kl);
            m.drift_js.get_or_create(&label).set(f.js);
            if let Some(c) = f.chi2 {
                m.drift_chi2_p.get_or_create(&label).set(c.p_value_adjusted);
            }
            if let Some(ks) = f.ks {
                m.drift_ks.get_or_create(&label).set(ks.statistic);
            }
            if let Some(wd) = f.wasserstein {
                m.drift_wasserstein.get_or_create(&label).set(wd.normalized);
            }
        }
        drop(state);
        let mut outputs: Vec<(&str, String, Vec<u8>)> = vec![(&k.drift_reports_topic, model.name.clone(), serde_json::to_vec(&w.report).expect("report serialises"))];
        for event in e.guard_check(w, &model.version) {
            outputs.push((&k.model_events_topic, event.model.clone(), serde_json::to_vec(&event).expect("event serialises")));
        }
        for a in &w.alerts {
            m.drift_status_changes.get_or_create(&StatusLabel { to: crate::drift::status_name(a.to).to_string() }).inc();
            warn!(message = "Drift status changed.", feature = %a.feature, from = crate::drift::status_name(a.from), to = crate::drift::status_name(a.to), window_end = %a.window_end);
            outputs.push((&k.drift_alerts_topic, a.feature.clone(), serde_json::to_vec(a).expect("alert serialises")));
        }
        if let Some(r) = &w.retrain {
            m.retrain_requests.inc();
            warn!(message = "Retrain requested.", reason = %r.reason);
            outputs.push((&k.retrain_requests_topic, model.name.clone(), serde_json::to_vec(r).expect("request serialises")));
        }
        for (topic, key, payload) in &outputs {
            let delivery = Box::new(Delivery { pending: tracker.add_output(), alert_event_time_ms: None });
            send(self.producer, BaseRecord::with_opaque_to(topic, delivery).payload(payload.as_slice()).key(key.as_bytes()))?;
        }
        Ok(())
    }

    fn resend_failed(&mut self, retries: &Receiver<Retry>) -> Result<(), EngineError> {
        while let Ok(Retry { message, delivery }) = retries.try_recv() {
            let mut record = BaseRecord::with_opaque_to(message.topic(), delivery);
            if let Some(p) = message.payload() {
                record = record.payload(p);
            }
            if let Some(k) = message.key() {
                record = record.key(k);
            }
            if let Some(h) = message.headers() {
                record = record.headers(h.clone());
            }
            send(self.producer, record)?;
        }
        Ok(())
    }
}

/// Produces, waiting while librdkafka's queue is full (backpressure instead of loss); any
/// other error is returned, never retried forever.
pub fn send_with_backpressure<'a, C, D>(producer: &ThreadedProducer<C>, mut record: BaseRecord<'a, [u8], [u8], D>) -> Result<(), (KafkaError, String)>
where
    C: ProducerContext<DeliveryOpaque = D>,
    D: rdkafka::util::IntoOpaque,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, r)) => return Err((error, r.topic.to_string())),
        }
    }
}

fn send(producer: &Output, record: BaseRecord<'_, [u8], [u8], Box<Delivery>>) -> Result<(), EngineError> {
    send_with_backpressure(producer, record).map_err(|(source, topic)| EngineError::Kafka { context: format!("producing to `{topic}`"), source })
}
