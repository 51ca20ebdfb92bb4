//! Typed engine configuration: `config/default.toml` (or `--config FILE`) plus environment
//! overrides, validated at start-up.
//!
//! Environment variables are `DRIFTWATCH_<SECTION>__<KEY>`, e.g. `DRIFTWATCH_KAFKA__BROKERS`
//! or `DRIFTWATCH_MODEL__PATH`; in the librdkafka pass-through maps an underscore in the key
//! stands for a dot (`DRIFTWATCH_KAFKA__OPTIONS__SECURITY_PROTOCOL=SASL_SSL`). Unknown keys,
//! in the file or the environment, are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Sections that environment variables may set.
const SECTIONS: [&str; 8] = ["kafka", "model", "engine", "metrics", "log", "drift", "telemetry", "performance"];

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Brokers, topics and client options.
    pub kafka: KafkaConfig,
    /// The scoring pipeline.
    pub model: ModelConfig,
    /// Engine loop settings.
    pub engine: EngineSettings,
    /// The HTTP endpoint for /metrics, /healthz and /readyz.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Streaming drift detection.
    pub drift: DriftSection,
    /// OpenTelemetry tracing.
    pub telemetry: crate::observe::traces::TelemetryConfig,
    /// Model performance on delayed fraud labels (realised, estimated, concept drift).
    pub performance: crate::performance::PerformanceSettings,
}

/// Streaming drift detection settings (`[drift]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSection {
    /// Profile live traffic and compare it with the model's training reference.
    pub enabled: bool,
    /// Fraction of transactions profiled (decided by a hash of the transaction id).
    pub sample_fraction: f64,
    /// Window length, event time.
    pub window_seconds: u64,
    /// Distance between window starts.
    pub slide_seconds: u64,
    /// How late an event may arrive (behind the newest event time) and still count.
    pub lateness_seconds: u64,
    /// Additive smoothing of bin proportions.
    pub smoothing: f64,
    /// A window with fewer samples is insufficient data, never drift.
    pub min_samples: u64,
    /// Default status rule: metric (psi, kl, js, ks, wasserstein_normalized) and thresholds.
    pub rule: crate::drift::StatusRule,
    /// Per-feature rules, by feature name.
    pub features: std::collections::BTreeMap<String, crate::drift::StatusRule>,
    /// Hysteresis and retrain requests.
    pub hysteresis: crate::drift::monitor::Hysteresis,
    /// The p-value levels amber and red also need.
    pub significance: crate::drift::Significance,
    /// Who evaluates windows: `local` (each instance its own partitions' events) or `group`
    /// (instances publish pane profiles to `kafka.drift_profiles_topic`; one aggregator per
    /// model, picked by Kafka, evaluates the whole group's windows). See README, *Scale-out*.
    pub aggregation: Aggregation,
    /// `group`: a partition with no event for this long, whose consumer is caught up, is idle:
    /// windows do not wait for it.
    pub idle_partition_ms: u64,
    /// `group`: a partition whose owner has said nothing for this long is not waited for (an
    /// instance that vanished before its partitions moved); windows say they closed without it.
    pub instance_timeout_ms: u64,
    /// `group`: how often each member publishes its partitions' watermarks.
    pub progress_interval_ms: u64,
}

/// Where drift windows are evaluated (`drift.aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Each instance evaluates windows of the partitions it reads (one instance: the whole stream).
    #[default]
    Local,
    /// One aggregator per model evaluates the whole consumer group's panes.
    Group,
}

impl Default for DriftSection {
    fn default() -> Self {
        let d = crate::drift::online::DriftConfig::default();
        DriftSection {
            enabled: true,
            sample_fraction: d.sample_fraction,
            window_seconds: 600,
            slide_seconds: 60,
            lateness_seconds: 30,
            smoothing: d.settings.smoothing,
            min_samples: d.settings.min_samples,
            rule: d.settings.rule,
            features: Default::default(),
            hysteresis: d.hysteresis,
            significance: d.settings.significance,
            aggregation: Aggregation::Local,
            idle_partition_ms: 10_000,
            instance_timeout_ms: 30_000,
            progress_interval_ms: 1_000,
        }
    }
}

