//! Fits a pipeline artifact from a table: column roles, preprocessing, logistic regression,
//! decision threshold, k-means outlier detector and the training reference profile.
//!
//! Steps, in order (all deterministic for a given seed):
//! 1. Resolve column roles: label, id, key, timestamp (given or recognised by name), then
//!    features (given, or inferred: all-numeric columns are numeric, text columns categorical,
//!    text columns whose every value is unique are identifiers and left out).
//! 2. Split rows into train and held-out, stratified by label.
//! 3. Fit preprocessing on the train split: medians for imputation, mean/std, top-K levels.
//! 4. Fit the logistic regression (Newton/IRLS) with class weights on the train split.
//! 5. Fit k-means (linfa-clustering) on the train split's design rows; the outlier threshold
//!    is the (1 − fpr) quantile of train-split distances.
//! 6. Choose the decision threshold on the held-out split; compute held-out metrics.
//! 7. Profile all rows as the drift reference of the features; the model's score and outlier
//!    distributions, alert and outlier rates come from the held-out split.
//!
//! Scoring in steps 5–7 goes through the same [`Pipeline::score`] the engine uses.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use sha2::{Digest, Sha256};
use serde::Serialize;
use thiserror::Error;

use super::artifact::*;
use super::calibration::{CalibrationMethod, ProbabilityCalibration};
use super::logistic::{self, SolverSettings};
use super::evaluation;
use super::reference::{categorical_reference, numeric_reference, ranked_levels};
use super::{Pipeline, Score};
use crate::dataset::{Cell, Table};
use crate::bins::{mean_std, quantile_sorted};

/// Names recognised as the id column when `--id` is not given.
pub const ID_NAMES: [&str; 4] = ["transaction_id", "id", "tx_id", "event_id"];
/// Names recognised as the key column when `--key` is not given.
pub const KEY_NAMES: [&str; 4] = ["account_id", "card_id", "customer_id", "user_id"];
/// Names recognised as the timestamp column when `--timestamp` is not given.
pub const TIMESTAMP_NAMES: [&str; 5] = ["event_time", "timestamp", "ts", "time", "event_timestamp"];

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Label column (values 0/1 or true/false).
    pub label: String,
    /// Numeric features; when this or `categorical` is given, only the listed columns are features.
    pub numeric: Option<Vec<String>>,
    /// Categorical features (see `numeric`).
    pub categorical: Option<Vec<String>>,
    /// Id column; recognised by name when not given.
    pub id: Option<String>,
    /// Key column; recognised by name when not given.
    pub key: Option<String>,
    /// Timestamp column; recognised by name when not given.
    pub timestamp: Option<String>,
    /// Unit of numeric timestamps (`auto`: by magnitude).
    pub timestamp_unit: crate::time::TimestampUnit,
    /// Columns never to use.
    pub ignore: Vec<String>,
    /// Model name.
    pub name: String,
    /// Model version; derived from the data hash and settings when not given.
    pub version: Option<String>,
    /// Everything else.
    pub hyper: Hyperparameters,
    /// A model imported from ONNX (`driftwatch import`): it replaces the logistic regression;
    /// everything else is fitted as usual. Tree covers are fitted on the data's rows.
    pub imported: Option<(crate::pipeline::onnx::ImportedModel, Option<crate::pipeline::onnx::Cover>)>,
    /// How the held-out probabilities are calibrated into the artifact's `calibration`.
    pub calibration: CalibrationMethod,
}

/// One held-out row as the fitted pipeline scores it (`train --holdout-out`): what the
/// threshold, the held-out metrics and the calibration were computed on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutRow {
    /// The row's position in the data file (0-based, data rows only).
    pub row: usize,
    /// The fitted pipeline's fraud probability.
    pub score: f64,
    /// The label (1: fraud).
    pub label: u8,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            c: 1.0,
            class_weight: "balanced".into(),
            max_categories: 20,
            holdout_fraction: 0.2,
            threshold_policy: ThresholdPolicy::AlertRate { rate: 0.02 },
            max_iterations: 100,
            tolerance: 1e-8,
            kmeans_clusters: 8,
            kmeans_runs: 3,
            kmeans_max_rows: 20_000,
            outlier_false_positive_rate: 0.01,
            reference_bins: 10,
            reference_top_k: 50,
            reference_quantiles: 201,
            seed: 42,
        }
    }
}

