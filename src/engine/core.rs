//! The engine's functional core: one consumed message in, its outgoing records and offset
//! bookkeeping out. No rdkafka, no threads, no sockets: the Kafka shell ([`super::kafka`],
//! [`super::workers`]) turns a `BorrowedMessage` into an [`Incoming`] and hands the records the
//! core emits to a producer; tests hand the core plain values and collect what it emits.
//!
//! Per message, [`Member::handle`]:
//! 1. picks up a hot-reloaded pipeline between two messages (one atomic load);
//! 2. refuses an oversized payload, else decodes and scores it (one in
//!    [`LATENCY_SAMPLE_EVERY`] timed);
//! 3. routes: a decode failure becomes a dead letter (the event's bytes and headers plus
//!    `dlq.*` headers); a fraud score at the threshold, or an outlier with
//!    `model.alert_on_outlier`, becomes an alert; a share of events is shadow-scored by the
//!    registry's candidate;
//! 4. feeds the drift windows and publishes the windows the event's time closes (report, status
//!    changes, retrain request, and the guard's decisions on the new model);
//! 5. tells the outputs the event is handled, so its offset may be committed once everything it
//!    emitted is acknowledged.

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry::trace::{Span as _, TraceContextExt as _};

use crate::config::{Aggregation, Config, OutOfBounds};
use crate::drift::online::{ClosedWindow, StreamDrift};
use crate::drift::{status_name, Status};
use crate::message::dead_letter::headers as dlq;
use crate::message::performance::{RetainedScore, RetainedVersion, Role};
use crate::message::profile::{PaneHeader, PartitionProgress, ProfileRecord, Progress};
use crate::pipeline::artifact::ReferenceProfile;
use crate::profile::partitioned::{PartitionedPanes, SealedPane};
use crate::profile::ProfileLayout;
use crate::message::{FraudAlert, InvalidReason, ModelEvent, Reasons, ShadowScore, SourcePosition};
use crate::time::Rfc3339Ms;
use crate::model::guard::{GuardRules, GuardVerdict};
use crate::model::lifecycle::{ModelLifecycle, SwapError};
use crate::observe::events::{DriftStatusChanged, EventInvalid, InternalEvent, ModelRolledBack, ModelSwapped, RetrainRequested};
use crate::observe::metrics::{AgreeLabel, FeatureLabel, Metrics, ModelLabels, ReasonLabel};
use crate::observe::traces::Telemetry;
use crate::pipeline::{Pipeline, Score, Transaction};
use crate::sampling::in_sample;
use crate::time::{format_rfc3339_ms, Clock};

pub use super::records::{HeaderList, HeaderSource, Incoming, NoHeaders, Outgoing, OutputKind, Outputs, PendingOutput, RunSummary};

/// The score-latency histogram observes one event in this many (counted over consumed messages).
pub const LATENCY_SAMPLE_EVERY: u64 = 16;

/// What a Kafka record header costs beyond its key and value bytes (varint lengths; generous).
const HEADER_OVERHEAD: usize = 16;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Drift state shared by the engine's members: one set of windows (or panes) per process.
struct SharedDrift {
    state: Mutex<DriftState>,
    /// `close_due_ms` / `next_seal_ms`, readable without the lock: unsampled events before it skip the lock.
    due_ms: AtomicI64,
    /// Profiled share of traffic (the sampling decision is made outside the lock).
    sample_fraction: f64,
    /// This instance's name in pane profiles (`kafka.instance_id`, else host and process id).
    instance: String,
}

/// `drift.aggregation`: windows evaluated here, or panes published for the group's aggregator.
enum DriftState {
    Local(StreamDrift),
    Group(GroupPanes),
}

/// Group aggregation's per-process state: every partition's open panes.
struct GroupPanes {
    panes: PartitionedPanes<PendingOutput>,
    layout: ProfileLayout,
    reference: ReferenceProfile,
    name: String,
    version: String,
}

impl DriftState {
    fn new(config: &Config, pipeline: &Pipeline) -> DriftState {
        let c = config.drift.to_config();
        match config.drift.aggregation {
            Aggregation::Local => DriftState::Local(StreamDrift::new(pipeline, c)),
            Aggregation::Group => {
                let a = pipeline.artifact();
                DriftState::Group(GroupPanes {
                    panes: PartitionedPanes::new(c.window.slide_ms, c.window.lateness_ms),
                    layout: ProfileLayout::new(&a.reference),
                    reference: a.reference.clone(),
                    name: a.model.name.clone(),
                    version: a.model.version.clone(),
                })
            }
        }
    }

    fn due_ms(&self) -> i64 {
        match self {
            DriftState::Local(s) => s.close_due_ms(),
            DriftState::Group(g) => g.panes.next_seal_ms(),
        }
    }

    /// Releases what the state holds (its windows are discarded).
    fn discard(&mut self) {
        if let DriftState::Group(g) = self {
            for hold in g.panes.discard() {
                hold.done();
            }
        }
    }
}

impl GroupPanes {
    /// A sealed pane as a `drift-profiles` record, with the holds its delivery releases.
    fn record(&self, s: SealedPane<PendingOutput>, instance: &str) -> (Vec<u8>, Vec<PendingOutput>) {
        let header = PaneHeader {
            model: self.name.clone(),
            version: self.version.clone(),
            instance: instance.to_string(),
            partition: s.partition,
            pane_start_ms: s.start_ms,
            pane_end_ms: s.end_ms,
            first_offset: s.first_offset,
            last_offset: s.last_offset,
            samples: s.profile.samples,
            watermark_ms: s.watermark_ms,
        };
        (ProfileRecord::Pane(header, s.profile).to_bytes(), s.holds)
    }
}

