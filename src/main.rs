//! The `driftwatch` command line: parses arguments and calls the library.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use driftwatch::generate::{GeneratorConfig, OutputFormat, Scenario};
use driftwatch::pipeline::artifact::ThresholdPolicy;
use driftwatch::pipeline::train::TrainOptions;
use driftwatch::pipeline::Pipeline;

#[derive(Parser)]
#[command(name = "driftwatch", version, about = "Streaming fraud scoring and drift detection on Apache Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic card transactions with a ground-truth `is_fraud` label.
    Generate(GenerateArgs),
    /// Fit a pipeline artifact (preprocessing + fraud model + outlier detector + drift reference).
    Train(TrainArgs),
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

#[derive(clap::Args)]
struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
    /// Registry directory.
    #[arg(long, global = true, env = "DRIFTWATCH_REGISTRY", default_value = "registry")]
    registry: PathBuf,
    /// Model name (needed when the registry holds several).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Who makes the change (recorded in the history) [default: $USER].
    #[arg(long, global = true)]
    by: Option<String>,
    /// Publish stage changes to this Kafka cluster's model-events topic.
    #[arg(long, global = true, env = "DRIFTWATCH_KAFKA__BROKERS")]
    brokers: Option<String>,
    /// Topic for stage changes.
    #[arg(long, global = true, default_value = "model-events")]
    events_topic: String,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Register an artifact as a candidate.
    Register { artifact: PathBuf },
    /// List registered versions.
    List,
    /// Show one version (JSON).
    Show { version: String },
    /// Make a version production (the current one is archived).
    Promote {
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
    Diff { a: String, b: String },
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic to write to.
    #[arg(long, default_value = "transactions")]
    topic: String,
    /// Transactions per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long)]
    duration: Option<u64>,
    /// Drift scenario, injected halfway through --duration (or after 60 s).
    #[arg(long, default_value = "none")]
    scenario: Scenario,
    /// Every n-th transaction is malformed (0: none).
    #[arg(long, default_value_t = 0)]
    invalid_every: u64,
    /// Generator seed (1 continues the demo model's own account population after its training rows).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct DriftArgs {
    /// Reference data (CSV or JSONL), e.g. the training file.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    reference: Option<PathBuf>,
    /// Compare with this pipeline's training reference instead (the engine's bins and sketches).
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: replay the file through sliding event-time windows of this many minutes
    /// (one report per window, with hysteresis), as the engine would.
    #[arg(long, requires = "model")]
    window_minutes: Option<f64>,
    /// With --window-minutes: minutes between window starts.
    #[arg(long, default_value_t = 1.0)]
    slide_minutes: f64,
    /// With --window-minutes: allowed lateness in seconds.
    #[arg(long, default_value_t = 30.0)]
    lateness_seconds: f64,
    /// With --window-minutes: fraction of transactions profiled (hash of the transaction id).
    #[arg(long, default_value_t = 0.05)]
    sample: f64,
    /// Current data, same columns.
    #[arg(long)]
    current: PathBuf,
    /// Bins per numeric feature (at reference quantiles k/B).
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Additive smoothing α of the bin proportions.
    #[arg(long, default_value_t = 0.5)]
    smoothing: f64,
    /// Reference levels kept per categorical feature.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Fewer current rows than this is reported as insufficient data.
    #[arg(long, default_value_t = 100)]
    min_samples: u64,
    /// Statistic deciding the status: psi, kl, js, ks, wasserstein_normalized.
    #[arg(long, default_value = "psi")]
    metric: String,
    /// Amber at or above this value of the metric.
    #[arg(long, default_value_t = 0.1)]
    amber: f64,
    /// Red at or above this value of the metric.
    #[arg(long, default_value_t = 0.25)]
    red: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DriftFormat::Table)]
    format: DriftFormat,
    /// Exit with status 3 when the report is at least this: amber or red.
    #[arg(long)]
    fail_on: Option<String>,
    /// Label column to leave out of the comparison (compared like any feature when not given).
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    columns: ColumnArgs,
}