impl TrainOptions {
    /// Options with defaults for a label column.
    pub fn new(label: &str) -> TrainOptions {
        TrainOptions {
            label: label.to_string(),
            imported: None,
            calibration: CalibrationMethod::Isotonic,
            numeric: None,
            categorical: None,
            id: None,
            key: None,
            timestamp: None,
            timestamp_unit: crate::time::TimestampUnit::Auto,
            ignore: vec![],
            name: "card-fraud".into(),
            version: None,
            hyper: Hyperparameters::default(),
        }
    }
}

/// Why training failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A named column is not in the data.
    #[error("column `{0}` is not in the data (columns: {1})")]
    NoSuchColumn(String, String),
    /// The label column holds something other than 0/1.
    #[error("label column `{column}` row {row}: expected 0/1 or true/false, got {value}")]
    BadLabel {
        /// Label column.
        column: String,
        /// 1-based data row.
        row: usize,
        /// What was there.
        value: String,
    },
    /// A column given as numeric holds text.
    #[error("numeric column `{column}` row {row}: `{value}` is not a number")]
    NotNumeric {
        /// Column.
        column: String,
        /// 1-based data row.
        row: usize,
        /// What was there.
        value: String,
    },
    /// Settings out of range or data too small.
    #[error("{0}")]
    Invalid(String),
    /// The solver failed.
    #[error(transparent)]
    Solver(#[from] logistic::SolverError),
    /// k-means failed.
    #[error("k-means failed: {0}")]
    KMeans(String),
}

/// What each column of a table is for, as resolved from options and the data.
#[derive(Debug, Clone)]
pub struct Roles {
    /// Label column (absent only when the options name none, as `drift` allows).
    pub label: Option<usize>,
    /// Id column.
    pub id: Option<usize>,
    /// Key column.
    pub key: Option<usize>,
    /// Timestamp column.
    pub timestamp: Option<usize>,
    /// Numeric feature columns.
    pub numeric: Vec<usize>,
    /// Categorical feature columns.
    pub categorical: Vec<usize>,
    /// Columns left out, and why.
    pub ignored: Vec<IgnoredColumn>,
}

/// Trains an artifact from a table. `data` is the file's bytes (hashed into the record).
pub fn train(table: &Table, data: &[u8], data_file: &str, opts: &TrainOptions) -> Result<Artifact, TrainError> {
    train_with_holdout(table, data, data_file, opts).map(|(artifact, _)| artifact)
}

