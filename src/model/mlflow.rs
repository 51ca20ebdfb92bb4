//! MLflow as tracking server and model registry, over its REST API (MLflow 2.x and 3.x).
//!
//! - **Tracking**: a training run is logged as an MLflow run — the hyper-parameters as params,
//!   the held-out metrics as metrics, the training data's file name and SHA-256 as tags, and the
//!   artifact itself under the run's artifacts (`pipeline/artifact.json`, uploaded through the
//!   server's artifact proxy: start it with `--artifacts-destination`).
//! - **Registry** (`model.registry = "mlflow:NAME"`): every registered artifact is a version of
//!   the registered model NAME. The alias `champion` is production, `challenger` is
//!   shadow-scored; a version without alias is archived. The driftwatch version, the artifact's
//!   SHA-256 and the held-out metrics are version tags (`driftwatch.*`); a downloaded artifact is
//!   checked against its SHA-256 before it is served. A promotion records the previous champion
//!   on the new one (`driftwatch.previous_champion`), which is where a rollback returns to; the
//!   guard's reason is recorded on the rolled-back version (`driftwatch.rollback_reason`).
//!
//! Credentials: `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` /
//! `MLFLOW_TRACKING_PASSWORD` (basic), as MLflow's own clients read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

use super::registry::{MlflowSettings, ModelEvent, ModelRegistry, RegistryError, Stage, StageChange, VersionEntry, ROLLBACK_REASON_PREFIX};
use crate::pipeline::artifact::{Artifact, HoldoutMetrics};

/// The alias of the version in production.
pub const CHAMPION: &str = "champion";
/// The alias of the version shadow-scored.
pub const CHALLENGER: &str = "challenger";
/// Version tags written by driftwatch.
pub mod tags {
    /// The artifact's own version (`model.version`).
    pub const VERSION: &str = "driftwatch.version";
    /// SHA-256 of the artifact file.
    pub const SHA256: &str = "driftwatch.artifact_sha256";
    /// Held-out metrics (JSON).
    pub const METRICS: &str = "driftwatch.holdout_metrics";
    /// Training rows.
    pub const ROWS: &str = "driftwatch.training_rows";
    /// The MLflow version that was champion before this one was promoted.
    pub const PREVIOUS_CHAMPION: &str = "driftwatch.previous_champion";
    /// Why the version's stage last changed, and by whom.
    pub const STAGE_REASON: &str = "driftwatch.stage_reason";
    /// Who made the last stage change.
    pub const CHANGED_BY: &str = "driftwatch.changed_by";
    /// Why the guard (or a person) rolled this version back.
    pub const ROLLBACK_REASON: &str = "driftwatch.rollback_reason";
}