/// Which columns are features and which play other roles; shared by `train` and `drift`.
#[derive(clap::Args)]
struct ColumnArgs {
    /// Numeric feature columns (comma-separated). With --categorical, only listed columns are features.
    #[arg(long, value_delimiter = ',')]
    numeric: Option<Vec<String>>,
    /// Categorical feature columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    categorical: Option<Vec<String>>,
    /// Transaction id column [default: first of transaction_id, id, tx_id, event_id present]. Empty for none.
    #[arg(long)]
    id: Option<String>,
    /// Entity key column, alerts are keyed by it [default: first of account_id, card_id, customer_id, user_id].
    #[arg(long)]
    key: Option<String>,
    /// Event-time column [default: first of event_time, timestamp, ts, time, or an all-RFC 3339 column].
    #[arg(long)]
    timestamp: Option<String>,
    /// Columns to leave out when features are inferred (comma-separated).
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
}

impl ColumnArgs {
    /// Column options for `train`'s role resolution, with this label ("" for none).
    fn into_options(self, label: &str) -> TrainOptions {
        let mut opts = TrainOptions::new(label);
        opts.numeric = self.numeric;
        opts.categorical = self.categorical;
        opts.id = self.id;
        opts.key = self.key;
        opts.timestamp = self.timestamp;
        opts.ignore = self.ignore;
        opts
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DriftFormat {
    Json,
    Table,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML); DRIFTWATCH_<SECTION>__<KEY> variables override it.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Check the configuration and model, print the effective configuration, and exit.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Use this Kafka cluster instead of the embedded mock broker.
    #[arg(long)]
    brokers: Option<String>,
    /// Transactions per second to produce.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Pipeline artifact.
    #[arg(long, default_value = "models/demo.json")]
    model: PathBuf,
    /// Drift scenario injected halfway through (or after 60 s without --duration).
    #[arg(long, default_value = "none")]
    scenario: Scenario,
    /// Every n-th transaction is malformed, to show the dead-letter topic (0: none).
    #[arg(long, default_value_t = 500)]
    invalid_every: u64,
    /// Address for /metrics, /healthz, /readyz ("" disables).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// Generator seed (1 continues the demo model's own account population after its training rows).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of transactions.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Random seed: same seed and options, same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Drift to inject from the onset on: none, amount_inflation, new_country, channel_shift, device_burst, covariate_shift.
    #[arg(long, default_value = "none")]
    scenario: Scenario,
    /// Fraction of the rows after which the scenario starts.
    #[arg(long, default_value_t = 0.5)]
    onset: f64,
    /// Mean event-time rate, transactions per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Event time of the first row (RFC 3339).
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    start: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Output file (stdout when absent).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Training data, CSV or JSONL (by extension, else sniffed).
    #[arg(long)]
    data: PathBuf,
    /// Label column: 0/1 or true/false.
    #[arg(long)]
    label: String,
    /// Where to write the artifact.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Seed for the held-out split and k-means.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Model name.
    #[arg(long, default_value = "card-fraud")]
    name: String,
    /// Model version [default: derived from the data hash and settings].
    #[arg(long)]
    model_version: Option<String>,
    /// Inverse L2 strength (as scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// Class weighting: balanced or none.
    #[arg(long, default_value = "balanced")]
    class_weight: String,
    /// Top-K levels per categorical feature in the model (the rest share an "other" column).
    #[arg(long, default_value_t = 20)]
    max_categories: usize,
    /// Fraction of rows held out (stratified) for the threshold and metrics.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Choose the threshold so this fraction of held-out transactions alert.
    #[arg(long, conflicts_with = "target_precision")]
    target_alert_rate: Option<f64>,
    /// Choose the lowest threshold whose held-out precision reaches this.
    #[arg(long)]
    target_precision: Option<f64>,
    /// k-means clusters of the outlier detector.
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Outlier false-positive rate on training data.
    #[arg(long, default_value_t = 0.01)]
    outlier_fpr: f64,
    /// Reference bins per numeric feature (drift).
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Top-K levels per categorical feature in the drift reference.
    #[arg(long, default_value_t = 50)]
    reference_top_k: usize,
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// Pipeline artifact.
    #[arg(long)]
    model: PathBuf,
    /// JSONL input (stdin when absent).
    #[arg(long)]
    input: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message and the causes it does not already say; never a backtrace: these
            // are users' errors to act on.
            let mut message = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(a) => generate(a),
        Command::Train(a) => train(a),
        Command::Score(a) => score(a),
        Command::Drift(a) => drift(a),
        Command::Run(a) => run(a),
        Command::Demo(a) => demo(a),
        Command::Produce(a) => produce(a),
        Command::Model(a) => model(a),
    }
}