/// [`train`], also returning the held-out rows as the fitted pipeline scores them.
pub fn train_with_holdout(table: &Table, data: &[u8], data_file: &str, opts: &TrainOptions) -> Result<(Artifact, Vec<HoldoutRow>), TrainError> {
    let h = &opts.hyper;
    validate_hyperparameters(h)?;
    let roles = resolve_roles(table, opts)?;
    let label_col = roles.label.ok_or_else(|| TrainError::Invalid("a label column is required (--label)".into()))?;
    let labels = read_labels(table, label_col, &opts.label)?;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives < 2 || labels.len() - positives < 2 {
        return Err(TrainError::Invalid(format!(
            "need at least 2 rows of each class in `{}`; found {positives} positive of {}",
            opts.label,
            labels.len()
        )));
    }
    let (train_rows, holdout_rows) = stratified_split(&labels, h.holdout_fraction, h.seed);
    if train_rows.len() < h.kmeans_clusters.max(2) || holdout_rows.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} rows are too few to split {}/{} and fit {} clusters",
            table.rows,
            1.0 - h.holdout_fraction,
            h.holdout_fraction,
            h.kmeans_clusters
        )));
    }

    // 3. Preprocessing fitted on the train split.
    let name_of = |c: usize| table.columns[c].name.clone();
    let numeric: Vec<NumericFeature> = roles
        .numeric
        .iter()
        .map(|&c| {
            let values: Vec<f64> = train_rows.iter().map(|&r| table.columns[c].cells[r].as_f64().unwrap_or(f64::NAN)).collect();
            let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            present.sort_by(f64::total_cmp);
            let fill_value = if present.is_empty() { 0.0 } else { quantile_sorted(&present, 0.5) };
            let imputed: Vec<f64> = values.iter().map(|v| if v.is_nan() { fill_value } else { *v }).collect();
            let (mean, std) = mean_std(&imputed);
            NumericFeature {
                name: name_of(c),
                fill_value,
                mean,
                std: if std > 1e-12 { std } else { 1.0 },
                missing_indicator: present.len() < values.len(),
            }
        })
        .collect();
    let categorical: Vec<CategoricalFeature> = roles
        .categorical
        .iter()
        .map(|&c| {
            let texts: Vec<Option<String>> = train_rows.iter().map(|&r| table.columns[c].cells[r].as_category()).collect();
            let (ranked, _) = ranked_levels(texts.iter().map(|t| t.as_deref()));
            CategoricalFeature { name: name_of(c), levels: ranked.into_iter().take(h.max_categories).map(|(l, _)| l).collect() }
        })
        .collect();
    let features = Features { numeric, categorical };
    let design_columns = Artifact::expected_design_columns(&features);
    let d = design_columns.len();
    let column_roles = ColumnRoles {
        id: roles.id.map(name_of),
        key: roles.key.map(name_of),
        timestamp: roles.timestamp.map(name_of),
        timestamp_unit: opts.timestamp_unit,
        label: opts.label.clone(),
    };
    let data_sha256 = sha256_hex(data);
    let mut artifact = Artifact {
        format_version: FORMAT_VERSION,
        model: ModelIdentity { name: opts.name.clone(), version: String::new() },
        columns: column_roles,
        features,
        design_columns,
        logistic: LogisticModel { intercept: 0.0, prior_correction: 0.0, coefficients: vec![0.0; d] },
        imported: None,
        decision: Decision { threshold: 0.5, policy: h.threshold_policy },
        calibration: None,
        outlier: OutlierModel { centroids: vec![vec![0.0; d]], threshold: f64::MAX, false_positive_rate: h.outlier_false_positive_rate },
        reference: empty_reference(),
        training: TrainingRecord {
            data_file: data_file.to_string(),
            data_sha256,
            rows: table.rows as u64,
            train_rows: train_rows.len() as u64,
            holdout_rows: holdout_rows.len() as u64,
            positives: positives as u64,
            ignored_columns: roles.ignored,
            hyperparameters: h.clone(),
            solver: SolverReport { method: "newton-irls".into(), iterations: 0, converged: false, gradient_norm: 0.0 },
            holdout_metrics: HoldoutMetrics { roc_auc: 0.0, pr_auc: 0.0, precision: 0.0, recall: 0.0, alert_rate: 0.0, positives: 0 },
        },
    };
    let imported_sha256 = opts.imported.as_ref().map(|(m, _)| m.source.sha256.as_str());
    artifact.model.version = opts.version.clone().unwrap_or_else(|| derived_version(&artifact, imported_sha256, opts.calibration));

    // Design rows for every row, through the scoring pipeline's own encoder.
    let encoder = Pipeline::new(artifact.clone());
    let row_cols = encoder.row_columns(table);
    let mut tx = encoder.new_transaction();
    let mut design = Array2::<f64>::zeros((table.rows, d));
    for r in 0..table.rows {
        encoder.fill_from_row(table, &row_cols, r, &mut tx);
        encoder.encode_into(&tx, design.row_mut(r).as_slice_mut().expect("standard layout"));
    }
    let train_x = design.select(ndarray::Axis(0), &train_rows);

    // 4. Logistic regression with class weights, or the imported model (its tree covers from
    //    every row of the data, the way the model's own library counts them).
    if let Some((model, cover)) = &opts.imported {
        let mut model = model.clone();
        let rt = crate::pipeline::onnx::ImportRuntime::new(&model, &artifact.features)
            .map_err(|e| TrainError::Invalid(format!("the imported model does not fit the data's features: {e}")))?;
        if let crate::pipeline::onnx::Classifier::Trees(t) = &mut model.classifier {
            let mut rows = vec![0f32; table.rows * rt.width()];
            for (r, x) in rows.chunks_exact_mut(rt.width()).enumerate() {
                encoder.fill_from_row(table, &row_cols, r, &mut tx);
                rt.fill(&tx, x);
            }
            let cover = cover.unwrap_or_else(|| t.default_cover());
            t.fit_covers(rows.chunks_exact(rt.width()), cover);
        }
        artifact.training.solver = SolverReport { method: "imported".into(), iterations: 0, converged: true, gradient_norm: 0.0 };
        artifact.imported = Some(model);
    } else {
        let train_pos = train_rows.iter().filter(|&&r| labels[r]).count() as f64;
        let n_train = train_rows.len() as f64;
        let (w_pos, w_neg) = match h.class_weight.as_str() {
            "balanced" => (n_train / (2.0 * train_pos), n_train / (2.0 * (n_train - train_pos))),
            _ => (1.0, 1.0),
        };
        let y: Vec<f64> = train_rows.iter().map(|&r| f64::from(u8::from(labels[r]))).collect();
        let w: Vec<f64> = train_rows.iter().map(|&r| if labels[r] { w_pos } else { w_neg }).collect();
        let fit = logistic::fit(
            train_x.view(),
            &y,
            &w,
            SolverSettings { c: h.c, max_iterations: h.max_iterations, tolerance: h.tolerance },
        )?;
        artifact.logistic = LogisticModel { intercept: fit.intercept, prior_correction: -(w_pos / w_neg).ln(), coefficients: fit.coefficients };
        artifact.training.solver = SolverReport { method: "newton-irls".into(), iterations: fit.iterations, converged: fit.converged, gradient_norm: fit.gradient_norm };
    }

    // 5. k-means on (a seeded sample of) the train split.
    let mut cluster_rows: Vec<usize> = (0..train_rows.len()).collect();
    let mut rng = Xoshiro256Plus::seed_from_u64(h.seed);
    if cluster_rows.len() > h.kmeans_max_rows {
        cluster_rows.shuffle(&mut rng);
        cluster_rows.truncate(h.kmeans_max_rows);
        cluster_rows.sort_unstable();
    }
    let cluster_x = train_x.select(ndarray::Axis(0), &cluster_rows);
    let kmeans = KMeans::params_with_rng(h.kmeans_clusters, rng)
        .n_runs(h.kmeans_runs)
        .max_n_iterations(300)
        .tolerance(1e-6)
        .fit(&DatasetBase::from(cluster_x))
        .map_err(|e| TrainError::KMeans(e.to_string()))?;
    artifact.outlier.centroids = kmeans.centroids().outer_iter().map(|c| c.to_vec()).collect();

    // Score every row with the real scorer.
    let scores: Vec<Score> = Pipeline::new(artifact.clone()).score_table(table);
    let mut train_distances: Vec<f64> = train_rows.iter().map(|&r| scores[r].outlier_score).collect();
    train_distances.sort_by(f64::total_cmp);
    artifact.outlier.threshold = quantile_sorted(&train_distances, 1.0 - h.outlier_false_positive_rate);

    // 6. Threshold and metrics on the held-out split.
    let hold_p: Vec<f64> = holdout_rows.iter().map(|&r| scores[r].probability).collect();
    let hold_y: Vec<bool> = holdout_rows.iter().map(|&r| labels[r]).collect();
    artifact.decision.threshold = choose_threshold(&hold_p, &hold_y, h.threshold_policy)?;
    artifact.training.holdout_metrics = evaluation::metrics(&hold_p, &hold_y, artifact.decision.threshold);
    // The fraud rate at each held-out probability: the engine's estimates are calibrated with
    // it until matured labels take over.
    if opts.calibration == CalibrationMethod::Isotonic {
        artifact.calibration = Some(ProbabilityCalibration::fit_isotonic(&hold_p, &hold_y));
    }

    // 7. Reference profile: features over all rows.
    let bins = h.reference_bins;
    let mut reference = empty_reference();
    reference.rows = table.rows as u64;
    for (f, &c) in artifact.features.numeric.iter().zip(&roles.numeric) {
        let values: Vec<f64> = table.columns[c].cells.iter().map(|cell| cell.as_f64().unwrap_or(f64::NAN)).collect();
        reference.numeric.push(numeric_reference(&f.name, &values, bins, h.reference_quantiles));
    }
    for (f, &c) in artifact.features.categorical.iter().zip(&roles.categorical) {
        let texts: Vec<Option<String>> = table.columns[c].cells.iter().map(Cell::as_category).collect();
        reference.categorical.push(categorical_reference(&f.name, texts.iter().map(|t| t.as_deref()), h.reference_top_k));
    }
    // The model's own outputs on rows it was not fitted on: in-sample scores and distances are
    // optimistic (the outlier threshold is the train split's own quantile), and a live window is
    // compared with what the model does on data it has not seen.
    let probabilities: Vec<f64> = holdout_rows.iter().map(|&r| scores[r].probability).collect();
    let distances: Vec<f64> = holdout_rows.iter().map(|&r| scores[r].outlier_score).collect();
    reference.score = numeric_reference("model_score", &probabilities, bins, h.reference_quantiles);
    reference.outlier_score = numeric_reference("outlier_score", &distances, bins, h.reference_quantiles);
    let n = holdout_rows.len() as f64;
    reference.outlier_rate = distances.iter().filter(|&&d| d >= artifact.outlier.threshold).count() as f64 / n;
    reference.alert_rate = probabilities.iter().filter(|&&p| p >= artifact.decision.threshold).count() as f64 / n;
    artifact.reference = reference;

    artifact.check_consistency().map_err(|e| TrainError::Invalid(format!("internal error, inconsistent artifact: {e}")))?;
    let holdout = holdout_rows.iter().zip(&hold_p).map(|(&row, &score)| HoldoutRow { row, score, label: u8::from(labels[row]) }).collect();
    Ok((artifact, holdout))
}

