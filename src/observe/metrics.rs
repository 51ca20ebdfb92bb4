//! The engine's Prometheus metrics (prometheus-client, OpenMetrics text), in one table.
//!
//! Names follow `driftwatch_<name>_<unit>[_total]` in base units. The table below is the only
//! place a metric is named: its field name *is* the exported name (after the `driftwatch_`
//! prefix, before the unit and `_total` suffixes), so a name seen on a dashboard greps to its
//! code. Every metric is documented in the README (a test checks the README against
//! [`Metrics::TABLE`]); `tests/` parse the output with a real Prometheus parser.


use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::process::ProcessCollector;
use crate::message::InvalidReason;

/// Label set with one `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason code, e.g. `not_json`.
    pub reason: String,
}

/// Label set for per-partition metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// Label set for the loaded model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
}

/// Label set for shadow agreement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgreeLabel {
    /// "true" when candidate and production decide the same.
    pub agree: String,
}

/// Label set for per-feature drift gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    /// Feature name (`model_score` for the score distribution).
    pub feature: String,
}

/// Label set for drift status changes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The new status.
    pub to: String,
}

/// A float gauge.
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Label set for per-worker gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// Worker (consumer-group member) number within the process.
    pub worker: String,
}

/// Label set for produced messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}


/// Label set for labels by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `matched`, `not_retained`, `duplicate` or `invalid`.
    pub outcome: String,
}

/// Label set for model-performance gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PerformanceLabels {
    /// Model version.
    pub version: String,
    /// `production` or `shadow`.
    pub role: String,
    /// `realised` (labels) or `estimated` (before labels).
    pub kind: String,
    /// `precision`, `recall`, `roc_auc`, `alert_rate`, `brier`, `ece`, `label_delay_p50_seconds`, `label_delay_p90_seconds`.
    pub metric: String,
    /// `value`, `lower` or `upper` (the interval at `performance.confidence`).
    pub bound: String,
}

/// Label set for the consecutive windows below a performance floor.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FloorLabels {
    /// Model version.
    pub version: String,
    /// `production` or `shadow`.
    pub role: String,
    /// `precision` or `recall`.
    pub metric: String,
}

/// Label set with one `metric`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    /// `precision` or `recall`.
    pub metric: String,
}

/// Declares the metrics: the struct, its constructor and registration, and the name/help table.
macro_rules! metrics_table {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $init:expr, $unit:expr, $help:literal; )*) => {
        /// Every metric the engine exports.
        pub struct Metrics {
            /// The registry they are encoded from.
            pub registry: Registry,
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Metrics {
            /// Name (without prefix and suffixes), unit and help text of every metric, in order.
            pub const TABLE: &'static [(&'static str, Option<&'static str>, &'static str)] = &[ $( (stringify!($name), $unit, $help), )* ];

            /// Creates and registers every metric.
            pub fn new() -> Metrics {
                // The engine's own metrics under `driftwatch_`; the process metrics under their
                // standard, unprefixed names.
                let mut registry = Registry::default();
                let own = registry.sub_registry_with_prefix("driftwatch");
                $(
                    let $name: $ty = $init;
                    match $unit {
                        Some("seconds") => own.register_with_unit(stringify!($name), $help, Unit::Seconds, $name.clone()),
                        Some("bytes") => own.register_with_unit(stringify!($name), $help, Unit::Bytes, $name.clone()),
                        _ => own.register(stringify!($name), $help, $name.clone()),
                    }
                )*
                registry.register_collector(Box::new(ProcessCollector));
                let m = Metrics { registry, $( $name, )* };
                m.start_known_series();
                m
            }
        }
    };
}

