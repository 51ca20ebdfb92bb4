//! The command line: clap arguments for every subcommand, with a value enum for every fixed
//! choice (so `--help` lists them and a bad value is a usage error, exit 2). Parsing only; what
//! each command does is in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::drift::StatusMetric;
use crate::generate::Scenario;

/// `driftwatch`: streaming fraud scoring and drift detection on Apache Kafka.
#[derive(Parser)]
#[command(name = "driftwatch", version, about = "Streaming fraud scoring and drift detection on Apache Kafka")]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Write synthetic card transactions with a ground-truth `is_fraud` label.
    Generate(GenerateArgs),
    /// Fit a pipeline artifact (preprocessing + fraud model + outlier detector + drift reference).
    Train(TrainArgs),
    /// Import a model trained elsewhere (ONNX from skl2onnx or onnxmltools) into a pipeline artifact.
    Import(ImportArgs),
    /// Score labelled data with an artifact and write its metrics (ROC AUC, PR AUC, precision and recall at its threshold).
    Evaluate(EvaluateArgs),
    /// Score JSONL transactions with an artifact: one JSON line out per line in.
    Score(ScoreArgs),
    /// Compare a current file with a reference file: PSI, KL, JS, χ², KS, Wasserstein per feature.
    Drift(DriftArgs),
    /// Run the streaming engine: consume transactions, score, publish alerts and dead letters.
    Run(RunArgs),
    /// Run everything on this machine with no setup (embedded broker, generator, engine).
    Demo(DemoArgs),
    /// Produce generated transactions to a Kafka topic at a steady rate (event time = now).
    Produce(ProduceArgs),
    /// The model registry: register, list, show, promote, rollback, diff.
    Model(ModelArgs),
}

/// A positive number (rates).
fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A fraction in [0, 1].
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number in [0, 1]")),
    }
}

/// A drift scenario by name.
fn scenario(s: &str) -> Result<Scenario, String> {
    s.parse::<Scenario>().map_err(|e| e.to_string())
}

/// `driftwatch model …`.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// The registry operation.
    #[command(subcommand)]
    pub command: ModelCommand,
    /// Registry: a directory, or `mlflow:NAME` for MLflow's registered model NAME (the same
    /// variable as the engine's `model.registry`).
    #[arg(long, global = true, env = "DRIFTWATCH_MODEL__REGISTRY", default_value = "registry")]
    pub registry: String,
    /// MLflow tracking server of an `mlflow:NAME` registry.
    #[arg(long, global = true, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: Option<String>,
    /// MLflow experiment where `register` logs its run.
    #[arg(long, global = true, env = "MLFLOW_EXPERIMENT_NAME", default_value = "driftwatch")]
    pub mlflow_experiment: String,
    /// Model name (needed when the registry holds several).
    #[arg(long, global = true)]
    pub name: Option<String>,
    /// Who makes the change (recorded in the history) [default: $USER].
    #[arg(long, global = true)]
    pub by: Option<String>,
    /// Publish stage changes to this Kafka cluster's model-events topic.
    #[arg(long, global = true, env = "DRIFTWATCH_KAFKA__BROKERS")]
    pub brokers: Option<String>,
    /// Topic for stage changes.
    #[arg(long, global = true, default_value = "model-events")]
    pub events_topic: String,
}

/// Registry operations.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Register an artifact as a candidate.
    Register {
        /// The artifact file.
        artifact: PathBuf,
    },
    /// List registered versions.
    List,
    /// Show one version (JSON).
    Show {
        /// The version.
        version: String,
    },
    /// Shadow-score a version: MLflow's `challenger` alias (a directory registry shadow-scores its newest candidate).
    Challenge {
        /// The version (an MLflow version number or a driftwatch version).
        version: String,
    },
    /// Make a version production (the current one is archived).
    Promote {
        /// The version.
        version: String,
        /// Why (recorded).
        #[arg(long, default_value = "promoted")]
        reason: String,
    },
    /// Archive production and restore the previous production version.
    Rollback {
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Compare two versions: hyper-parameters, metrics, features, training references.
    Diff {
        /// First version.
        a: String,
        /// Second version.
        b: String,
    },
}

