//! The engine's performance thread (with `performance.enabled`): consumes `retained-scores` and
//! `labels`, feeds [`crate::performance::Tracker`], and publishes its reports
//! (`performance-reports`), concept-drift alerts (`drift-alerts`) and retrain requests
//! (`retrain-requests`), and the Prometheus gauges.
//!
//! Restart-safe: at start the whole compacted `retained-scores` topic is replayed (to its end)
//! into memory without publishing, so every label still joins its score; labels are read from
//! the offsets committed by group `<kafka.group_id>.performance`, which are committed only once
//! the windows those labels fell into are published and acknowledged (a crash replays the labels
//! of the open window). What a restart loses: the concept detector's state (it starts over and
//! needs `ddm.warm_start` labels) and the count of consecutive windows below the floors.
//!
//! Several instances: with `drift.aggregation = "group"` the thread runs only while this
//! instance is the group's drift aggregator ([`super::aggregator`]), so one instance publishes;
//! with `local` each instance's thread would read every label and publish the same reports
//! (enable it on one instance).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::core::Engine;
use crate::message::performance::{Label, PerformanceReport, ReportKind, RetainedScore};
use crate::observe::metrics::{FloorLabels, OutcomeLabel, PerformanceLabels, TopicLabel};
use crate::performance::{LabelOutcome, Published, Tracker};

/// Counts failed deliveries (a report not acknowledged holds back the labels' commit; a
/// changelog record not acknowledged restarts the thread from the topics).
#[derive(Default)]
struct Failures {
    all: Arc<AtomicU64>,
    changelog: Arc<AtomicU64>,
    changelog_topic: String,
}

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, msg)) = result {
            self.all.fetch_add(1, Ordering::Relaxed);
            if msg.topic() == self.changelog_topic {
                self.changelog.fetch_add(1, Ordering::Relaxed);
            }
            warn!(message = "A performance output was not delivered; its labels will be read again after a restart.", topic = msg.topic(), %error);
        }
    }
}

/// Why the thread could not run; it tries again after a pause.
fn kafka(context: &'static str) -> impl Fn(KafkaError) -> String {
    move |e| format!("{context}: {e}")
}