impl DriftSection {
    /// The streaming drift configuration.
    pub fn to_config(&self) -> crate::drift::online::DriftConfig {
        let mut c = crate::drift::online::DriftConfig::default();
        c.sample_fraction = self.sample_fraction;
        c.window = crate::profile::window::WindowSpec {
            size_ms: self.window_seconds as i64 * 1000,
            slide_ms: self.slide_seconds as i64 * 1000,
            lateness_ms: self.lateness_seconds as i64 * 1000,
        };
        c.settings.smoothing = self.smoothing;
        c.settings.min_samples = self.min_samples;
        c.settings.rule = self.rule;
        c.settings.feature_rules = self.features.clone();
        c.hysteresis = self.hysteresis;
        c.settings.significance = self.significance;
        c
    }
}

/// Kafka connection, topics and librdkafka options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Consumer group; run more instances with the same group to scale out.
    pub group_id: String,
    /// This instance's stable identity in the group (static membership, KIP-345): each worker
    /// joins as `group.instance.id = <instance_id>-<worker>`, so a restarted instance gets its
    /// partitions back at once instead of after `session.timeout.ms`, and with exactly-once its
    /// `transactional.id` carries it (several instances per group). Unique per running instance;
    /// empty: dynamic membership.
    pub instance_id: String,
    /// Topic producers write transactions to.
    pub transactions_topic: String,
    /// Topic fraud alerts are written to (keyed by account).
    pub alerts_topic: String,
    /// Topic invalid events are written to, untouched, with the reason in headers.
    pub dead_letter_topic: String,
    /// Topic every closed drift window's report is written to.
    pub drift_reports_topic: String,
    /// Topic every change of a feature's drift status is written to.
    pub drift_alerts_topic: String,
    /// Topic retrain requests are written to.
    pub retrain_requests_topic: String,
    /// Topic the engine's automatic rollbacks are published to (stage changes, as `driftwatch model`).
    pub model_events_topic: String,
    /// Topic a candidate's shadow decisions are written to.
    pub shadow_scores_topic: String,
    /// Topic fraud labels are read from (with `performance.enabled`).
    pub labels_topic: String,
    /// Compacted topic the scores waiting for their labels are kept in (keyed by transaction id).
    pub retained_scores_topic: String,
    /// Topic performance reports are written to.
    pub performance_reports_topic: String,
    /// Single-partition topic of pane profiles and aggregator checkpoints (`drift.aggregation = "group"`).
    pub drift_profiles_topic: String,
    /// Create missing topics at start (else: fail, naming the missing topic).
    pub create_topics: bool,
    /// Partitions of topics the engine creates.
    pub partitions: i32,
    /// Replication factor of topics the engine creates.
    pub replication_factor: i32,
    /// Where a new consumer group starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// librdkafka properties for every client (TLS, SASL, …).
    pub options: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer_options: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:19092".into(),
            group_id: "driftwatch".into(),
            instance_id: String::new(),
            transactions_topic: "transactions".into(),
            alerts_topic: "fraud-alerts".into(),
            dead_letter_topic: "transactions.dlq".into(),
            drift_reports_topic: "drift-reports".into(),
            drift_alerts_topic: "drift-alerts".into(),
            retrain_requests_topic: "retrain-requests".into(),
            model_events_topic: "model-events".into(),
            shadow_scores_topic: "shadow-scores".into(),
            labels_topic: "labels".into(),
            retained_scores_topic: "retained-scores".into(),
            performance_reports_topic: "performance-reports".into(),
            drift_profiles_topic: "drift-profiles".into(),
            create_topics: true,
            partitions: 4,
            replication_factor: 1,
            auto_offset_reset: "earliest".into(),
            options: BTreeMap::new(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
        }
    }
}