metrics_table! {
    /// Messages read from the transactions topic.
    events_consumed: Counter = Counter::default(), None, "Messages read from the transactions topic";
    /// Events decoded and scored.
    events_scored: Counter = Counter::default(), None, "Events decoded and scored";
    /// Events sent to the dead-letter topic, by reason.
    events_invalid: Family<ReasonLabel, Counter> = Family::default(), None, "Events sent to the dead-letter topic, by reason";
    /// Alerts produced because the score passed the threshold.
    fraud_alerts: Counter = Counter::default(), None, "Transactions whose fraud score reached the threshold";
    /// Scored events the outlier detector flagged.
    outliers: Counter = Counter::default(), None, "Scored transactions flagged by the outlier detector";
    /// Decode + score time per event, sampled (one consumed event in 16); 250 ns … ~4 ms.
    score_latency: Histogram = Histogram::new(exponential_buckets(2.5e-7, 2.0, 15)), Some("seconds"), "Decode and score time per event (one consumed event in 16 is timed)";
    /// Event time → alert acknowledged by the broker; 1 ms … ~65 s.
    end_to_end_latency: Histogram = Histogram::new(exponential_buckets(0.001, 2.0, 17)), Some("seconds"), "Event time to alert acknowledged by the broker";
    /// Consumer lag per partition, from librdkafka statistics.
    consumer_lag: Family<PartitionLabels, Gauge> = Family::default(), None, "Consumer lag in messages per partition (librdkafka statistics)";
    /// Messages acknowledged by the broker, per output topic.
    messages_produced: Family<TopicLabel, Counter> = Family::default(), None, "Messages acknowledged by the broker, per topic";
    /// Delivery failures (retriable ones are retried with backoff; offsets wait for the retry).
    producer_errors: Counter = Counter::default(), None, "Delivery failures (retriable ones are retried with backoff)";
    /// Errors reported by librdkafka clients (broker down, auth failure, …).
    kafka_errors: Counter = Counter::default(), None, "Errors reported by librdkafka clients";
    /// Non-critical outputs dropped after a permanent delivery failure (`engine.noncritical_output_failure = "drop"`).
    outputs_dropped: Family<TopicLabel, Counter> = Family::default(), None, "Non-critical outputs (shadow scores, drift messages, model events) dropped after a permanent delivery failure, per topic";
    /// Dead letters whose payload was cut to fit (`truncated`) or left out (`omitted`).
    dead_letters_reduced: Family<ReasonLabel, Counter> = Family::default(), None, "Dead letters whose event payload was truncated or omitted to fit the topic (headers give size and digest)";
    /// Scored events whose event time is out of bounds (`future`, `too_old`), kept out of drift windows.
    event_time_out_of_bounds: Family<ReasonLabel, Counter> = Family::default(), None, "Events whose event time is out of bounds (future, too_old); kept out of drift windows";
    /// Age of the oldest output not yet acknowledged by the broker, per worker (0: none in flight).
    output_oldest_unacked_age: Family<WorkerLabel, FloatGauge> = Family::default(), Some("seconds"), "Age of the oldest output not yet acknowledged by the broker, per worker (0 when none is in flight)";
    /// Messages between the group's committed offset (as the broker has it) and the partition end.
    consumer_committed_lag: Family<PartitionLabels, Gauge> = Family::default(), None, "Messages between the group's committed offset on the broker and the partition end";
    /// Offsets handed to the consumer for commit (events whose outputs are all acknowledged).
    events_committable: Counter = Counter::default(), None, "Events whose outputs are all acknowledged and whose offsets were stored for commit";
    /// 1 for the loaded model's name and version.
    model_info: Family<ModelLabels, Gauge> = Family::default(), None, "The loaded model (value 1)";
    /// 1 when the engine is connected and has a model.
    ready: Gauge = Gauge::default(), None, "1 when connected to Kafka with a model loaded";
    /// Shown drift status per feature after hysteresis: 0 green, 1 amber, 2 red.
    feature_drift_status: Family<FeatureLabel, FloatGauge> = Family::default(), None, "Shown drift status per feature after hysteresis: 0 green, 1 amber, 2 red";
    /// PSI per feature in the last closed window.
    feature_drift_psi: Family<FeatureLabel, FloatGauge> = Family::default(), None, "PSI per feature in the last closed window";
    /// KL(current ‖ reference) per feature in the last closed window.
    feature_drift_kl: Family<FeatureLabel, FloatGauge> = Family::default(), None, "KL(current || reference) per feature in the last closed window, nats";
    /// Jensen–Shannon distance per feature in the last closed window.
    feature_drift_js: Family<FeatureLabel, FloatGauge> = Family::default(), None, "Jensen-Shannon distance (base 2) per feature in the last closed window";
    /// KS D per numeric feature in the last closed window.
    feature_drift_ks: Family<FeatureLabel, FloatGauge> = Family::default(), None, "KS statistic D per numeric feature in the last closed window";
    /// χ² p-value (BH-adjusted) per feature in the last closed window.
    feature_drift_chi2_p_value: Family<FeatureLabel, FloatGauge> = Family::default(), None, "Chi-square p-value (BH-adjusted) per feature in the last closed window";
    /// Wasserstein-1 over the reference std per numeric feature in the last closed window.
    feature_drift_wasserstein: Family<FeatureLabel, FloatGauge> = Family::default(), None, "Wasserstein-1 over the reference std per numeric feature in the last closed window";
    /// Sampled events in the last closed window.
    drift_window_samples: Gauge = Gauge::default(), None, "Sampled events in the last closed drift window";
    /// Outlier rate in the last closed window.
    drift_outlier_rate: FloatGauge = FloatGauge::default(), None, "Outlier rate in the last closed drift window";
    /// Fraud-alert rate in the last closed window.
    drift_alert_rate: FloatGauge = FloatGauge::default(), None, "Fraud-alert rate in the last closed drift window";
    /// Drift windows closed.
    drift_windows_closed: Counter = Counter::default(), None, "Drift windows closed";
    /// Sampled events that missed a closed window.
    drift_late_events: Counter = Counter::default(), None, "Sampled events that arrived after one of their windows had closed";
    /// Group aggregation: pane profiles this instance published to `drift-profiles`.
    drift_panes_published: Counter = Counter::default(), None, "Pane profiles published to the drift-profiles topic (drift.aggregation = group)";
    /// Group aggregation: bytes this instance published to `drift-profiles` (panes and progress).
    drift_profile_bytes: Counter = Counter::default(), None, "Bytes published to the drift-profiles topic (panes and progress)";
    /// 1 while this instance is its group's drift aggregator (group aggregation).
    drift_aggregator: Gauge = Gauge::default(), None, "1 while this instance is the group's drift aggregator (drift.aggregation = group), else 0";
    /// Records the aggregator read from `drift-profiles`, by outcome.
    drift_profiles_read: Family<OutcomeLabel, Counter> = Family::default(), None, "Drift-profiles records read by the aggregator, by outcome (accepted, replaced, duplicate, late, other_model, state, invalid)";
    /// Partitions the aggregator's last window closed without (their owner silent).
    drift_missing_partitions: Gauge = Gauge::default(), None, "Partitions the last group-aggregated window closed without (owner silent for drift.instance_timeout_ms)";
    /// Drift status changes, by new status.
    drift_status_changes: Family<StatusLabel, Counter> = Family::default(), None, "Drift status changes by new status";
    /// Retrain requests published.
    retrain_requests: Counter = Counter::default(), None, "Retrain requests published";
    /// Pipelines swapped in by hot reload.
    model_reloads: Counter = Counter::default(), None, "Pipelines swapped in by hot reload";
    /// Events scored by the candidate too (shadow scoring).
    shadow_scored: Counter = Counter::default(), None, "Events also scored by the candidate model";
    /// Shadow decisions by agreement with production (`agree="true"|"false"`).
    shadow_agreement: Family<AgreeLabel, Counter> = Family::default(), None, "Shadow decisions by agreement with production";
    /// Shadow-scored events the candidate would alert on.
    shadow_alerts: Counter = Counter::default(), None, "Shadow-scored events the candidate would alert on";
    /// The candidate's decode+score time per shadow-scored event.
    shadow_score_latency: Histogram = Histogram::new(exponential_buckets(2.5e-7, 2.0, 15)), Some("seconds"), "Candidate decode and score time per shadow-scored event";
    /// Automatic rollbacks by the guard.
    model_rollbacks: Counter = Counter::default(), None, "Automatic rollbacks of a newly promoted model by the guard";
    /// Registry production versions refused (unloadable, or not fitting the live events).
    model_reload_failures: Counter = Counter::default(), None, "Registry production versions refused (unloadable or not fitting the live events)";
    /// The loaded model's outlier rate on its training data (the trained false-positive rate).
    model_trained_outlier_rate: FloatGauge = FloatGauge::default(), None, "Outlier rate of the loaded model on its training data";
    /// The loaded model's fraud-alert rate on its training data.
    model_trained_alert_rate: FloatGauge = FloatGauge::default(), None, "Fraud-alert rate of the loaded model on its training data";
    /// Labels read from the labels topic, by outcome.
    labels: Family<OutcomeLabel, Counter> = Family::default(), None, "Labels read, by outcome (matched, not_retained, duplicate, invalid)";
    /// Label time − event time of matched labels; 1 min … ~45 days.
    label_delay: Histogram = Histogram::new(exponential_buckets(60.0, 2.0, 17)), Some("seconds"), "Label time minus event time of labels joined to their scores";
    /// Retained-score records read by the performance thread (the start-up replay included).
    retained_scores_read: Counter = Counter::default(), None, "Retained-score records read by the performance thread, the start-up replay included";
    /// Scores in memory waiting for their labels.
    scores_retained: Gauge = Gauge::default(), None, "Scores in memory waiting for their labels";
    /// Retained scores dropped (retention or `performance.max_retained`) before their label came.
    retained_scores_evicted: Counter = Counter::default(), None, "Retained scores dropped before their label came (retention or max_retained)";
    /// The last closed window's performance per version, role, kind (`realised`, `estimated`, `cohort`), metric and bound.
    model_performance: Family<PerformanceLabels, FloatGauge> = Family::default(), None, "Model performance in the last closed window, by version, role, kind (realised, estimated or cohort), metric and bound (value, lower, upper)";
    /// Cohort reports published (one per version and matured event-time window).
    performance_cohorts_closed: Counter = Counter::default(), None, "Cohort reports published (one per version and event-time window whose labels matured)";
    /// Cohorts waiting for their labels to mature.
    performance_cohorts_open: Gauge = Gauge::default(), None, "Event-time cohorts open, waiting for their labels to mature";
    /// Cohorts dropped unpublished (labels stalled for the retention, or max_retained rows open).
    performance_cohorts_abandoned: Counter = Counter::default(), None, "Cohorts dropped unpublished: labels stalled for retention_hours, or max_retained rows open";
    /// Joined labels written back to the compacted retained-scores topic.
    label_changelog_records: Counter = Counter::default(), None, "Joined labels written back to the retained-scores topic (the join's changelog)";
    /// Consecutive realised windows whose whole interval is below the floor, per version and metric.
    performance_below_floor_windows: Family<FloorLabels, Gauge> = Family::default(), None, "Consecutive realised windows whose whole interval lies below the configured floor";
    /// The configured floors (`performance.precision_floor`, `recall_floor`; 0: off).
    performance_floor: Family<MetricLabel, FloatGauge> = Family::default(), None, "Configured performance floor per metric (0: off)";
    /// Realised performance windows closed.
    performance_windows_closed: Counter = Counter::default(), None, "Realised performance windows closed (one per version)";
    /// Concept drift detected on the labelled error stream.
    concept_drift_detections: Counter = Counter::default(), None, "Concept drift detections on the labelled error stream (DDM)";
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Counters with known label values start at 0, so their series exist from the first scrape
    /// and rate()/increase() work as soon as the first event happens.
    fn start_known_series(&self) {
        for to in ["green", "amber", "red"] {
            let _ = self.drift_status_changes.get_or_create(&StatusLabel { to: to.into() });
        }
        for reason in InvalidReason::ALL {
            let _ = self.events_invalid.get_or_create(&ReasonLabel { reason: reason.as_str().into() });
        }
        for reason in ["future", "too_old"] {
            let _ = self.event_time_out_of_bounds.get_or_create(&ReasonLabel { reason: reason.into() });
        }
        for reason in ["truncated", "omitted"] {
            let _ = self.dead_letters_reduced.get_or_create(&ReasonLabel { reason: reason.into() });
        }
        for outcome in crate::drift::aggregate::Applied::ALL.iter().map(|a| a.as_str()).chain(["invalid"]) {
            let _ = self.drift_profiles_read.get_or_create(&OutcomeLabel { outcome: outcome.into() });
        }
        for o in crate::performance::LabelOutcome::ALL {
            let _ = self.labels.get_or_create(&OutcomeLabel { outcome: o.as_str().into() });
        }
        for agree in ["true", "false"] {
            let _ = self.shadow_agreement.get_or_create(&AgreeLabel { agree: agree.into() });
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Sums every sample of a metric family in an exposition (e.g. a counter over all its labels).
pub fn sum_of(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Quantile `q` of a histogram in an exposition, interpolated within buckets exactly as
/// PromQL's `histogram_quantile` does. `name` is the family name without `_bucket`.
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|&(_, c)| c >= rank)?;
    let (upper, count) = buckets[i];
    let (lower, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    if upper.is_infinite() {
        return Some(lower);
    }
    Some(lower + (upper - lower) * (rank - below) / (count - below).max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_like_promql() {
        let text = "x_bucket{le=\"1.0\"} 10\nx_bucket{le=\"2.0\"} 20\nx_bucket{le=\"+Inf\"} 20\n";
        assert_eq!(histogram_quantile(text, "x", 0.5), Some(1.0));
        assert_eq!(histogram_quantile(text, "x", 0.75), Some(1.5));
        assert_eq!(histogram_quantile(text, "x", 0.25), Some(0.5));
        assert_eq!(histogram_quantile("", "x", 0.5), None);
        assert_eq!(sum_of("a_total{r=\"x\"} 2\na_total{r=\"y\"} 3\na_totally 9\n", "a_total"), 5);
    }

    use super::*;

    #[test]
    fn the_readme_documents_every_metric_under_its_code_name() {
        let readme = include_str!("../../README.md");
        let m = Metrics::new();
        let text = m.encode();
        for (name, unit, help) in Metrics::TABLE {
            let exported = match unit {
                Some(u) => format!("driftwatch_{name}_{u}"),
                None => format!("driftwatch_{name}"),
            };
            let documented = readme.match_indices(&exported).any(|(i, _)| {
                let rest = &readme[i + exported.len()..];
                ["`", "{", "_total`", "_total{"].iter().any(|end| rest.starts_with(end))
            });
            assert!(documented, "README does not document {exported} ({help})");
            // Label families print nothing until their first series exists.
            if text.contains(&format!("# TYPE {exported} ")) {
                assert!(text.contains(&format!("# HELP {exported} {help}")), "{exported} is not exported as declared:\n{text}");
            }
        }
    }

    #[test]
    fn exposition_has_every_family_with_the_prefix() {
        let m = Metrics::new();
        m.events_invalid.get_or_create(&ReasonLabel { reason: "not_json".into() }).inc();
        m.score_latency.observe(1e-6);
        let text = m.encode();
        for name in [
            "driftwatch_events_consumed_total",
            "driftwatch_events_invalid_total{reason=\"not_json\"} 1",
            "driftwatch_score_latency_seconds_bucket",
            "driftwatch_ready 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        if cfg!(target_os = "linux") {
            for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds ", "process_max_fds ", "process_start_time_seconds "] {
                assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
            }
            assert!(!text.contains("driftwatch_process_"), "process metrics carry their standard names");
        }
    }
}
