//! Drift measurement: bins, statistics, per-feature status and the report.
//!
//! One set of definitions for every way drift is measured. Numeric features are binned at the
//! reference's quantiles k/B (numpy's linear interpolation, duplicate edges removed, outer bins
//! open, a value x in [e_i, e_{i+1})), or one bin per value when the reference has at most B
//! distinct values (deciles of a 0/1 feature collapse to one bin), plus a bin for missing values. Categorical features use
//! the reference's top-K levels, then `__other__` (seen in the reference but not in the top-K),
//! `__unseen__` (never seen in the reference) and `__missing__`; the reference's `__unseen__`
//! count is the Good–Turing estimate of unseen mass (levels seen once), not 0. The report carries every bin's
//! label and raw counts on both sides, so anyone can recompute every statistic; [`stats`] holds
//! the statistics themselves.
//!
//! Core: imports the pipeline's artifact types, [`crate::profile`] and [`crate::bins`]; the
//! report types themselves are wire messages, defined in [`crate::message::drift`]. No Kafka,
//! tokio or clock.

pub mod aggregate;
pub mod calibrate;
pub mod monitor;
pub mod online;
pub mod stats;
pub mod window;

use std::collections::HashSet;


use crate::dataset::{Cell, Table};
use crate::pipeline::reference::ranked_levels;
pub use crate::message::drift::{
    BinnedFeature, ChiSquareResult, DataSide, DriftReport, DriftSettings, FeatureDrift, FeatureKind, KsResult, Significance, Status, StatusMetric, StatusRule,
    WassersteinResult, REPORT_VERSION,
};
use crate::bins::{bin_of, mean_std, numeric_labels, reference_edges, MISSING, OTHER, UNSEEN};

/// Numeric values of a column (NaN for missing).
fn numeric_values(cells: &[Cell]) -> Vec<f64> {
    cells.iter().map(|c| c.as_f64().unwrap_or(f64::NAN)).collect()
}

/// Bins a numeric feature at the reference's quantiles.
pub fn bin_numeric(name: &str, reference: &[f64], current: &[f64], bins: usize) -> BinnedFeature {
    let mut sorted: Vec<f64> = reference.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let edges = if sorted.is_empty() { vec![] } else { reference_edges(&sorted, bins) };
    let n_bins = edges.len() + 2;
    let count = |values: &[f64]| {
        let mut c = vec![0u64; n_bins];
        for &v in values {
            c[if v.is_nan() { n_bins - 1 } else { bin_of(&edges, v) }] += 1;
        }
        c
    };
    BinnedFeature {
        name: name.into(),
        kind: FeatureKind::Numeric,
        labels: numeric_labels(&edges),
        reference_counts: count(reference),
        current_counts: count(current),
        edges: Some(edges),
    }
}

/// Bins a categorical feature by the reference's top-K levels, other, unseen and missing.
pub fn bin_categorical(name: &str, reference: &[Option<String>], current: &[Option<String>], top_k: usize) -> BinnedFeature {
    let (ranked, ref_missing) = ranked_levels(reference.iter().map(|v| v.as_deref()));
    let seen: HashSet<&str> = ranked.iter().map(|(l, _)| l.as_str()).collect();
    let top: Vec<&str> = ranked.iter().take(top_k).map(|(l, _)| l.as_str()).collect();
    let (other, unseen, missing) = (top.len(), top.len() + 1, top.len() + 2);
    let mut labels: Vec<String> = top.iter().map(|s| s.to_string()).collect();
    labels.extend([OTHER.to_string(), UNSEEN.to_string(), MISSING.to_string()]);
    let top_counts: Vec<u64> = ranked.iter().take(top_k).map(|(_, c)| *c).collect();
    let singletons = ranked.iter().filter(|(_, c)| *c == 1).count() as u64;
    let reference_counts = categorical_reference_counts(&top_counts, ranked.iter().skip(top_k).map(|(_, c)| c).sum(), singletons, ref_missing);
    let index: std::collections::HashMap<&str, usize> = top.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut current_counts = vec![0u64; labels.len()];
    for v in current {
        let bin = match v.as_deref() {
            None => missing,
            Some(s) => index.get(s).copied().unwrap_or(if seen.contains(s) { other } else { unseen }),
        };
        current_counts[bin] += 1;
    }
    BinnedFeature { name: name.into(), kind: FeatureKind::Categorical, labels, edges: None, reference_counts, current_counts }
}

