//! The model registry: versioned pipeline artifacts in a directory, with stages and history.
//!
//! Layout of a registry directory:
//!
//! ```text
//! REGISTRY/
//!   index.json                      every model, version, stage and stage change (the only mutable file)
//!   artifacts/<name>/<version>.json copies of registered artifacts (immutable)
//! ```
//!
//! Writes are atomic: a new artifact is written to a temporary file and renamed into place
//! before the index names it, and the index is replaced the same way; so a crash leaves at
//! worst an artifact no index entry names, never a half-written file or a dangling pointer.
//!
//! Writers take an exclusive lock on `REGISTRY/.lock` (`flock(2)` through [`std::fs::File::lock`])
//! around each read-modify-write of the index, so two processes on one host (a CLI user and the
//! guards of several engines) never lose each other's update; readers need no lock (the index
//! is replaced by rename). `flock` is not reliable across hosts on network file systems: engines
//! on several hosts should share one writer (or a registry service such as MLflow's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::message::model_event::{ModelEvent, Stage, StageChange};
use crate::pipeline::artifact::{Artifact, ArtifactError, HoldoutMetrics};

/// Start of the reason recorded for a version restored by a rollback; the engine does not put
/// such a version under its rollback guard again.
pub const ROLLBACK_REASON_PREFIX: &str = "rollback: ";

/// A registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Model version (from the artifact).
    pub version: String,
    /// Registration time (RFC 3339).
    pub created: String,
    /// SHA-256 of the artifact file.
    pub artifact_sha256: String,
    /// Path of the artifact copy, relative to the registry.
    pub file: String,
    /// Current stage.
    pub stage: Stage,
    /// Held-out metrics from the training record.
    pub metrics: HoldoutMetrics,
    /// Training rows.
    pub training_rows: u64,
    /// Every stage change, oldest first.
    pub history: Vec<StageChange>,
}

/// All versions of one model name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Versions in registration order.
    pub versions: Vec<VersionEntry>,
    /// Earlier production versions, most recent last (what `rollback` returns to).
    pub previous_production: Vec<String>,
}

/// The registry index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Index format version.
    pub format_version: u32,
    /// Models by name.
    pub models: BTreeMap<String, ModelEntry>,
}

/// Registry failures.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// File system error.
    #[error("registry {path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The index is not readable.
    #[error("registry index {path} is corrupt: {reason}")]
    Corrupt {
        /// Index path.
        path: String,
        /// Parser message.
        reason: String,
    },
    /// The artifact is refused.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A version or model is unknown, or an operation does not apply.
    #[error("{0}")]
    Invalid(String),
    /// The registry service (MLflow) failed or could not be reached.
    #[error("{0}")]
    Remote(String),
}