/// The scoring pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Pipeline artifact (from `driftwatch train`).
    pub path: PathBuf,
    /// Overrides the artifact's decision threshold when set.
    pub threshold: Option<f64>,
    /// Also alert on transactions the outlier detector flags.
    pub alert_on_outlier: bool,
    /// Model registry: a directory, or `mlflow:NAME` (MLflow's registered model NAME: alias
    /// `champion` is production, `challenger` is shadow-scored). When set, the engine serves the
    /// registry's production version (instead of `path`) and swaps when it changes (hot reload).
    pub registry: String,
    /// MLflow tracking server for `registry = "mlflow:NAME"` (empty: `MLFLOW_TRACKING_URI`).
    pub mlflow_uri: String,
    /// MLflow experiment where registrations log their runs.
    pub mlflow_experiment: String,
    /// Where artifacts downloaded from MLflow are kept (empty: the system's temporary directory).
    pub mlflow_cache: String,
    /// Model name in the registry (empty: the registry's only model).
    pub registry_name: String,
    /// How often the registry is checked.
    pub registry_poll_ms: u64,
    /// Share of events also scored by the registry's newest candidate (shadow scoring; 0 disables).
    pub shadow_fraction: f64,
    /// After a swap, drift windows the guard watches the new model for (0 disables the guard).
    pub guard_windows: u32,
    /// Rolled back when a window's fraud-alert rate is above this many times its trained rate, or below it divided by this.
    pub guard_alert_rate_factor: f64,
    /// Rolled back when a window's outlier rate exceeds the trained false-positive rate by more than this.
    pub guard_outlier_margin: f64,
    /// Rolled back when the p99 decode+score latency in a window exceeds this (ms).
    pub guard_p99_latency_ms: f64,
    /// Probability that the guard rolls back a healthy version (binomial tests, Bonferroni
    /// over the watched windows).
    pub guard_false_rollback_probability: f64,
    /// Timed events needed before the guard judges the p99 latency.
    pub guard_latency_min_samples: u64,
}

impl ModelConfig {
    /// The MLflow settings of the registry.
    pub fn mlflow(&self) -> crate::model::registry::MlflowSettings {
        crate::model::registry::MlflowSettings { uri: self.mlflow_uri.clone(), experiment: self.mlflow_experiment.clone(), cache: self.mlflow_cache.clone() }
    }

    /// The registry `registry` names (the caller checks it is set).
    pub fn open_registry(&self) -> Result<Box<dyn crate::model::registry::ModelRegistry>, crate::model::registry::RegistryError> {
        crate::model::registry::open(&self.registry, &self.mlflow())
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: "models/demo.json".into(),
            threshold: None,
            alert_on_outlier: true,
            registry: String::new(),
            mlflow_uri: String::new(),
            mlflow_experiment: "driftwatch".into(),
            mlflow_cache: String::new(),
            registry_name: String::new(),
            registry_poll_ms: 2000,
            shadow_fraction: 0.1,
            guard_windows: 3,
            guard_alert_rate_factor: 3.0,
            guard_outlier_margin: 0.03,
            guard_p99_latency_ms: 5.0,
            guard_false_rollback_probability: 0.001,
            guard_latency_min_samples: 1000,
        }
    }
}