/// `driftwatch produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap servers.
    #[arg(long, env = "DRIFTWATCH_KAFKA__BROKERS")]
    pub brokers: String,
    /// Topic to write to.
    #[arg(long, default_value = "transactions")]
    pub topic: String,
    /// Transactions per second.
    #[arg(long, default_value_t = 200.0, value_parser = positive)]
    pub rate: f64,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Drift scenario, injected halfway through --duration (or after 60 s).
    #[arg(long, default_value = "none", value_parser = scenario)]
    pub scenario: Scenario,
    /// When the scenario starts, in seconds (default: halfway through --duration, or 60).
    #[arg(long)]
    pub drift_after: Option<u64>,
    /// Every n-th transaction is malformed (0: none).
    #[arg(long, default_value_t = 0)]
    pub invalid_every: u64,
    /// Generator seed (1 continues the demo model's own account population after its training rows).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also produce every transaction's fraud label to this topic when it is due (analyst
    /// verdicts within hours, chargebacks within weeks, cleared after a month; times
    /// --label-delay-scale). Labels not yet due when produce stops are not sent.
    #[arg(long)]
    pub labels_topic: Option<String>,
    /// Multiply the label delays by this (0.000694: a day becomes a minute).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub label_delay_scale: f64,
    /// Instead of generating: produce this JSON-lines file to --topic as it is, one record per
    /// line (e.g. `generate --labels-out` to the labels topic).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// With --file: the field whose value keys each record.
    #[arg(long, default_value = "transaction_id")]
    pub key_field: String,
}

/// `driftwatch drift`.
#[derive(clap::Args)]
pub struct DriftArgs {
    /// Reference data (CSV or JSONL), e.g. the training file.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub reference: Option<PathBuf>,
    /// Compare with this pipeline's training reference instead (the engine's bins and sketches).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: replay the file through sliding event-time windows of this many minutes
    /// (one report per window, with hysteresis), as the engine would.
    #[arg(long, requires = "model", value_parser = positive)]
    pub window_minutes: Option<f64>,
    /// With --window-minutes: minutes between window starts.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub slide_minutes: f64,
    /// With --window-minutes: allowed lateness in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub lateness_seconds: f64,
    /// With --window-minutes: fraction of transactions profiled (hash of the transaction id).
    #[arg(long, default_value_t = 0.05, value_parser = fraction)]
    pub sample: f64,
    /// Current data, same columns.
    #[arg(long)]
    pub current: PathBuf,
    /// Bins per numeric feature (at reference quantiles k/B).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..))]
    pub bins: u64,
    /// Additive smoothing α of the bin proportions.
    #[arg(long, default_value_t = 0.5, value_parser = positive)]
    pub smoothing: f64,
    /// Reference levels kept per categorical feature.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: u64,
    /// Fewer current rows than this is reported as insufficient data.
    #[arg(long, default_value_t = 100)]
    pub min_samples: u64,
    /// Statistic deciding the status.
    #[arg(long, value_enum, default_value_t = MetricArg::Psi)]
    pub metric: MetricArg,
    /// Amber at or above this value of the metric.
    #[arg(long, default_value_t = 0.1)]
    pub amber: f64,
    /// Red at or above this value of the metric.
    #[arg(long, default_value_t = 0.25)]
    pub red: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DriftFormat::Table)]
    pub format: DriftFormat,
    /// Exit with status 3 when the report is at least this.
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
    /// Label column to leave out of the comparison (compared like any feature when not given).
    #[arg(long)]
    pub label: Option<String>,
    #[command(flatten)]
    pub columns: ColumnArgs,
}

/// The statistic a drift status is decided on.
#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum MetricArg {
    /// Population stability index.
    Psi,
    /// KL(current ‖ reference).
    Kl,
    /// Jensen–Shannon distance.
    Js,
    /// KS statistic D (numeric features; categoricals use PSI).
    Ks,
    /// Wasserstein-1 over the reference std (numeric features; categoricals use PSI).
    WassersteinNormalized,
}

impl From<MetricArg> for StatusMetric {
    fn from(m: MetricArg) -> StatusMetric {
        match m {
            MetricArg::Psi => StatusMetric::Psi,
            MetricArg::Kl => StatusMetric::Kl,
            MetricArg::Js => StatusMetric::Js,
            MetricArg::Ks => StatusMetric::Ks,
            MetricArg::WassersteinNormalized => StatusMetric::WassersteinNormalized,
        }
    }
}

/// The least drift status that fails `drift` (exit 3).
#[derive(Clone, Copy, ValueEnum)]
pub enum FailOn {
    /// Amber or red.
    Amber,
    /// Red.
    Red,
}