fn validate_hyperparameters(h: &Hyperparameters) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Invalid(m));
    if !(h.c > 0.0 && h.c.is_finite()) {
        return bad(format!("C must be a positive number, got {}", h.c));
    }
    if !(0.0 < h.holdout_fraction && h.holdout_fraction < 1.0) {
        return bad(format!("holdout fraction must be in (0, 1), got {}", h.holdout_fraction));
    }
    if !(0.0 < h.outlier_false_positive_rate && h.outlier_false_positive_rate < 1.0) {
        return bad(format!("outlier false-positive rate must be in (0, 1), got {}", h.outlier_false_positive_rate));
    }
    if h.kmeans_clusters == 0 || h.kmeans_clusters > super::MAX_CLUSTERS {
        return bad(format!("k-means clusters must be 1..={}, got {}", super::MAX_CLUSTERS, h.kmeans_clusters));
    }
    if h.reference_bins < 2 || h.reference_quantiles < 2 || h.max_categories == 0 || h.reference_top_k == 0 {
        return bad("bins and quantiles must be ≥ 2 and top-K values ≥ 1".into());
    }
    if !matches!(h.class_weight.as_str(), "balanced" | "none") {
        return bad(format!("class weight must be `balanced` or `none`, got `{}`", h.class_weight));
    }
    match h.threshold_policy {
        ThresholdPolicy::AlertRate { rate } if !(0.0 < rate && rate < 1.0) => bad(format!("target alert rate must be in (0, 1), got {rate}")),
        ThresholdPolicy::Precision { precision } if !(0.0 < precision && precision <= 1.0) => {
            bad(format!("target precision must be in (0, 1], got {precision}"))
        }
        _ => Ok(()),
    }
}

