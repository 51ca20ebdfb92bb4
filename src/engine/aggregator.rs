//! The drift aggregator thread (`drift.aggregation = "group"`): every instance runs one, in
//! consumer group `<kafka.group_id>.drift-aggregator` on the single-partition
//! `drift-profiles` topic, so Kafka's group protocol assigns that partition to exactly one of
//! them: that one is the aggregator, the others wait. It feeds
//! [`crate::drift::aggregate::Aggregator`] and alone publishes drift reports, drift alerts,
//! retrain requests and the guard's decisions.
//!
//! Takeover: on assignment it replays the topic from the group's committed offset to the end
//! without publishing (panes of open windows, the last checkpoint), then goes live. After each
//! batch of published windows (acknowledged) it writes a checkpoint and commits the offset of
//! the oldest record an open window still needs (or of the checkpoint). A crash between the
//! reports and the commit publishes those windows again (at least once).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::core::Engine;
use super::kafka::send_with_backpressure;
use crate::drift::aggregate::{Aggregator, Applied};
use crate::drift::online::ClosedWindow;
use crate::message::profile::ProfileRecord;
use crate::observe::metrics::OutcomeLabel;

/// Assignment changes of the aggregator consumer (rebalance callbacks run inside `poll`).
struct Assignments {
    /// Bumped on every assignment of the partition.
    generation: Arc<AtomicU64>,
    assigned: Arc<AtomicBool>,
}

impl ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                self.assigned.store(true, Ordering::Release);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Revoke(_) | Rebalance::Error(_) => self.assigned.store(false, Ordering::Release),
        }
    }
}

/// Delivery outcomes of the aggregator's producer: failures, and the offset of the last
/// checkpoint written.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    checkpoint_offset: Mutex<Option<i64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// True for the checkpoint.
    type DeliveryOpaque = Box<bool>;
    fn delivery(&self, result: &DeliveryResult<'_>, checkpoint: Box<bool>) {
        match result {
            Ok(m) if *checkpoint => *self.checkpoint_offset.lock().expect("deliveries lock") = Some(m.offset()),
            Ok(_) => {}
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                warn!(message = "A drift output was not delivered; the window will be published again.", %error);
            }
        }
    }
}