/// Why a call to the MLflow server failed.
#[derive(Debug, Error)]
pub enum MlflowError {
    /// No answer (connection refused, timeout, TLS).
    #[error("MLflow server {url}: {}", causes(source))]
    Http {
        /// Request URL.
        url: String,
        /// Client error.
        source: reqwest::Error,
    },
    /// An error answer.
    #[error("MLflow server {url} answered {status}: {code} {message}")]
    Status {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// MLflow's error code (`RESOURCE_DOES_NOT_EXIST`, …).
        code: String,
        /// MLflow's message.
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("MLflow server {url}: unexpected answer: {reason}")]
    Reply {
        /// Request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// An error with its causes ("error sending request: … : Connection refused"): reqwest's own
/// message names the request, its sources say why.
fn causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl MlflowError {
    fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client for one MLflow server.
pub struct Mlflow {
    base: String,
    http: reqwest::blocking::Client,
    auth: Auth,
}

enum Auth {
    None,
    Bearer(String),
    Basic(String, Option<String>),
}

/// A run logged for a training.
#[derive(Debug, Clone)]
pub struct LoggedRun {
    /// MLflow's run id.
    pub run_id: String,
    /// The run's artifact root (`mlflow-artifacts:/…`).
    pub artifact_uri: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
}

/// One model version as MLflow returns it.
#[derive(Debug, Clone)]
pub struct MlflowVersion {
    /// MLflow's version number.
    pub number: String,
    /// Where its files are.
    pub source: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

fn string(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn tag_list(v: &Value) -> BTreeMap<String, String> {
    v.as_array().into_iter().flatten().map(|t| (string(t, "key"), string(t, "value"))).collect()
}

impl MlflowVersion {
    fn parse(v: &Value) -> MlflowVersion {
        MlflowVersion {
            number: string(v, "version"),
            source: string(v, "source"),
            created_ms: v["creation_timestamp"].as_i64().unwrap_or(0),
            updated_ms: v["last_updated_timestamp"].as_i64().unwrap_or(0),
            tags: tag_list(&v["tags"]),
        }
    }

    /// The driftwatch version this MLflow version holds (`mlflow-N` when not registered by driftwatch).
    pub fn driftwatch_version(&self) -> String {
        self.tags.get(tags::VERSION).cloned().unwrap_or_else(|| format!("mlflow-{}", self.number))
    }
}

/// The parameters of a training run, flattened (`threshold.policy`, …) as MLflow params are strings.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

impl Mlflow {
    /// A client for the server at `uri` (`http(s)://host:port`, with an optional path prefix).
    pub fn new(uri: &str) -> Result<Mlflow, MlflowError> {
        let base = uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(MlflowError::Reply { url: uri.into(), reason: "the tracking URI must be an http:// or https:// server (file stores are not supported)".into() });
        }
        let auth = match (std::env::var("MLFLOW_TRACKING_TOKEN"), std::env::var("MLFLOW_TRACKING_USERNAME")) {
            (Ok(token), _) if !token.is_empty() => Auth::Bearer(token),
            (_, Ok(user)) if !user.is_empty() => Auth::Basic(user, std::env::var("MLFLOW_TRACKING_PASSWORD").ok()),
            _ => Auth::None,
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| MlflowError::Http { url: base.clone(), source })?;
        Ok(Mlflow { base, http, auth })
    }

    fn authed(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.auth {
            Auth::None => r,
            Auth::Bearer(token) => r.bearer_auth(token),
            Auth::Basic(user, password) => r.basic_auth(user, password.as_ref()),
        }
    }

    /// The server's address.
    pub fn uri(&self) -> &str {
        &self.base
    }

    fn answer(url: String, r: Result<reqwest::blocking::Response, reqwest::Error>) -> Result<Vec<u8>, MlflowError> {
        let r = r.map_err(|source| MlflowError::Http { url: url.clone(), source })?;
        let status = r.status();
        let bytes = r.bytes().map_err(|source| MlflowError::Http { url: url.clone(), source })?.to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let message = match v["message"].as_str() {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        };
        Err(MlflowError::Status { url, status: status.as_u16(), code: string(&v, "error_code"), message })
    }

    fn json(url: String, bytes: Vec<u8>) -> Result<Value, MlflowError> {
        serde_json::from_slice(&bytes).map_err(|e| MlflowError::Reply { url, reason: e.to_string() })
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let bytes = Self::answer(url.clone(), self.authed(self.http.get(&url)).query(query).send())?;
        Self::json(url, bytes)
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let r = self.authed(self.http.post(&url)).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string()).send();
        let bytes = Self::answer(url.clone(), r)?;
        Self::json(url, bytes)
    }

    /// The artifact proxy's path of an `mlflow-artifacts:` URI.
    fn proxy_url(&self, uri: &str) -> Result<String, MlflowError> {
        let path = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| MlflowError::Reply {
            url: uri.into(),
            reason: "artifacts are not behind the server's proxy; start `mlflow server` with --artifacts-destination".into(),
        })?;
        // `mlflow-artifacts:/1/…` or `mlflow-artifacts://host:port/1/…`
        let path = match path.strip_prefix("//") {
            Some(rest) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => path.trim_start_matches('/'),
        };
        Ok(format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base))
    }

    /// The id of experiment `name`, created when missing.
    pub fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Ok(string(&v["experiment"], "experiment_id")),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => match self.post("experiments/create", json!({ "name": name })) {
                Ok(v) => Ok(string(&v, "experiment_id")),
                // Created by someone else in between.
                Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(string(&self.get("experiments/get-by-name", &[("experiment_name", name)])?["experiment"], "experiment_id")),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Logs the training of `artifact` (whose file is `bytes`) as a finished run of `experiment`.
    pub fn log_training(&self, experiment: &str, artifact: &Artifact, bytes: &[u8], by: &str) -> Result<LoggedRun, MlflowError> {
        let experiment_id = self.experiment(experiment)?;
        let now = crate::time::now_ms();
        let t = &artifact.training;
        let run_tags = json!([
            { "key": "mlflow.user", "value": by },
            { "key": "mlflow.source.name", "value": "driftwatch" },
            { "key": "driftwatch.model", "value": artifact.model.name },
            { "key": tags::VERSION, "value": artifact.model.version },
            { "key": "driftwatch.data_file", "value": t.data_file },
            { "key": "driftwatch.data_sha256", "value": t.data_sha256 },
            { "key": tags::SHA256, "value": crate::pipeline::train::sha256_hex(bytes) },
            { "key": "driftwatch.solver", "value": t.solver.method },
        ]);
        let run = self.post(
            "runs/create",
            json!({ "experiment_id": experiment_id, "start_time": now, "run_name": format!("{} {}", artifact.model.name, artifact.model.version), "tags": run_tags }),
        )?;
        let info = &run["run"]["info"];
        let (run_id, artifact_uri) = (string(info, "run_id"), string(info, "artifact_uri"));
        if run_id.is_empty() {
            return Err(MlflowError::Reply { url: format!("{}/api/2.0/mlflow/runs/create", self.base), reason: "no run id".into() });
        }
        let logged = self.log_run_contents(&run_id, &artifact_uri, artifact, bytes, now);
        // A run left RUNNING by a failed upload would look alive forever: mark it failed.
        let status = if logged.is_ok() { "FINISHED" } else { "FAILED" };
        let finished = self.post("runs/update", json!({ "run_id": run_id, "status": status, "end_time": crate::time::now_ms() }));
        logged?;
        finished?;
        Ok(LoggedRun { run_id, artifact_uri, experiment_id })
    }

    /// The params, metrics and artifact file of a training run.
    fn log_run_contents(&self, run_id: &str, artifact_uri: &str, artifact: &Artifact, bytes: &[u8], now: i64) -> Result<(), MlflowError> {
        let t = &artifact.training;
        let mut params = Vec::new();
        flatten("", &serde_json::to_value(&t.hyperparameters).expect("hyper-parameters serialise"), &mut params);
        params.push(("rows".into(), t.rows.to_string()));
        params.push(("train_rows".into(), t.train_rows.to_string()));
        params.push(("holdout_rows".into(), t.holdout_rows.to_string()));
        params.push(("positives".into(), t.positives.to_string()));
        params.push(("numeric_features".into(), artifact.features.numeric.len().to_string()));
        params.push(("categorical_features".into(), artifact.features.categorical.len().to_string()));
        params.push(("threshold".into(), artifact.decision.threshold.to_string()));
        let m = &t.holdout_metrics;
        let metrics = [("roc_auc", m.roc_auc), ("pr_auc", m.pr_auc), ("precision", m.precision), ("recall", m.recall), ("alert_rate", m.alert_rate), ("holdout_positives", m.positives as f64)];
        // MLflow takes at most 100 params per call.
        for (i, chunk) in params.chunks(100).enumerate() {
            let params: Vec<Value> = chunk.iter().map(|(k, v)| json!({ "key": k, "value": v.chars().take(6000).collect::<String>() })).collect();
            let metrics: Vec<Value> = if i == 0 { metrics.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| json!({ "key": k, "value": v, "timestamp": now, "step": 0 })).collect() } else { vec![] };
            self.post("runs/log-batch", json!({ "run_id": run_id, "params": params, "metrics": metrics }))?;
        }
        let url = format!("{}/pipeline/{}", self.proxy_url(artifact_uri)?, "artifact.json");
        Self::answer(url.clone(), self.authed(self.http.put(&url)).body(bytes.to_vec()).send())?;
        Ok(())
    }

    /// Creates registered model `name` unless it exists.
    pub fn ensure_model(&self, name: &str) -> Result<(), MlflowError> {
        match self.post("registered-models/create", json!({ "name": name })) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers the run's artifact as a new version of `name`.
    pub fn create_version(&self, name: &str, run: &LoggedRun, version_tags: &[(&str, String)]) -> Result<MlflowVersion, MlflowError> {
        let tags: Vec<Value> = version_tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let v = self.post("model-versions/create", json!({ "name": name, "source": format!("{}/pipeline", run.artifact_uri), "run_id": run.run_id, "tags": tags }))?;
        Ok(MlflowVersion::parse(&v["model_version"]))
    }

    /// Every version of `name`, oldest first (empty when the model does not exist).
    pub fn versions(&self, name: &str) -> Result<Vec<MlflowVersion>, MlflowError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let v = self.get("model-versions/search", &query)?;
            out.extend(v["model_versions"].as_array().into_iter().flatten().map(MlflowVersion::parse));
            token = string(&v, "next_page_token");
            if token.is_empty() {
                break;
            }
        }
        out.sort_by_key(|v| v.number.parse::<u64>().unwrap_or(u64::MAX));
        Ok(out)
    }