fn model(a: ModelArgs) -> Result<()> {
    use driftwatch::registry::{diff, ModelEvent, Registry};
    let reg = Registry::open(&a.registry);
    let by = a.by.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
    let name = a.name.as_deref();
    let events: Vec<ModelEvent> = match a.command {
        ModelCommand::Register { artifact } => {
            let (model, entry, event) = reg.register(&artifact, &by)?;
            match event {
                Some(_) => eprintln!("registered {model} {} as candidate", entry.version),
                None => eprintln!("{model} {} is already registered (same contents)", entry.version),
            }
            event.into_iter().collect()
        }
        ModelCommand::List => {
            let index = reg.index()?;
            println!("{:<16} {:<20} {:<11} {:<25} {:>8} {:>8}", "model", "version", "stage", "created", "roc_auc", "pr_auc");
            for (model, entry) in &index.models {
                for v in &entry.versions {
                    let stage = serde_json::to_value(v.stage)?;
                    println!("{model:<16} {:<20} {:<11} {:<25} {:>8.4} {:>8.4}", v.version, stage.as_str().unwrap_or(""), v.created, v.metrics.roc_auc, v.metrics.pr_auc);
                }
            }
            vec![]
        }
        ModelCommand::Show { version } => {
            let (entry, path) = reg.show(name, &version)?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"entry": entry, "artifact": path}))?);
            vec![]
        }
        ModelCommand::Promote { version, reason } => reg.promote(name, &version, &by, &reason)?,
        ModelCommand::Rollback { reason } => reg.rollback(name, &by, &reason)?,
        ModelCommand::Diff { a: va, b: vb } => {
            let load = |v: &str| -> Result<driftwatch::pipeline::Artifact> { Ok(driftwatch::pipeline::Artifact::load(&reg.show(name, v)?.1)?) };
            println!("{}", serde_json::to_string_pretty(&diff(&load(&va)?, &load(&vb)?))?);
            vec![]
        }
    };
    for e in &events {
        let stage = serde_json::to_value(e.change.to)?;
        eprintln!("{} {}: {}", e.model, e.version, stage.as_str().unwrap_or(""));
    }
    if events.is_empty() {
        return Ok(());
    }
    match &a.brokers {
        Some(brokers) => publish_model_events(brokers, &a.events_topic, &events),
        None => {
            eprintln!("note: not published to {} (no --brokers / DRIFTWATCH_KAFKA__BROKERS)", a.events_topic);
            Ok(())
        }
    }
}

fn publish_model_events(brokers: &str, topic: &str, events: &[driftwatch::registry::ModelEvent]) -> Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("enable.idempotence", "true").create()?;
    for e in events {
        let payload = serde_json::to_vec(e)?;
        producer.send(BaseRecord::to(topic).payload(&payload).key(e.model.as_bytes())).map_err(|(err, _)| err)?;
    }
    producer.flush(std::time::Duration::from_secs(15)).with_context(|| format!("publishing to {topic} on {brokers}"))?;
    eprintln!("published {} event(s) to {topic}", events.len());
    Ok(())
}

fn produce(a: ProduceArgs) -> Result<()> {
    if !(a.rate > 0.0) {
        bail!("--rate must be positive");
    }
    let opts = driftwatch::commands::demo::DemoOptions {
        brokers: Some(a.brokers.clone()),
        rate: a.rate,
        duration: a.duration.map(std::time::Duration::from_secs),
        model: PathBuf::new(),
        scenario: a.scenario,
        invalid_every: a.invalid_every,
        metrics_listen: String::new(),
        seed: a.seed,
    };
    let n = driftwatch::commands::demo::produce(&a.brokers, &a.topic, &opts)?;
    eprintln!("produced {n} transactions to {}", a.topic);
    Ok(())
}

