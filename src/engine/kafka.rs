//! The Kafka side of the engine: librdkafka client contexts (delivery callbacks, statistics,
//! rebalance), topic administration, offset storing, and the producer sink the core emits into.
//! No decisions about events live here: routing is in [`super::core`].
//!
//! Threads: a member's [`BaseConsumer`] runs its rebalance callbacks inside `poll`, on the
//! member's thread; the [`ThreadedProducer`]'s delivery callbacks run on librdkafka's polling
//! thread and only touch atomics, metrics and a retry channel. Offsets are stored with
//! `enable.auto.offset.store=false` and committed by librdkafka's auto-commit, on revoke (after
//! flushing the producer) and on shutdown.
//! See <https://github.com/confluentinc/librdkafka/blob/master/INTRODUCTION.md#at-least-once-processing>.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::core::{HeaderList, HeaderSource, Incoming, Outgoing, OutputKind, Outputs};
use super::delivery::{classify, decide, Action, Retry};
use super::tracker::{OffsetTracker, PendingOutput};
use super::EngineError;
use crate::config::{Config, NoncriticalFailure};
use crate::observe::events::{DeliveryFailed, InternalEvent, KafkaClientError, OffsetsStored, OutputDelivered};
use crate::observe::metrics::{Metrics, PartitionLabels, ReasonLabel, TopicLabel};

fn kafka(context: &str) -> impl FnOnce(KafkaError) -> EngineError + '_ {
    move |source| EngineError::Kafka { context: context.to_string(), source }
}

/// A client context that remembers the last error librdkafka reported, so that a request that
/// then fails (a metadata fetch timing out) can name the cause: a failed SASL authentication,
/// an untrusted certificate, a refused connection.
#[derive(Default)]
pub struct CauseContext {
    last: Mutex<Option<(String, bool)>>,
}

impl CauseContext {
    /// The last reported error, or a note that there was none.
    pub fn cause(&self) -> String {
        self.last.lock().ok().and_then(|l| l.as_ref().map(|(c, _)| c.clone())).unwrap_or_else(|| "no error was reported by the client".into())
    }

    /// Whether the last error is one retrying cannot fix (authentication, TLS).
    fn fatal(&self) -> bool {
        self.last.lock().ok().and_then(|l| l.as_ref().map(|(_, f)| *f)).unwrap_or(false)
    }
}

impl ClientContext for CauseContext {
    fn error(&self, error: KafkaError, reason: &str) {
        warn!(message = "Kafka client error.", client = "probe", %error, reason);
        let code = error.rdkafka_error_code();
        let fatal = matches!(code, Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL))
            || ["SASL authentication error", "SSL handshake failed", "certificate verify failed"].iter().any(|t| reason.contains(t));
        if let Ok(mut last) = self.last.lock() {
            // "All brokers down" follows the error that brought them down: keep the cause.
            let summary_only = code == Some(RDKafkaErrorCode::AllBrokersDown) && last.is_some();
            if !summary_only && !last.as_ref().is_some_and(|(_, f)| *f) {
                *last = Some((reason.to_string(), fatal));
            }
        }
    }
}

impl ProducerContext for CauseContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Connects to the cluster and reads its metadata, or says why it cannot: librdkafka reports a
/// failed SASL authentication or an untrusted certificate as an error event and keeps retrying,
/// so the probe stops at the first such error (or after 10 s) and names it.
pub fn probe_cluster(config: &Config) -> Result<rdkafka::metadata::Metadata, EngineError> {
    let probe: rdkafka::producer::BaseProducer<CauseContext> =
        config.client_config().create_with_context(CauseContext::default()).map_err(kafka("creating a Kafka client"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        probe.poll(Duration::from_millis(100));
        let unreachable = |source| EngineError::Unreachable { brokers: config.kafka.brokers.clone(), cause: probe.context().cause(), source };
        if probe.context().fatal() {
            let tls = probe.context().cause().contains("SSL");
            return Err(unreachable(KafkaError::MetadataFetch(if tls { RDKafkaErrorCode::SSL } else { RDKafkaErrorCode::Authentication })));
        }
        match probe.client().fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) => return Ok(metadata),
            Err(e) if std::time::Instant::now() >= deadline => return Err(unreachable(e)),
            Err(_) => {}
        }
    }
}