/// The name this instance signs its pane profiles with.
fn instance_name(config: &Config) -> String {
    if !config.kafka.instance_id.is_empty() {
        return config.kafka.instance_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// What the engine's members share: configuration, models, drift windows, metrics, tracer.
pub struct Engine {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    /// Serving pipeline, shadow candidate, guard.
    pub(crate) models: ModelLifecycle,
    drift: Option<SharedDrift>,
    /// Traces for events that carry (or are sampled into) a trace.
    pub(crate) telemetry: Option<Telemetry>,
    /// Per worker: since when (epoch ms) its oldest unacknowledged output has waited, 0 when
    /// none. Written by the worker, turned into an age by the supervisor, so the age keeps
    /// growing while a worker is blocked waiting for the broker.
    pub(crate) unacked_since_ms: Vec<AtomicI64>,
    /// Wall clock for `processed_at` (fixed in tests).
    clock: Clock,
    /// When set: once a member fails, the process ends with the failure's exit status after
    /// 95 % of this, even if a librdkafka call blocks the orderly stop (`run` sets it to
    /// `engine.shutdown_timeout_ms`; library users decide for themselves).
    pub(crate) stop_deadline: Option<std::time::Duration>,
    /// The failure watchdog is armed once.
    pub(crate) watchdog_armed: std::sync::atomic::AtomicBool,
    /// Group drift aggregation: this instance is the group's aggregator now (the performance
    /// thread runs only then).
    pub(crate) aggregating: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine for this configuration and pipeline.
    pub fn new(config: Config, pipeline: Pipeline, metrics: Arc<Metrics>) -> Engine {
        describe_model(&metrics, &pipeline, 1);
        let drift = config.drift.enabled.then(|| {
            let state = DriftState::new(&config, &pipeline);
            SharedDrift { due_ms: AtomicI64::new(state.due_ms()), state: Mutex::new(state), sample_fraction: config.drift.sample_fraction, instance: instance_name(&config) }
        });
        let m = &config.model;
        // The guard judges drift windows and writes to the registry: it needs both.
        let guarded = drift.is_some() && !m.registry.is_empty();
        let rules = GuardRules {
            windows: if guarded { m.guard_windows } else { 0 },
            alert_rate_factor: m.guard_alert_rate_factor,
            outlier_margin: m.guard_outlier_margin,
            p99_latency_ms: m.guard_p99_latency_ms,
            min_samples: config.drift.min_samples,
            false_rollback_probability: m.guard_false_rollback_probability,
            latency_min_samples: m.guard_latency_min_samples,
        };
        // Drop counters of the non-critical topics exist from the first scrape (rate() works).
        let k = &config.kafka;
        for topic in [&k.shadow_scores_topic, &k.drift_reports_topic, &k.drift_alerts_topic, &k.retrain_requests_topic, &k.model_events_topic, &k.retained_scores_topic, &k.performance_reports_topic] {
            let _ = metrics.outputs_dropped.get_or_create(&crate::observe::metrics::TopicLabel { topic: topic.clone() });
        }
        let unacked_since_ms = (0..config.engine.effective_workers()).map(|_| AtomicI64::new(0)).collect();
        Engine { models: ModelLifecycle::new(pipeline, rules), config, metrics, drift, telemetry: None, clock: crate::time::now_ms, unacked_since_ms, stop_deadline: None, watchdog_armed: std::sync::atomic::AtomicBool::new(false), aggregating: std::sync::atomic::AtomicBool::new(false) }
    }

    /// After a member fails, ends the process within `deadline` with the failure's exit status
    /// if the orderly stop (flush, commit, leaving the group) has not finished by then.
    pub fn with_stop_deadline(mut self, deadline: std::time::Duration) -> Engine {
        self.stop_deadline = Some(deadline);
        self
    }

    /// Traces events with this tracer.
    pub fn with_telemetry(mut self, telemetry: Option<Telemetry>) -> Engine {
        self.telemetry = telemetry;
        self
    }

    /// Stamps outputs with this clock instead of the wall clock.
    pub fn with_clock(mut self, clock: Clock) -> Engine {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pipeline serving now.
    pub fn current_pipeline(&self) -> Arc<Pipeline> {
        self.models.serving()
    }

    /// The models (serving, candidate, guard).
    pub fn models(&self) -> &ModelLifecycle {
        &self.models
    }

    /// Replaces the serving pipeline (see [`ModelLifecycle::swap`]); members switch between two
    /// messages, so each event is scored once, by one version. Drift windows restart against
    /// the new reference. `guarded`: the rollback guard watches the new version.
    pub fn swap_pipeline(&self, new: Pipeline, guarded: bool) -> Result<(), SwapError> {
        ModelLifecycle::check_fit(&self.models.serving(), &new)?;
        if let Some(d) = &self.drift {
            let state = DriftState::new(&self.config, &new);
            d.due_ms.store(state.due_ms(), Ordering::Relaxed);
            let mut old = std::mem::replace(&mut *d.state.lock().expect("drift lock"), state);
            old.discard();
        }
        describe_model(&self.metrics, &new, 1);
        let old = self.models.swap(new, guarded)?;
        describe_model(&self.metrics, &old, 0);
        let new = self.models.serving();
        ModelSwapped { from: &old.artifact().model.version, to: &new.artifact().model.version }.emit(&self.metrics);
        Ok(())
    }

    /// A member's handler: its own view of the models and its own buffers.
    pub fn member(&self) -> Member<'_> {
        self.member_at(0)
    }

    /// The handler of member (worker) `index`.
    pub fn member_at(&self, index: usize) -> Member<'_> {
        let pipeline = self.models.serving();
        Member {
            engine: self,
            index,
            tx: pipeline.new_transaction(),
            generation: self.models.generation(),
            pipeline,
            shadow: None,
            shadow_generation: u64::MAX,
            shadow_tx: Transaction::default(),
            alert_buf: Vec::with_capacity(1024),
            summary: RunSummary::default(),
            threshold: self.config.model.threshold,
            clock_ms: (self.clock)(),
            recent: Vec::new(),
            last_active: std::collections::BTreeMap::new(),
            unpublished: Unpublished::default(),
        }
    }

    /// Acts on the guard's verdict for a closed window: a rollback is written to the registry
    /// and its stage changes are returned for `model-events`.
    fn guard_window(&self, w: &ClosedWindow, serving: &str) -> Vec<ModelEvent> {
        let (version, reason) = match self.models.judge_window(serving, &w.report) {
            GuardVerdict::RollBack { version, reason } => (version, reason),
            GuardVerdict::Passed => {
                tracing::info!(message = "Guard passed the new model.", version = %serving);
                return Vec::new();
            }
            GuardVerdict::Ignored | GuardVerdict::Watching { .. } => return Vec::new(),
        };
        let c = &self.config.model;
        let name = (!c.registry_name.is_empty()).then_some(c.registry_name.as_str());
        match c.open_registry().and_then(|registry| registry.rollback_if_serving(name, &version, "guard", &format!("{version}: {reason}"))) {
            Ok(events) if events.is_empty() => {
                tracing::warn!(message = "Guard found the version no longer in production (rolled back by another engine, or replaced); nothing changed.", %version, %reason);
                events
            }
            Ok(events) => {
                ModelRolledBack { version: &version, reason: &reason }.emit(&self.metrics);
                events
            }
            Err(error) => {
                tracing::error!(message = "Guard could not roll back.", %version, %reason, %error);
                Vec::new()
            }
        }
    }
}

impl Engine {
    /// A closed window's records (report, the guard's stage changes, status changes, retrain
    /// request: kind, topic, key, payload), with the gauges and counters updated. `monitor`
    /// gives the shown statuses; `serving`: the version the guard judges.
    pub(crate) fn window_records(&self, w: &ClosedWindow, monitor: &crate::drift::monitor::DriftMonitor, serving: &str) -> Vec<(OutputKind, String, String, Vec<u8>)> {
        let (m, k) = (&self.metrics, &self.config.kafka);
        let name = self.current_pipeline().artifact().model.name.clone();
        m.drift_windows_closed.inc();
        if let Some(t) = &self.telemetry {
            t.window_span(&w.report.window_end, w.report.drift.features.len(), status_name(w.report.drift.status));
        }
        m.drift_window_samples.set(w.report.drift.current.rows as i64);
        m.drift_outlier_rate.set(w.report.model_drift.outlier_rate.observed);
        m.drift_alert_rate.set(w.report.model_drift.alert_rate.observed);
        for f in w.report.drift.features.iter().chain(std::iter::once(&w.report.model_drift.score)) {
            let label = FeatureLabel { feature: f.bins.name.clone() };
            let shown = match monitor.shown(&f.bins.name) {
                Status::Red => 2.0,
                Status::Amber => 1.0,
                _ => 0.0,
            };
            m.feature_drift_status.get_or_create(&label).set(shown);
            m.feature_drift_psi.get_or_create(&label).set(f.psi);
            m.feature_drift_kl.get_or_create(&label).set(f.kl);
            m.feature_drift_js.get_or_create(&label).set(f.js);
            if let Some(c) = f.chi2 {
                m.feature_drift_chi2_p_value.get_or_create(&label).set(c.p_value_adjusted);
            }
            if let Some(ks) = f.ks {
                m.feature_drift_ks.get_or_create(&label).set(ks.statistic);
            }
            if let Some(wd) = f.wasserstein {
                m.feature_drift_wasserstein.get_or_create(&label).set(wd.normalized);
            }
        }
        let mut records = vec![(OutputKind::DriftReport, k.drift_reports_topic.clone(), name.clone(), serde_json::to_vec(&w.report).expect("report serialises"))];
        for event in self.guard_window(w, serving) {
            records.push((OutputKind::ModelEvent, k.model_events_topic.clone(), event.model.clone(), serde_json::to_vec(&event).expect("event serialises")));
        }
        for a in &w.alerts {
            DriftStatusChanged { feature: &a.feature, from: status_name(a.from), to: status_name(a.to), window_end: &a.window_end }.emit(m);
            records.push((OutputKind::DriftAlert, k.drift_alerts_topic.clone(), a.feature.clone(), serde_json::to_vec(a).expect("alert serialises")));
        }
        if let Some(r) = &w.retrain {
            RetrainRequested { reason: &r.reason }.emit(m);
            records.push((OutputKind::RetrainRequest, k.retrain_requests_topic.clone(), name.clone(), serde_json::to_vec(r).expect("request serialises")));
        }
        records
    }
}

/// Sets the model-info gauge (1 serving, 0 retired) and the trained rates of a serving model.
fn describe_model(metrics: &Metrics, pipeline: &Pipeline, value: i64) {
    let a = pipeline.artifact();
    metrics.model_info.get_or_create(&ModelLabels { name: a.model.name.clone(), version: a.model.version.clone() }).set(value);
    if value == 1 {
        metrics.model_trained_outlier_rate.set(a.reference.outlier_rate);
        metrics.model_trained_alert_rate.set(a.reference.alert_rate);
    }
}

/// One member's message handler: its view of the serving pipeline and candidate, and reusable
/// buffers (decoding and scoring allocate nothing per event).
pub struct Member<'a> {
    engine: &'a Engine,
    /// Which member (worker) of the process: the owner of the partitions it reads.
    index: usize,
    /// This member's view of the serving pipeline and its generation.
    pipeline: Arc<Pipeline>,
    generation: u64,
    /// This member's view of the shadow candidate, its generation and decode buffer.
    shadow: Option<Arc<Pipeline>>,
    shadow_generation: u64,
    shadow_tx: Transaction,
    /// The decoded event, reused.
    tx: Transaction,
    /// An alert's JSON, reused.
    alert_buf: Vec<u8>,
    summary: RunSummary,
    /// `model.threshold`, overriding the artifact's when set.
    threshold: Option<f64>,
    /// The last wall-clock reading for the event-time bound (ms).
    clock_ms: i64,
    /// Group drift aggregation: partitions read since the last progress tick, with the largest
    /// event time of each (sampled or not), so a quiet partition's watermark and activity are
    /// current even when few of its events are sampled.
    recent: Vec<(i32, i64)>,
    /// Group drift aggregation: wall time (ms) of the tick that last saw an event per partition.
    last_active: std::collections::BTreeMap<i32, i64>,
    /// Per-event counters not yet added to the shared metrics: no atomic per event.
    unpublished: Unpublished,
}