fn drift(a: DriftArgs) -> Result<()> {
    use driftwatch::drift::{DriftSettings, Status, StatusMetric, StatusRule};
    let metric: StatusMetric = serde_json::from_value(serde_json::Value::String(a.metric.clone()))
        .map_err(|_| anyhow::anyhow!("--metric must be one of psi, kl, js, ks, wasserstein_normalized; got `{}`", a.metric))?;
    if !(a.smoothing > 0.0) || a.bins < 2 || a.top_k == 0 || !(a.amber <= a.red) {
        bail!("need --smoothing > 0, --bins ≥ 2, --top-k ≥ 1 and --amber ≤ --red");
    }
    let fail_on = match a.fail_on.as_deref() {
        None => None,
        Some("amber") => Some(Status::Amber),
        Some("red") => Some(Status::Red),
        Some(other) => bail!("--fail-on must be amber or red, got `{other}`"),
    };
    let settings = DriftSettings {
        bins: a.bins,
        smoothing: a.smoothing,
        top_k: a.top_k,
        min_samples: a.min_samples,
        rule: StatusRule { metric, amber: a.amber, red: a.red },
        feature_rules: Default::default(),
    };
    if let Some(model) = &a.model {
        use driftwatch::commands::drift::{run_with_model, ModelDriftOutput};
        use driftwatch::drift::stream::DriftConfig;
        let replay = match a.window_minutes {
            None => None,
            Some(w) => {
                let (size, slide) = ((w * 60_000.0) as i64, (a.slide_minutes * 60_000.0) as i64);
                if !(size > 0 && slide > 0 && size % slide == 0 && a.lateness_seconds >= 0.0 && (0.0..=1.0).contains(&a.sample)) {
                    bail!("need --window-minutes > 0 a multiple of --slide-minutes > 0, --lateness-seconds ≥ 0 and --sample in [0, 1]");
                }
                let window = driftwatch::profile::window::WindowSpec {
                    size_ms: (w * 60_000.0) as i64,
                    slide_ms: (a.slide_minutes * 60_000.0) as i64,
                    lateness_ms: (a.lateness_seconds * 1000.0) as i64,
                };
                Some(DriftConfig { sample_fraction: a.sample, window, settings: settings.clone(), ..Default::default() })
            }
        };
        let output = run_with_model(model, &a.current, &settings, replay).map_err(|e| anyhow::anyhow!("{e}"))?;
        let worst = match output {
            ModelDriftOutput::Whole(report) => {
                match a.format {
                    DriftFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                    DriftFormat::Table => {
                        print!("{}", driftwatch::drift::format_table(&report.drift));
                        let m = &report.model_drift;
                        println!(
                            "model_score psi {:.4} ({})   outlier rate {:.4} (trained {:.4}, p {:.3e})   alert rate {:.4} (trained {:.4})",
                            m.score.psi,
                            driftwatch::drift::status_name(m.score.status),
                            m.outlier_rate.observed,
                            m.outlier_rate.expected,
                            m.outlier_rate.p_value,
                            m.alert_rate.observed,
                            m.alert_rate.expected
                        );
                    }
                }
                report.drift.status
            }
            ModelDriftOutput::Windows(windows) => {
                let mut worst = Status::InsufficientData;
                for w in &windows {
                    worst = worst.max(w.report.drift.status);
                    match a.format {
                        DriftFormat::Json => println!("{}", serde_json::to_string(w)?),
                        DriftFormat::Table => {
                            let red: Vec<&str> = w.report.drift.features.iter().filter(|f| f.status == Status::Red).map(|f| f.bins.name.as_str()).collect();
                            let changes: Vec<String> = w
                                .alerts
                                .iter()
                                .map(|c| format!("{} {}→{}", c.feature, driftwatch::drift::status_name(c.from), driftwatch::drift::status_name(c.to)))
                                .collect();
                            println!(
                                "{}  {:>6} samples  {:<17}  red: {:<40}  {}{}",
                                w.report.window_end,
                                w.report.drift.current.rows,
                                driftwatch::drift::status_name(w.report.drift.status),
                                red.join(","),
                                changes.join(", "),
                                if w.retrain.is_some() { "  RETRAIN REQUESTED" } else { "" }
                            );
                        }
                    }
                }
                worst
            }
        };
        if fail_on.is_some_and(|level| worst >= level) {
            std::process::exit(3);
        }
        return Ok(());
    }
    let reference = a.reference.expect("clap requires --reference without --model");
    let columns = a.columns.into_options(a.label.as_deref().unwrap_or(""));
    let report = driftwatch::commands::drift::run(&reference, &a.current, &columns, &settings)?;
    match a.format {
        DriftFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        DriftFormat::Table => print!("{}", driftwatch::drift::format_table(&report)),
    }
    if fail_on.is_some_and(|level| report.status >= level) {
        std::process::exit(3);
    }
    Ok(())
}