impl Engine {
    /// Runs the performance thread until `stop`; restarts it after an error (Kafka unreachable,
    /// a topic missing) with a pause, so scoring never depends on it. With group drift
    /// aggregation it runs only while this instance is the group's aggregator (one instance of
    /// the group reads the labels and publishes performance); a successor replays as at start.
    pub(crate) fn run_performance(&self, stop: &AtomicBool) {
        let group = self.config.drift.enabled && self.config.drift.aggregation == crate::config::Aggregation::Group;
        let running = || !stop.load(Ordering::Relaxed) && (!group || self.aggregating.load(Ordering::Acquire));
        while !stop.load(Ordering::Relaxed) {
            if !running() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if group {
                info!(message = "This instance is the group's drift aggregator: it runs the performance thread.");
            }
            match self.performance_loop(&running) {
                Ok(()) if group && !stop.load(Ordering::Relaxed) => info!(message = "No longer the group's aggregator: the performance thread waits."),
                Ok(()) => return,
                Err(error) => {
                    error!(message = "The performance thread failed; it starts again in 5 s (scoring is not affected).", %error);
                    let until = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }

    /// Runs until `running` turns false.
    fn performance_loop(&self, running: &dyn Fn() -> bool) -> Result<(), String> {
        let cfg = &self.config;
        let k = &cfg.kafka;
        let mut cc = cfg.client_config();
        for (key, v) in &k.consumer_options {
            cc.set(key, v);
        }
        let consumer: BaseConsumer = cc
            .set("group.id", format!("{}.performance", k.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // With exactly-once delivery the members produce retained scores in transactions:
            // an aborted one's records are not scores anyone was alerted on.
            .set("isolation.level", "read_committed")
            .set("fetch.queue.backoff.ms", "10")
            .create()
            .map_err(kafka("creating the performance consumer"))?;
        let (failures, changelog_failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let context = Failures { all: failures.clone(), changelog: changelog_failures.clone(), changelog_topic: k.retained_scores_topic.clone() };
        let producer: ThreadedProducer<Failures> = cfg.producer_config().create_with_context(context).map_err(kafka("creating the performance producer"))?;
        let timeout = Duration::from_secs(10);
        let partitions = |topic: &str| -> Result<Vec<i32>, String> {
            let md = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka("reading topic metadata"))?;
            let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
            if parts.is_empty() {
                return Err(format!("topic `{topic}` has no partitions (does it exist?)"));
            }
            Ok(parts)
        };
        let retained_parts = partitions(&k.retained_scores_topic)?;
        let label_parts = partitions(&k.labels_topic)?;
        let model = self.current_pipeline().artifact().model.name.clone();
        let mut tracker = Tracker::new(&model, cfg.performance.clone());
        self.track_calibrations(&mut tracker);
        let m = &self.metrics;

        // 1. Replay the retained scores to the end, publishing nothing (those windows were published).
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        // Where the live part starts per partition: at least the end seen now.
        let mut resume: HashMap<i32, i64> = HashMap::new();
        for &p in &retained_parts {
            let (low, high) = consumer.fetch_watermarks(&k.retained_scores_topic, p, timeout).map_err(kafka("reading the retained scores' end"))?;
            tpl.add_partition_offset(&k.retained_scores_topic, p, Offset::Beginning).map_err(kafka("assigning"))?;
            resume.insert(p, high);
            if high > low {
                remaining.insert(p, high);
            }
        }
        consumer.assign(&tpl).map_err(kafka("assigning the retained scores"))?;
        let mut replayed = 0u64;
        while !remaining.is_empty() {
            if !running() {
                return Ok(());
            }
            match consumer.poll(Duration::from_millis(100)) {
                // Caught up? (A position, unlike a message, also moves past transaction markers.)
                None => {
                    if let Ok(positions) = consumer.position() {
                        remaining.retain(|&p, &mut high| !matches!(positions.find_partition(&k.retained_scores_topic, p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= high));
                    }
                }
                Some(Err(e)) => warn!(message = "Error while replaying retained scores.", error = %e),
                Some(Ok(msg)) => {
                    if let Some(r) = msg.payload().and_then(|b| serde_json::from_slice::<RetainedScore>(b).ok()) {
                        tracker.retain(&r, crate::time::now_ms());
                        replayed += 1;
                        m.retained_scores_read.inc();
                    }
                    let next = resume.entry(msg.partition()).or_default();
                    *next = (*next).max(msg.offset() + 1);
                    if remaining.get(&msg.partition()).is_some_and(|&high| msg.offset() + 1 >= high) {
                        remaining.remove(&msg.partition());
                    }
                }
            }
        }
        info!(message = "Retained scores replayed.", records = replayed, in_memory = tracker.retained(), cohorts_open = tracker.cohorts_open(), seconds = started.elapsed().as_secs_f64());
        m.scores_retained.set(tracker.retained() as i64);
        // Labels a member's record overwrote on the compacted topic, written again.
        self.write_changelog(&producer, &mut tracker)?;

        // 2. Labels from the committed offsets, retained scores from where the replay ended.
        let mut committed = TopicPartitionList::new();
        for &p in &label_parts {
            committed.add_partition(&k.labels_topic, p);
        }
        let committed = consumer.committed_offsets(committed, timeout).map_err(kafka("reading the labels' committed offsets"))?;
        let mut tpl = TopicPartitionList::new();
        for &p in &retained_parts {
            // Past what was replayed (a position also counts transaction markers); never `End`,
            // which would skip what the members produced meanwhile.
            let position = consumer.position().ok().and_then(|pos| pos.find_partition(&k.retained_scores_topic, p).and_then(|e| e.offset().to_raw()));
            let from = position.unwrap_or(0).max(resume.get(&p).copied().unwrap_or(0));
            tpl.add_partition_offset(&k.retained_scores_topic, p, Offset::Offset(from)).map_err(kafka("assigning"))?;
        }
        for e in committed.elements() {
            let offset = if matches!(e.offset(), Offset::Offset(_)) { e.offset() } else { Offset::Beginning };
            tpl.add_partition_offset(&k.labels_topic, e.partition(), offset).map_err(kafka("assigning"))?;
        }
        consumer.assign(&tpl).map_err(kafka("assigning labels and retained scores"))?;

        // 3. Join, close, publish; commit the labels of closed windows once published.
        // Per labels partition: the next offset to read, and the matched labels since the last
        // commit with the window each went into (a restart must read those of open windows again).
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut joined: HashMap<i32, Vec<(i64, i64)>> = HashMap::new();
        let mut last_tick = Instant::now();
        let (mut capped, mut warned, mut invalid_warned) = (0u64, None::<Instant>, None::<Instant>);
        while running() {
            let mut published = Published::default();
            let mut closed = false;
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => warn!(message = "Error while reading labels or retained scores.", error = %e),
                Some(Ok(msg)) if msg.topic() == k.retained_scores_topic => {
                    if let Some(r) = msg.payload().and_then(|b| serde_json::from_slice::<RetainedScore>(b).ok()) {
                        published = tracker.retain(&r, crate::time::now_ms());
                        m.retained_scores_read.inc();
                    }
                }
                Some(Ok(msg)) => {
                    let (p, offset) = (msg.partition(), msg.offset());
                    next.insert(p, offset + 1);
                    let (outcome, why) = match msg.payload().map(serde_json::from_slice::<Label>) {
                        Some(Ok(label)) => {
                            let (outcome, out) = tracker.label_from(&label, Some((p, offset)), crate::time::now_ms());
                            if outcome == LabelOutcome::Matched {
                                if let Some(d) = tracker.last_delay_seconds() {
                                    m.label_delay.observe(d.max(0.0));
                                }
                                if let Some(w) = tracker.last_window_start() {
                                    joined.entry(p).or_default().push((offset, w));
                                }
                            }
                            closed = out.reports.iter().any(|r| r.kind == ReportKind::Realised);
                            published = out;
                            (outcome, (outcome == LabelOutcome::Invalid).then(|| format!("label_time `{}` is not RFC 3339", label.label_time)))
                        }
                        Some(Err(error)) => {
                            tracker.invalid_label();
                            (LabelOutcome::Invalid, Some(error.to_string()))
                        }
                        None => {
                            tracker.invalid_label();
                            (LabelOutcome::Invalid, Some("no value (a tombstone)".to_string()))
                        }
                    };
                    m.labels.get_or_create(&OutcomeLabel { outcome: outcome.as_str().into() }).inc();
                    // Say why a label was refused, once a minute at most (the counter has them all).
                    if let Some(why) = why.filter(|_| invalid_warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60))) {
                        warn!(message = "A record on the labels topic is not a label (counted in driftwatch_labels_total{outcome=\"invalid\"}; see schemas/label.schema.json).", partition = p, offset, reason = %why);
                        invalid_warned = Some(Instant::now());
                    }
                }
            }
            // Every new join onto the compacted topic (acknowledged before the label's offset is
            // committed: the flush before a commit waits for it).
            self.write_changelog(&producer, &mut tracker)?;
            if changelog_failures.load(Ordering::Relaxed) > 0 {
                return Err(format!(
                    "a joined label's record was not delivered to `{}`: starting again from the topics (the label is read again, its offset is not committed)",
                    k.retained_scores_topic
                ));
            }
            let idle = last_tick.elapsed() >= Duration::from_secs(1);
            if idle {
                last_tick = Instant::now();
                self.track_calibrations(&mut tracker);
                let out = tracker.tick(crate::time::now_ms());
                closed |= out.reports.iter().any(|r| r.kind == ReportKind::Realised);
                published.extend(out);
                m.scores_retained.set(tracker.retained() as i64);
                m.performance_cohorts_open.set(tracker.cohorts_open() as i64);
                m.performance_cohorts_abandoned.inc_by(tracker.cohorts_abandoned().saturating_sub(m.performance_cohorts_abandoned.get()));
                m.retained_scores_evicted.inc_by(tracker.evicted().saturating_sub(m.retained_scores_evicted.get()));
                if tracker.evicted_by_cap() > capped && warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                    warn!(
                        message = "performance.max_retained reached: scores are dropped before their labels can arrive (those labels count as not_retained); raise performance.max_retained or lower performance.retain_fraction.",
                        dropped = tracker.evicted_by_cap() - capped,
                        max_retained = cfg.performance.max_retained
                    );
                    capped = tracker.evicted_by_cap();
                    warned = Some(Instant::now());
                }
            }
            if published.reports.is_empty() && published.alerts.is_empty() && published.retrain.is_empty() {
                continue;
            }
            let before = failures.load(Ordering::Relaxed);
            self.publish_performance(&producer, &published);
            let flushed = producer.flush(Duration::from_secs(30)).is_ok() && failures.load(Ordering::Relaxed) == before;
            if !closed {
                continue;
            }
            if changelog_failures.load(Ordering::Relaxed) > 0 {
                return Err(format!("a joined label's record was not delivered to `{}`: starting again from the topics", k.retained_scores_topic));
            }
            if !flushed {
                warn!(message = "Performance outputs not acknowledged; the labels' offsets are not committed (they will be read again after a restart).");
                continue;
            }
            // Commit each labels partition up to its first label in a window still open (all
            // that was read when none is).
            let boundary = tracker.realised_closed_before();
            let mut commit = TopicPartitionList::new();
            for (&p, &n) in &next {
                let labels = joined.entry(p).or_default();
                labels.retain(|&(_, window)| window >= boundary);
                let upto = labels.iter().map(|&(offset, _)| offset).min().unwrap_or(n);
                commit.add_partition_offset(&k.labels_topic, p, Offset::Offset(upto)).map_err(kafka("committing"))?;
            }
            if let Err(error) = consumer.commit(&commit, CommitMode::Sync) {
                warn!(message = "Could not commit the labels' offsets; they will be read again after a restart.", %error);
            }
        }
        let _ = producer.flush(Duration::from_secs(10));
        Ok(())
    }

    /// Gives the tracker the training calibration of the serving version and of the shadow
    /// candidate (a hot reload or a new candidate is picked up within a second).
    fn track_calibrations(&self, tracker: &mut Tracker) {
        for pipeline in std::iter::once(self.current_pipeline()).chain(self.models().shadow()) {
            let a = pipeline.artifact();
            tracker.set_training_calibration(&a.model.version, a.calibration.as_ref());
        }
    }

    /// Queues the tracker's changelog records (joined labels) on the compacted topic, keyed by
    /// transaction id like the members' records, so compaction keeps the labelled one.
    fn write_changelog(&self, producer: &ThreadedProducer<Failures>, tracker: &mut Tracker) -> Result<(), String> {
        let topic = &self.config.kafka.retained_scores_topic;
        for r in tracker.take_changelog() {
            let payload = serde_json::to_vec(&r).expect("retained score serialises");
            super::send_with_backpressure(producer, BaseRecord::to(topic).key(r.transaction_id.as_bytes()).payload(payload.as_slice()))
                .map_err(|(error, topic)| format!("queueing a joined label's record on `{topic}`: {error}"))?;
            self.metrics.label_changelog_records.inc();
        }
        Ok(())
    }

    /// Produces what closing windows gave, and sets the gauges.
    fn publish_performance(&self, producer: &ThreadedProducer<Failures>, out: &Published) {
        let (m, k) = (&self.metrics, &self.config.kafka);
        let mut records: Vec<(&str, String, Vec<u8>)> = Vec::new();
        for r in &out.reports {
            self.performance_gauges(r);
            records.push((&k.performance_reports_topic, r.model.clone(), serde_json::to_vec(r).expect("report serialises")));
        }
        for a in &out.alerts {
            m.concept_drift_detections.inc();
            warn!(message = "Concept drift: the labelled error rate rose.", model = %a.model, error_rate = a.value, window_end = %a.window_end);
            records.push((&k.drift_alerts_topic, a.feature.clone(), serde_json::to_vec(a).expect("alert serialises")));
        }
        for r in &out.retrain {
            m.retrain_requests.inc();
            records.push((&k.retrain_requests_topic, self.current_pipeline().artifact().model.name.clone(), serde_json::to_vec(r).expect("request serialises")));
        }
        for (topic, key, payload) in &records {
            if let Err((error, topic)) = super::send_with_backpressure(producer, BaseRecord::to(topic).key(key.as_bytes()).payload(payload.as_slice())) {
                m.outputs_dropped.get_or_create(&TopicLabel { topic: topic.clone() }).inc();
                warn!(message = "A performance output could not be queued.", %topic, %error);
            }
        }
    }

    /// The last closed window's figures per version, role and kind.
    fn performance_gauges(&self, r: &PerformanceReport) {
        let m = &self.metrics;
        let kind = match r.kind {
            ReportKind::Realised => "realised",
            ReportKind::Estimated => "estimated",
            ReportKind::Cohort => "cohort",
        };
        let set = |metric: &str, bound: &str, v: Option<f64>| {
            if let Some(v) = v {
                let labels = PerformanceLabels { version: r.version.clone(), role: r.role.as_str().into(), kind: kind.into(), metric: metric.into(), bound: bound.into() };
                m.model_performance.get_or_create(&labels).set(v);
            }
        };
        for (metric, i) in [("precision", r.precision), ("recall", r.recall), ("roc_auc", r.roc_auc)] {
            set(metric, "value", i.value);
            set(metric, "lower", i.lower);
            set(metric, "upper", i.upper);
        }
        set("alert_rate", "value", Some(r.alert_rate));
        set("brier", "value", r.brier);
        set("ece", "value", r.ece);
        if let Some(d) = r.label_delay_seconds {
            set("label_delay_p50_seconds", "value", Some(d.p50));
            set("label_delay_p90_seconds", "value", Some(d.p90));
        }
        if kind == "cohort" {
            m.performance_cohorts_closed.inc();
            if let Some(c) = r.cohort {
                set("labelled_share", "value", (r.transactions > 0).then(|| c.labelled as f64 / r.transactions as f64));
            }
        }
        if kind == "realised" {
            m.performance_windows_closed.inc();
            for (metric, n) in [("precision", r.below_floor.precision_windows), ("recall", r.below_floor.recall_windows)] {
                m.performance_below_floor_windows.get_or_create(&FloorLabels { version: r.version.clone(), role: r.role.as_str().into(), metric: metric.into() }).set(i64::from(n));
            }
            for (floor_metric, floor) in [("precision", r.below_floor.precision_floor), ("recall", r.below_floor.recall_floor)] {
                m.performance_floor.get_or_create(&crate::observe::metrics::MetricLabel { metric: floor_metric.into() }).set(floor);
            }
        }
    }
}