/// Counts a member keeps for itself between [`Member::publish_counts`].
#[derive(Debug, Default, Clone, Copy)]
struct Unpublished {
    consumed: u64,
    scored: u64,
    outliers: u64,
    fraud: u64,
}

/// A member adds its per-event counts to the shared metrics at least this often (and whenever
/// the shell calls [`Member::publish_counts`], e.g. when a poll finds nothing, and when the
/// member is dropped).
pub const PUBLISH_COUNTS_EVERY: u64 = 256;

impl Drop for Member<'_> {
    fn drop(&mut self) {
        // A member that ends (stop, error, panic unwinding) leaves no count behind.
        self.publish_counts();
    }
}

impl Member<'_> {
    /// What this member did so far.
    pub fn summary(&self) -> RunSummary {
        self.summary
    }

    /// Adds the counts kept since the last call to the shared metrics (events consumed and
    /// scored, outliers, fraud alerts).
    pub fn publish_counts(&mut self) {
        let u = std::mem::take(&mut self.unpublished);
        let m = &self.engine.metrics;
        for (counter, n) in [(&m.events_consumed, u.consumed), (&m.events_scored, u.scored), (&m.outliers, u.outliers), (&m.fraud_alerts, u.fraud)] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    /// Handles one message: emits its records and marks it handled.
    pub fn handle<O: Outputs>(&mut self, message: &Incoming<'_>, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        let generation = e.models.generation();
        if generation != self.generation {
            // Between two messages: this one and all later ones use the new version.
            self.pipeline = e.models.serving();
            self.tx = self.pipeline.new_transaction();
            self.generation = generation;
        }
        let m = &e.metrics;
        self.unpublished.consumed += 1;
        self.summary.consumed += 1;
        let payload = message.payload.unwrap_or(&[]);
        let telemetry = e.telemetry.as_ref();
        let trace = telemetry.and_then(|t| t.start_event(message));
        let scored = self.score(payload, trace.as_ref()).and_then(|score| {
            // Only a model without a timestamp column leaves the event time unset.
            if self.tx.event_time_ms.is_none() && e.config.engine.event_time_from_kafka {
                self.tx.event_time_ms = message.timestamp_ms.filter(|t| t.abs() <= crate::time::MAX_EPOCH_MS);
            }
            // `bounded`: the event time is within bounds (else: scored, but not windowed).
            match self.event_time_bound(message.timestamp_ms) {
                None => Ok((score, true)),
                Some((bound, text)) => {
                    m.event_time_out_of_bounds.get_or_create(&ReasonLabel { reason: bound.into() }).inc();
                    match e.config.engine.event_time_out_of_bounds {
                        OutOfBounds::DeadLetter => Err((InvalidReason::EventTimeOutOfBounds, text)),
                        OutOfBounds::Score => Ok((score, false)),
                    }
                }
            }
        });
        match scored {
            Ok((score, bounded)) => {
                self.unpublished.scored += 1;
                self.summary.scored += 1;
                self.unpublished.outliers += u64::from(score.is_outlier);
                self.unpublished.fraud += u64::from(score.is_fraud);
                if self.alerts(&score) {
                    self.emit_alert(message, &score, trace.as_ref(), bounded, out)?;
                }
                if bounded {
                    self.observe_drift(message, &score, out)?;
                }
                let shadow = self.shadow_score(message, payload, &score, out)?;
                self.retain(&score, shadow, out)?;
            }
            Err((reason, text)) => self.dead_letter(message, payload, reason, &text, out)?,
        }
        out.handled(message.partition, message.offset);
        if let Some(cx) = trace {
            cx.span().end();
        }
        if self.unpublished.consumed >= PUBLISH_COUNTS_EVERY {
            self.publish_counts();
        }
        Ok(())
    }

    /// Whether the decoded event's time is out of bounds: (`future` | `too_old`, message). The
    /// future bound is relative to the wall clock (a producer's clock or timestamp cannot move
    /// it); the age bound to the Kafka message timestamp when there is one (when it was
    /// written), else the wall clock. Plain `i64` arithmetic on times within ±year 9999
    /// ([`crate::time::MAX_EPOCH_MS`]) and bounds below 2^63 ms: no overflow.
    fn event_time_bound(&mut self, kafka_timestamp_ms: Option<i64>) -> Option<(&'static str, String)> {
        let c = &self.engine.config.engine;
        let t = self.tx.event_time_ms?;
        let future = i64::try_from(c.event_time_max_future_ms).unwrap_or(i64::MAX);
        // The clock is read only when the last reading says "out of bounds": a later reading
        // can only move the bound forward (one clock read per event was ~1.5 % of the loop).
        if c.event_time_max_future_ms > 0 && t.saturating_sub(self.clock_ms) > future {
            self.clock_ms = (self.engine.clock)();
            let now = self.clock_ms;
            if t.saturating_sub(now) > future {
                return Some(("future", format!("event time {} is more than engine.event_time_max_future_ms = {} ahead of the clock ({})", format_rfc3339_ms(t), c.event_time_max_future_ms, format_rfc3339_ms(now))));
            }
        }
        if c.event_time_max_age_ms > 0 {
            let age = i64::try_from(c.event_time_max_age_ms).unwrap_or(i64::MAX);
            let written = kafka_timestamp_ms.filter(|w| w.abs() <= crate::time::MAX_EPOCH_MS).unwrap_or_else(|| (self.engine.clock)());
            if written.saturating_sub(t) > age {
                return Some(("too_old", format!("event time {} is more than engine.event_time_max_age_ms = {} before it was written ({})", format_rfc3339_ms(t), c.event_time_max_age_ms, format_rfc3339_ms(written))));
            }
        }
        None
    }

    /// Decodes and scores, or says why the event cannot be scored.
    fn score(&mut self, payload: &[u8], trace: Option<&opentelemetry::Context>) -> Result<Score, (InvalidReason, String)> {
        let e = self.engine;
        let max = e.config.engine.max_event_bytes;
        if payload.len() > max {
            return Err((InvalidReason::Oversized, format!("event of {} bytes exceeds engine.max_event_bytes = {max}", payload.len())));
        }
        let telemetry = e.telemetry.as_ref();
        // Timing every event costs two clock reads (~6 % of the loop): time one in 16.
        let started = (self.summary.consumed % LATENCY_SAMPLE_EVERY == 1).then(Instant::now);
        let decode_span = trace.zip(telemetry).map(|(cx, t)| t.child(cx, "decode"));
        let decoded = self.pipeline.decode_into(payload, &mut self.tx);
        if let Some(mut span) = decode_span {
            if let Err(err) = &decoded {
                span.set_status(opentelemetry::trace::Status::error(err.reason().as_str()));
            }
            span.end();
        }
        if let Err(err) = decoded {
            return Err((err.reason(), err.to_string()));
        }
        let score_span = trace.zip(telemetry).map(|(cx, t)| t.child(cx, "score"));
        let mut score = self.pipeline.score(&self.tx);
        if let Some(started) = started {
            let elapsed = started.elapsed();
            e.metrics.score_latency.observe(elapsed.as_secs_f64());
            e.models.record_latency_us(elapsed.as_micros() as u64);
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

    /// The event's own bytes and headers (trace context among them), then ours. A dead letter
    /// that would not fit in `engine.dead_letter_max_bytes` carries the event's first bytes
    /// (`dlq.payload = truncated`), or none of them and none of its headers (`omitted`), with
    /// the event's size and SHA-256 in headers and its source position as the reference.
    fn dead_letter<O: Outputs>(&mut self, message: &Incoming<'_>, payload: &[u8], reason: InvalidReason, text: &str, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        EventInvalid { reason }.emit(&e.metrics);
        self.summary.dead_letters += 1;
        let own_headers = message.headers.headers();
        let own = own_headers.map_or(0, |h| h.count());
        let mut headers = Vec::with_capacity(own + 16);
        if let Some(h) = own_headers {
            headers.extend((0..own).map(|i| {
                let (k, v) = h.header(i);
                (Cow::Borrowed(k), v.map(Cow::Borrowed))
            }));
        }
        let (partition, offset) = (message.partition.to_string(), message.offset.to_string());
        // The message stays short whatever the input (a decode error can quote it).
        let text = truncate_utf8(text, 4096);
        for (k, v) in [
            (dlq::REASON, reason.as_str().as_bytes().to_vec()),
            (dlq::ERROR, text.as_bytes().to_vec()),
            (dlq::TOPIC, message.topic.as_bytes().to_vec()),
            (dlq::PARTITION, partition.clone().into_bytes()),
            (dlq::OFFSET, offset.clone().into_bytes()),
            (dlq::connect::TOPIC, message.topic.as_bytes().to_vec()),
            (dlq::connect::PARTITION, partition.into_bytes()),
            (dlq::connect::OFFSET, offset.into_bytes()),
            (dlq::connect::CONNECTOR_NAME, b"driftwatch".to_vec()),
            (dlq::connect::STAGE, b"VALUE_CONVERTER".to_vec()),
            (dlq::connect::CLASS_NAME, b"driftwatch::pipeline::decode".to_vec()),
            (dlq::connect::EXCEPTION_CLASS_NAME, format!("driftwatch.InvalidEvent.{}", reason.as_str()).into_bytes()),
            (dlq::connect::EXCEPTION_MESSAGE, text.as_bytes().to_vec()),
        ] {
            headers.push((Cow::Borrowed(k), Some(Cow::Owned(v))));
        }
        let max = e.config.engine.dead_letter_max_bytes;
        let key = message.key.filter(|k| k.len() <= max / 4);
        let size_of = |headers: &[(Cow<'_, str>, Option<Cow<'_, [u8]>>)]| headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + HEADER_OVERHEAD).sum::<usize>();
        let mut body = payload;
        if key.map_or(0, <[u8]>::len) + size_of(&headers) + payload.len() > max {
            let digest = crate::pipeline::train::sha256_hex(payload);
            let mut ours = headers.split_off(own);
            ours.push((Cow::Borrowed(dlq::ORIGINAL_BYTES), Some(Cow::Owned(payload.len().to_string().into_bytes()))));
            ours.push((Cow::Borrowed(dlq::ORIGINAL_SHA256), Some(Cow::Owned(digest.into_bytes()))));
            // Room for `dlq.payload` too, at its longer value.
            let fixed = key.map_or(0, <[u8]>::len) + size_of(&ours) + dlq::PAYLOAD.len() + "truncated".len() + HEADER_OVERHEAD;
            let room_with_own = max.saturating_sub(fixed + size_of(&headers));
            let (kind, kept): (&'static str, usize) = if room_with_own >= max / 2 {
                // The event's headers fit: keep them and as many payload bytes as fit.
                headers.extend(ours);
                ("truncated", room_with_own)
            } else {
                // Its headers alone are too large: a reference only.
                headers = ours;
                ("omitted", 0)
            };
            headers.push((Cow::Borrowed(dlq::PAYLOAD), Some(Cow::Borrowed(kind.as_bytes()))));
            body = &payload[..kept.min(payload.len())];
            e.metrics.dead_letters_reduced.get_or_create(&ReasonLabel { reason: kind.into() }).inc();
        }
        out.emit(Outgoing { kind: OutputKind::DeadLetter, topic: &e.config.kafka.dead_letter_topic, key, payload: body, headers, event_time_ms: None })
    }

    /// `timed`: the event time is within bounds, so the alert's end-to-end latency means something.
    fn emit_alert<O: Outputs>(&mut self, message: &Incoming<'_>, score: &Score, trace: Option<&opentelemetry::Context>, timed: bool, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        let pipeline = &self.pipeline;
        let model = &pipeline.artifact().model;
        let triggers: &'static [&'static str] = match (score.is_fraud, score.is_outlier) {
            (true, true) => &["fraud_score", "outlier"],
            (true, false) => &["fraud_score"],
            (false, true) => &["outlier"],
            (false, false) => &[],
        };
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
            reasons: Reasons { pipeline, tx: &self.tx, score },
            model: &model.name,
            model_version: &model.version,
            event_time: self.tx.event_time_ms.map(Rfc3339Ms),
            processed_at: Rfc3339Ms((e.clock)()),
            source: SourcePosition { topic: message.topic, partition: message.partition, offset: message.offset },
        };
        self.alert_buf.clear();
        serde_json::to_writer(&mut self.alert_buf, &alert).expect("alert serialises");
        self.summary.alerts += 1;
        let topic = &e.config.kafka.alerts_topic;
        // A traced event's alert carries the trace on (W3C traceparent), from a producer span.
        let publish = trace.zip(e.telemetry.as_ref()).map(|(cx, t)| t.publish(cx, topic, key));
        let headers = publish.as_ref().map_or_else(Vec::new, |(_, h)| h.0.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Some(Cow::Borrowed(v.as_bytes())))).collect());
        let sent = out.emit(Outgoing {
            kind: OutputKind::Alert,
            topic,
            key: Some(key.as_bytes()),
            payload: &self.alert_buf,
            headers,
            event_time_ms: self.tx.event_time_ms.filter(|_| timed),
        });
        if let Some((mut span, _)) = publish {
            span.end();
        }
        sent
    }

    /// With `performance.enabled`: keeps the score for its label when any version alerted, or
    /// the event is in the retained sample (weight 1 / `retain_fraction`).
    fn retain<O: Outputs>(&mut self, score: &Score, shadow: Option<(f64, bool)>, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        let p = &e.config.performance;
        if !p.enabled {
            return Ok(());
        }
        let Some(event_ms) = self.tx.event_time_ms else { return Ok(()) };
        let production_alert = self.alerts(score);
        let alerted = production_alert || shadow.is_some_and(|(_, a)| a);
        if !alerted && !crate::sampling::retained(&self.tx, p.retain_fraction) {
            return Ok(());
        }
        let model = &self.pipeline.artifact().model;
        let mut scores = Vec::with_capacity(2);
        scores.push(RetainedVersion { version: model.version.clone(), role: Role::Production, score: score.probability, alert: production_alert });
        if let (Some((candidate_score, alert)), Some(candidate)) = (shadow, &self.shadow) {
            scores.push(RetainedVersion { version: candidate.artifact().model.version.clone(), role: Role::Shadow, score: candidate_score, alert });
        }
        let record = RetainedScore {
            transaction_id: self.tx.id.clone(),
            model: model.name.clone(),
            event_time: format_rfc3339_ms(event_ms),
            weight: if alerted { 1.0 } else { 1.0 / p.retain_fraction },
            scores,
            label: None,
        };
        let payload = serde_json::to_vec(&record).expect("retained score serialises");
        out.emit(Outgoing {
            kind: OutputKind::RetainedScore,
            topic: &e.config.kafka.retained_scores_topic,
            key: Some(self.tx.id.as_bytes()),
            payload: &payload,
            headers: Vec::new(),
            event_time_ms: None,
        })
    }

    /// Whether a score raises an alert.
    fn alerts(&self, s: &Score) -> bool {
        s.is_fraud || (s.is_outlier && self.engine.config.model.alert_on_outlier)
    }

    /// Scores a share of events with the candidate too and publishes both decisions; returns
    /// the candidate's probability and alert when it scored this event.
    fn shadow_score<O: Outputs>(&mut self, message: &Incoming<'_>, payload: &[u8], score: &Score, out: &mut O) -> Result<Option<(f64, bool)>, O::Error> {
        let e = self.engine;
        let fraction = e.config.model.shadow_fraction;
        if fraction <= 0.0 {
            return Ok(None);
        }
        let generation = e.models.shadow_generation();
        if generation != self.shadow_generation {
            self.shadow = e.models.shadow();
            self.shadow_tx = self.shadow.as_ref().map(|p| p.new_transaction()).unwrap_or_default();
            self.shadow_generation = generation;
        }
        let Some(candidate) = self.shadow.clone() else { return Ok(None) };
        if !in_sample(&self.tx, fraction) {
            return Ok(None);
        }
        let started = Instant::now();
        let Ok(()) = candidate.decode_into(payload, &mut self.shadow_tx) else { return Ok(None) };
        let shadow = candidate.score(&self.shadow_tx);
        let elapsed = started.elapsed();
        let m = &e.metrics;
        let (production_alert, candidate_alert) = (self.alerts(score), self.alerts(&shadow));
        m.shadow_scored.inc();
        m.shadow_score_latency.observe(elapsed.as_secs_f64());
        m.shadow_alerts.inc_by(u64::from(candidate_alert));
        m.shadow_agreement.get_or_create(&AgreeLabel { agree: (production_alert == candidate_alert).to_string() }).inc();
        let record = ShadowScore {
            transaction_id: &self.tx.id,
            production_version: &self.pipeline.artifact().model.version,
            candidate_version: &candidate.artifact().model.version,
            production_score: score.probability,
            candidate_score: shadow.probability,
            production_alert,
            candidate_alert,
            agree: production_alert == candidate_alert,
            candidate_latency_us: elapsed.as_secs_f64() * 1e6,
            source: SourcePosition { topic: message.topic, partition: message.partition, offset: message.offset },
        };
        let payload = serde_json::to_vec(&record).expect("shadow score serialises");
        out.emit(Outgoing {
            kind: OutputKind::ShadowScore,
            topic: &e.config.kafka.shadow_scores_topic,
            key: Some(self.tx.id.as_bytes()),
            payload: &payload,
            headers: Vec::new(),
            event_time_ms: None,
        })?;
        Ok(Some((shadow.probability, candidate_alert)))
    }

    /// Feeds the drift windows; publishes the windows this event's time closes (local), or the
    /// panes its partition's watermark seals (group).
    fn observe_drift<O: Outputs>(&mut self, message: &Incoming<'_>, score: &Score, out: &mut O) -> Result<(), O::Error> {
        let Some(drift) = &self.engine.drift else { return Ok(()) };
        if self.engine.config.drift.aggregation == Aggregation::Group {
            if let Some(t) = self.tx.event_time_ms {
                match self.recent.iter_mut().find(|(p, _)| *p == message.partition) {
                    Some((_, max)) => *max = (*max).max(t),
                    None => self.recent.push((message.partition, t)),
                }
            }
        }
        let due = self.tx.event_time_ms.is_none_or(|t| t >= drift.due_ms.load(Ordering::Relaxed));
        let sampled = in_sample(&self.tx, drift.sample_fraction);
        if !due && !sampled {
            return Ok(());
        }
        let m = &self.engine.metrics;
        let (closed, sealed) = {
            let mut state = drift.state.lock().expect("drift lock");
            let result = match &mut *state {
                DriftState::Local(s) => {
                    let late_before = s.late_events();
                    let closed = s.observe(&self.tx, score);
                    m.drift_late_events.inc_by(s.late_events() - late_before);
                    (closed, Vec::new())
                }
                DriftState::Group(g) => {
                    let Some(t) = self.tx.event_time_ms else { return Ok(()) };
                    let p = message.partition;
                    if sampled {
                        let not_profiled = g.panes.is_late(p, t) || g.panes.is_reread(p, message.offset);
                        let hold = if not_profiled { None } else { out.hold(g.panes.last_hold(p, t)) };
                        if !g.panes.observe(&g.reference, &g.layout, p, message.offset, t, &self.tx, score, hold) {
                            m.drift_late_events.inc();
                        }
                    }
                    (Vec::new(), g.panes.advance(p, t, self.index).into_iter().map(|s| g.record(s, &drift.instance)).collect::<Vec<_>>())
                }
            };
            drift.due_ms.store(state.due_ms(), Ordering::Relaxed);
            result
        };
        for window in closed {
            self.publish_window(&window, out)?;
        }
        for (payload, holds) in sealed {
            self.publish_profile(payload, holds, true, out)?;
        }
        Ok(())
    }

    /// Group aggregation, every `drift.progress_interval_ms`: seals the panes of this member's
    /// idle partitions (`caught_up`: its consumer has read all there is) and of partitions it
    /// no longer holds, publishes them, then its partitions' progress (watermarks, idle flags).
    /// `assigned`: the partitions this member holds now.
    pub fn drift_tick<O: Outputs>(&mut self, assigned: &[i32], caught_up: impl Fn(i32) -> bool, out: &mut O) -> Result<(), O::Error> {
        let Some(drift) = &self.engine.drift else { return Ok(()) };
        let idle_ms = self.engine.config.drift.idle_partition_ms as i64;
        let now = (self.engine.clock)();
        let recent = std::mem::take(&mut self.recent);
        for &(p, _) in &recent {
            self.last_active.insert(p, now);
        }
        let (records, progress) = {
            let mut state = drift.state.lock().expect("drift lock");
            let DriftState::Group(g) = &mut *state else { return Ok(()) };
            // Every event read moves its partition's watermark, sampled or not.
            let mut sealed: Vec<SealedPane<PendingOutput>> = recent.iter().flat_map(|&(p, t)| g.panes.advance(p, t, self.index)).collect();
            for p in g.panes.owned_by(self.index) {
                if !assigned.contains(&p) {
                    sealed.extend(g.panes.seal_partition(p));
                    g.panes.forget(p);
                }
            }
            let mut partitions = Vec::with_capacity(assigned.len());
            self.last_active.retain(|p, _| assigned.contains(p));
            for &p in assigned {
                let last = self.last_active.get(&p).copied().unwrap_or(i64::MIN);
                let idle = (last == i64::MIN || now.saturating_sub(last) >= idle_ms) && caught_up(p);
                if idle {
                    sealed.extend(g.panes.seal_partition(p));
                }
                partitions.push(PartitionProgress { partition: p, watermark_ms: g.panes.watermark(p), idle });
            }
            drift.due_ms.store(g.panes.next_seal_ms(), Ordering::Relaxed);
            let records: Vec<_> = sealed.into_iter().map(|s| g.record(s, &drift.instance)).collect();
            let progress = ProfileRecord::Progress(Progress { model: g.name.clone(), version: g.version.clone(), instance: drift.instance.clone(), partitions });
            (records, progress.to_bytes())
        };
        for (payload, holds) in records {
            self.publish_profile(payload, holds, true, out)?;
        }
        self.publish_profile(progress, Vec::new(), false, out)
    }

    /// Group aggregation, at shutdown: seals and publishes every pane of this member's partitions.
    pub fn drift_flush<O: Outputs>(&mut self, out: &mut O) -> Result<(), O::Error> {
        let Some(drift) = &self.engine.drift else { return Ok(()) };
        let records: Vec<_> = {
            let mut state = drift.state.lock().expect("drift lock");
            let DriftState::Group(g) = &mut *state else { return Ok(()) };
            let sealed: Vec<_> = g.panes.owned_by(self.index).into_iter().flat_map(|p| g.panes.seal_partition(p)).collect();
            drift.due_ms.store(g.panes.next_seal_ms(), Ordering::Relaxed);
            sealed.into_iter().map(|s| g.record(s, &drift.instance)).collect()
        };
        for (payload, holds) in records {
            self.publish_profile(payload, holds, true, out)?;
        }
        Ok(())
    }

    /// Publishes a `drift-profiles` record (`pane`: a pane, else progress).
    fn publish_profile<O: Outputs>(&mut self, payload: Vec<u8>, holds: Vec<PendingOutput>, pane: bool, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        if pane {
            e.metrics.drift_panes_published.inc();
        }
        e.metrics.drift_profile_bytes.inc_by(payload.len() as u64);
        let key = self.pipeline.artifact().model.name.clone();
        out.emit_releasing(
            Outgoing { kind: OutputKind::DriftProfile, topic: &e.config.kafka.drift_profiles_topic, key: Some(key.as_bytes()), payload: &payload, headers: Vec::new(), event_time_ms: None },
            holds,
        )
    }

    /// Produces a closed window's report, the guard's stage changes, status changes and retrain
    /// request, and updates the gauges.
    fn publish_window<O: Outputs>(&mut self, w: &ClosedWindow, out: &mut O) -> Result<(), O::Error> {
        let e = self.engine;
        let version = self.pipeline.artifact().model.version.clone();
        let records = {
            let state = e.drift.as_ref().expect("a window closed, so drift is on").state.lock().expect("drift lock");
            let DriftState::Local(state) = &*state else { unreachable!("group windows are published by the aggregator") };
            e.window_records(w, state.monitor(), &version)
        };
        for (kind, topic, key, payload) in &records {
            out.emit(Outgoing { kind: *kind, topic, key: Some(key.as_bytes()), payload, headers: Vec::new(), event_time_ms: None })?;
        }
        Ok(())
    }
}