/// A categorical feature's reference counts over its bins (top-K levels, `__other__`,
/// `__unseen__`, `__missing__`). A new sample of a high-cardinality feature always holds levels
/// the reference never saw; the unseen bin gets the Good–Turing estimate of that mass, the
/// number of levels seen exactly once (so `merchant_id` is not red between two samples of one
/// stream). That mass is taken from where the sample overstates it, the levels seen once (in
/// `__other__`, or a top level with count 1), so the counts total the reference rows.
pub fn categorical_reference_counts(top: &[u64], other: u64, singletons: u64, missing: u64) -> Vec<u64> {
    let top_singletons = top.iter().filter(|&&c| c == 1).count() as u64;
    let mut counts: Vec<u64> = top.iter().map(|&c| if c == 1 { 0 } else { c }).collect();
    counts.extend([other.saturating_sub(singletons.saturating_sub(top_singletons)), singletons, missing]);
    counts
}

/// Raw numeric samples of both sides, for exact KS and Wasserstein.
pub struct RawSamples<'a> {
    /// Reference values (NaN = missing).
    pub reference: &'a [f64],
    /// Current values (NaN = missing).
    pub current: &'a [f64],
}

/// The binned statistics of one feature (KS, Wasserstein, p-value adjustment and status come later).
pub fn measure_counts(bins: BinnedFeature, alpha: f64) -> FeatureDrift {
    let p = stats::smoothed(&bins.current_counts, alpha);
    let q = stats::smoothed(&bins.reference_counts, alpha);
    let chi2 = stats::chi_square(&bins.current_counts, &bins.reference_counts)
        .map(|c| ChiSquareResult { statistic: c.statistic, dof: c.dof, p_value: c.p_value, p_value_adjusted: f64::NAN });
    FeatureDrift {
        psi: stats::psi(&p, &q),
        kl: stats::kl(&p, &q),
        js: stats::js_distance(&p, &q),
        bins,
        chi2,
        ks: None,
        wasserstein: None,
        status: Status::InsufficientData,
        rule: StatusRule::default(),
        status_value: f64::NAN,
        status_p_value: None,
    }
}

/// Every statistic of one binned feature, with exact KS and Wasserstein on raw values.
pub fn measure(bins: BinnedFeature, raw: Option<RawSamples<'_>>, alpha: f64) -> FeatureDrift {
    let mut f = measure_counts(bins, alpha);
    if let Some(raw) = raw {
        let sorted = |v: &[f64]| {
            let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            s.sort_by(f64::total_cmp);
            s
        };
        let (r, c) = (sorted(raw.reference), sorted(raw.current));
        if !r.is_empty() && !c.is_empty() {
            let d = stats::ks_statistic(&c, &r);
            let w = stats::wasserstein_sorted(&c, &r);
            let (_, std) = mean_std(&r);
            f.ks = Some(KsResult { statistic: d, p_value: stats::ks_p_value(d, c.len(), r.len()), p_value_adjusted: f64::NAN, rank_error: 0.0 });
            f.wasserstein = Some(WassersteinResult { distance: w, normalized: w / std.max(0.001), error_bound: 0.0 });
        }
    }
    f
}

