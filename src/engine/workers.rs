//! Threads and shutdown: `engine.workers` consumer-group members, each with its own consumer,
//! producer and offset tracker, running the core's [`Member::handle`] on every message; and the
//! registry watcher that hot-reloads models. Shutdown is a flag: members drain, flush, store
//! and commit; if one member fails, the others stop too and its error is returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::Message;
use tracing::{info, warn};

use super::core::{Engine, Member, RunSummary};
use super::kafka::{commit, commit_transaction, incoming, resend_failed, store, ConsumerCtx, DeliveryContext, KafkaOutputs, OpenTransaction, OutputProducer};
use super::tracker::OffsetTracker;
use super::EngineError;
use crate::model::lifecycle::{RegistryChange, RegistryWatch};
use crate::model::registry::Registry;
use crate::observe::events::{ConsumeFailed, InternalEvent, ModelRefused};
use crate::pipeline::Pipeline;

impl Engine {
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
                    Ok(r) => total += r,
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
        let exactly_once = cfg.engine.delivery == crate::config::Delivery::ExactlyOnce;
        let mut producer_config = cfg.producer_config();
        producer_config.set("client.id", format!("{client_id}-{member}"));
        if exactly_once {
            // Stable per member slot: a restarted member fences its predecessor's open transaction.
            producer_config.set("transactional.id", format!("{}-{}-{member}", cfg.kafka.group_id, topic));
        }
        let producer: Arc<OutputProducer> = Arc::new(
            producer_config
                .create_with_context(DeliveryContext { metrics: self.metrics.clone(), retries: Mutex::new(retry_tx) })
                .map_err(|source| EngineError::Kafka { context: "creating the producer".into(), source })?,
        );
        let transaction = exactly_once.then(|| Arc::new(Mutex::new(OpenTransaction::default())));
        if exactly_once {
            producer.init_transactions(Duration::from_secs(30)).map_err(|source| EngineError::Kafka { context: "initialising transactions".into(), source })?;
            producer.begin_transaction().map_err(|source| EngineError::Kafka { context: "beginning a transaction".into(), source })?;
        }
        let tracker = Arc::new(Mutex::new(OffsetTracker::new(cfg.engine.batch_size)));
        let consumer: BaseConsumer<ConsumerCtx> = cfg
            .consumer_config()
            .set("client.id", format!("{client_id}-{member}"))
            .create_with_context(ConsumerCtx {
                metrics: self.metrics.clone(),
                producer: producer.clone(),
                tracker: tracker.clone(),
                topic: topic.clone(),
                transaction: transaction.clone(),
            })
            .map_err(|source| EngineError::Kafka { context: "creating the consumer".into(), source })?;
        consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| EngineError::Kafka { context: format!("connecting to {}", cfg.kafka.brokers), source: e })?;
        consumer.subscribe(&[&topic]).map_err(|source| EngineError::Kafka { context: "subscribing".into(), source })?;
        let mut handler: Member<'_> = self.member();
        info!(message = "Engine member started.", member, topic = %topic, group = %cfg.kafka.group_id, model = %self.current_pipeline().artifact().model.version, exactly_once);

        let poll_timeout = Duration::from_millis(cfg.engine.poll_timeout_ms);
        let interval = Duration::from_millis(cfg.engine.transaction_interval_ms);
        let mut last_commit = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            if exactly_once {
                // A failed delivery fails the transaction's commit, which aborts it: no resend.
                while retry_rx.try_recv().is_ok() {}
            } else {
                resend_failed(&producer, &retry_rx)?;
            }
            match consumer.poll(poll_timeout) {
                None => tracker.lock().expect("tracker lock").seal(),
                Some(Err(error)) => ConsumeFailed { error: &error }.emit(&self.metrics),
                Some(Ok(message)) => {
                    let mut t = tracker.lock().expect("tracker lock");
                    handler.handle(&incoming(&message), &mut KafkaOutputs { producer: &producer, tracker: &mut t })?;
                    if handler.summary().consumed % 64 == 0 {
                        t.seal_if_older_than(cfg.engine.poll_timeout_ms);
                    }
                    if let Some(open) = &transaction {
                        let mut open = open.lock().expect("transaction lock");
                        open.positions.insert(message.partition(), message.offset() + 1);
                        open.events += 1;
                    }
                }
            }
            match &transaction {
                Some(open) => {
                    if last_commit.elapsed() >= interval {
                        let mut open = open.lock().expect("transaction lock");
                        if open.events > 0 {
                            commit_transaction(&consumer, &producer, &topic, &mut open, &self.metrics)?;
                        }
                        last_commit = Instant::now();
                    }
                    // Offsets travel with the transactions; the tracker only counts deliveries.
                    let _ = tracker.lock().expect("tracker lock").take_done();
                }
                None => {
                    let done = tracker.lock().expect("tracker lock").take_done();
                    if let Some(done) = done {
                        store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
                    }
                }
            }
        }

        let left = match &transaction {
            Some(open) => {
                {
                    let mut open = open.lock().expect("transaction lock");
                    if open.events > 0 {
                        info!(message = "Shutting down: committing the open transaction.", events = open.events);
                        commit_transaction(&consumer, &producer, &topic, &mut open, &self.metrics)?;
                    }
                }
                self.metrics.ready.set(0);
                // Leaving the group revokes the partitions; the revoke finds nothing to commit.
                drop(consumer);
                // What is open now holds nothing of ours: abort it so nothing stays open.
                let _ = producer.abort_transaction(Duration::from_secs(5));
                0
            }
            None => {
                info!(message = "Shutting down: flushing outputs and committing offsets.");
                tracker.lock().expect("tracker lock").seal();
                let deadline = Instant::now() + Duration::from_millis(cfg.engine.shutdown_timeout_ms);
                loop {
                    resend_failed(&producer, &retry_rx)?;
                    let _ = producer.flush(Duration::from_millis(200));
                    let done = tracker.lock().expect("tracker lock").take_done();
                    if let Some(done) = done {
                        store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
                    }
                    if tracker.lock().expect("tracker lock").outstanding_events() == 0 || Instant::now() >= deadline {
                        break;
                    }
                }
                commit(&consumer, "shutdown");
                self.metrics.ready.set(0);
                drop(consumer);
                tracker.lock().expect("tracker lock").outstanding_events()
            }
        };
        if left > 0 {
            return Err(EngineError::Unacknowledged(left));
        }
        let summary = handler.summary();
        info!(message = "Engine stopped.", consumed = summary.consumed, alerts = summary.alerts, dead_letters = summary.dead_letters);
        Ok(summary)
    }

    /// Polls the registry and applies what changed: swaps in a new production version, loads a
    /// new shadow candidate; refuses (and remembers) one that does not load or fit, keeping the
    /// running model.
    fn watch_registry(&self, stop: &AtomicBool) {
        let m = &self.config.model;
        let registry = Registry::open(std::path::Path::new(&m.registry));
        let name = (!m.registry_name.is_empty()).then_some(m.registry_name.as_str());
        let mut watch = RegistryWatch::default();
        while !stop.load(Ordering::Relaxed) {
            let wake = Instant::now() + Duration::from_millis(m.registry_poll_ms);
            while Instant::now() < wake && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let serving = self.current_pipeline().artifact().model.version.clone();
            let shadow = self.models.shadow().map(|p| p.artifact().model.version.clone());
            let shadowing = (m.shadow_fraction > 0.0).then_some(shadow.as_deref());
            for change in watch.poll(&registry, name, &serving, shadowing) {
                match change {
                    RegistryChange::Shadow { candidate } => {
                        let loaded = match &candidate {
                            None => None,
                            Some((version, path)) => match Pipeline::load(path) {
                                Ok(p) => Some(Arc::new(p)),
                                Err(error) => {
                                    ModelRefused { version, reason: &error, shadow: true }.emit(&self.metrics);
                                    watch.refuse_shadow(&registry, name, version);
                                    continue;
                                }
                            },
                        };
                        info!(message = "Shadow candidate changed.", from = ?shadow, to = ?candidate.as_ref().map(|c| &c.0));
                        self.models.set_shadow(loaded);
                    }
                    RegistryChange::Promote { version, path, guarded } => {
                        let swapped = Pipeline::load(&path).map_err(|e| e.to_string()).and_then(|p| self.swap_pipeline(p, guarded).map_err(|e| e.to_string()));
                        match swapped {
                            Ok(()) => watch.accepted(),
                            Err(reason) => {
                                ModelRefused { version: &version, reason: &reason, shadow: false }.emit(&self.metrics);
                                watch.refuse(&registry, name, &version);
                            }
                        }
                    }
                    RegistryChange::Unreadable(error) => warn!(message = "Cannot read the model registry; the running model stays.", %error),
                }
            }
        }
    }
}
