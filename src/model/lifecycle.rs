//! A serving engine's models over time: the production pipeline and its generation (hot reload
//! between two messages), the shadow candidate, and the rollback guard's state; and what a look
//! at the registry asks for ([`RegistryWatch`]).
//!
//! Members (worker threads) read the generation once per message (one atomic load) and fetch
//! the new pipeline only when it moved, so each event is scored by exactly one version. Nothing
//! here talks to Kafka; the engine applies what this decides.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;

use super::guard::{should_guard, Guard, GuardRules, GuardVerdict};
use super::registry::{ModelRegistry, RegistryError};
use crate::message::drift::WindowReport;
use crate::pipeline::Pipeline;

/// Why a new version cannot replace the serving one.
#[derive(Debug, Error)]
pub enum SwapError {
    /// Its id/key/timestamp columns differ, so it would read the live events differently.
    #[error("{model} {version} does not fit the live events: its id/key/timestamp columns {new:?} differ from {serving:?}")]
    DoesNotFit {
        /// Model name.
        model: String,
        /// Refused version.
        version: String,
        /// Its (id, key, timestamp) columns.
        new: (Option<String>, Option<String>, Option<String>),
        /// The serving version's.
        serving: (Option<String>, Option<String>, Option<String>),
    },
    /// The artifact did not load.
    #[error(transparent)]
    Artifact(#[from] crate::pipeline::ArtifactError),
}

/// The models of a running engine, shared by its members.
pub struct ModelLifecycle {
    /// The serving pipeline; replaced whole on a swap.
    serving: RwLock<Arc<Pipeline>>,
    /// Bumped on every swap; members compare it per message.
    generation: AtomicU64,
    /// The registry's newest candidate, shadow-scored on a share of events.
    shadow: RwLock<Option<Arc<Pipeline>>>,
    /// Bumped when the candidate changes.
    shadow_generation: AtomicU64,
    /// Watches a newly swapped-in version and says when to roll it back.
    guard: Mutex<Option<Guard>>,
    rules: GuardRules,
}

impl ModelLifecycle {
    /// Serving `pipeline`, no candidate, no guard.
    pub fn new(pipeline: Pipeline, rules: GuardRules) -> ModelLifecycle {
        ModelLifecycle {
            serving: RwLock::new(Arc::new(pipeline)),
            generation: AtomicU64::new(0),
            shadow: RwLock::new(None),
            shadow_generation: AtomicU64::new(0),
            guard: Mutex::new(None),
            rules,
        }
    }

    /// The pipeline serving now.
    pub fn serving(&self) -> Arc<Pipeline> {
        self.serving.read().expect("pipeline lock").clone()
    }

    /// Generation of the serving pipeline.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The shadow candidate, if any.
    pub fn shadow(&self) -> Option<Arc<Pipeline>> {
        self.shadow.read().expect("shadow lock").clone()
    }

    /// Generation of the shadow candidate.
    #[inline]
    pub fn shadow_generation(&self) -> u64 {
        self.shadow_generation.load(Ordering::Acquire)
    }

