//! `driftwatch import`: translate an ONNX model trained elsewhere into a pipeline artifact.
//!
//! The ONNX graph becomes the artifact's fraud model ([`crate::pipeline::onnx`]); the data
//! file gives everything else exactly as `train` fits it (features from the model's inputs,
//! outlier detector, threshold, held-out metrics, drift reference), plus the tree covers that
//! TreeSHAP reasons weigh paths by.

use std::collections::BTreeMap;

use thiserror::Error;

use super::train::{run_with_holdout, TrainCommandError};
use super::Outcome;
use crate::cli::{ImportArgs, TreeCoverArg};
use crate::pipeline::onnx::{self, Cover, ImportOptions, OnnxError};
use crate::pipeline::train::TrainOptions;

/// Why `import` failed.
#[derive(Debug, Error)]
pub enum ImportCommandError {
    /// The ONNX file could not be read.
    #[error("cannot read the ONNX model {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The graph could not be translated.
    #[error("cannot import {path}: {source}")]
    Onnx {
        /// Path.
        path: String,
        /// What is wrong.
        source: OnnxError,
    },
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// Fitting the rest of the artifact, or writing it, failed.
    #[error(transparent)]
    Train(#[from] TrainCommandError),
}

/// Runs `import` from its command-line arguments; a summary goes to stderr.
pub fn execute(a: ImportArgs) -> Result<Outcome, ImportCommandError> {
    if a.columns.numeric.is_some() || a.columns.categorical.is_some() {
        return Err(ImportCommandError::Usage("import takes its features from the model's inputs; --numeric and --categorical do not apply".into()));
    }
    let path = a.onnx.display().to_string();
    let bytes = std::fs::read(&a.onnx).map_err(|source| ImportCommandError::Read { path: path.clone(), source })?;
    let mut input_fields = BTreeMap::new();
    for spec in &a.input_fields {
        let (input, fields) = spec.split_once('=').ok_or_else(|| ImportCommandError::Usage(format!("--input-fields `{spec}`: expected INPUT=FIELD,FIELD,…")))?;
        input_fields.insert(input.to_string(), fields.split(',').map(|f| f.trim().to_string()).collect::<Vec<_>>());
    }
    let file_name = a.onnx.file_name().map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
    let model = onnx::compile(&bytes, &file_name, &ImportOptions { input_fields }).map_err(|source| ImportCommandError::Onnx { path: path.clone(), source })?;
    let mut opts = TrainOptions::new(&a.label);
    a.columns.apply(&mut opts);
    opts.numeric = Some(model.inputs.iter().filter(|i| !i.categorical).flat_map(|i| i.fields.clone()).collect());
    opts.categorical = Some(model.inputs.iter().filter(|i| i.categorical).flat_map(|i| i.fields.clone()).collect());
    a.fit.apply(&mut opts);
    let cover = match a.tree_cover {
        TreeCoverArg::Auto => None,
        TreeCoverArg::Count => Some(Cover::Count),
        TreeCoverArg::Hessian => Some(Cover::Hessian),
    };
    let kind = match &model.classifier {
        onnx::Classifier::Linear(_) => "linear classifier".to_string(),
        onnx::Classifier::Trees(t) => format!("{} trees", t.trees.len()),
    };
    let producer = model.source.producer.clone();
    opts.imported = Some((model, cover));
    let artifact = run_with_holdout(&a.data, &a.out, &opts, a.fit.holdout_out.as_deref())?;
    let cover = match artifact.imported.as_ref() {
        Some(m @ onnx::ImportedModel { classifier: onnx::Classifier::Trees(t), .. }) => {
            let tables = onnx::ImportRuntime::new(m, &artifact.features).map_or(0, |rt| rt.explanation_bytes());
            format!(", tree covers: {}, TreeSHAP tables: {:.1} MiB", format!("{:?}", t.cover).to_lowercase(), tables as f64 / (1 << 20) as f64)
        }
        _ => String::new(),
    };
    eprintln!("{}", super::train::summary(&a.out, &artifact, &format!(" from {file_name} ({producer}, {kind}{cover})")));
    super::train::publish(&a.fit, &a.out, &artifact)?;
    Ok(Outcome::Success)
}