/// Engine loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Events larger than this go to the dead-letter topic as `oversized`.
    pub max_event_bytes: usize,
    /// Events per offset batch: offsets are stored once every output of a batch is acknowledged.
    pub batch_size: usize,
    /// How long one poll waits for a message.
    pub poll_timeout_ms: u64,
    /// How long shutdown waits for outstanding deliveries before giving up (offsets stay uncommitted).
    pub shutdown_timeout_ms: u64,
    /// librdkafka statistics interval (consumer lag metrics); 0 disables.
    pub statistics_interval_ms: u64,
    /// Consumer-group members in this process, each a thread with its own consumer, producer
    /// and offsets (Kafka spreads partitions over them); 0 = one per available core.
    pub workers: usize,
    /// When the model has no timestamp column, use the Kafka message timestamp as the event
    /// time (drift windows, alerts' `event_time`); false: such events are scored but not windowed.
    pub event_time_from_kafka: bool,
    /// `at_least_once` (offsets committed after outputs are acknowledged) or `exactly_once`
    /// (outputs and consumed offsets committed in one Kafka transaction).
    pub delivery: Delivery,
    /// With `exactly_once`: how often the open transaction is committed.
    pub transaction_interval_ms: u64,
    /// A dead letter's key, headers and payload fit in this many bytes: a larger event's payload
    /// is truncated (headers give its size and SHA-256). Keep it below the producer's
    /// `message.max.bytes` (librdkafka: 1,000,000) and the dead-letter topic's `max.message.bytes`.
    pub dead_letter_max_bytes: usize,
    /// Event times more than this far ahead of the wall clock are out of bounds (0: no bound).
    pub event_time_max_future_ms: u64,
    /// Event times more than this far behind the Kafka message timestamp (else the wall clock)
    /// are out of bounds (0: no bound).
    pub event_time_max_age_ms: u64,
    /// What happens to an event whose time is out of bounds: `score` (scored and alerted as
    /// usual, kept out of drift windows, counted) or `dead_letter`.
    pub event_time_out_of_bounds: OutOfBounds,
    /// After a permanent delivery failure on a non-critical output (shadow scores, drift
    /// reports/alerts, retrain requests, model events): `drop` it (counted) or `stop` the engine.
    /// Alerts and dead letters always stop the engine (exit 5) without committing past them.
    pub noncritical_output_failure: NoncriticalFailure,
    /// Longest wait between two retries of a failed delivery (the wait doubles from 100 ms).
    pub retry_backoff_max_ms: u64,
}

/// What happens to an event whose time is out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfBounds {
    /// Scored and alerted as usual; kept out of drift windows; counted.
    #[default]
    Score,
    /// Dead-lettered with reason `event_time_out_of_bounds`.
    DeadLetter,
}

/// What happens after a permanent delivery failure on a non-critical output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoncriticalFailure {
    /// Dropped and counted (`driftwatch_outputs_dropped_total`); scoring goes on.
    #[default]
    Drop,
    /// The engine stops (exit 5), as for alerts.
    Stop,
}

/// Delivery guarantee of the engine's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets are committed only after every output of the events before them is
    /// acknowledged: nothing is lost; a crash can repeat outputs.
    #[default]
    AtLeastOnce,
    /// A transactional producer per member commits outputs and consumed offsets atomically;
    /// consumers reading with `isolation.level = read_committed` see each output once.
    ExactlyOnce,
}

impl EngineSettings {
    /// `workers`, with 0 resolved to the number of available cores.
    pub fn effective_workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_event_bytes: 64 * 1024,
            batch_size: 2000,
            poll_timeout_ms: 100,
            shutdown_timeout_ms: 30_000,
            statistics_interval_ms: 5000,
            workers: 0,
            event_time_from_kafka: true,
            delivery: Delivery::AtLeastOnce,
            transaction_interval_ms: 100,
            dead_letter_max_bytes: 900_000,
            event_time_max_future_ms: 3_600_000,
            event_time_max_age_ms: 0,
            event_time_out_of_bounds: OutOfBounds::Score,
            noncritical_output_failure: NoncriticalFailure::Drop,
            retry_backoff_max_ms: 10_000,
        }
    }
}

/// HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address for /metrics, /healthz, /readyz; empty disables the endpoint.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: "127.0.0.1:9464".into() }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// Level filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "human".into(), level: "info,rdkafka=warn".into() }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is missing, unparsable, or has unknown keys or wrong types.
    #[error("configuration error: {0}")]
    Load(String),
    /// A value is out of range.
    #[error("configuration error: `{key}` {problem}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A librdkafka option names a file (CA, certificate, key, keystore) that cannot be read.
    #[error("configuration error: `{key}` = `{path}` cannot be read: {source}")]
    UnreadableFile {
        /// The option, e.g. `kafka.options.ssl.ca.location`.
        key: String,
        /// The path given.
        path: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
}

