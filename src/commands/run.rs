//! `driftwatch run`: the engine with its HTTP endpoint, until SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tracing::info;

use super::Outcome;
use crate::cli::RunArgs;
use crate::config::{Config, ConfigError};
use crate::observe::metrics::Metrics;
use crate::pipeline::{ArtifactError, Pipeline};
use crate::engine::{ensure_topics, Engine, EngineError, RunSummary};

/// Why the engine could not run or stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ArtifactError),
    /// The model registry could not be used.
    #[error(transparent)]
    Registry(#[from] crate::model::registry::RegistryError),
    /// Kafka or delivery failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The HTTP endpoint could not bind, or the runtime could not start.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Runs the engine until `shutdown` is set or a signal arrives. Returns what it did.
pub fn run(config: Config, metrics: Arc<Metrics>, shutdown: Arc<AtomicBool>) -> Result<RunSummary, RunError> {
    let pipeline = if config.model.registry.is_empty() {
        Pipeline::load(&config.model.path)?
    } else {
        let registry = config.model.open_registry()?;
        let name = (!config.model.registry_name.is_empty()).then_some(config.model.registry_name.as_str());
        let (_, path) = registry.production(name)?.ok_or_else(|| {
            crate::model::registry::RegistryError::Invalid(format!("registry {} has no production version; promote one first", config.model.registry))
        })?;
        Pipeline::load(&path)?
    };
    let model = &pipeline.artifact().model;
    info!(message = "Model loaded.", name = %model.name, version = %model.version, path = %config.model.path.display());
    // Before the async runtime: the OTLP exporter's blocking HTTP client must live outside it.
    let telemetry = crate::observe::traces::Telemetry::new(&config.telemetry, &config.kafka.group_id)
        .map_err(|e| RunError::Io { context: "setting up tracing".into(), source: std::io::Error::other(e.to_string()) })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|source| RunError::Io { context: "starting the async runtime".into(), source })?;
    runtime.block_on(async move {
        ensure_topics(&config).await?;
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        if !config.metrics.listen.is_empty() {
            let listener = tokio::net::TcpListener::bind(&config.metrics.listen)
                .await
                .map_err(|source| RunError::Io { context: format!("binding the metrics endpoint {}", config.metrics.listen), source })?;
            info!(message = "Serving /metrics, /healthz, /readyz.", address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
            tokio::spawn(crate::observe::http::serve(listener, metrics.clone(), async move {
                let _ = http_stopped.await;
            }));
        }
        let on_signal = shutdown.clone();
        let grace = std::time::Duration::from_millis(config.engine.shutdown_timeout_ms);
        tokio::spawn(async move {
            wait_for_signal().await;
            info!(message = "Signal received; stopping.", within_ms = grace.as_millis() as u64);
            on_signal.store(true, Ordering::Relaxed);
            // The members stop within 4/5 of the timeout; if a librdkafka call blocks longer,
            // the process still ends on time.
            crate::engine::exit_after(grace, 1, "Shutdown took longer than engine.shutdown_timeout_ms; exiting now. Events not yet committed will be processed again.".into());
        });
        let engine = Engine::new(config, pipeline, metrics).with_telemetry(telemetry).with_stop_deadline(grace);
        let result = tokio::task::spawn_blocking(move || engine.run(&shutdown)).await.expect("engine thread panicked");
        let _ = stop_http.send(());
        Ok(result?)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `run` from its command-line arguments (`--check`: validate and print, then exit).
pub fn execute(a: RunArgs) -> Result<Outcome, RunError> {
    let config = Config::load(Some(&a.config), std::env::vars())?;
    crate::observe::logs::init(&config.log);
    if a.check {
        Pipeline::load(&config.model.path)?;
        // Secrets (passwords, keys, JAAS configuration) never reach the output.
        println!("{}", serde_json::to_string_pretty(&config.redacted()).expect("configuration serialises"));
        eprintln!("configuration and model are valid");
        return Ok(Outcome::Success);
    }
    run(config, Arc::new(Metrics::new()), Arc::new(AtomicBool::new(false)))?;
    Ok(Outcome::Success)
}