    /// The aliases of `name` (alias → version number); `None` when the model does not exist.
    pub fn aliases(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        match self.get("registered-models/get", &[("name", name)]) {
            Ok(v) => Ok(Some(v["registered_model"]["aliases"].as_array().into_iter().flatten().map(|a| (string(a, "alias"), string(a, "version"))).collect())),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One version of `name`.
    pub fn version(&self, name: &str, number: &str) -> Result<MlflowVersion, MlflowError> {
        Ok(MlflowVersion::parse(&self.get("model-versions/get", &[("name", name), ("version", number)])?["model_version"]))
    }

    /// Points `alias` of `name` at version `number`.
    pub fn set_alias(&self, name: &str, alias: &str, number: &str) -> Result<(), MlflowError> {
        self.post("registered-models/alias", json!({ "name": name, "alias": alias, "version": number })).map(|_| ())
    }

    /// Removes `alias` from `name`.
    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let url = format!("{}/api/2.0/mlflow/registered-models/alias", self.base);
        let r = self.authed(self.http.delete(&url)).header(reqwest::header::CONTENT_TYPE, "application/json").body(json!({ "name": name, "alias": alias }).to_string()).send();
        Self::answer(url, r).map(|_| ())
    }

    /// Sets a tag on version `number` of `name`.
    pub fn set_version_tag(&self, name: &str, number: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post("model-versions/set-tag", json!({ "name": name, "version": number, "key": key, "value": value })).map(|_| ())
    }

    /// The bytes of the driftwatch artifact of a version.
    pub fn download(&self, version: &MlflowVersion) -> Result<Vec<u8>, MlflowError> {
        let url = format!("{}/artifact.json", self.proxy_url(&version.source)?.trim_end_matches('/'));
        Self::answer(url.clone(), self.authed(self.http.get(&url)).send())
    }
}

/// The MLflow model registry, for one registered model (`model.registry = "mlflow:NAME"`).
pub struct MlflowRegistry {
    client: Mlflow,
    model: String,
    experiment: String,
    cache: PathBuf,
    /// Artifacts already downloaded and checked, by (version number, SHA-256): the watcher asks
    /// every poll, and a file is hashed once, not every time.
    verified: std::sync::Mutex<BTreeMap<(String, String), PathBuf>>,
}

impl From<MlflowError> for RegistryError {
    fn from(e: MlflowError) -> RegistryError {
        RegistryError::Remote(e.to_string())
    }
}

impl MlflowRegistry {
    /// The registry of model `model` on the server at `uri`; runs are logged to `experiment`;
    /// downloaded artifacts are kept under `cache`.
    pub fn new(uri: &str, model: &str, experiment: &str, cache: PathBuf) -> Result<MlflowRegistry, RegistryError> {
        if model.is_empty() {
            return Err(RegistryError::Invalid("an MLflow registry needs a model name: mlflow:NAME".into()));
        }
        Ok(MlflowRegistry { client: Mlflow::new(uri)?, model: model.to_string(), experiment: experiment.to_string(), cache, verified: Default::default() })
    }