/// What the engine and the `model` commands need of a registry; the directory registry
/// ([`Registry`]) and MLflow's ([`super::mlflow::MlflowRegistry`]) implement it. Versions are
/// driftwatch versions (`model.version` of the artifact); paths are local artifact files.
pub trait ModelRegistry: Send + Sync {
    /// The production version and its artifact file.
    fn production(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError>;
    /// The candidate to shadow-score (the newest candidate; MLflow: the `challenger` alias).
    fn latest_candidate(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError>;
    /// One version and its artifact file.
    fn show(&self, name: Option<&str>, version: &str) -> Result<(VersionEntry, PathBuf), RegistryError>;
    /// Every version of every model, in registration order.
    fn list(&self) -> Result<Vec<(String, VersionEntry)>, RegistryError>;
    /// Registers an artifact file as a candidate (the same bytes again: no event).
    fn register(&self, artifact_path: &Path, by: &str) -> Result<(String, VersionEntry, Option<ModelEvent>), RegistryError>;
    /// Makes `version` production.
    fn promote(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError>;
    /// Returns to the previous production version.
    fn rollback(&self, name: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError>;
    /// Rolls back only while `version` is production (another engine may have done it already).
    fn rollback_if_serving(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError>;
    /// The engine now serves production `version`, having served `previous`: a registry whose
    /// production can be changed outside driftwatch records where a rollback returns to.
    fn note_serving(&self, _version: &str, _previous: &str) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// Where the MLflow registry is and how it is used (`model.mlflow_*`).
#[derive(Debug, Clone, Default)]
pub struct MlflowSettings {
    /// Tracking server (empty: `MLFLOW_TRACKING_URI`).
    pub uri: String,
    /// Experiment for runs logged on registration.
    pub experiment: String,
    /// Directory for downloaded artifacts (empty: the system's temporary directory).
    pub cache: String,
}

impl MlflowSettings {
    /// The tracking server: `uri`, else `MLFLOW_TRACKING_URI`.
    pub fn tracking_uri(&self) -> Option<String> {
        if !self.uri.is_empty() {
            return Some(self.uri.clone());
        }
        std::env::var("MLFLOW_TRACKING_URI").ok().filter(|u| !u.is_empty())
    }

    /// The download cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        if self.cache.is_empty() { std::env::temp_dir().join("driftwatch-mlflow") } else { PathBuf::from(&self.cache) }
    }
}

/// The prefix of a registry setting that names an MLflow registered model.
pub const MLFLOW_PREFIX: &str = "mlflow:";

/// Opens the registry `spec` names: `mlflow:NAME` (MLflow's registered model NAME on the
/// tracking server of `mlflow`) or a directory.
pub fn open(spec: &str, mlflow: &MlflowSettings) -> Result<Box<dyn ModelRegistry>, RegistryError> {
    match spec.strip_prefix(MLFLOW_PREFIX) {
        Some(model) => Ok(Box::new(super::mlflow::MlflowRegistry::open(model, mlflow)?)),
        None => Ok(Box::new(Registry::open(Path::new(spec)))),
    }
}

impl ModelRegistry for Registry {
    fn production(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        Registry::production(self, name)
    }
    fn latest_candidate(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        Registry::latest_candidate(self, name)
    }
    fn show(&self, name: Option<&str>, version: &str) -> Result<(VersionEntry, PathBuf), RegistryError> {
        Registry::show(self, name, version)
    }
    fn list(&self) -> Result<Vec<(String, VersionEntry)>, RegistryError> {
        Ok(self.index()?.models.into_iter().flat_map(|(name, entry)| entry.versions.into_iter().map(move |v| (name.clone(), v))).collect())
    }
    fn register(&self, artifact_path: &Path, by: &str) -> Result<(String, VersionEntry, Option<ModelEvent>), RegistryError> {
        Registry::register(self, artifact_path, by)
    }
    fn promote(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        Registry::promote(self, name, version, by, reason)
    }
    fn rollback(&self, name: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        Registry::rollback(self, name, by, reason)
    }
    fn rollback_if_serving(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        Registry::rollback_if_serving(self, name, version, by, reason)
    }
}

/// A registry directory.
pub struct Registry {
    root: PathBuf,
}

fn now() -> String {
    crate::time::format_rfc3339_ms(crate::time::now_ms())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.display().to_string(), source }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let dir = path.parent().expect("registry paths have a parent");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().expect("file name").to_string_lossy(), std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Registry {
    /// The registry at `root` (created on first write).
    pub fn open(root: &Path) -> Registry {
        Registry { root: root.to_path_buf() }
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Reads the index (empty when the registry is new).
    pub fn index(&self) -> Result<Index, RegistryError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt { path: path.display().to_string(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index { format_version: 1, models: BTreeMap::new() }),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn save(&self, index: &Index) -> Result<(), RegistryError> {
        write_atomic(&self.index_path(), &serde_json::to_vec_pretty(index).expect("index serialises"))
    }

    /// Reads the index, lets `change` modify it and writes it back, all under the registry's
    /// exclusive lock (blocking until other writers are done). Nothing is written when `change`
    /// fails.
    fn update<T>(&self, change: impl FnOnce(&mut Index) -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.root.join(".lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        lock.lock().map_err(io(&path))?;
        let mut index = self.index()?;
        let out = change(&mut index)?;
        self.save(&index)?;
        Ok(out)
    }

    /// Registers an artifact file as a candidate. Registering the same bytes again is a no-op;
    /// another artifact under an existing version is refused.
    pub fn register(&self, artifact_path: &Path, by: &str) -> Result<(String, VersionEntry, Option<ModelEvent>), RegistryError> {
        let artifact = Artifact::load(artifact_path)?;
        let bytes = std::fs::read(artifact_path).map_err(io(artifact_path))?;
        let sha = crate::pipeline::train::sha256_hex(&bytes);
        let (name, version) = (artifact.model.name.clone(), artifact.model.version.clone());
        if name.contains(['/', '\\']) || version.contains(['/', '\\']) || version.starts_with('.') {
            return Err(RegistryError::Invalid(format!("model name `{name}` / version `{version}` cannot be used as a file name")));
        }
        self.update(|index| {
            let entry = index.models.entry(name.clone()).or_default();
            if let Some(existing) = entry.versions.iter().find(|v| v.version == version) {
                if existing.artifact_sha256 == sha {
                    return Ok((name, existing.clone(), None));
                }
                return Err(RegistryError::Invalid(format!("{name} {version} is already registered with different contents; train with another --model-version")));
            }
            let file = format!("artifacts/{name}/{version}.json");
            write_atomic(&self.root.join(&file), &bytes)?;
            let change = StageChange { at: now(), from: None, to: Stage::Candidate, by: by.to_string(), reason: "registered".into() };
            let v = VersionEntry {
                version: version.clone(),
                created: change.at.clone(),
                artifact_sha256: sha,
                file,
                stage: Stage::Candidate,
                metrics: artifact.training.holdout_metrics.clone(),
                training_rows: artifact.training.rows,
                history: vec![change.clone()],
            };
            entry.versions.push(v.clone());
            Ok((name.clone(), v, Some(ModelEvent { model: name, version, change })))
        })
    }

    fn model_of<'i>(index: &'i mut Index, name: Option<&str>) -> Result<(String, &'i mut ModelEntry), RegistryError> {
        let name = match name {
            Some(n) => n.to_string(),
            None if index.models.len() == 1 => index.models.keys().next().expect("one").clone(),
            None => return Err(RegistryError::Invalid(format!("the registry holds {} models; name one with --name", index.models.len()))),
        };
        let entry = index.models.get_mut(&name).ok_or_else(|| RegistryError::Invalid(format!("no model `{name}` in the registry")))?;
        Ok((name, entry))
    }

    /// The production version of a model, if any, with its artifact path.
    pub fn production(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        let mut index = self.index()?;
        let (_, entry) = Registry::model_of(&mut index, name)?;
        Ok(entry.versions.iter().find(|v| v.stage == Stage::Production).map(|v| (v.clone(), self.root.join(&v.file))))
    }

    /// The most recently registered candidate of a model, if any, with its artifact path.
    pub fn latest_candidate(&self, name: Option<&str>) -> Result<Option<(VersionEntry, PathBuf)>, RegistryError> {
        let mut index = self.index()?;
        let (_, entry) = Registry::model_of(&mut index, name)?;
        Ok(entry.versions.iter().rev().find(|v| v.stage == Stage::Candidate).map(|v| (v.clone(), self.root.join(&v.file))))
    }

    /// A version's entry and artifact path.
    pub fn show(&self, name: Option<&str>, version: &str) -> Result<(VersionEntry, PathBuf), RegistryError> {
        let mut index = self.index()?;
        let (name, entry) = Registry::model_of(&mut index, name)?;
        let v = entry.versions.iter().find(|v| v.version == version).ok_or_else(|| RegistryError::Invalid(format!("no version `{version}` of {name}")))?;
        Ok((v.clone(), self.root.join(&v.file)))
    }

    fn change(entry: &mut VersionEntry, to: Stage, by: &str, reason: &str) -> StageChange {
        let change = StageChange { at: now(), from: Some(entry.stage), to, by: by.to_string(), reason: reason.to_string() };
        entry.stage = to;
        entry.history.push(change.clone());
        change
    }

    /// Makes `version` production; the current production version is archived.
    pub fn promote(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.update(|index| {
            let (name, entry) = Registry::model_of(index, name)?;
            let target = entry.versions.iter().position(|v| v.version == version).ok_or_else(|| RegistryError::Invalid(format!("no version `{version}` of {name}")))?;
            if entry.versions[target].stage == Stage::Production {
                return Err(RegistryError::Invalid(format!("{name} {version} is already in production")));
            }
            // The artifact must still load: never promote a file that cannot serve.
            Artifact::load(&self.root.join(&entry.versions[target].file))?;
            let mut events = Vec::new();
            if let Some(current) = entry.versions.iter_mut().find(|v| v.stage == Stage::Production) {
                let change = Registry::change(current, Stage::Archived, by, &format!("replaced by {version}"));
                events.push(ModelEvent { model: name.clone(), version: current.version.clone(), change });
                entry.previous_production.push(current.version.clone());
            }
            let change = Registry::change(&mut entry.versions[target], Stage::Production, by, reason);
            events.push(ModelEvent { model: name.clone(), version: version.to_string(), change });
            Ok(events)
        })
    }

    /// Archives the production version and restores the previous one.
    pub fn rollback(&self, name: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.rollback_version(name, None, by, reason)
    }

    /// As [`Registry::rollback`], only if `version` is still production (compare-and-set under
    /// the lock): when another engine's guard already rolled it back, or a person promoted
    /// another version since, nothing changes and no events are returned. So guards of several
    /// engines judging the same bad version roll it back once, never the version before it.
    pub fn rollback_if_serving(&self, name: Option<&str>, version: &str, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.rollback_version(name, Some(version), by, reason)
    }

    fn rollback_version(&self, name: Option<&str>, expected: Option<&str>, by: &str, reason: &str) -> Result<Vec<ModelEvent>, RegistryError> {
        self.update(|index| {
            let (name, entry) = Registry::model_of(index, name)?;
            let current = entry.versions.iter().position(|v| v.stage == Stage::Production).ok_or_else(|| RegistryError::Invalid(format!("{name} has no production version")))?;
            if expected.is_some_and(|v| entry.versions[current].version != v) {
                return Ok(Vec::new());
            }
            let previous = entry.previous_production.pop().ok_or_else(|| RegistryError::Invalid(format!("{name} has no previous production version to roll back to")))?;
            let mut events = Vec::new();
            let change = Registry::change(&mut entry.versions[current], Stage::Archived, by, reason);
            events.push(ModelEvent { model: name.clone(), version: entry.versions[current].version.clone(), change });
            let back = entry.versions.iter_mut().find(|v| v.version == previous).expect("previous versions stay registered");
            let change = Registry::change(back, Stage::Production, by, &format!("{ROLLBACK_REASON_PREFIX}{reason}"));
            events.push(ModelEvent { model: name.clone(), version: previous, change });
            Ok(events)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A registered version with no history, for rule tests.
    pub(crate) fn entry(version: &str) -> VersionEntry {
        let metrics = HoldoutMetrics { roc_auc: 0.8, pr_auc: 0.1, precision: 0.1, recall: 0.5, alert_rate: 0.02, positives: 10 };
        VersionEntry { version: version.into(), created: "t".into(), artifact_sha256: "0".into(), file: String::new(), stage: Stage::Candidate, metrics, training_rows: 1, history: vec![] }
    }

    pub(crate) fn artifact(dir: &Path, version: &str, c: f64) -> PathBuf {
        let mut a = crate::pipeline::tests::trained(3000, 9);
        a.model.version = version.into();
        a.training.hyperparameters.c = c;
        let path = dir.join(format!("{version}.json"));
        a.save(&path).unwrap();
        path
    }

    #[test]
    fn register_promote_rollback_keeps_history_and_a_valid_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("reg"));
        let (v1, v2) = (artifact(dir.path(), "v1", 1.0), artifact(dir.path(), "v2", 0.5));
        let (name, e, ev) = reg.register(&v1, "alice").unwrap();
        assert_eq!((name.as_str(), e.stage), ("card-fraud", Stage::Candidate));
        assert!(ev.is_some());
        assert!(reg.register(&v1, "alice").unwrap().2.is_none(), "same bytes again: no-op");
        reg.register(&v2, "alice").unwrap();
        assert!(reg.production(None).unwrap().is_none());
        assert!(reg.rollback(None, "bob", "x").is_err(), "nothing to roll back to");

        let events = reg.promote(None, "v1", "alice", "first release").unwrap();
        assert_eq!(events.len(), 1);
        let events = reg.promote(None, "v2", "bob", "better recall").unwrap();
        assert_eq!(events.iter().map(|e| (e.version.as_str(), e.change.to)).collect::<Vec<_>>(), vec![("v1", Stage::Archived), ("v2", Stage::Production)]);
        let (prod, path) = reg.production(None).unwrap().unwrap();
        assert_eq!(prod.version, "v2");
        assert!(Artifact::load(&path).is_ok(), "the pointer names a loadable artifact");
        assert!(reg.promote(None, "v2", "bob", "again").is_err());

        let events = reg.rollback(None, "guard", "alert rate out of band").unwrap();
        assert_eq!(events.iter().map(|e| (e.version.as_str(), e.change.to)).collect::<Vec<_>>(), vec![("v2", Stage::Archived), ("v1", Stage::Production)]);
        let (restored, _) = reg.production(None).unwrap().unwrap();
        assert!(restored.history.last().unwrap().reason.starts_with(ROLLBACK_REASON_PREFIX), "the engine recognises a restore by this prefix");
        let (v2e, _) = reg.show(None, "v2").unwrap();
        assert_eq!(v2e.history.iter().map(|h| h.to).collect::<Vec<_>>(), vec![Stage::Candidate, Stage::Production, Stage::Archived]);
        assert_eq!(v2e.history.last().unwrap().reason, "alert rate out of band");
        assert_eq!(v2e.history.last().unwrap().by, "guard");
        // No temporary files are left behind.
        let leftovers: Vec<_> = walk(&dir.path().join("reg")).into_iter().filter(|p| p.to_string_lossy().contains(".tmp-")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn refuses_broken_artifacts_conflicting_versions_and_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("reg"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"{\"format_version\": 9}").unwrap();
        assert!(matches!(reg.register(&bad, "x").unwrap_err(), RegistryError::Artifact(_)));
        let v1 = artifact(dir.path(), "v1", 1.0);
        reg.register(&v1, "x").unwrap();
        let other = artifact(dir.path(), "v1-other", 0.1);
        let mut a = Artifact::load(&other).unwrap();
        a.model.version = "v1".into();
        a.save(&other).unwrap();
        assert!(reg.register(&other, "x").unwrap_err().to_string().contains("different contents"));
        assert!(reg.promote(None, "v9", "x", "").unwrap_err().to_string().contains("no version"));
        assert!(reg.promote(Some("nope"), "v1", "x", "").unwrap_err().to_string().contains("no model"));
        std::fs::write(dir.path().join("reg/index.json"), b"{oops").unwrap();
        assert!(matches!(reg.index().unwrap_err(), RegistryError::Corrupt { .. }));
    }

    #[test]
    fn concurrent_writers_never_lose_an_update() {
        // Two writers, each with its own lock file handle (flock locks belong to the open file,
        // as between processes), register 12 versions each and promote as they go.
        let dir = tempfile::tempdir().unwrap();
        let base = Artifact::load(&artifact(dir.path(), "base", 1.0)).unwrap();
        let paths: Vec<PathBuf> = (0..24)
            .map(|i| {
                let mut a = base.clone();
                a.model.version = format!("v{i:02}");
                let p = dir.path().join(format!("v{i:02}.json"));
                a.save(&p).unwrap();
                p
            })
            .collect();
        let root = dir.path().join("reg");
        std::thread::scope(|s| {
            for half in paths.chunks(12) {
                let root = &root;
                s.spawn(move || {
                    let reg = Registry::open(root);
                    for p in half {
                        let (_, v, _) = reg.register(p, "writer").unwrap();
                        reg.promote(None, &v.version, "writer", "next").unwrap();
                    }
                });
            }
        });
        let index = Registry::open(&root).index().unwrap();
        let entry = &index.models["card-fraud"];
        assert_eq!(entry.versions.len(), 24, "every registration is in the index");
        assert_eq!(entry.versions.iter().filter(|v| v.stage == Stage::Production).count(), 1);
        assert_eq!(entry.previous_production.len(), 23, "every promotion archived the one before");
        assert!(entry.versions.iter().all(|v| v.stage != Stage::Candidate), "each version was promoted: {:?}", entry.versions.iter().map(|v| (&v.version, v.stage)).collect::<Vec<_>>());
    }

    #[test]
    fn a_conditional_rollback_applies_once() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("reg"));
        for (v, c) in [("v1", 1.0), ("v2", 0.5), ("v3", 0.25)] {
            reg.register(&artifact(dir.path(), v, c), "x").unwrap();
            reg.promote(None, v, "x", "release").unwrap();
        }
        // Two engines' guards both judge v3 bad: the first rolls back to v2, the second sees
        // v3 no longer serving and changes nothing (v1 is not reached by a cascade).
        assert_eq!(reg.rollback_if_serving(None, "v3", "guard", "bad").unwrap().len(), 2);
        assert!(reg.rollback_if_serving(None, "v3", "guard", "bad").unwrap().is_empty());
        assert_eq!(reg.production(None).unwrap().unwrap().0.version, "v2");
        assert_eq!(reg.index().unwrap().models["card-fraud"].previous_production, vec!["v1".to_string()]);
    }
}