/// Resolves column roles the way `train` does; an empty `opts.label` means no label column.
pub fn resolve_roles(table: &Table, opts: &TrainOptions) -> Result<Roles, TrainError> {
    let all_names = || table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let find = |name: &str| {
        table.columns.iter().position(|c| c.name == name).ok_or_else(|| TrainError::NoSuchColumn(name.to_string(), all_names()))
    };
    let recognise = |given: &Option<String>, names: &[&str]| -> Result<Option<usize>, TrainError> {
        match given {
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => find(n).map(Some),
            None => Ok(names.iter().find_map(|n| table.columns.iter().position(|c| c.name == *n))),
        }
    };
    let label = if opts.label.is_empty() { None } else { Some(find(&opts.label)?) };
    let id = recognise(&opts.id, &ID_NAMES)?;
    let key = recognise(&opts.key, &KEY_NAMES)?;
    let mut timestamp = recognise(&opts.timestamp, &TIMESTAMP_NAMES)?;
    for name in &opts.ignore {
        find(name)?;
    }
    let reserved = |c: usize, ts: Option<usize>| Some(c) == label || Some(c) == id || Some(c) == key || Some(c) == ts;
    let mut ignored = Vec::new();
    let mut numeric = Vec::new();
    let mut categorical = Vec::new();

    if opts.numeric.is_some() || opts.categorical.is_some() {
        for name in opts.numeric.iter().flatten() {
            let c = find(name)?;
            for (row, cell) in table.columns[c].cells.iter().enumerate() {
                if !cell.is_missing() && cell.as_f64().is_none() {
                    let value = cell.as_category().unwrap_or_default();
                    return Err(TrainError::NotNumeric { column: name.clone(), row: row + 1, value });
                }
            }
            numeric.push(c);
        }
        for name in opts.categorical.iter().flatten() {
            categorical.push(find(name)?);
        }
        for (c, col) in table.columns.iter().enumerate() {
            if !numeric.contains(&c) && !categorical.contains(&c) && !reserved(c, timestamp) {
                ignored.push(IgnoredColumn { name: col.name.clone(), reason: "not listed in --numeric or --categorical".into() });
            }
        }
    } else {
        for (c, col) in table.columns.iter().enumerate() {
            if reserved(c, timestamp) {
                continue;
            }
            let ignore = |reason: &str| IgnoredColumn { name: col.name.clone(), reason: reason.to_string() };
            if opts.ignore.contains(&col.name) {
                ignored.push(ignore("listed in --ignore"));
                continue;
            }
            let present: Vec<&Cell> = col.cells.iter().filter(|c| !c.is_missing()).collect();
            if present.is_empty() {
                ignored.push(ignore("no values"));
            } else if present.iter().all(|c| c.as_f64().is_some()) {
                numeric.push(c);
            } else if timestamp.is_none() && present.iter().all(|c| matches!(c, Cell::Text(s) if crate::time::parse_rfc3339_ms(s).is_some())) {
                timestamp = Some(c);
            } else {
                let distinct: std::collections::BTreeSet<String> = present.iter().filter_map(|c| c.as_category()).collect();
                if distinct.len() == present.len() && present.len() > 50 {
                    ignored.push(ignore("every value is unique (an identifier, not a feature)"));
                } else {
                    categorical.push(c);
                }
            }
        }
    }
    if numeric.is_empty() && categorical.is_empty() {
        return Err(TrainError::Invalid("no feature columns: give --numeric/--categorical or a file with feature columns".into()));
    }
    Ok(Roles { label, id, key, timestamp, numeric, categorical, ignored })
}

