//! Model lifecycle in one place: the directory registry (versions, stages, history), the diff
//! of two versions, hot reload and shadow candidates in a running engine, and the rollback
//! guard's rules. The rules ([`guard`]) and the decisions of [`lifecycle`] are pure; the
//! registry does file I/O ([`registry`]) or talks to an MLflow server ([`mlflow`]); nothing here
//! talks to Kafka.

pub mod diff;
pub mod guard;
pub mod lifecycle;
pub mod mlflow;
pub mod registry;