/// Creates the engine's topics when absent (if allowed), or names the missing ones.
pub async fn ensure_topics(config: &Config) -> Result<(), EngineError> {
    let k = &config.kafka;
    let metadata = probe_cluster(config)?;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create().map_err(kafka("creating the admin client"))?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let missing: Vec<&String> = config.topics().into_iter().filter(|t| !existing.contains(&t.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !k.create_topics {
        return Err(EngineError::MissingTopics(missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")));
    }
    // Retained scores are kept per transaction id until their label is due: compacted (a
    // replay reads one record per transaction) and deleted after the retention.
    let retention_ms = (config.performance.retention_hours * 3_600_000).to_string();
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|t| {
            // Pane profiles: one partition, one order (the aggregator is its one reader).
            let partitions = if *t == &k.drift_profiles_topic { 1 } else { k.partitions };
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(k.replication_factor));
            if *t == &k.drift_profiles_topic {
                // Up to a window and a bit of panes must stay readable for a successor.
                topic.set("retention.ms", "604800000")
            } else if *t == &k.retained_scores_topic {
                topic.set("cleanup.policy", "compact,delete").set("retention.ms", &retention_ms)
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .map_err(kafka("creating topics"))?;
    for r in results {
        match r {
            Ok(topic) => info!(message = "Created topic.", topic = %topic, partitions = k.partitions),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(EngineError::Kafka { context: format!("creating topic `{topic}`"), source: KafkaError::AdminOp(code) }),
        }
    }
    Ok(())
}

impl HeaderList for BorrowedHeaders {
    fn count(&self) -> usize {
        Headers::count(self)
    }
    fn header(&self, i: usize) -> (&str, Option<&[u8]>) {
        let h = self.get(i);
        (h.key, h.value)
    }
}

impl HeaderSource for BorrowedMessage<'_> {
    fn headers(&self) -> Option<&dyn HeaderList> {
        Message::headers(self).map(|h| h as &dyn HeaderList)
    }
}

/// A consumed message as the core sees it.
pub fn incoming<'a>(message: &'a BorrowedMessage<'a>) -> Incoming<'a> {
    Incoming {
        payload: message.payload(),
        key: message.key(),
        headers: message,
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// What a delivery callback needs to know about one produced message.
pub struct Delivery {
    /// Its share of its batch's pending count.
    pub pending: PendingOutput,
    /// Event time of the transaction, for alerts' end-to-end latency.
    alert_event_time_ms: Option<i64>,
    /// What it is (decides what a permanent failure does).
    pub kind: OutputKind,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Holds released with it (a drift pane's sampled events).
    pub releases: Vec<PendingOutput>,
}

impl Delivery {
    /// Acknowledged (or given up on by policy): the event's batch and every hold may go on.
    pub fn done(&self) {
        self.pending.done();
        for r in &self.releases {
            r.done();
        }
    }
}

/// The producer's context: acknowledgements release offsets, failures go to the member's
/// [`Redelivery`].
pub struct DeliveryContext {
    /// Where delivery outcomes are counted.
    pub metrics: Arc<Metrics>,
    /// Failed deliveries go back to the member's loop.
    pub retries: Mutex<Sender<Retry>>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        KafkaClientError { client: "producer", error: &error, reason }.emit(&self.metrics);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        match result {
            Ok(message) => {
                OutputDelivered { topic: message.topic() }.emit(&self.metrics);
                if let Some(t) = delivery.alert_event_time_ms {
                    self.metrics.end_to_end_latency.observe((crate::time::now_ms() - t).max(0) as f64 / 1000.0);
                }
                delivery.done();
            }
            Err((error, message)) => {
                DeliveryFailed { error, topic: message.topic() }.emit(&self.metrics);
                let retry = Retry { message: message.detach(), delivery, error: error.clone() };
                if self.retries.lock().map(|tx| tx.send(retry).is_err()).unwrap_or(true) {
                    error!(message = "Engine stopped before a failed delivery could be retried; its offset stays uncommitted.");
                }
            }
        }
    }
}

/// A member's producer.
pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// The consumer's context: lag and readiness from statistics, commit on revoke.
pub struct ConsumerCtx {
    /// Lag, readiness and errors.
    pub metrics: Arc<Metrics>,
    /// Flushed before partitions are given up.
    pub producer: Arc<OutputProducer>,
    /// Offsets released at revoke.
    pub tracker: Arc<Mutex<OffsetTracker>>,
    /// The transactions topic.
    pub topic: String,
    /// Exactly-once: the open transaction's consumed positions, committed with it at revoke.
    pub transaction: Option<Arc<Mutex<OpenTransaction>>>,
    /// Lag per partition from the last statistics (group drift aggregation's idle test: a
    /// partition is idle only when its consumer is caught up).
    pub lags: Arc<Mutex<std::collections::BTreeMap<i32, i64>>>,
}

/// What the open transaction of an exactly-once member covers.
#[derive(Debug, Default)]
pub struct OpenTransaction {
    /// Next offset to consume, per partition, of the events handled in it.
    pub positions: std::collections::BTreeMap<i32, i64>,
    /// Events handled in it.
    pub events: u64,
}

/// Commits the open transaction with its consumed offsets (sent as the consumer group's, so a
/// zombie member is fenced) and begins the next. On failure the transaction is aborted: its
/// outputs are never visible to `read_committed` readers and its events are read again.
pub fn commit_transaction<C: ConsumerContext>(consumer: &BaseConsumer<C>, producer: &OutputProducer, topic: &str, open: &mut OpenTransaction, metrics: &Metrics) -> Result<(), EngineError> {
    let timeout = Duration::from_secs(30);
    let failed = |context: &str| {
        let context = context.to_string();
        move |source| EngineError::Kafka { context, source }
    };
    let result = (|| {
        if !open.positions.is_empty() {
            let mut tpl = TopicPartitionList::with_capacity(open.positions.len());
            for (&partition, &next) in &open.positions {
                tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
            }
            let group = consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
            producer.send_offsets_to_transaction(&tpl, &group, timeout)?;
        }
        producer.commit_transaction(timeout)
    })();
    match result {
        Ok(()) => {
            OffsetsStored { events: open.events }.emit(metrics);
            *open = OpenTransaction::default();
            producer.begin_transaction().map_err(failed("beginning a transaction"))
        }
        Err(source) => {
            if let Err(error) = producer.abort_transaction(timeout) {
                warn!(message = "Could not abort the transaction.", %error);
            }
            Err(EngineError::Kafka { context: "committing a transaction (aborted: its outputs are discarded and its events will be read again)".into(), source })
        }
    }
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
                    if let Ok(mut lags) = self.lags.lock() {
                        lags.insert(*p, (part.hi_offset - position).max(0));
                    }
                    // What the broker has committed for the group (not what we read): stalls
                    // when outputs are stuck, however far the consumer reads ahead.
                    let committed = if part.committed_offset >= 0 { part.committed_offset } else { part.lo_offset.max(0) };
                    self.metrics.consumer_committed_lag.get_or_create(&labels).set((part.hi_offset - committed).max(0));
                }
            }
        }
        let any_up = stats.brokers.values().any(|b| b.state == "UP");
        self.metrics.ready.set(i64::from(any_up));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.metrics.ready.set(0);
        }
        KafkaClientError { client: "consumer", error: &error, reason }.emit(&self.metrics);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(_), Ok(mut lags)) = (rebalance, self.lags.lock()) {
            // A partition that comes back is idle only once new statistics say it is caught up.
            lags.clear();
        }
        if let (Rebalance::Revoke(partitions), Some(open)) = (rebalance, &self.transaction) {
            // Exactly-once: what was handled so far commits with its offsets before the
            // partitions move; a failure aborts it and the next owner reads those events again.
            if let Ok(mut open) = open.lock() {
                if open.events == 0 {
                    return;
                }
                if let Err(error) = commit_transaction(consumer, &self.producer, &self.topic, &mut open, &self.metrics) {
                    warn!(message = "Could not commit the transaction at revoke.", %error);
                }
            }
            info!(message = "Partitions revoked.", count = partitions.count());
            return;
        }
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
            commit(consumer, "revoke");
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

/// Stores the next offsets to consume for commit.
pub fn store<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, offsets: &[(i32, i64)], metrics: &Metrics, events: u64) {
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
    OffsetsStored { events }.emit(metrics);
}

/// Commits the stored offsets synchronously (`when`: for the log line).
pub fn commit<C: ConsumerContext>(consumer: &BaseConsumer<C>, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => warn!(message = "Failed to commit offsets.", %error, when),
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

/// Where a member's records are produced, and what it does when one is refused.
pub struct Sink<'a> {
    /// The member's producer.
    pub producer: &'a OutputProducer,
    /// Shutdown asked: stop waiting for a full queue.
    pub stop: &'a AtomicBool,
    /// Non-critical outputs refused for good: drop or stop.
    pub noncritical: NoncriticalFailure,
    /// Longest wait between two retries.
    pub max_backoff: Duration,
    /// Drops and reduced dead letters are counted here.
    pub metrics: &'a Metrics,
}

impl Sink<'_> {
    /// Produces a record, waiting while librdkafka's queue is full (backpressure, not loss)
    /// until shutdown is asked ([`EngineError::Interrupted`]; the record's batch then stays
    /// uncommitted). An error librdkafka reports at once is handled as a failed delivery
    /// ([`super::delivery`]).
    pub fn send(&self, mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>>) -> Result<(), EngineError> {
        let mut reduced: Option<OwnedHeaders> = None;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(EngineError::Interrupted);
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, mut r)) => {
                    r.delivery_opaque.attempts += 1;
                    let kind = r.delivery_opaque.kind;
                    match self.decide(&error, kind, reduced.is_some(), r.delivery_opaque.attempts) {
                        Action::RetryAfter(wait) => {
                            warn!(message = "Produce refused; retrying.", %error, topic = r.topic, wait_ms = wait.as_millis() as u64);
                            if self.stop.load(Ordering::Relaxed) {
                                return Err(EngineError::Interrupted);
                            }
                            std::thread::sleep(wait);
                            record = r;
                        }
                        Action::Reference => {
                            self.referenced(r.topic, &error);
                            let headers = reduced.insert(super::delivery::reference_headers(r.payload.unwrap_or_default(), r.headers.as_ref()));
                            record = BaseRecord::with_opaque_to(r.topic, r.delivery_opaque).payload(&[][..]).headers(headers.clone());
                            if let Some(k) = r.key {
                                record = record.key(k);
                            }
                        }
                        Action::Drop => {
                            self.dropped(r.topic, &error, &r.delivery_opaque);
                            return Ok(());
                        }
                        Action::Stop => return Err(refused(kind, r.topic, error)),
                    }
                }
            }
        }
    }

    /// What to do with an output of `kind` that failed with `error` after `attempts` tries.
    pub fn decide(&self, error: &KafkaError, kind: OutputKind, is_reference: bool, attempts: u32) -> Action {
        decide(classify(error), kind, is_reference, attempts, self.max_backoff, self.noncritical)
    }

    /// A dead letter too large for `topic` is produced again as a reference: logged and counted.
    pub fn referenced(&self, topic: &str, error: &KafkaError) {
        warn!(message = "Dead letter too large for its topic; producing a reference to the event instead.", %error, topic);
        self.metrics.dead_letters_reduced.get_or_create(&ReasonLabel { reason: "omitted".into() }).inc();
    }

    /// A non-critical output refused for good is dropped: logged, counted, its batch released.
    pub fn dropped(&self, topic: &str, error: &KafkaError, delivery: &Delivery) {
        error!(message = "Output refused permanently; dropped (engine.noncritical_output_failure = \"drop\").", %error, topic);
        self.metrics.outputs_dropped.get_or_create(&TopicLabel { topic: topic.to_string() }).inc();
        delivery.done();
    }
}

