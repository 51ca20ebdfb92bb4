//! `driftwatch model …`: the registry from the command line; stage changes are published to
//! `model-events` when a cluster is given.

use thiserror::Error;

use super::Outcome;
use crate::cli::{ModelArgs, ModelCommand};
use crate::message::ModelEvent;
use crate::model::diff::diff;
use crate::model::mlflow::MlflowRegistry;
use crate::model::registry::{self, MlflowSettings, RegistryError};
use crate::pipeline::{Artifact, ArtifactError};

/// Why a `model` command failed.
#[derive(Debug, Error)]
pub enum ModelCommandError {
    /// The registry refused the operation or could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A registered artifact could not be loaded.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The stage changes were made but could not be published.
    #[error("publishing to {topic} on {brokers}: {source}")]
    Publish {
        /// Topic.
        topic: String,
        /// Cluster.
        brokers: String,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("registry types serialise")
}

fn stage_name(stage: crate::message::Stage) -> String {
    serde_json::to_value(stage).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Runs one registry operation.
pub fn execute(a: ModelArgs) -> Result<Outcome, ModelCommandError> {
    let settings = MlflowSettings { uri: a.mlflow_uri.clone().unwrap_or_default(), experiment: a.mlflow_experiment.clone(), cache: String::new() };
    let reg = registry::open(&a.registry, &settings)?;
    let by = a.by.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
    let name = a.name.as_deref();
    let events: Vec<ModelEvent> = match a.command {
        ModelCommand::Register { artifact } => {
            let (model, entry, event) = reg.register(&artifact, &by)?;
            match event {
                Some(_) => eprintln!("registered {model} {} as candidate ({})", entry.version, entry.file),
                None => eprintln!("{model} {} is already registered (same contents; {})", entry.version, entry.file),
            }
            // For scripts: what was registered, where (an MLflow version is `models:/NAME/N`).
            println!("{}", serde_json::json!({"model": model, "version": entry.version, "file": entry.file, "sha256": entry.artifact_sha256}));
            event.into_iter().collect()
        }
        ModelCommand::List => {
            let versions = reg.list()?;
            println!("{:<16} {:<20} {:<11} {:<25} {:>8} {:>8}  {}", "model", "version", "stage", "created", "roc_auc", "pr_auc", "file");
            for (model, v) in versions {
                println!("{model:<16} {:<20} {:<11} {:<25} {:>8.4} {:>8.4}  {}", v.version, stage_name(v.stage), v.created, v.metrics.roc_auc, v.metrics.pr_auc, v.file);
            }
            vec![]
        }
        ModelCommand::Show { version } => {
            let (entry, path) = reg.show(name, &version)?;
            // The version's probability calibration (what its estimated performance starts from).
            let calibration = Artifact::load(&path)?.calibration.map(|c| {
                serde_json::json!({"method": c.method, "rows": c.rows, "positives": c.positives, "blocks": c.blocks.len(), "holdout_ece_raw": c.holdout_ece_raw, "holdout_ece_calibrated": c.holdout_ece_calibrated})
            });
            println!("{}", json(&serde_json::json!({"entry": entry, "artifact": path, "calibration": calibration})));
            vec![]
        }
        ModelCommand::Challenge { version } => {
            let Some(model) = a.registry.strip_prefix(registry::MLFLOW_PREFIX) else {
                return Err(RegistryError::Invalid("a directory registry shadow-scores its newest candidate: register the version instead".into()).into());
            };
            let mlflow = MlflowRegistry::open(model, &settings)?;
            let v = mlflow.challenge(&version, &by)?;
            eprintln!("{model} version {} ({}) is the challenger", v.number, v.driftwatch_version());
            vec![]
        }
        ModelCommand::Promote { version, reason } => reg.promote(name, &version, &by, &reason)?,
        ModelCommand::Rollback { reason } => reg.rollback(name, &by, &reason)?,
        ModelCommand::Diff { a: va, b: vb } => {
            let load = |v: &str| -> Result<Artifact, ModelCommandError> { Ok(Artifact::load(&reg.show(name, v)?.1)?) };
            println!("{}", json(&diff(&load(&va)?, &load(&vb)?)));
            vec![]
        }
    };
    for e in &events {
        eprintln!("{} {}: {}", e.model, e.version, stage_name(e.change.to));
    }
    if events.is_empty() {
        return Ok(Outcome::Success);
    }
    match &a.brokers {
        Some(brokers) => {
            let records: Vec<(String, Vec<u8>)> = events.iter().map(|e| (e.model.clone(), serde_json::to_vec(e).expect("events serialise"))).collect();
            crate::engine::kafka::publish(brokers, &a.events_topic, &records)
                .map_err(|source| ModelCommandError::Publish { topic: a.events_topic.clone(), brokers: brokers.clone(), source })?;
            eprintln!("published {} event(s) to {}", events.len(), a.events_topic);
        }
        None => eprintln!("note: not published to {} (no --brokers / DRIFTWATCH_KAFKA__BROKERS)", a.events_topic),
    }
    Ok(Outcome::Success)
}