/// The label column as booleans: 0/1 (or true/false), anything else an error naming the row.
pub fn read_labels(table: &Table, col: usize, name: &str) -> Result<Vec<bool>, TrainError> {
    table.columns[col]
        .cells
        .iter()
        .enumerate()
        .map(|(row, cell)| match cell.as_f64() {
            Some(v) if v == 0.0 => Ok(false),
            Some(v) if v == 1.0 => Ok(true),
            _ => Err(TrainError::BadLabel {
                column: name.to_string(),
                row: row + 1,
                value: cell.as_category().unwrap_or_else(|| "nothing".into()),
            }),
        })
        .collect()
}

/// Splits row indices into (train, held-out), each class shuffled and cut separately.
fn stratified_split(labels: &[bool], holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ 0x5eed_5b1e);
    let (mut train, mut hold) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] == class).collect();
        rows.shuffle(&mut rng);
        let n_hold = ((rows.len() as f64) * holdout).round() as usize;
        hold.extend_from_slice(&rows[..n_hold]);
        train.extend_from_slice(&rows[n_hold..]);
    }
    train.sort_unstable();
    hold.sort_unstable();
    (train, hold)
}

/// The threshold the policy asks for, on held-out probabilities.
pub fn choose_threshold(p: &[f64], y: &[bool], policy: ThresholdPolicy) -> Result<f64, TrainError> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    match policy {
        ThresholdPolicy::AlertRate { rate } => {
            let m = ((rate * p.len() as f64).floor() as usize).clamp(1, p.len());
            Ok(p[order[m - 1]])
        }
        ThresholdPolicy::Precision { precision } => {
            let (mut tp, mut best, mut best_precision) = (0usize, None, 0.0f64);
            let mut i = 0;
            while i < order.len() {
                let t = p[order[i]];
                while i < order.len() && p[order[i]] == t {
                    tp += usize::from(y[order[i]]);
                    i += 1;
                }
                let prec = tp as f64 / i as f64;
                best_precision = best_precision.max(prec);
                if prec >= precision {
                    best = Some(t);
                }
            }
            best.ok_or_else(|| {
                TrainError::Invalid(format!(
                    "no threshold reaches precision {precision} on the held-out split (best is {best_precision:.3}); lower --target-precision"
                ))
            })
        }
    }
}