/// Applies the feature's status rule (or the default) to its statistics: red needs the rule's
/// red effect and a no-drift p-value at or below the red significance level, amber likewise;
/// fewer than `min_samples` samples is insufficient data. A KS or Wasserstein rule on a
/// categorical feature is decided on PSI with PSI's own default thresholds (the rule's are in
/// another unit).
pub fn decide_status(f: &mut FeatureDrift, settings: &DriftSettings) {
    let mut rule = settings.feature_rules.get(&f.bins.name).copied().unwrap_or(settings.rule);
    let numeric_only = matches!(rule.metric, StatusMetric::Ks | StatusMetric::WassersteinNormalized);
    // `error_rate` describes labelled decisions, not a feature (refused in feature rules by the config).
    if (numeric_only && f.ks.is_none()) || rule.metric == StatusMetric::ErrorRate {
        rule = StatusRule::default();
    }
    let ks_p = f.ks.map_or(1.0, |k| k.p_value);
    let (value, binned) = match rule.metric {
        StatusMetric::Psi => (f.psi, true),
        StatusMetric::Kl => (f.kl, true),
        StatusMetric::Js => (f.js, true),
        // Never call drift on a D within the sketch's error.
        StatusMetric::Ks => (f.ks.map_or(0.0, |k| (k.statistic - k.rank_error).max(0.0)), false),
        StatusMetric::WassersteinNormalized => (f.wasserstein.map_or(0.0, |w| w.normalized), false),
        StatusMetric::ErrorRate => unreachable!("replaced by the default rule above"),
    };
    let n_current: u64 = f.bins.current_counts.iter().sum();
    f.rule = rule;
    f.status_value = value;
    if n_current < settings.min_samples {
        f.status = Status::InsufficientData;
        f.status_p_value = None;
        return;
    }
    let p = if binned {
        calibrate::binned_p_value(&f.bins.name, rule.metric, value, &f.bins.current_counts, &f.bins.reference_counts, settings.smoothing)
    } else {
        ks_p
    };
    f.status_p_value = Some(p);
    let s = settings.significance;
    f.status = if value >= rule.red && p <= s.red {
        Status::Red
    } else if value >= rule.amber && p <= s.amber {
        Status::Amber
    } else {
        Status::Green
    };
}

/// Adjusts p-values across features, applies the status rules, and assembles the report.
pub fn finish(mut features: Vec<FeatureDrift>, reference: DataSide, current: DataSide, settings: &DriftSettings) -> DriftReport {
    let chi_p: Vec<f64> = features.iter().map(|f| f.chi2.map_or(f64::NAN, |c| c.p_value)).collect();
    let ks_p: Vec<f64> = features.iter().map(|f| f.ks.map_or(f64::NAN, |k| k.p_value)).collect();
    let (chi_adj, ks_adj) = (stats::benjamini_hochberg(&chi_p), stats::benjamini_hochberg(&ks_p));
    for (i, f) in features.iter_mut().enumerate() {
        if let Some(c) = f.chi2.as_mut() {
            c.p_value_adjusted = chi_adj[i];
        }
        if let Some(k) = f.ks.as_mut() {
            k.p_value_adjusted = ks_adj[i];
        }
        decide_status(f, settings);
    }
    let status = features.iter().map(|f| f.status).max().unwrap_or(Status::InsufficientData);
    DriftReport { report_version: REPORT_VERSION, reference, current, settings: settings.clone(), status, features }
}

/// Compares two tables feature by feature; `numeric`/`categorical` name the features.
pub fn compare_tables(
    reference: &Table,
    current: &Table,
    numeric: &[String],
    categorical: &[String],
    names: (&str, &str),
    settings: &DriftSettings,
) -> Result<DriftReport, String> {
    fn column<'t>(t: &'t Table, side: &str, name: &str) -> Result<&'t [Cell], String> {
        t.column(name).map(|c| &c.cells[..]).ok_or_else(|| format!("the {side} data has no column `{name}`"))
    }
    let mut features = Vec::with_capacity(numeric.len() + categorical.len());
    for name in numeric {
        let (r, c) = (numeric_values(column(reference, "reference", name)?), numeric_values(column(current, "current", name)?));
        let bins = bin_numeric(name, &r, &c, settings.bins);
        features.push(measure(bins, Some(RawSamples { reference: &r, current: &c }), settings.smoothing));
    }
    for name in categorical {
        let texts = |cells: &[Cell]| cells.iter().map(Cell::as_category).collect::<Vec<_>>();
        let (r, c) = (texts(column(reference, "reference", name)?), texts(column(current, "current", name)?));
        features.push(measure(bin_categorical(name, &r, &c, settings.top_k), None, settings.smoothing));
    }
    let side = |source: &str, t: &Table| DataSide { source: source.to_string(), rows: t.rows as u64 };
    Ok(finish(features, side(names.0, reference), side(names.1, current), settings))
}