/// How `train` and `import` calibrate the held-out probabilities (the artifact's `calibration`).
#[derive(Clone, Copy, ValueEnum)]
pub enum CalibrationArg {
    /// Isotonic regression on the held-out split (as scikit-learn's IsotonicRegression).
    Isotonic,
    /// None: estimated performance takes the probabilities at face value until matured labels calibrate them.
    None,
}

impl From<CalibrationArg> for crate::pipeline::calibration::CalibrationMethod {
    fn from(a: CalibrationArg) -> Self {
        match a {
            CalibrationArg::Isotonic => crate::pipeline::calibration::CalibrationMethod::Isotonic,
            CalibrationArg::None => crate::pipeline::calibration::CalibrationMethod::None,
        }
    }
}

/// `drift`'s output format.
#[derive(Clone, Copy, ValueEnum)]
pub enum DriftFormat {
    /// One JSON document (or one JSON line per window).
    Json,
    /// A table for people.
    Table,
}

/// Which columns are features and which play other roles; shared by `train` and `drift`.
#[derive(clap::Args)]
pub struct ColumnArgs {
    /// Numeric feature columns (comma-separated). With --categorical, only listed columns are features.
    #[arg(long, value_delimiter = ',')]
    pub numeric: Option<Vec<String>>,
    /// Categorical feature columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub categorical: Option<Vec<String>>,
    /// Transaction id column [default: first of transaction_id, id, tx_id, event_id present]. Empty for none.
    #[arg(long)]
    pub id: Option<String>,
    /// Entity key column, alerts are keyed by it [default: first of account_id, card_id, customer_id, user_id].
    #[arg(long)]
    pub key: Option<String>,
    /// Event-time column [default: first of event_time, timestamp, ts, time, or an all-RFC 3339 column].
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Unit of numeric event times (and numeric strings); `auto` decides by magnitude: below
    /// 10^11 seconds, below 10^14 milliseconds, below 10^17 microseconds, else nanoseconds.
    #[arg(long, value_enum, default_value_t = TimestampUnitArg::Auto)]
    pub timestamp_unit: TimestampUnitArg,
    /// Columns to leave out when features are inferred (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
}

/// Unit of numeric event times.
#[derive(Clone, Copy, ValueEnum)]
pub enum TimestampUnitArg {
    /// By magnitude.
    Auto,
    /// Unix seconds.
    S,
    /// Unix milliseconds.
    Ms,
    /// Unix microseconds.
    Us,
    /// Unix nanoseconds.
    Ns,
}

impl From<TimestampUnitArg> for crate::time::TimestampUnit {
    fn from(u: TimestampUnitArg) -> Self {
        use crate::time::TimestampUnit as T;
        match u {
            TimestampUnitArg::Auto => T::Auto,
            TimestampUnitArg::S => T::Seconds,
            TimestampUnitArg::Ms => T::Milliseconds,
            TimestampUnitArg::Us => T::Microseconds,
            TimestampUnitArg::Ns => T::Nanoseconds,
        }
    }
}

/// `driftwatch run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); DRIFTWATCH_<SECTION>__<KEY> variables override it.
    #[arg(long, default_value = "config/default.toml")]
    pub config: PathBuf,
    /// Check the configuration and model, print the effective configuration, and exit.
    #[arg(long)]
    pub check: bool,
}