impl Engine {
    /// Runs the aggregator thread until `stop`; restarts it after an error with a pause, so
    /// scoring never depends on it.
    pub(crate) fn run_aggregator(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.aggregator_loop(stop) {
                Ok(()) => return,
                Err(error) => {
                    self.set_aggregating(false);
                    error!(message = "Drift aggregator failed; retrying in 5 s.", %error);
                    let until = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    /// This instance is (or is no longer) the group's aggregator: the gauge, and the flag the
    /// performance thread follows.
    fn set_aggregating(&self, on: bool) {
        self.metrics.drift_aggregator.set(i64::from(on));
        self.aggregating.store(on, Ordering::Release);
    }

    fn aggregator_loop(&self, stop: &AtomicBool) -> Result<(), String> {
        let cfg = &self.config;
        let topic = cfg.kafka.drift_profiles_topic.clone();
        let group = format!("{}.drift-aggregator", cfg.kafka.group_id);
        let (generation, assigned) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let mut cc = cfg.consumer_config();
        cc.set("group.id", &group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest").set("isolation.level", "read_committed");
        cc.remove("group.instance.id");
        let consumer: BaseConsumer<Assignments> =
            cc.create_with_context(Assignments { generation: generation.clone(), assigned: assigned.clone() }).map_err(|e| format!("creating the aggregator consumer: {e}"))?;
        // One partition, so Kafka assigns it to exactly one member: one aggregator.
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).map_err(|e| format!("reading the partitions of {topic}: {e}"))?;
        let partitions = metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>();
        if partitions != 1 {
            return Err(format!("topic `{topic}` (kafka.drift_profiles_topic) has {partitions} partitions; group drift aggregation needs exactly 1 (one aggregator). Recreate it with one partition (the engine creates it so)."));
        }
        consumer.subscribe(&[&topic]).map_err(|e| format!("subscribing to {topic}: {e}"))?;
        let mut pc = cfg.producer_config();
        pc.remove("transactional.id");
        let producer: ThreadedProducer<Deliveries> = pc.create_with_context(Deliveries::default()).map_err(|e| format!("creating the aggregator producer: {e}"))?;
        let timeout = cfg.drift.instance_timeout_ms as i64;
        let mut seen_generation = 0;
        let mut aggregator: Option<Aggregator> = None;
        // Offsets below this are a replay: fed, never published.
        let mut replay_end = 0i64;
        let mut next_offset = 0i64;
        let mut last_due = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let message = consumer.poll(Duration::from_millis(100));
            if !assigned.load(Ordering::Acquire) {
                if aggregator.take().is_some() {
                    info!(message = "This instance is no longer the drift aggregator.", group = %group);
                    self.set_aggregating(false);
                }
            } else if generation.load(Ordering::Acquire) != seen_generation || aggregator.as_ref().is_some_and(|a| a.version() != self.current_pipeline().artifact().model.version) {
                seen_generation = generation.load(Ordering::Acquire);
                let (_, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).map_err(|e| format!("reading the end of {topic}: {e}"))?;
                let metadata = consumer.fetch_metadata(Some(&cfg.kafka.transactions_topic), Duration::from_secs(10)).map_err(|e| format!("reading the partitions of {}: {e}", cfg.kafka.transactions_topic))?;
                let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
                replay_end = high;
                aggregator = Some(Aggregator::new(&self.current_pipeline(), &cfg.drift.to_config(), partitions, timeout, crate::time::now_ms()));
                self.set_aggregating(true);
                info!(message = "This instance is the drift aggregator; replaying the drift-profiles topic.", group = %group, topic = %topic, replay_until = high);
            }
            if let Some(result) = message {
                let m = result.map_err(|e| format!("reading {topic}: {e}"))?;
                next_offset = m.offset() + 1;
                if let Some(a) = aggregator.as_mut() {
                    let outcome = match ProfileRecord::from_bytes(m.payload().unwrap_or_default()) {
                        // A live aggregator's own checkpoints: it is already there (or further).
                        Ok(ProfileRecord::Checkpoint(_)) if m.offset() >= replay_end => "state",
                        Ok(record) => a.apply(record, m.offset(), crate::time::now_ms()).as_str(),
                        Err(reason) => {
                            warn!(message = "Skipping a drift-profiles record this build cannot read.", offset = m.offset(), %reason);
                            "invalid"
                        }
                    };
                    self.metrics.drift_profiles_read.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
                    if outcome == Applied::Late.as_str() {
                        warn!(message = "A pane arrived after its windows were published; its events are not in them.", offset = m.offset());
                    }
                }
            }
            let replaying = next_offset < replay_end;
            let Some(a) = aggregator.as_mut() else { continue };
            if replaying || last_due.elapsed() < Duration::from_millis(50) {
                continue;
            }
            last_due = Instant::now();
            let closed = a.due(crate::time::now_ms());
            if closed.is_empty() {
                continue;
            }
            self.publish_aggregated(&producer, &topic, &closed, a, stop)?;
            let checkpoint = producer.context().checkpoint_offset.lock().expect("deliveries lock").take();
            if let Some(offset) = checkpoint {
                let from = a.oldest_needed_offset().map_or(offset, |o| o.min(offset));
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, 0, Offset::Offset(from)).map_err(|e| e.to_string())?;
                if let Err(error) = consumer.commit(&tpl, CommitMode::Sync) {
                    warn!(message = "Could not commit the aggregator's position; a successor replays a little more.", %error);
                }
            }
        }
        self.set_aggregating(false);
        Ok(())
    }

    /// Publishes windows and then a checkpoint, retrying until every record is acknowledged
    /// (or `stop`).
    fn publish_aggregated(&self, producer: &ThreadedProducer<Deliveries>, topic: &str, closed: &[ClosedWindow], a: &Aggregator, stop: &AtomicBool) -> Result<(), String> {
        let serving = self.current_pipeline().artifact().model.version.clone();
        let mut records = Vec::new();
        for w in closed {
            self.metrics.drift_missing_partitions.set(w.report.sources.as_ref().map_or(0, |s| s.missing_partitions.len() as i64));
            records.extend(self.window_records(w, a.monitor(), &serving));
        }
        let checkpoint = a.checkpoint().map(|c| ProfileRecord::Checkpoint(Box::new(c)).to_bytes());
        let name = self.current_pipeline().artifact().model.name.clone();
        let mut backoff = Duration::from_millis(200);
        loop {
            producer.context().failed.store(0, Ordering::Relaxed);
            for (_, t, key, payload) in &records {
                send_with_backpressure(producer, BaseRecord::with_opaque_to(t, Box::new(false)).key(key.as_bytes()).payload(payload)).map_err(|(e, to)| format!("producing a drift output to {to}: {e}"))?;
            }
            // Every window's outputs are acknowledged before the checkpoint says they are out.
            let flushed = producer.flush(Duration::from_secs(30));
            if flushed.is_ok() && producer.context().failed.load(Ordering::Relaxed) == 0 {
                if let Some(c) = &checkpoint {
                    send_with_backpressure(producer, BaseRecord::with_opaque_to(topic, Box::new(true)).key(name.as_bytes()).payload(c)).map_err(|(e, to)| format!("producing the aggregator's checkpoint to {to}: {e}"))?;
                    let _ = producer.flush(Duration::from_secs(30));
                }
                return Ok(());
            }
            if stop.load(Ordering::Relaxed) {
                return Err("stopped before the drift outputs were acknowledged; the successor publishes them".into());
            }
            warn!(message = "Drift outputs not acknowledged; publishing them again.", retry_in_ms = backoff.as_millis() as u64);
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}