/// A plain-text table of a report, one line per feature.
pub fn format_table(report: &DriftReport) -> String {
    let mut out = format!(
        "reference {} ({} rows) vs current {} ({} rows): {}\n",
        report.reference.source,
        report.reference.rows,
        report.current.source,
        report.current.rows,
        status_name(report.status)
    );
    out.push_str(&format!(
        "{:<24} {:<11} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}  {}\n",
        "feature", "kind", "psi", "kl", "js", "ks_d", "ks_p_adj", "chi2_p_adj", "w1_norm", "status"
    ));
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
    for f in &report.features {
        out.push_str(&format!(
            "{:<24} {:<11} {:>8.4} {:>8.4} {:>8.4} {:>8} {:>10} {:>10} {:>9}  {}\n",
            f.bins.name,
            if f.bins.kind == FeatureKind::Numeric { "numeric" } else { "categorical" },
            f.psi,
            f.kl,
            f.js,
            opt(f.ks.map(|k| k.statistic), 4),
            opt(f.ks.map(|k| k.p_value_adjusted), 4),
            opt(f.chi2.map(|c| c.p_value_adjusted), 4),
            opt(f.wasserstein.map(|w| w.normalized), 4),
            status_name(f.status)
        ));
    }
    out
}

/// The status as shown to people.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::InsufficientData => "insufficient_data",
        Status::Green => "green",
        Status::Amber => "amber",
        Status::Red => "red",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_bins_are_reference_quantiles_with_a_missing_bin() {
        let r: Vec<f64> = (0..100).map(f64::from).collect();
        let c = [5.0, 50.0, 99.0, 1000.0, f64::NAN];
        let b = bin_numeric("x", &r, &c, 10);
        assert_eq!(b.edges.as_ref().unwrap().len(), 9);
        assert_eq!(b.labels.len(), 11);
        assert_eq!(b.labels[0], "[-inf, 9.9)");
        assert_eq!(b.reference_counts.iter().sum::<u64>(), 100);
        assert_eq!(b.current_counts, vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 1]);
    }

    #[test]
    fn categorical_bins_separate_other_unseen_and_missing() {
        let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(String::from)).collect::<Vec<_>>();
        let r = s(&[Some("a"), Some("a"), Some("b"), Some("c"), None]);
        let c = s(&[Some("a"), Some("c"), Some("zzz"), None, None]);
        let b = bin_categorical("k", &r, &c, 2);
        assert_eq!(b.labels, vec!["a", "b", OTHER, UNSEEN, MISSING]);
        // unseen: Good–Turing, the reference levels seen once (b and c), moved out of their own
        // bins (b in the top-K, c in other): the reference still totals its 5 rows.
        assert_eq!(b.reference_counts, vec![2, 0, 0, 2, 1]);
        assert_eq!(b.reference_counts.iter().sum::<u64>(), 5);
        assert_eq!(b.current_counts, vec![1, 0, 1, 1, 2]);
    }

    #[test]
    fn status_follows_rules_and_small_windows_are_insufficient() {
        let r: Vec<f64> = (0..1000).map(|i| f64::from(i % 100)).collect();
        let same = r.clone();
        let shifted: Vec<f64> = r.iter().map(|v| v + 60.0).collect();
        let mut settings = DriftSettings::default();
        let side = |n| DataSide { source: "t".into(), rows: n };
        let f = |c: &[f64]| measure(bin_numeric("x", &r, c, 10), Some(RawSamples { reference: &r, current: c }), 0.5);
        let report = finish(vec![f(&same), f(&shifted)], side(1000), side(1000), &settings);
        assert_eq!(report.features[0].status, Status::Green);
        assert_eq!(report.features[1].status, Status::Red);
        assert_eq!(report.status, Status::Red);
        settings.min_samples = 5000;
        let report = finish(vec![f(&shifted)], side(1000), side(1000), &settings);
        assert_eq!(report.status, Status::InsufficientData, "never drift on too few samples");
        settings.min_samples = 1;
        settings.feature_rules.insert("x".into(), StatusRule { metric: StatusMetric::Ks, amber: 0.7, red: 0.9 });
        let report = finish(vec![f(&shifted)], side(1000), side(1000), &settings);
        assert_eq!(report.features[0].status, Status::Green);
        assert!((report.features[0].status_value - 0.6).abs() < 1e-12, "KS D decides, not PSI");
    }
}