    /// The registry of model `model` as `settings` say: their server (else `MLFLOW_TRACKING_URI`),
    /// experiment and download cache.
    pub fn open(model: &str, settings: &MlflowSettings) -> Result<MlflowRegistry, RegistryError> {
        let uri = settings.tracking_uri().ok_or_else(|| {
            RegistryError::Invalid(format!("MLflow's model `{model}` needs a tracking server: set model.mlflow_uri or --mlflow-uri (or MLFLOW_TRACKING_URI)"))
        })?;
        let experiment = if settings.experiment.is_empty() { "driftwatch" } else { settings.experiment.as_str() };
        MlflowRegistry::new(&uri, model, experiment, settings.cache_dir())
    }

    /// The client.
    pub fn client(&self) -> &Mlflow {
        &self.client
    }

    fn check_name(&self, name: Option<&str>) -> Result<(), RegistryError> {
        match name {
            Some(n) if n != self.model => Err(RegistryError::Invalid(format!("this registry is MLflow's model `{}`, not `{n}`", self.model))),
            _ => Ok(()),
        }
    }

    /// `champion` is production; `challenger`, or a version never promoted, is a candidate;
    /// the rest (replaced or rolled back) is archived.
    fn stage_of(v: &MlflowVersion, aliases: &BTreeMap<String, String>) -> Stage {
        if aliases.get(CHAMPION) == Some(&v.number) {
            Stage::Production
        } else if aliases.get(CHALLENGER) == Some(&v.number) || v.tags.get(tags::STAGE_REASON).is_none_or(|r| r == "registered") {
            Stage::Candidate
        } else {
            Stage::Archived
        }
    }