/// `driftwatch demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Use this Kafka cluster instead of the embedded mock broker.
    #[arg(long, env = "DRIFTWATCH_KAFKA__BROKERS")]
    pub brokers: Option<String>,
    /// Pipeline artifact.
    #[arg(long, default_value = "models/demo.json")]
    pub model: PathBuf,
    /// Address for /metrics, /healthz, /readyz ("" disables).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// Transactions per second to produce.
    #[arg(long, default_value_t = 2000.0, value_parser = positive)]
    pub rate: f64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Drift scenario injected halfway through (or after 60 s without --duration).
    #[arg(long, default_value = "none", value_parser = scenario)]
    pub scenario: Scenario,
    /// When the scenario starts, in seconds (default: halfway through --duration, or 60).
    #[arg(long)]
    pub drift_after: Option<u64>,
    /// Every n-th transaction is malformed, to show the dead-letter topic (0: none).
    #[arg(long, default_value_t = 500)]
    pub invalid_every: u64,
    /// Generator seed (1 continues the demo model's own account population after its training rows).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `driftwatch generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Number of transactions.
    #[arg(long, default_value_t = 10_000)]
    pub rows: u64,
    /// Random seed: same seed and options, same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Drift to inject from the onset on.
    #[arg(long, default_value = "none", value_parser = scenario)]
    pub scenario: Scenario,
    /// Fraction of the rows after which the scenario starts.
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    pub onset: f64,
    /// Mean event-time rate, transactions per second.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub rate: f64,
    /// Event time of the first row (RFC 3339).
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Jsonl)]
    pub format: DataFormat,
    /// Output file (stdout when absent).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also write every transaction's fraud label (JSON lines, label-time order) to this file,
    /// for the `labels` topic: frauds confirmed by an analyst within hours or by a chargeback
    /// within weeks, legitimate transactions cleared after a month.
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
    /// Multiply every label delay by this (e.g. 0.000694: a day becomes a minute, for demos).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub label_delay_scale: f64,
    /// Share of frauds an analyst confirms (the others by a chargeback).
    #[arg(long, default_value_t = 0.4, value_parser = fraction)]
    pub label_analyst_share: f64,
    /// Mean analyst delay, hours (exponential).
    #[arg(long, default_value_t = 6.0, value_parser = positive)]
    pub label_analyst_hours: f64,
    /// Chargeback delays, uniform between these days: MIN,MAX.
    #[arg(long, default_value = "3,45", value_parser = day_range)]
    pub label_chargeback_days: (f64, f64),
    /// Legitimate transactions are cleared after this many days (plus up to one).
    #[arg(long, default_value_t = 30.0, value_parser = positive)]
    pub label_cleared_days: f64,
}

/// `MIN,MAX` days, 0 ≤ MIN ≤ MAX.
fn day_range(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| format!("expected MIN,MAX days, got `{s}`"))?;
    let (a, b): (f64, f64) = (a.trim().parse().map_err(|e| format!("`{a}`: {e}"))?, b.trim().parse().map_err(|e| format!("`{b}`: {e}"))?);
    if !(0.0 <= a && a <= b && b.is_finite()) {
        return Err(format!("need 0 ≤ MIN ≤ MAX, got {a},{b}"));
    }
    Ok((a, b))
}

/// `generate`'s output format.
#[derive(Clone, Copy, ValueEnum)]
pub enum DataFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// `driftwatch train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data, CSV or JSONL (by extension, else sniffed).
    #[arg(long)]
    pub data: PathBuf,
    /// Label column: 0/1 or true/false.
    #[arg(long)]
    pub label: String,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[command(flatten)]
    pub fit: FitArgs,
    /// Inverse L2 strength (as scikit-learn's C).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub c: f64,
    /// Class weighting.
    #[arg(long, value_enum, default_value_t = ClassWeight::Balanced)]
    pub class_weight: ClassWeight,
}

/// What `train` and `import` fit around the fraud model: identity, split, threshold, outlier
/// detector, drift reference.
#[derive(clap::Args)]
pub struct FitArgs {
    /// Seed for the held-out split and k-means.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Model name.
    #[arg(long, default_value = "card-fraud")]
    pub name: String,
    /// Model version [default: derived from the data hash and settings (and an imported model's hash)].
    #[arg(long)]
    pub model_version: Option<String>,
    /// Top-K levels per categorical feature in the model's encoding (the rest share an "other" column).
    #[arg(long, default_value_t = 20)]
    pub max_categories: usize,
    /// Fraction of rows held out (stratified) for the threshold and metrics.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Choose the threshold so this fraction of held-out transactions alert.
    #[arg(long, conflicts_with = "target_precision")]
    pub target_alert_rate: Option<f64>,
    /// Choose the lowest threshold whose held-out precision reaches this.
    #[arg(long)]
    pub target_precision: Option<f64>,
    /// k-means clusters of the outlier detector.
    #[arg(long, default_value_t = 8)]
    pub clusters: usize,
    /// Outlier false-positive rate on training data.
    #[arg(long, default_value_t = 0.01)]
    pub outlier_fpr: f64,
    /// Reference bins per numeric feature (drift).
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Top-K levels per categorical feature in the drift reference.
    #[arg(long, default_value_t = 50)]
    pub reference_top_k: usize,
    /// Also write the held-out metrics to this small JSON file (for `dvc metrics show`).
    #[arg(long, value_name = "FILE")]
    pub metrics_out: Option<PathBuf>,
    /// Calibrate the held-out probabilities into the artifact (the map the engine's estimated
    /// performance uses until matured labels take over).
    #[arg(long, value_enum, default_value = "isotonic")]
    pub calibration: CalibrationArg,
    /// Also write every held-out row as the fitted pipeline scores it, one JSON line each:
    /// {"row": position in the data file, "score", "label"} (reliability plots, audits).
    #[arg(long, value_name = "FILE")]
    pub holdout_out: Option<PathBuf>,
    /// Log the training as an MLflow run (params, held-out metrics, data checksum, the artifact)
    /// and register it as a new version of the registered model `--name`, on this tracking
    /// server (given without a value: `MLFLOW_TRACKING_URI`).
    #[arg(long, value_name = "URI", num_args = 0..=1, default_missing_value = "")]
    pub mlflow: Option<String>,
    /// MLflow experiment of the run.
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "driftwatch")]
    pub mlflow_experiment: String,
}