fn run(a: RunArgs) -> Result<()> {
    let config = driftwatch::config::Config::load(Some(&a.config), std::env::vars())?;
    driftwatch::telemetry::init(&config.log);
    if a.check {
        Pipeline::load(&config.model.path)?;
        println!("{}", toml_like(&config)?);
        eprintln!("configuration and model are valid");
        return Ok(());
    }
    let metrics = std::sync::Arc::new(driftwatch::metrics::Metrics::new());
    let shutdown = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    driftwatch::commands::run::run(config, metrics, shutdown)?;
    Ok(())
}

fn toml_like(config: &driftwatch::config::Config) -> Result<String> {
    Ok(serde_json::to_string_pretty(config)?)
}

fn demo(a: DemoArgs) -> Result<()> {
    if !(a.rate > 0.0) {
        bail!("--rate must be positive");
    }
    driftwatch::telemetry::init(&driftwatch::config::LogConfig { level: "warn".into(), ..Default::default() });
    let opts = driftwatch::commands::demo::DemoOptions {
        brokers: a.brokers,
        rate: a.rate,
        duration: a.duration.map(std::time::Duration::from_secs),
        model: a.model,
        scenario: a.scenario,
        invalid_every: a.invalid_every,
        metrics_listen: a.metrics_listen,
        seed: a.seed,
    };
    driftwatch::commands::demo::demo(opts, std::io::stdout())?;
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    if !(a.rate > 0.0) {
        bail!("--rate must be positive");
    }
    if !(0.0..=1.0).contains(&a.onset) {
        bail!("--onset must be in [0, 1]");
    }
    let start_ms = driftwatch::pipeline::parse_timestamp(&a.start).with_context(|| format!("--start `{}` is not RFC 3339", a.start))?;
    let cfg = GeneratorConfig { seed: a.seed, scenario: a.scenario, rows: a.rows, onset: a.onset, start_ms, rate_per_sec: a.rate, ..Default::default() };
    let format = match a.format {
        Format::Jsonl => OutputFormat::JsonLines,
        Format::Csv => OutputFormat::Csv,
    };
    match a.output {
        Some(path) => {
            let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            driftwatch::generate::write(&cfg, format, file)?;
        }
        None => match driftwatch::generate::write(&cfg, format, std::io::stdout().lock()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        },
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    let mut opts = a.columns.into_options(&a.label);
    opts.name = a.name;
    opts.version = a.model_version;
    let h = &mut opts.hyper;
    h.seed = a.seed;
    h.c = a.c;
    h.class_weight = a.class_weight;
    h.max_categories = a.max_categories;
    h.holdout_fraction = a.holdout;
    h.kmeans_clusters = a.clusters;
    h.outlier_false_positive_rate = a.outlier_fpr;
    h.reference_bins = a.bins;
    h.reference_top_k = a.reference_top_k;
    if let Some(rate) = a.target_alert_rate {
        h.threshold_policy = ThresholdPolicy::AlertRate { rate };
    }
    if let Some(precision) = a.target_precision {
        h.threshold_policy = ThresholdPolicy::Precision { precision };
    }
    let artifact = driftwatch::commands::train::run(&a.data, &a.out, &opts)?;
    let m = &artifact.training.holdout_metrics;
    eprintln!(
        "wrote {} ({} {}): {} numeric + {} categorical features, held-out ROC AUC {:.4}, PR AUC {:.4}, precision {:.3} / recall {:.3} at threshold {:.4}",
        a.out.display(),
        artifact.model.name,
        artifact.model.version,
        artifact.features.numeric.len(),
        artifact.features.categorical.len(),
        m.roc_auc,
        m.pr_auc,
        m.precision,
        m.recall,
        artifact.decision.threshold
    );
    for c in &artifact.training.ignored_columns {
        eprintln!("  ignored column `{}`: {}", c.name, c.reason);
    }
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    let pipeline = Pipeline::load(&a.model)?;
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::new(stdout);
    let summary = match a.input {
        Some(path) => {
            let file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            driftwatch::commands::score::score_lines(&pipeline, std::io::BufReader::new(file), out)?
        }
        None => driftwatch::commands::score::score_lines(&pipeline, std::io::stdin().lock(), out)?,
    };
    std::io::stderr().flush().ok();
    eprintln!(
        "scored {} lines ({} fraud, {} outliers), {} lines could not be scored",
        summary.scored, summary.fraud, summary.outliers, summary.errors
    );
    Ok(())
}