    fn entry(&self, v: &MlflowVersion, aliases: &BTreeMap<String, String>) -> VersionEntry {
        let stage = Self::stage_of(v, aliases);
        let at = crate::time::format_rfc3339_ms(v.updated_ms);
        let reason = v.tags.get(tags::STAGE_REASON).cloned().unwrap_or_else(|| "registered".into());
        let by = v.tags.get(tags::CHANGED_BY).cloned().unwrap_or_default();
        VersionEntry {
            version: v.driftwatch_version(),
            created: crate::time::format_rfc3339_ms(v.created_ms),
            artifact_sha256: v.tags.get(tags::SHA256).cloned().unwrap_or_default(),
            file: format!("models:/{}/{}", self.model, v.number),
            stage,
            metrics: v.tags.get(tags::METRICS).and_then(|m| serde_json::from_str::<HoldoutMetrics>(m).ok()).unwrap_or(HoldoutMetrics {
                roc_auc: f64::NAN,
                pr_auc: f64::NAN,
                precision: f64::NAN,
                recall: f64::NAN,
                alert_rate: f64::NAN,
                positives: 0,
            }),
            training_rows: v.tags.get(tags::ROWS).and_then(|r| r.parse().ok()).unwrap_or(0),
            history: vec![StageChange { at, from: None, to: stage, by, reason }],
        }
    }