/// `driftwatch evaluate`.
#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// The pipeline artifact.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data, CSV or JSONL.
    #[arg(long)]
    pub data: PathBuf,
    /// Label column: 0/1 or true/false.
    #[arg(long)]
    pub label: String,
    /// Where to write the metrics (JSON; stdout when absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `driftwatch import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The ONNX model: a scikit-learn pipeline exported by skl2onnx, or a LightGBM / XGBoost
    /// classifier exported by onnxmltools.
    #[arg(long)]
    pub onnx: PathBuf,
    /// Data for the drift reference, outlier detector, threshold, held-out metrics and tree
    /// covers (the model's training data, for tree reasons equal to its library's), CSV or JSONL.
    #[arg(long)]
    pub data: PathBuf,
    /// Label column: 0/1 or true/false.
    #[arg(long)]
    pub label: String,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: PathBuf,
    /// Event fields of an input with several columns, in column order: `INPUT=FIELD,FIELD,…`
    /// (repeat per input). An input with one column is the field of its own name.
    #[arg(long = "input-fields", value_name = "INPUT=FIELDS")]
    pub input_fields: Vec<String>,
    /// What tree covers count for TreeSHAP reasons; `auto`: hessian sums for XGBoost exports
    /// (`BRANCH_LT` splits, logistic output), row counts otherwise (LightGBM, scikit-learn).
    #[arg(long, value_enum, default_value_t = TreeCoverArg::Auto)]
    pub tree_cover: TreeCoverArg,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[command(flatten)]
    pub fit: FitArgs,
}

/// `import --tree-cover`.
#[derive(Clone, Copy, ValueEnum)]
pub enum TreeCoverArg {
    /// By the exporter's conventions.
    Auto,
    /// Training rows per node (LightGBM, scikit-learn).
    Count,
    /// Sum of p(1 − p) per node, boosting round by round (XGBoost).
    Hessian,
}

/// Class weighting of the logistic regression.
#[derive(Clone, Copy, ValueEnum)]
pub enum ClassWeight {
    /// Weights inversely proportional to class frequencies (scikit-learn's `balanced`).
    Balanced,
    /// Every row weighs 1.
    None,
}

impl ClassWeight {
    /// The name stored in the artifact's hyper-parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassWeight::Balanced => "balanced",
            ClassWeight::None => "none",
        }
    }
}

/// `driftwatch score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Pipeline artifact.
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL input (stdin when absent).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Exit with status 4 when any line could not be scored (without it: only when none could).
    #[arg(long)]
    pub fail_on_error: bool,
    /// Add every feature's contribution to the log-odds (`contributions`, `base_value`) to each
    /// line: coefficient × value for linear models, exact TreeSHAP for imported tree ensembles.
    #[arg(long)]
    pub contributions: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fixed_choices_are_usage_errors() {
        for args in [
            &["driftwatch", "drift", "--reference", "a", "--current", "b", "--metric", "mse"][..],
            &["driftwatch", "drift", "--reference", "a", "--current", "b", "--fail-on", "orange"],
            &["driftwatch", "train", "--data", "a", "--label", "y", "--out", "o", "--class-weight", "heavy"],
            &["driftwatch", "generate", "--scenario", "meteor"],
            &["driftwatch", "generate", "--rate", "0"],
            &["driftwatch", "demo", "--rate", "-5"],
        ] {
            let err = Cli::try_parse_from(args).err().unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let ok = Cli::try_parse_from(["driftwatch", "drift", "--reference", "a", "--current", "b", "--metric", "wasserstein_normalized", "--fail-on", "red"]);
        assert!(ok.is_ok());
    }
}