    /// Replaces the candidate (`None`: shadowing stops).
    pub fn set_shadow(&self, candidate: Option<Arc<Pipeline>>) {
        *self.shadow.write().expect("shadow lock") = candidate;
        self.shadow_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `new` reads the live events as `serving` does: the same id, key and timestamp
    /// columns (features may change).
    pub fn check_fit(serving: &Pipeline, new: &Pipeline) -> Result<(), SwapError> {
        let cols = |p: &Pipeline| {
            let c = &p.artifact().columns;
            (c.id.clone(), c.key.clone(), c.timestamp.clone())
        };
        let (a, b) = (cols(serving), cols(new));
        if a != b {
            let m = &new.artifact().model;
            return Err(SwapError::DoesNotFit { model: m.name.clone(), version: m.version.clone(), new: b, serving: a });
        }
        Ok(())
    }

    /// Swaps `new` in after [`ModelLifecycle::check_fit`]; with `guarded`, the guard watches it.
    /// Returns the version it replaced.
    pub fn swap(&self, new: Pipeline, guarded: bool) -> Result<Arc<Pipeline>, SwapError> {
        let old = self.serving();
        Self::check_fit(&old, &new)?;
        let version = new.artifact().model.version.clone();
        *self.serving.write().expect("pipeline lock") = Arc::new(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.guard.lock().expect("guard lock") = if guarded { Guard::watch(&version, &self.rules) } else { None };
        Ok(old)
    }

    /// Records a sampled decode+score latency for the guard (no-op when nothing is guarded).
    pub fn record_latency_us(&self, micros: u64) {
        if let Some(g) = self.guard.lock().expect("guard lock").as_mut() {
            g.record_latency_us(micros);
        }
    }

    /// Whether a version is under the guard now.
    pub fn guarded_version(&self) -> Option<String> {
        self.guard.lock().expect("guard lock").as_ref().map(|g| g.version().to_string())
    }

    /// Judges a closed window of `serving`; the guard stops watching once it passes the version
    /// or asks for a rollback (so a rollback is asked for once).
    pub fn judge_window(&self, serving: &str, report: &WindowReport) -> GuardVerdict {
        let mut slot = self.guard.lock().expect("guard lock");
        let Some(g) = slot.as_mut() else { return GuardVerdict::Ignored };
        let verdict = g.judge(serving, report, &self.rules);
        if matches!(verdict, GuardVerdict::Passed | GuardVerdict::RollBack { .. }) {
            *slot = None;
        }
        verdict
    }
}

/// What a look at the registry asks the engine to do.
#[derive(Debug)]
pub enum RegistryChange {
    /// Serve this production version (guarded unless it was restored by a rollback).
    Promote {
        /// Version.
        version: String,
        /// Its artifact file.
        path: PathBuf,
        /// Whether the guard watches it.
        guarded: bool,
    },
    /// Shadow-score this candidate (`None`: stop shadowing).
    Shadow {
        /// Version and artifact file of the newest candidate.
        candidate: Option<(String, PathBuf)>,
    },
    /// The registry could not be read; the running model stays.
    Unreadable(RegistryError),
}

/// Remembers what the engine refused, so a broken version is reported once, not every poll.
#[derive(Debug, Default)]
pub struct RegistryWatch {
    /// (version, artifact sha256) of the last refused production version.
    refused: Option<(String, String)>,
    /// The same for the shadow candidate.
    refused_shadow: Option<(String, String)>,
}

impl RegistryWatch {
    /// Compares the registry with what runs (`serving` version, `shadowing` candidate version)
    /// and says what to change; versions refused before (same contents) are skipped.
    pub fn poll(&self, registry: &dyn ModelRegistry, name: Option<&str>, serving: &str, shadowing: Option<Option<&str>>) -> Vec<RegistryChange> {
        let mut changes = Vec::new();
        if let Some(current) = shadowing {
            if let Ok(candidate) = registry.latest_candidate(name) {
                let wanted = candidate.as_ref().map(|(e, _)| e.version.as_str());
                let refused = candidate.as_ref().is_some_and(|(e, _)| self.refused_shadow == Some((e.version.clone(), e.artifact_sha256.clone())));
                if wanted != current && !refused {
                    changes.push(RegistryChange::Shadow { candidate: candidate.map(|(e, p)| (e.version, p)) });
                }
            }
        }
        match registry.production(name) {
            Ok(Some((entry, path))) => {
                let key = (entry.version.clone(), entry.artifact_sha256.clone());
                if entry.version != serving && self.refused.as_ref() != Some(&key) {
                    changes.push(RegistryChange::Promote { guarded: should_guard(&entry), version: entry.version, path });
                }
            }
            Ok(None) => {}
            Err(error) => changes.push(RegistryChange::Unreadable(error)),
        }
        changes
    }

    /// The production version `version` was refused; skip it until its contents change.
    pub fn refuse(&mut self, registry: &dyn ModelRegistry, name: Option<&str>, version: &str) {
        self.refused = registry.show(name, version).ok().map(|(e, _)| (e.version, e.artifact_sha256));
    }

    /// The candidate `version` was refused for shadow scoring.
    pub fn refuse_shadow(&mut self, registry: &dyn ModelRegistry, name: Option<&str>, version: &str) {
        self.refused_shadow = registry.show(name, version).ok().map(|(e, _)| (e.version, e.artifact_sha256));
    }

    /// A production version was served: forget the refusal.
    pub fn accepted(&mut self) {
        self.refused = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::guard::tests::{window, RULES};
    use crate::model::registry::tests::artifact;
    use crate::model::registry::Registry;

    fn pipeline(dir: &std::path::Path, version: &str) -> Pipeline {
        Pipeline::load(&artifact(dir, version, 1.0)).unwrap()
    }

    #[test]
    fn a_swap_moves_the_generation_and_guards_once() {
        let dir = tempfile::tempdir().unwrap();
        let models = ModelLifecycle::new(pipeline(dir.path(), "v1"), RULES);
        assert_eq!(models.generation(), 0);
        let old = models.swap(pipeline(dir.path(), "v2"), true).unwrap();
        assert_eq!(old.artifact().model.version, "v1");
        assert_eq!(models.generation(), 1);
        assert_eq!(models.serving().artifact().model.version, "v2");
        assert_eq!(models.guarded_version().as_deref(), Some("v2"));
        let bad = window(500, 0.5, 0.01);
        assert!(matches!(models.judge_window("v2", &bad), GuardVerdict::RollBack { .. }));
        assert_eq!(models.judge_window("v2", &bad), GuardVerdict::Ignored, "a rollback is asked for once");
        models.swap(pipeline(dir.path(), "v1"), false).unwrap();
        assert_eq!(models.guarded_version(), None, "a restored version is not guarded");
    }

    #[test]
    fn a_version_that_reads_events_differently_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let models = ModelLifecycle::new(pipeline(dir.path(), "v1"), RULES);
        let mut a = crate::pipeline::Artifact::load(&artifact(dir.path(), "v3", 1.0)).unwrap();
        a.columns.key = Some("card_id".into());
        let path = dir.path().join("v3-card.json");
        a.save(&path).unwrap();
        let err = models.swap(Pipeline::load(&path).unwrap(), true).unwrap_err();
        assert!(err.to_string().contains("does not fit the live events"), "{err}");
        assert_eq!(models.generation(), 0, "nothing swapped");
    }

    #[test]
    fn the_watch_asks_for_production_and_candidate_changes_and_skips_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("reg"));
        reg.register(&artifact(dir.path(), "v1", 1.0), "t").unwrap();
        reg.promote(None, "v1", "t", "first").unwrap();
        reg.register(&artifact(dir.path(), "v2", 0.5), "t").unwrap();
        let mut watch = RegistryWatch::default();
        let changes = watch.poll(&reg, None, "v1", Some(None));
        assert!(matches!(&changes[..], [RegistryChange::Shadow { candidate: Some((v, _)) }] if v == "v2"), "{changes:?}");
        assert!(watch.poll(&reg, None, "v1", Some(Some("v2"))).is_empty(), "nothing changed");
        reg.promote(None, "v2", "t", "better").unwrap();
        let changes = watch.poll(&reg, None, "v1", None);
        assert!(matches!(&changes[..], [RegistryChange::Promote { version, guarded: true, .. }] if version == "v2"), "{changes:?}");
        watch.refuse(&reg, None, "v2");
        assert!(watch.poll(&reg, None, "v1", None).is_empty(), "a refused version is skipped");
        reg.rollback(None, "guard", "v2: bad").unwrap();
        watch.accepted();
        let changes = watch.poll(&reg, None, "v2", None);
        assert!(matches!(&changes[..], [RegistryChange::Promote { version, guarded: false, .. }] if version == "v1"), "restored: {changes:?}");
    }
}