    /// The artifact of version `v`, downloaded once into the cache and checked against its SHA-256.
    fn local(&self, v: &MlflowVersion) -> Result<PathBuf, RegistryError> {
        let sha = v.tags.get(tags::SHA256).cloned().unwrap_or_default();
        let key = (v.number.clone(), sha.clone());
        if let Some(path) = self.verified.lock().expect("verified lock").get(&key).filter(|p| p.exists()) {
            return Ok(path.clone());
        }
        let path = self.fetch(v, &sha)?;
        if !sha.is_empty() {
            self.verified.lock().expect("verified lock").insert(key, path.clone());
        }
        Ok(path)
    }

    fn fetch(&self, v: &MlflowVersion, sha: &str) -> Result<PathBuf, RegistryError> {
        let dir = self.cache.join(&self.model);
        let path = dir.join(format!("{}-{}.json", v.number, &sha[..sha.len().min(16)]));
        if !sha.is_empty() && std::fs::read(&path).is_ok_and(|b| crate::pipeline::train::sha256_hex(&b) == *sha) {
            return Ok(path);
        }
        let bytes = self.client.download(v)?;
        let got = crate::pipeline::train::sha256_hex(&bytes);
        if !sha.is_empty() && got != sha {
            return Err(RegistryError::Invalid(format!("{} version {}: the downloaded artifact's SHA-256 is {got}, the version says {sha}", self.model, v.number)));
        }
        std::fs::create_dir_all(&dir).map_err(|source| RegistryError::Io { path: dir.display().to_string(), source })?;
        let tmp = dir.join(format!(".{}.tmp-{}", v.number, std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(|source| RegistryError::Io { path: tmp.display().to_string(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| RegistryError::Io { path: path.display().to_string(), source })?;
        Ok(path)
    }

    /// The version `wanted` names: an MLflow version number, or a driftwatch version (the newest
    /// MLflow version holding it).
    fn find(&self, wanted: &str) -> Result<MlflowVersion, RegistryError> {
        let versions = self.client.versions(&self.model)?;
        versions
            .iter()
            .find(|v| v.number == wanted)
            .or_else(|| versions.iter().rev().find(|v| v.tags.get(tags::VERSION).map(String::as_str) == Some(wanted)))
            .cloned()
            .ok_or_else(|| RegistryError::Invalid(format!("no version `{wanted}` of {} in MLflow", self.model)))
    }

    fn aliased(&self, alias: &str) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        let Some(aliases) = self.client.aliases(&self.model)? else {
            return Err(RegistryError::Invalid(format!("no registered model `{}` in MLflow at {}", self.model, self.client.uri())));
        };
        let Some(number) = aliases.get(alias) else { return Ok(None) };
        let v = self.client.version(&self.model, number)?;
        let path = self.local(&v)?;
        Ok(Some((self.entry(&v, &aliases), path)))
    }

    /// Registers an artifact file (a run with its params, metrics and the file, then a model
    /// version); the same bytes registered before are not registered again.
    pub fn register_run(&self, artifact_path: &Path, by: &str) -> Result<(VersionEntry, MlflowVersion, Option<ModelEvent>), RegistryError> {
        let artifact = Artifact::load(artifact_path)?;
        if artifact.model.name != self.model {
            return Err(RegistryError::Invalid(format!("the artifact is model `{}`; this registry is MLflow's `{}`", artifact.model.name, self.model)));
        }
        let bytes = std::fs::read(artifact_path).map_err(|source| RegistryError::Io { path: artifact_path.display().to_string(), source })?;
        let sha = crate::pipeline::train::sha256_hex(&bytes);
        self.client.ensure_model(&self.model)?;
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        if let Some(existing) = self.client.versions(&self.model)?.into_iter().find(|v| v.tags.get(tags::SHA256) == Some(&sha)) {
            return Ok((self.entry(&existing, &aliases), existing, None));
        }
        let run = self.client.log_training(&self.experiment, &artifact, &bytes, by)?;
        let metrics = serde_json::to_string(&artifact.training.holdout_metrics).expect("metrics serialise");
        let version_tags = [
            (tags::VERSION, artifact.model.version.clone()),
            (tags::SHA256, sha),
            (tags::METRICS, metrics),
            (tags::ROWS, artifact.training.rows.to_string()),
            (tags::CHANGED_BY, by.to_string()),
            (tags::STAGE_REASON, "registered".to_string()),
        ];
        let v = self.client.create_version(&self.model, &run, &version_tags)?;
        let entry = self.entry(&v, &aliases);
        let event = ModelEvent { model: self.model.clone(), version: entry.version.clone(), change: StageChange { at: entry.created.clone(), from: None, to: Stage::Candidate, by: by.into(), reason: "registered".into() } };
        Ok((entry, v, Some(event)))
    }

    /// Points `challenger` at a version (shadow scoring).
    pub fn challenge(&self, wanted: &str, by: &str) -> Result<MlflowVersion, RegistryError> {
        let v = self.find(wanted)?;
        self.client.set_alias(&self.model, CHALLENGER, &v.number)?;
        self.client.set_version_tag(&self.model, &v.number, tags::CHANGED_BY, by)?;
        Ok(v)
    }

    /// Records, on the champion `number`, the champion it replaced (unless already recorded):
    /// a rollback returns there. The engine calls this when it starts serving a champion moved
    /// outside driftwatch (MLflow's UI or client).
    pub fn note_replaced(&self, number: &str, previous: &str) -> Result<(), RegistryError> {
        let v = self.client.version(&self.model, number)?;
        if previous != number && !v.tags.contains_key(tags::PREVIOUS_CHAMPION) {
            self.client.set_version_tag(&self.model, number, tags::PREVIOUS_CHAMPION, previous)?;
        }
        Ok(())
    }

    fn change(&self, number: &str, by: &str, reason: &str) -> Result<(), RegistryError> {
        self.client.set_version_tag(&self.model, number, tags::CHANGED_BY, by)?;
        self.client.set_version_tag(&self.model, number, tags::STAGE_REASON, reason)?;
        Ok(())
    }
}

fn event(model: &str, version: String, from: Stage, to: Stage, by: &str, reason: &str) -> ModelEvent {
    ModelEvent { model: model.to_string(), version, change: StageChange { at: crate::time::format_rfc3339_ms(crate::time::now_ms()), from: Some(from), to, by: by.into(), reason: reason.into() } }
}

impl ModelRegistry for MlflowRegistry {
    fn production(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        self.check_name(name)?;
        self.aliased(CHAMPION)
    }

    fn latest_candidate(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        self.check_name(name)?;
        self.aliased(CHALLENGER)
    }

    fn list(&self) -> Result<Vec<(String, VersionEntry)>, RegistryError> {
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        Ok(self.client.versions(&self.model)?.iter().map(|v| (self.model.clone(), self.entry(v, &aliases))).collect())
    }

    fn show(&self, name: Option<&str>, version: &str) -> Result<(VersionEntry, PathBuf), RegistryError> {
        self.check_name(name)?;
        let v = self.find(version)?;
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        Ok((self.entry(&v, &aliases), self.local(&v)?))
    }

    fn register(&self, artifact_path: &Path, by: &str) -> Result<(String, VersionEntry, Option<ModelEvent>), RegistryError> {
        let (entry, _, event) = self.register_run(artifact_path, by)?;
        Ok((self.model.clone(), entry, event))
    }

    fn promote(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.check_name(name)?;
        let target = self.find(version)?;
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        let current = aliases.get(CHAMPION).cloned();
        if current.as_deref() == Some(target.number.as_str()) {
            return Err(RegistryError::Invalid(format!("{} version {} is already the champion", self.model, target.number)));
        }
        self.local(&target)?;
        let mut events = Vec::new();
        if let Some(current) = &current {
            self.client.set_version_tag(&self.model, &target.number, tags::PREVIOUS_CHAMPION, current)?;
            let old = self.client.version(&self.model, current)?;
            self.change(current, by, &format!("replaced by {}", target.driftwatch_version()))?;
            events.push(event(&self.model, old.driftwatch_version(), Stage::Production, Stage::Archived, by, &format!("replaced by {}", target.driftwatch_version())));
        }
        self.change(&target.number, by, reason)?;
        self.client.set_alias(&self.model, CHAMPION, &target.number)?;
        if aliases.get(CHALLENGER) == Some(&target.number) {
            self.client.delete_alias(&self.model, CHALLENGER)?;
        }
        events.push(event(&self.model, target.driftwatch_version(), Self::stage_of(&target, &aliases), Stage::Production, by, reason));
        Ok(events)
    }

    fn rollback(&self, name: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.check_name(name)?;
        self.roll_back(None, by, reason)
    }

    fn rollback_if_serving(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.check_name(name)?;
        self.roll_back(Some(version), by, reason)
    }

    fn note_serving(&self, version: &str, previous: &str) -> Result<(), RegistryError> {
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        let (Some(number), Ok(prev)) = (aliases.get(CHAMPION), self.find(previous)) else { return Ok(()) };
        let current = self.client.version(&self.model, number)?;
        if current.driftwatch_version() == version {
            self.note_replaced(number, &prev.number)?;
        }
        Ok(())
    }
}

impl MlflowRegistry {
    fn roll_back(&self, expected: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        let aliases = self.client.aliases(&self.model)?.unwrap_or_default();
        let number = aliases.get(CHAMPION).ok_or_else(|| RegistryError::Invalid(format!("{} has no champion", self.model)))?;
        let current = self.client.version(&self.model, number)?;
        if expected.is_some_and(|v| current.driftwatch_version() != v) {
            return Ok(Vec::new());
        }
        let previous = current
            .tags
            .get(tags::PREVIOUS_CHAMPION)
            .cloned()
            .ok_or_else(|| RegistryError::Invalid(format!("{} version {} records no previous champion to roll back to", self.model, current.number)))?;
        let back = self.client.version(&self.model, &previous)?;
        self.client.set_version_tag(&self.model, &current.number, tags::ROLLBACK_REASON, reason)?;
        self.change(&current.number, by, reason)?;
        let restored = format!("{ROLLBACK_REASON_PREFIX}{reason}");
        self.change(&back.number, by, &restored)?;
        self.client.set_alias(&self.model, CHAMPION, &back.number)?;
        Ok(vec![
            event(&self.model, current.driftwatch_version(), Stage::Production, Stage::Archived, by, reason),
            event(&self.model, back.driftwatch_version(), Self::stage_of(&back, &aliases), Stage::Production, by, &restored),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_the_proxy() {
        let m = Mlflow::new("http://h:5000/").unwrap();
        assert_eq!(m.proxy_url("mlflow-artifacts:/1/abc/artifacts/pipeline").unwrap(), "http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/pipeline");
        assert_eq!(m.proxy_url("mlflow-artifacts://other:5000/1/abc/artifacts").unwrap(), "http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts");
        let e = m.proxy_url("s3://bucket/1/abc").unwrap_err().to_string();
        assert!(e.contains("--artifacts-destination"), "{e}");
        assert!(Mlflow::new("file:///tmp/mlruns").is_err(), "a file store is refused with a reason");
    }

    #[test]
    fn hyperparameters_flatten_to_dotted_params() {
        let mut out = Vec::new();
        flatten("", &json!({ "c": 1.0, "threshold": { "policy": "fpr", "value": 0.01 }, "none": null }), &mut out);
        out.sort();
        assert_eq!(out, vec![("c".to_string(), "1.0".to_string()), ("threshold.policy".into(), "fpr".into()), ("threshold.value".into(), "0.01".into())]);
    }
}