impl Config {
    /// Loads `file` (required when given) over the defaults, then `DRIFTWATCH_…` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("DRIFTWATCH_")?;
                let section = rest.split("__").next()?.to_ascii_lowercase();
                SECTIONS.contains(&section.as_str()).then(|| (rest.to_string(), v))
            })
            .collect();
        for (k, v) in vars {
            let path: Vec<String> = k.split("__").map(str::to_ascii_lowercase).collect();
            figment = figment.merge(EnvVar { name: format!("DRIFTWATCH_{k}"), value: env_entry(path, v) });
        }
        let config: Config = figment.extract().map_err(|e| ConfigError::Load(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| Err(ConfigError::Invalid { key, problem: problem.to_string() });
        let k = &self.kafka;
        // TLS files are checked here, where the error can name the option and the path;
        // librdkafka would only say "ssl.ca.location failed: … system lib".
        for (section, map) in [("options", &k.options), ("consumer_options", &k.consumer_options), ("producer_options", &k.producer_options)] {
            for (key, path) in map {
                if key.ends_with(".location") && path != "probe" {
                    if let Err(source) = std::fs::metadata(path) {
                        return Err(ConfigError::UnreadableFile { key: format!("kafka.{section}.{key}"), path: path.clone(), source });
                    }
                }
            }
        }
        if k.brokers.trim().is_empty() {
            return invalid("kafka.brokers", "must not be empty");
        }
        if k.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "must not be empty");
        }
        if !k.instance_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) || k.instance_id.len() > 200 {
            return invalid("kafka.instance_id", "letters, digits, '.', '_' and '-' only (at most 200), or empty");
        }
        let topics = [&k.transactions_topic, &k.alerts_topic, &k.dead_letter_topic, &k.drift_reports_topic, &k.drift_alerts_topic, &k.retrain_requests_topic];
        if topics.iter().any(|t| t.trim().is_empty()) {
            return invalid("kafka.*_topic", "topic names must not be empty");
        }
        if k.transactions_topic == k.alerts_topic || k.transactions_topic == k.dead_letter_topic {
            return invalid("kafka.transactions_topic", "must differ from the alerts and dead-letter topics (the engine would read its own output)");
        }
        if k.partitions < 1 || k.replication_factor < 1 {
            return invalid("kafka.partitions", "partitions and replication_factor must be ≥ 1");
        }
        if !matches!(k.auto_offset_reset.as_str(), "earliest" | "latest") {
            return invalid("kafka.auto_offset_reset", "must be `earliest` or `latest`");
        }
        for (key, _) in k.consumer_options.iter().chain(&k.producer_options).chain(&k.options) {
            if matches!(key.as_str(), "enable.auto.offset.store" | "enable.idempotence" | "group.id" | "bootstrap.servers" | "group.instance.id" | "transactional.id") {
                return Err(ConfigError::Invalid {
                    key: "kafka.options",
                    problem: format!("`{key}` is set by driftwatch (it carries the delivery guarantee); use the dedicated setting"),
                });
            }
        }
        if let Some(t) = self.model.threshold {
            if !(0.0..=1.0).contains(&t) {
                return invalid("model.threshold", "must be within [0, 1]");
            }
        }
        if !(self.model.guard_alert_rate_factor > 1.0) || !(self.model.guard_outlier_margin >= 0.0) || !(self.model.guard_p99_latency_ms > 0.0) {
            return invalid("model.guard_alert_rate_factor", "needs factor > 1, margin ≥ 0 and a positive latency limit");
        }
        if !(self.model.guard_false_rollback_probability > 0.0 && self.model.guard_false_rollback_probability < 1.0) {
            return invalid("model.guard_false_rollback_probability", "must be within (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.model.shadow_fraction) {
            return invalid("model.shadow_fraction", "must be within [0, 1]");
        }
        if self.model.registry_poll_ms < 100 {
            return invalid("model.registry_poll_ms", "must be at least 100");
        }
        if let Some(name) = self.model.registry.strip_prefix(crate::model::registry::MLFLOW_PREFIX) {
            if name.is_empty() {
                return invalid("model.registry", "`mlflow:` needs the registered model's name: mlflow:NAME");
            }
            match self.model.mlflow().tracking_uri() {
                None => return invalid("model.mlflow_uri", "needed for an MLflow registry (or set MLFLOW_TRACKING_URI)"),
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return invalid("model.mlflow_uri", "must be the tracking server's http:// or https:// address")
                }
                Some(_) => {}
            }
        }
        if self.engine.workers > 64 {
            return invalid("engine.workers", "must be 0 (one per core) to 64");
        }
        if self.engine.batch_size == 0 || self.engine.max_event_bytes == 0 {
            return invalid("engine.batch_size", "batch_size and max_event_bytes must be ≥ 1");
        }
        let producer_max = k.producer_options.get("message.max.bytes").or_else(|| k.options.get("message.max.bytes")).and_then(|v| v.parse::<usize>().ok()).unwrap_or(1_000_000);
        if self.engine.dead_letter_max_bytes < 4096 || self.engine.dead_letter_max_bytes > producer_max {
            return Err(ConfigError::Invalid {
                key: "engine.dead_letter_max_bytes",
                problem: format!("must be between 4096 and the producer's message.max.bytes ({producer_max})"),
            });
        }
        if self.engine.retry_backoff_max_ms < 100 {
            return invalid("engine.retry_backoff_max_ms", "must be at least 100");
        }
        let d = &self.drift;
        if !(0.0..=1.0).contains(&d.sample_fraction) {
            return invalid("drift.sample_fraction", "must be within [0, 1]");
        }
        if d.window_seconds == 0 || d.slide_seconds == 0 || d.window_seconds % d.slide_seconds != 0 {
            return invalid("drift.window_seconds", "window and slide must be positive, the window a multiple of the slide");
        }
        if !(d.smoothing > 0.0) {
            return invalid("drift.smoothing", "must be positive");
        }
        for r in std::iter::once(&d.rule).chain(d.features.values()) {
            if !(r.amber <= r.red) {
                return invalid("drift.rule", "amber must be ≤ red");
            }
        }
        let h = &d.hysteresis;
        if !(h.mean_days_between_false_alarms > 0.0) || !(h.allowance > 1.0) || !(h.retrain_after_windows >= 1.0) {
            return invalid("drift.hysteresis", "needs mean_days_between_false_alarms > 0, allowance > 1 (the no-drift mean of the evidence is 1) and retrain_after_windows ≥ 1");
        }
        let sig = &d.significance;
        if !(0.0 < sig.red && sig.red <= sig.amber && sig.amber < 1.0) {
            return invalid("drift.significance", "needs 0 < red ≤ amber < 1");
        }
        for r in std::iter::once(&d.rule).chain(d.features.values()) {
            if r.metric == crate::drift::StatusMetric::ErrorRate {
                return invalid("drift.rule", "`error_rate` is the concept-drift alerts' metric, not a feature rule's");
            }
        }
        if d.aggregation == Aggregation::Group {
            if d.progress_interval_ms == 0 || d.idle_partition_ms < d.progress_interval_ms || d.instance_timeout_ms < 2 * d.progress_interval_ms {
                return invalid("drift.instance_timeout_ms", "group aggregation needs progress_interval_ms > 0, idle_partition_ms ≥ progress_interval_ms and instance_timeout_ms ≥ 2 × progress_interval_ms");
            }
            if k.drift_profiles_topic.trim().is_empty() || k.drift_profiles_topic == k.transactions_topic {
                return invalid("kafka.drift_profiles_topic", "must be a topic of its own");
            }
        }
        if let Err((key, problem)) = self.performance.validate() {
            return invalid(key, problem);
        }
        if self.performance.enabled {
            let own = [&k.labels_topic, &k.retained_scores_topic, &k.performance_reports_topic];
            if own.iter().any(|t| t.trim().is_empty()) {
                return invalid("kafka.labels_topic", "labels, retained-scores and performance-reports topic names must not be empty");
            }
            if own.iter().any(|t| *t == &k.transactions_topic) || k.labels_topic == k.retained_scores_topic {
                return invalid("kafka.labels_topic", "the labels and retained-scores topics must differ from each other and from the transactions topic");
            }
        }
        if self.telemetry.sample_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return invalid("telemetry.sample_ratio", "must be within [0, 1]");
        }
        if !self.telemetry.otlp_endpoint.is_empty() && !self.telemetry.otlp_endpoint.starts_with("http") {
            return invalid("telemetry.otlp_endpoint", "must be an http(s) URL like http://localhost:4318, or empty");
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return invalid("log.format", "must be `human` or `json`");
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("metrics.listen", "must be an address like 127.0.0.1:9464, or empty to disable");
        }
        Ok(())
    }

    /// A copy safe to print: every librdkafka option that holds a secret (passwords, keys,
    /// JAAS configuration, OAuth client secrets, tokens) shows `***` instead of its value.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for map in [&mut c.kafka.options, &mut c.kafka.consumer_options, &mut c.kafka.producer_options] {
            for (key, value) in map.iter_mut() {
                if is_secret(key) {
                    *value = "***".into();
                }
            }
        }
        c
    }

    /// The topics the engine reads and writes with this configuration.
    pub fn topics(&self) -> Vec<&String> {
        let k = &self.kafka;
        let mut wanted = vec![&k.transactions_topic, &k.alerts_topic, &k.dead_letter_topic];
        if self.drift.enabled {
            wanted.extend([&k.drift_reports_topic, &k.drift_alerts_topic, &k.retrain_requests_topic]);
            if self.drift.aggregation == Aggregation::Group {
                wanted.push(&k.drift_profiles_topic);
            }
        }
        if !self.model.registry.is_empty() {
            wanted.push(&k.model_events_topic);
            if self.model.shadow_fraction > 0.0 {
                wanted.push(&k.shadow_scores_topic);
            }
        }
        if self.performance.enabled {
            wanted.extend([&k.labels_topic, &k.retained_scores_topic, &k.performance_reports_topic]);
            if !self.drift.enabled {
                wanted.extend([&k.drift_alerts_topic, &k.retrain_requests_topic]);
            }
        }
        wanted
    }

    /// librdkafka settings shared by every client.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka.brokers);
        for (k, v) in &self.kafka.options {
            c.set(k, v);
        }
        c
    }

    /// The consumer's settings: manual offset store, auto-commit of stored offsets only.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        // Exactly-once: offsets go with each transaction, never by auto-commit.
        let auto_commit = if self.engine.delivery == Delivery::ExactlyOnce { "false" } else { "true" };
        c.set("group.id", &self.kafka.group_id)
            .set("enable.auto.commit", auto_commit)
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &self.kafka.auto_offset_reset)
            .set("statistics.interval.ms", self.engine.statistics_interval_ms.to_string())
            // librdkafka ≥ 2.1 backs off the next fetch by up to 1 s once its local queue is
            // over threshold; a consumer that does real work per event then stalls every time
            // it catches up (measured: 0.4 s busy, 0.5 s idle, repeating). Fetch again soon.
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in &self.kafka.consumer_options {
            c.set(k, v);
        }
        c
    }

    /// The producer's settings: idempotent, acks=all.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        for (k, v) in &self.kafka.producer_options {
            c.set(k, v);
        }
        c
    }
}