/// The error that stops the engine when an output of `kind` for `topic` is refused for good.
pub fn refused(kind: OutputKind, topic: &str, source: KafkaError) -> EngineError {
    EngineError::OutputRefused { kind: kind.name(), topic: topic.to_string(), source }
}

/// The core's outputs in a member: each record is produced with a share of its batch's
/// pending count, released by the delivery callback; handled offsets go to the tracker.
pub struct KafkaOutputs<'a> {
    /// Where records go.
    pub sink: &'a Sink<'a>,
    /// The member's offset tracker, locked for the message being handled.
    pub tracker: &'a mut OffsetTracker,
}

impl Outputs for KafkaOutputs<'_> {
    type Error = EngineError;

    fn emit(&mut self, record: Outgoing<'_>) -> Result<(), EngineError> {
        self.emit_releasing(record, Vec::new())
    }

    fn hold(&mut self, previous: Option<&PendingOutput>) -> Option<PendingOutput> {
        self.tracker.hold(previous)
    }

    fn emit_releasing(&mut self, record: Outgoing<'_>, releases: Vec<PendingOutput>) -> Result<(), EngineError> {
        let delivery = Box::new(Delivery { pending: self.tracker.add_output(), alert_event_time_ms: record.event_time_ms, kind: record.kind, attempts: 0, releases });
        let mut base = BaseRecord::with_opaque_to(record.topic, delivery).payload(record.payload);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key: key.as_ref(), value: value.as_deref() });
            }
            base = base.headers(headers);
        }
        self.sink.send(base)
    }

    fn handled(&mut self, partition: i32, offset: i64) {
        self.tracker.record(partition, offset);
    }
}

/// Produces a few keyed records to `topic` with an idempotent producer and waits for their
/// acknowledgement (15 s): for one-off publishers such as `driftwatch model`.
pub fn publish(brokers: &str, topic: &str, records: &[(String, Vec<u8>)]) -> Result<(), KafkaError> {
    use rdkafka::producer::BaseProducer;
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("enable.idempotence", "true").create()?;
    for (key, payload) in records {
        producer.send(BaseRecord::to(topic).payload(payload).key(key)).map_err(|(err, _)| err)?;
    }
    producer.flush(Duration::from_secs(15))
}