fn empty_reference() -> ReferenceProfile {
    let empty = |name: &str| NumericReference {
        name: name.into(),
        edges: vec![],
        counts: vec![0],
        missing: 0,
        mean: 0.0,
        std: 0.0,
        min: 0.0,
        max: 0.0,
        quantiles: vec![],
        support: vec![],
        support_counts: vec![],
    };
    ReferenceProfile {
        rows: 0,
        numeric: vec![],
        categorical: vec![],
        score: empty("model_score"),
        outlier_score: empty("outlier_score"),
        outlier_rate: 0.0,
        alert_rate: 0.0,
    }
}

/// A version derived from the data hash, the features and the hyper-parameters.
fn derived_version(a: &Artifact, imported_sha256: Option<&str>, calibration: CalibrationMethod) -> String {
    let mut h = Sha256::new();
    // The default (isotonic) adds nothing, so versions derived before calibration existed stay.
    if calibration != CalibrationMethod::Isotonic {
        h.update(b"calibration:none");
    }
    h.update(a.training.data_sha256.as_bytes());
    h.update(serde_json::to_vec(&a.features).expect("serialises"));
    h.update(serde_json::to_vec(&a.training.hyperparameters).expect("serialises"));
    if let Some(sha) = imported_sha256 {
        h.update(sha.as_bytes());
    }
    format!("v-{}", &hex(&h.finalize())[..12])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, lower-case hex: the checksum of training data, registered artifacts and
/// dead-lettered events.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
