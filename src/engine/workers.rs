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
use tracing::{error, info, warn};

use super::core::{Engine, Member, RunSummary};
use super::delivery::Redelivery;
use super::kafka::{commit, commit_transaction, incoming, store, ConsumerCtx, DeliveryContext, KafkaOutputs, OpenTransaction, OutputProducer, Sink};
use super::tracker::OffsetTracker;
use super::EngineError;
use crate::model::lifecycle::{RegistryChange, RegistryWatch};
use crate::observe::events::{ConsumeFailed, InternalEvent, ModelRefused};
use crate::observe::metrics::WorkerLabel;
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
            if self.config.performance.enabled {
                std::thread::Builder::new().name("performance".into()).spawn_scoped(s, || self.run_performance(&watcher_stop)).expect("spawning the performance thread");
            }
            if self.config.drift.enabled && self.config.drift.aggregation == crate::config::Aggregation::Group {
                std::thread::Builder::new().name("drift-aggregator".into()).spawn_scoped(s, || self.run_aggregator(&watcher_stop)).expect("spawning the drift aggregator thread");
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
        let gauges: Vec<_> = (0..self.unacked_since_ms.len()).map(|i| self.metrics.output_oldest_unacked_age.get_or_create(&WorkerLabel { worker: i.to_string() }).clone()).collect();
        let tick = || {
            let now = crate::time::now_ms();
            for (since, gauge) in self.unacked_since_ms.iter().zip(&gauges) {
                let since = since.load(Ordering::Relaxed);
                gauge.set(if since == 0 { 0.0 } else { (now - since).max(0) as f64 / 1000.0 });
            }
        };
        supervise(self.config.engine.effective_workers(), shutdown, |stop, i| self.run_member(stop, i), tick)
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
            // With an instance id, several instances of one group each have their own ids.
            let id = match cfg.kafka.instance_id.as_str() {
                "" => format!("{}-{}-{member}", cfg.kafka.group_id, topic),
                instance => format!("{}-{}-{instance}-{member}", cfg.kafka.group_id, topic),
            };
            producer_config.set("transactional.id", id);
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
        let lags = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let mut consumer_config = cfg.consumer_config();
        consumer_config.set("client.id", format!("{client_id}-{member}"));
        if !cfg.kafka.instance_id.is_empty() {
            // Static membership: a restarted member takes its partitions back without a rebalance.
            consumer_config.set("group.instance.id", format!("{}-{member}", cfg.kafka.instance_id));
        }
        let consumer: BaseConsumer<ConsumerCtx> = consumer_config
            .create_with_context(ConsumerCtx {
                metrics: self.metrics.clone(),
                producer: producer.clone(),
                tracker: tracker.clone(),
                topic: topic.clone(),
                transaction: transaction.clone(),
                lags: lags.clone(),
            })
            .map_err(|source| EngineError::Kafka { context: "creating the consumer".into(), source })?;
        consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| EngineError::Kafka { context: format!("connecting to {}", cfg.kafka.brokers), source: e })?;
        consumer.subscribe(&[&topic]).map_err(|source| EngineError::Kafka { context: "subscribing".into(), source })?;
        let mut handler: Member<'_> = self.member_at(member);
        let group_drift = cfg.drift.enabled && cfg.drift.aggregation == crate::config::Aggregation::Group;
        let progress_every = Duration::from_millis(cfg.drift.progress_interval_ms);
        let mut last_progress = Instant::now();
        info!(message = "Engine member started.", member, topic = %topic, group = %cfg.kafka.group_id, model = %self.current_pipeline().artifact().model.version, exactly_once);

        let poll_timeout = Duration::from_millis(cfg.engine.poll_timeout_ms);
        let interval = Duration::from_millis(cfg.engine.transaction_interval_ms);
        let sink = Sink {
            producer: &producer,
            stop: shutdown,
            noncritical: cfg.engine.noncritical_output_failure,
            max_backoff: Duration::from_millis(cfg.engine.retry_backoff_max_ms),
            metrics: &self.metrics,
        };
        let mut redelivery = Redelivery::new(retry_rx);
        let unacked_since = &self.unacked_since_ms[member];
        let note_unacked = |t: &OffsetTracker| {
            let since = t.oldest_unacknowledged().map_or(0, |age| crate::time::now_ms() - age.as_millis() as i64);
            unacked_since.store(since, Ordering::Relaxed);
        };
        let mut last_commit = Instant::now();
        // Shutdown came while an event's outputs were half produced (a full queue).
        let mut interrupted = false;
        // The loop ends on shutdown (Ok) or on an error that stops the engine; either way the
        // tail below commits what is safe.
        let outcome: Result<(), EngineError> = 'run: {
            while !shutdown.load(Ordering::Relaxed) {
                if exactly_once {
                    redelivery.discard();
                } else if let Err(e) = redelivery.pump(&sink) {
                    break 'run Err(e);
                }
                // One tracker lock per message: handling it and taking what became committable.
                let done = match consumer.poll(poll_timeout) {
                    None => {
                        handler.publish_counts();
                        let mut t = tracker.lock().expect("tracker lock");
                        t.seal();
                        note_unacked(&t);
                        t.take_done()
                    }
                    Some(Err(error)) => {
                        ConsumeFailed { error: &error }.emit(&self.metrics);
                        // A fatal error (fenced by another member with our group.instance.id, a
                        // fatal idempotence error) ends this consumer for good: stop.
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            let hint = if cfg.kafka.instance_id.is_empty() { String::new() } else { format!(" (is another instance running with kafka.instance_id = \"{}\"? it must be unique)", cfg.kafka.instance_id) };
                            break 'run Err(EngineError::Kafka { context: format!("consuming: fatal error, {reason}{hint}"), source: rdkafka::error::KafkaError::MessageConsumption(code) });
                        }
                        tracker.lock().expect("tracker lock").take_done()
                    }
                    Some(Ok(message)) => {
                        let mut t = tracker.lock().expect("tracker lock");
                        match handler.handle(&incoming(&message), &mut KafkaOutputs { sink: &sink, tracker: &mut t }) {
                            Ok(()) => {}
                            Err(EngineError::Interrupted) => {
                                interrupted = true;
                                break 'run Ok(());
                            }
                            Err(e) => break 'run Err(e),
                        }
                        if handler.summary().consumed % 64 == 0 {
                            t.seal_if_older_than(cfg.engine.poll_timeout_ms);
                            note_unacked(&t);
                        }
                        if let Some(open) = &transaction {
                            let mut open = open.lock().expect("transaction lock");
                            open.positions.insert(message.partition(), message.offset() + 1);
                            open.events += 1;
                        }
                        t.take_done()
                    }
                };
                if group_drift && last_progress.elapsed() >= progress_every {
                    last_progress = Instant::now();
                    let assigned: Vec<i32> = consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
                    let lags = lags.lock().expect("lags lock").clone();
                    let mut t = tracker.lock().expect("tracker lock");
                    match handler.drift_tick(&assigned, |p| lags.get(&p) == Some(&0), &mut KafkaOutputs { sink: &sink, tracker: &mut t }) {
                        Ok(()) => {}
                        Err(EngineError::Interrupted) => {
                            interrupted = true;
                            break 'run Ok(());
                        }
                        Err(e) => break 'run Err(e),
                    }
                }
                match &transaction {
                    Some(open) => {
                        if last_commit.elapsed() >= interval {
                            let mut open = open.lock().expect("transaction lock");
                            if open.events > 0 {
                                if let Err(e) = commit_transaction(&consumer, &producer, &topic, &mut open, &self.metrics) {
                                    break 'run Err(e);
                                }
                            }
                            last_commit = Instant::now();
                        }
                        // Offsets travel with the transactions; the tracker only counts deliveries.
                        drop(done);
                    }
                    None => {
                        if let Some(done) = done {
                            store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
                        }
                    }
                }
            }
            Ok(())
        };

        handler.publish_counts();
        if let Err(error) = &outcome {
            // The other members start stopping now, not when this one has finished its own
            // stop; and if a librdkafka call blocks that stop, the process still ends.
            shutdown.store(true, Ordering::Relaxed);
            self.arm_failure_watchdog(error);
        }
        let mut refused_at_shutdown = None;
        let left = match &transaction {
            Some(open) => {
                // An interrupted event's outputs are in the open transaction but its offset is
                // not: committing would show them and read the event again. Abort instead.
                if outcome.is_ok() && !interrupted {
                    let mut open = open.lock().expect("transaction lock");
                    if open.events > 0 {
                        info!(message = "Shutting down: committing the open transaction.", events = open.events);
                        commit_transaction(&consumer, &producer, &topic, &mut open, &self.metrics)?;
                    }
                } else {
                    // Nothing of the open transaction becomes visible; its events are read again.
                    *open.lock().expect("transaction lock") = OpenTransaction::default();
                }
                self.metrics.ready.set(0);
                // Leaving the group revokes the partitions; the revoke finds nothing to commit.
                drop(consumer);
                // What is open now holds nothing of ours: abort it so nothing stays open.
                let _ = producer.abort_transaction(Duration::from_secs(5));
                0
            }
            None => {
                if group_drift && outcome.is_ok() && !interrupted {
                    // This member's open panes go out now, so their events can be committed.
                    let mut t = tracker.lock().expect("tracker lock");
                    if let Err(error) = handler.drift_flush(&mut KafkaOutputs { sink: &sink, tracker: &mut t }) {
                        warn!(message = "Could not publish the open drift panes at shutdown; their events stay uncommitted and are read again.", %error);
                    }
                }
                // After an error, a short wait: what is acknowledged by then is committed.
                let wait = if outcome.is_ok() { cfg.engine.shutdown_timeout_ms * 4 / 5 } else { cfg.engine.shutdown_timeout_ms.min(5_000) };
                info!(message = "Shutting down: flushing outputs and committing offsets.", wait_ms = wait);
                tracker.lock().expect("tracker lock").seal();
                let deadline = Instant::now() + Duration::from_millis(wait);
                loop {
                    // After a refused output nothing later can be committed: store what is done, stop waiting.
                    let refused = redelivery.pump(&sink).err();
                    if refused.is_none() {
                        let _ = producer.flush(Duration::from_millis(200));
                    }
                    let done = tracker.lock().expect("tracker lock").take_done();
                    if let Some(done) = done {
                        store(&consumer, &topic, &done.offsets, &self.metrics, done.events);
                    }
                    if let Some(error) = refused {
                        warn!(message = "Output refused during shutdown; its event and later ones stay uncommitted.", %error);
                        if outcome.is_ok() {
                            refused_at_shutdown = Some(error);
                        }
                        break;
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
        outcome?;
        if let Some(e) = refused_at_shutdown {
            return Err(e);
        }
        if left > 0 {
            return Err(EngineError::Unacknowledged(left));
        }
        let summary = handler.summary();
        info!(message = "Engine stopped.", consumed = summary.consumed, alerts = summary.alerts, dead_letters = summary.dead_letters);
        Ok(summary)
    }

    /// Once a member has failed: the process ends with the failure's exit status at 95 % of
    /// the stop deadline, in case the orderly stop blocks ([`super::exit_after`]).
    fn arm_failure_watchdog(&self, error: &EngineError) {
        let Some(deadline) = self.stop_deadline else { return };
        if self.watchdog_armed.swap(true, Ordering::AcqRel) {
            return;
        }
        let why = format!("Stopping after a failure took longer than engine.shutdown_timeout_ms; exiting now. Events not yet committed will be processed again. The failure: {error}");
        super::exit_after(deadline, error.exit_code(), why);
    }

    /// Polls the registry and applies what changed: swaps in a new production version, loads a
    /// new shadow candidate; refuses (and remembers) one that does not load or fit, keeping the
    /// running model.
    fn watch_registry(&self, stop: &AtomicBool) {
        let m = &self.config.model;
        let registry = match m.open_registry() {
            Ok(r) => r,
            Err(error) => {
                error!(message = "Cannot open the model registry; hot reload is off, the running model stays.", %error);
                return;
            }
        };
        let registry = registry.as_ref();
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
            for change in watch.poll(registry, name, &serving, shadowing) {
                match change {
                    RegistryChange::Shadow { candidate } => {
                        let loaded = match &candidate {
                            None => None,
                            Some((version, path)) => match Pipeline::load(path) {
                                Ok(p) => Some(Arc::new(p)),
                                Err(error) => {
                                    ModelRefused { version, reason: &error, shadow: true }.emit(&self.metrics);
                                    watch.refuse_shadow(registry, name, version);
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
                            Ok(()) => {
                                watch.accepted();
                                // MLflow: a champion moved outside driftwatch learns where a rollback returns.
                                if let Err(error) = registry.note_serving(&version, &serving) {
                                    warn!(message = "Could not record the previous production version in the registry.", %error, %version, previous = %serving);
                                }
                            }
                            Err(reason) => {
                                ModelRefused { version: &version, reason: &reason, shadow: false }.emit(&self.metrics);
                                watch.refuse(registry, name, &version);
                            }
                        }
                    }
                    RegistryChange::Unreadable(error) => warn!(message = "Cannot read the model registry; the running model stays.", %error),
                }
            }
        }
    }
}

/// Runs `workers` members on threads until `shutdown` is set or one of them ends: when one
/// fails (an error or a panic), the others are told to stop, and they commit what is safe
/// and return. Returns the sum of the members' summaries, or the first failure.
/// `tick` runs every 20 ms on the supervising thread (gauges that must move while a worker
/// is blocked).
pub fn supervise<F>(workers: usize, shutdown: &AtomicBool, member: F, tick: impl Fn()) -> Result<RunSummary, EngineError>
where
    F: Fn(&AtomicBool, usize) -> Result<RunSummary, EngineError> + Sync,
{
    let stop_all = AtomicBool::new(false);
    // The worker whose failure stopped the others: its error is the one reported (the others
    // may fail in turn while stopping, e.g. with outputs left unacknowledged).
    let first_failed = std::sync::atomic::AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        let member = &member;
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (stop_all, first_failed) = (&stop_all, &first_failed);
                std::thread::Builder::new()
                    .name(format!("driftwatch-worker-{i}"))
                    .spawn_scoped(s, move || {
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| member(stop_all, i))).unwrap_or_else(|panic| {
                            let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panicked".into());
                            Err(EngineError::WorkerFailed { worker: i, message })
                        });
                        if result.is_err() {
                            let _ = first_failed.compare_exchange(usize::MAX, i, Ordering::AcqRel, Ordering::Acquire);
                            stop_all.store(true, Ordering::Relaxed);
                        }
                        result
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        // A member that returns before shutdown was asked has failed (or its partitions are
        // gone for good): the process stops rather than scoring a part of the stream.
        while !handles.iter().any(|h| h.is_finished()) {
            if shutdown.load(Ordering::Relaxed) {
                break;
            }
            tick();
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_all.store(true, Ordering::Relaxed);
        let mut total = RunSummary::default();
        let mut errors: Vec<Option<EngineError>> = Vec::with_capacity(workers);
        for (worker, h) in handles.into_iter().enumerate() {
            match h.join().expect("worker panics are caught in the worker") {
                Ok(r) => {
                    total += r;
                    errors.push(None);
                }
                Err(e) => {
                    error!(message = "Engine worker failed.", worker, error = %e);
                    errors.push(Some(e));
                }
            }
        }
        let first = first_failed.load(Ordering::Acquire);
        match errors.get_mut(first).and_then(Option::take).or_else(|| errors.into_iter().flatten().next()) {
            Some(e) => Err(e),
            None => Ok(total),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_worker_stops_the_others_and_fails_the_run() {
        let shutdown = AtomicBool::new(false);
        let started = Instant::now();
        let result = supervise(3, &shutdown, |stop, i| {
            if i == 1 {
                std::thread::sleep(Duration::from_millis(50));
                panic!("worker {i} hit a bug");
            }
            // A healthy worker runs until told to stop, then reports what it did.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) {
                assert!(Instant::now() < deadline, "never told to stop");
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(RunSummary { consumed: 10, ..Default::default() })
        }, || {});
        match result {
            Err(EngineError::WorkerFailed { worker: 1, message }) => assert_eq!(message, "worker 1 hit a bug"),
            other => panic!("expected worker 1's failure, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn shutdown_stops_every_worker_and_sums_their_work() {
        let shutdown = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                shutdown.store(true, Ordering::Relaxed);
            });
            supervise(2, &shutdown, |stop, _| {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) {
                    assert!(Instant::now() < deadline, "never told to stop");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(RunSummary { consumed: 7, ..Default::default() })
            }, || {})
        });
        assert_eq!(result.unwrap().consumed, 14);
    }
}