/// Whether a librdkafka property holds a secret: `sasl.password`, `ssl.key.password`,
/// `ssl.keystore.password`, `ssl.key.pem`, `sasl.jaas.config`,
/// `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config` and the like.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", ".key.pem", "oauthbearer.config"].iter().any(|s| k.contains(s))
}

/// One environment variable as a figment provider, so errors name the variable.
struct EnvVar {
    name: String,
    value: figment::value::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let dict = self.value.as_dict().cloned().unwrap_or_default();
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Turns an environment variable's path and text into a nested value figment can merge.
fn env_entry(mut path: Vec<String>, value: String) -> figment::value::Value {
    use figment::value::{Dict, Value};
    // In the librdkafka maps the last segment is a librdkafka property: `_` stands for `.`.
    let is_map = path.len() == 3 && path[0] == "kafka" && path[1].ends_with("options");
    let mut node = if is_map {
        path[2] = path[2].replace('_', ".");
        Value::from(value)
    } else {
        value.parse::<Value>().unwrap_or_else(|_| Value::from(value))
    };
    for segment in path.into_iter().rev() {
        let mut dict = Dict::new();
        dict.insert(segment, node);
        node = Value::from(dict);
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), s).unwrap();
        f
    }

    #[test]
    fn shipped_default_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let c = Config::load(Some(&path), []).unwrap();
        assert_eq!(c.kafka.transactions_topic, "transactions");
        assert_eq!(c.kafka.alerts_topic, "fraud-alerts");
    }

    #[test]
    fn env_overrides_file_and_maps_librdkafka_keys() {
        let f = write("[kafka]\nbrokers = \"file:9092\"\n[kafka.options]\n\"client.id\" = \"a\"\n");
        let env = [
            ("DRIFTWATCH_KAFKA__BROKERS".to_string(), "env:9092".to_string()),
            ("DRIFTWATCH_KAFKA__OPTIONS__SECURITY_PROTOCOL".into(), "SASL_SSL".into()),
            ("DRIFTWATCH_ENGINE__BATCH_SIZE".into(), "10".into()),
            ("DRIFTWATCH_MODEL__THRESHOLD".into(), "0.5".into()),
            ("DRIFTWATCH_CACHE".into(), "/elsewhere".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let c = Config::load(Some(f.path()), env).unwrap();
        assert_eq!(c.kafka.brokers, "env:9092");
        assert_eq!(c.kafka.options.get("security.protocol").map(String::as_str), Some("SASL_SSL"));
        assert_eq!(c.kafka.options.get("client.id").map(String::as_str), Some("a"));
        assert_eq!(c.engine.batch_size, 10);
        assert_eq!(c.model.threshold, Some(0.5));
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_are_errors() {
        let err = Config::load(Some(write("[kafka]\nbrokres = \"x\"\n").path()), []).unwrap_err();
        assert!(err.to_string().contains("brokres"), "{err}");
        let err = Config::load(Some(write("[engine]\nbatch_size = \"many\"\n").path()), []).unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");
        let err = Config::load(None, [("DRIFTWATCH_KAFKA__NOPE".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Config::load(Some(write("[model]\nthreshold = 3.0\n").path()), []).unwrap_err();
        assert!(err.to_string().contains("model.threshold"), "{err}");
        let err = Config::load(Some(write("[kafka]\nalerts_topic = \"transactions\"\n").path()), []).unwrap_err();
        assert!(err.to_string().contains("own output"), "{err}");
        let err = Config::load(Some(write("[kafka.consumer_options]\n\"enable.auto.offset.store\" = \"true\"\n").path()), []).unwrap_err();
        assert!(err.to_string().contains("delivery guarantee"), "{err}");
        let err = Config::load(Some(Path::new("/nonexistent.toml")), []).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = Config::load(Some(write("[kafka\n").path()), []).unwrap_err();
        assert!(matches!(err, ConfigError::Load(_)), "{err}");
    }
}
