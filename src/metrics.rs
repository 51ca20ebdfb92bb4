//! The engine's Prometheus metrics (prometheus-client, OpenMetrics text).
//!
//! Names follow `driftwatch_<name>_<unit>[_total]` in base units. Every metric is documented in
//! the README; `tests/` parse the output with a real Prometheus parser.


use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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

/// Label set for produced messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}

/// Every metric the engine exports.
pub struct Metrics {
    /// The registry they are encoded from.
    pub registry: Registry,
    /// Messages read from the transactions topic.
    pub events_consumed: Counter,
    /// Events decoded and scored.
    pub events_scored: Counter,
    /// Events sent to the dead-letter topic, by reason.
    pub events_invalid: Family<ReasonLabel, Counter>,
    /// Alerts produced because the score passed the threshold.
    pub fraud_alerts: Counter,
    /// Scored events the outlier detector flagged.
    pub outliers: Counter,
    /// Decode + score time per event, sampled (one consumed event in 16).
    pub score_latency: Histogram,
    /// Event time → alert acknowledged by the broker.
    pub end_to_end_latency: Histogram,
    /// Consumer lag per partition, from librdkafka statistics.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Messages acknowledged by the broker, per output topic.
    pub messages_produced: Family<TopicLabel, Counter>,
    /// Delivery failures (each is retried; offsets wait for the retry).
    pub producer_errors: Counter,
    /// Errors reported by librdkafka clients (broker down, auth failure, …).
    pub kafka_errors: Counter,
    /// Offsets handed to the consumer for commit (events whose outputs are all acknowledged).
    pub events_committable: Counter,
    /// 1 for the loaded model's name and version.
    pub model_info: Family<ModelLabels, Gauge>,
    /// 1 when the engine is connected and has a model.
    pub ready: Gauge,
    /// Shown drift status per feature after hysteresis: 0 green, 1 amber, 2 red.
    pub drift_status: Family<FeatureLabel, FloatGauge>,
    /// PSI per feature in the last closed window.
    pub drift_psi: Family<FeatureLabel, FloatGauge>,
    /// KL(current ‖ reference) per feature in the last closed window.
    pub drift_kl: Family<FeatureLabel, FloatGauge>,
    /// Jensen–Shannon distance per feature in the last closed window.
    pub drift_js: Family<FeatureLabel, FloatGauge>,
    /// KS D per numeric feature in the last closed window.
    pub drift_ks: Family<FeatureLabel, FloatGauge>,
    /// χ² p-value (BH-adjusted) per feature in the last closed window.
    pub drift_chi2_p: Family<FeatureLabel, FloatGauge>,
    /// Wasserstein-1 over the reference std per numeric feature in the last closed window.
    pub drift_wasserstein: Family<FeatureLabel, FloatGauge>,
    /// Sampled events in the last closed window.
    pub drift_window_samples: Gauge,
    /// Outlier rate in the last closed window.
    pub drift_outlier_rate: FloatGauge,
    /// Fraud-alert rate in the last closed window.
    pub drift_alert_rate: FloatGauge,
    /// Drift windows closed.
    pub drift_windows_closed: Counter,
    /// Sampled events that missed a closed window.
    pub drift_late_events: Counter,
    /// Drift status changes, by new status.
    pub drift_status_changes: Family<StatusLabel, Counter>,
    /// Retrain requests published.
    pub retrain_requests: Counter,
    /// Events scored by the candidate too (shadow scoring).
    pub shadow_scored: Counter,
    /// Shadow decisions by agreement with production (`agree="true"|"false"`).
    pub shadow_agreement: Family<AgreeLabel, Counter>,
    /// Shadow-scored events the candidate would alert on.
    pub shadow_alerts: Counter,
    /// The candidate's decode+score time per shadow-scored event.
    pub shadow_latency: Histogram,
    /// Automatic rollbacks by the guard.
    pub model_rollbacks: Counter,
    /// Pipelines swapped in by hot reload.
    pub model_reloads: Counter,
    /// Registry production versions refused (unloadable, or not fitting the live events).
    pub model_reload_failures: Counter,
    /// The loaded model's outlier rate on its training data (the trained false-positive rate).
    pub trained_outlier_rate: FloatGauge,
    /// The loaded model's fraud-alert rate on its training data.
    pub trained_alert_rate: FloatGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("driftwatch");
        let m = Metrics {
            registry: Registry::default(),
            events_consumed: Counter::default(),
            events_scored: Counter::default(),
            events_invalid: Family::default(),
            fraud_alerts: Counter::default(),
            outliers: Counter::default(),
            // 250 ns … ~4 ms
            score_latency: Histogram::new(exponential_buckets(2.5e-7, 2.0, 15)),
            // 1 ms … ~65 s
            end_to_end_latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            consumer_lag: Family::default(),
            messages_produced: Family::default(),
            producer_errors: Counter::default(),
            kafka_errors: Counter::default(),
            events_committable: Counter::default(),
            model_info: Family::default(),
            ready: Gauge::default(),
            drift_status: Family::default(),
            drift_psi: Family::default(),
            drift_kl: Family::default(),
            drift_js: Family::default(),
            drift_ks: Family::default(),
            drift_chi2_p: Family::default(),
            drift_wasserstein: Family::default(),
            drift_window_samples: Gauge::default(),
            drift_outlier_rate: FloatGauge::default(),
            drift_alert_rate: FloatGauge::default(),
            drift_windows_closed: Counter::default(),
            drift_late_events: Counter::default(),
            drift_status_changes: Family::default(),
            retrain_requests: Counter::default(),
            shadow_scored: Counter::default(),
            shadow_agreement: Family::default(),
            shadow_alerts: Counter::default(),
            shadow_latency: Histogram::new(exponential_buckets(2.5e-7, 2.0, 15)),
            model_rollbacks: Counter::default(),
            model_reloads: Counter::default(),
            model_reload_failures: Counter::default(),
            trained_outlier_rate: FloatGauge::default(),
            trained_alert_rate: FloatGauge::default(),
        };
        registry.register("events_consumed", "Messages read from the transactions topic", m.events_consumed.clone());
        registry.register("events_scored", "Events decoded and scored", m.events_scored.clone());
        registry.register("events_invalid", "Events sent to the dead-letter topic, by reason", m.events_invalid.clone());
        registry.register("fraud_alerts", "Transactions whose fraud score reached the threshold", m.fraud_alerts.clone());
        registry.register("outliers", "Scored transactions flagged by the outlier detector", m.outliers.clone());
        registry.register_with_unit(
            "score_latency",
            "Decode and score time per event (one consumed event in 16 is timed)",
            prometheus_client::registry::Unit::Seconds,
            m.score_latency.clone(),
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "Event time to alert acknowledged by the broker",
            prometheus_client::registry::Unit::Seconds,
            m.end_to_end_latency.clone(),
        );
        registry.register("consumer_lag", "Consumer lag in messages per partition (librdkafka statistics)", m.consumer_lag.clone());
        registry.register("messages_produced", "Messages acknowledged by the broker, per topic", m.messages_produced.clone());
        registry.register("producer_errors", "Delivery failures (each is retried)", m.producer_errors.clone());
        registry.register("kafka_errors", "Errors reported by librdkafka clients", m.kafka_errors.clone());
        registry.register("events_committable", "Events whose outputs are all acknowledged and whose offsets were stored for commit", m.events_committable.clone());
        registry.register("model_info", "The loaded model (value 1)", m.model_info.clone());
        registry.register("ready", "1 when connected to Kafka with a model loaded", m.ready.clone());
        registry.register("feature_drift_status", "Shown drift status per feature after hysteresis: 0 green, 1 amber, 2 red", m.drift_status.clone());
        registry.register("feature_drift_psi", "PSI per feature in the last closed window", m.drift_psi.clone());
        registry.register("feature_drift_kl", "KL(current || reference) per feature in the last closed window, nats", m.drift_kl.clone());
        registry.register("feature_drift_js", "Jensen-Shannon distance (base 2) per feature in the last closed window", m.drift_js.clone());
        registry.register("feature_drift_ks", "KS statistic D per numeric feature in the last closed window", m.drift_ks.clone());
        registry.register("feature_drift_chi2_p_value", "Chi-square p-value (BH-adjusted) per feature in the last closed window", m.drift_chi2_p.clone());
        registry.register("feature_drift_wasserstein", "Wasserstein-1 over the reference std per numeric feature in the last closed window", m.drift_wasserstein.clone());
        registry.register("drift_window_samples", "Sampled events in the last closed drift window", m.drift_window_samples.clone());
        registry.register("drift_outlier_rate", "Outlier rate in the last closed drift window", m.drift_outlier_rate.clone());
        registry.register("drift_alert_rate", "Fraud-alert rate in the last closed drift window", m.drift_alert_rate.clone());
        registry.register("drift_windows_closed", "Drift windows closed", m.drift_windows_closed.clone());
        registry.register("drift_late_events", "Sampled events that arrived after one of their windows had closed", m.drift_late_events.clone());
        registry.register("drift_status_changes", "Drift status changes by new status", m.drift_status_changes.clone());
        registry.register("retrain_requests", "Retrain requests published", m.retrain_requests.clone());
        registry.register("model_reloads", "Pipelines swapped in by hot reload", m.model_reloads.clone());
        registry.register("shadow_scored", "Events also scored by the candidate model", m.shadow_scored.clone());
        registry.register("shadow_agreement", "Shadow decisions by agreement with production", m.shadow_agreement.clone());
        registry.register("shadow_alerts", "Shadow-scored events the candidate would alert on", m.shadow_alerts.clone());
        registry.register_with_unit("shadow_score_latency", "Candidate decode and score time per shadow-scored event", prometheus_client::registry::Unit::Seconds, m.shadow_latency.clone());
        registry.register("model_rollbacks", "Automatic rollbacks of a newly promoted model by the guard", m.model_rollbacks.clone());
        registry.register("model_reload_failures", "Registry production versions refused (unloadable or not fitting the live events)", m.model_reload_failures.clone());
        registry.register("model_trained_outlier_rate", "Outlier rate of the loaded model on its training data", m.trained_outlier_rate.clone());
        registry.register("model_trained_alert_rate", "Fraud-alert rate of the loaded model on its training data", m.trained_alert_rate.clone());
        registry.register_collector(Box::new(ProcessCollector));
        // Counters with known label values start at 0, so their series exist from the first
        // scrape and rate()/increase() work as soon as the first event happens.
        for to in ["green", "amber", "red"] {
            let _ = m.drift_status_changes.get_or_create(&StatusLabel { to: to.into() });
        }
        for reason in ["not_json", "not_object", "wrong_type", "missing_field", "bad_timestamp", "oversized"] {
            let _ = m.events_invalid.get_or_create(&ReasonLabel { reason: reason.into() });
        }
        for agree in ["true", "false"] {
            let _ = m.shadow_agreement.get_or_create(&AgreeLabel { agree: agree.into() });
        }
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The engine's own process metrics, read from /proc at scrape time (Linux; absent elsewhere).
#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::registry::Unit;
        let Some(p) = read_process() else { return Ok(()) };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor("process_cpu", "User and system CPU time of the engine process", Some(&Unit::Seconds), cpu.metric_type())?)?;
        for (name, help, unit, value) in [
            ("process_resident_memory", "Resident memory of the engine process", Some(Unit::Bytes), p.rss_bytes),
            ("process_virtual_memory", "Virtual memory of the engine process", Some(Unit::Bytes), p.vsize_bytes),
            ("process_open_fds", "Open file descriptors of the engine process", None, p.open_fds),
            ("process_threads", "Threads of the engine process", None, p.threads),
            ("process_start_time", "Start time of the engine process since the Unix epoch", Some(Unit::Seconds), p.start_time_seconds),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    open_fds: f64,
    threads: f64,
    start_time_seconds: f64,
}

fn read_process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    // Linux reports CPU time in clock ticks (USER_HZ, 100 on every mainstream
    // distribution) and RSS in pages (4 KiB on x86-64 and most arm64 kernels).
    let (ticks, page) = (100.0, 4096.0);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    let boot = now - uptime;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        threads: field(20)?,
        start_time_seconds: boot + field(22)? / ticks,
        vsize_bytes: field(23)?,
        rss_bytes: field(24)? * page,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0),
    })
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
            assert!(text.contains("driftwatch_process_cpu_seconds_total "), "{text}");
            assert!(text.contains("driftwatch_process_resident_memory_bytes "));
        }
    }
}
