//! Tests of the pipeline as a whole: training, artifact round trips, decoding and scoring.

use super::artifact::*;
use super::train::{train, TrainOptions};
use super::*;
use crate::dataset::{Format, Table};
use crate::generate::{self, GeneratorConfig, OutputFormat};

pub(crate) fn generated(rows: u64, seed: u64) -> (Table, Vec<u8>) {
    let mut bytes = Vec::new();
    generate::write(&GeneratorConfig { rows, seed, ..Default::default() }, OutputFormat::JsonLines, &mut bytes).unwrap();
    (Table::parse(&bytes, Format::JsonLines, "gen.jsonl").unwrap(), bytes)
}

pub(crate) fn trained(rows: u64, seed: u64) -> Artifact {
    let (table, bytes) = generated(rows, seed);
    train(&table, &bytes, "gen.jsonl", &TrainOptions::new("is_fraud")).unwrap()
}

fn small() -> &'static Artifact {
    static A: std::sync::OnceLock<Artifact> = std::sync::OnceLock::new();
    A.get_or_init(|| trained(15_000, 3))
}

#[test]
fn same_data_and_seed_give_a_byte_identical_artifact() {
    let a = trained(3000, 5).to_json();
    assert_eq!(a, trained(3000, 5).to_json());
    let (table, bytes) = generated(3000, 5);
    let mut opts = TrainOptions::new("is_fraud");
    opts.hyper.seed = 6;
    assert_ne!(a, train(&table, &bytes, "gen.jsonl", &opts).unwrap().to_json(), "the seed must matter");
}

#[test]
fn artifact_round_trips_and_records_how_it_was_made() {
    let a = small();
    let back = Artifact::from_slice(a.to_json().as_bytes(), "m.json").unwrap();
    assert_eq!(&back, a);
    assert_eq!(a.columns.id.as_deref(), Some("transaction_id"));
    assert_eq!(a.columns.key.as_deref(), Some("account_id"));
    assert_eq!(a.columns.timestamp.as_deref(), Some("event_time"));
    assert_eq!(a.training.rows, 15_000);
    assert_eq!(a.training.train_rows + a.training.holdout_rows, 15_000);
    assert_eq!(a.training.data_sha256.len(), 64);
    assert!(a.training.solver.converged, "{:?}", a.training.solver);
    assert!(a.training.holdout_metrics.roc_auc > 0.7, "{:?}", a.training.holdout_metrics);
    let numeric: Vec<_> = a.features.numeric.iter().map(|f| f.name.as_str()).collect();
    assert!(numeric.contains(&"amount") && numeric.contains(&"is_new_device"), "{numeric:?}");
    let cats: Vec<_> = a.features.categorical.iter().map(|f| f.name.as_str()).collect();
    assert!(cats.contains(&"merchant_id") && cats.contains(&"country"), "{cats:?}");
}

#[test]
fn loading_refuses_wrong_version_missing_field_and_feature_mismatch() {
    let json = small().to_json();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["format_version"] = 2.into();
    let err = Artifact::from_slice(v.to_string().as_bytes(), "m.json").unwrap_err();
    assert!(matches!(err, ArtifactError::Version { .. }), "{err}");
    assert!(err.to_string().contains("format_version 2") && err.to_string().contains("reads format_version 1"), "{err}");

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v.as_object_mut().unwrap().remove("decision");
    let err = Artifact::from_slice(v.to_string().as_bytes(), "m.json").unwrap_err();
    assert!(matches!(err, ArtifactError::Invalid { .. }) && err.to_string().contains("missing field `decision`"), "{err}");

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["logistic"]["coefficients"].as_array_mut().unwrap().pop();
    let err = Artifact::from_slice(v.to_string().as_bytes(), "m.json").unwrap_err();
    assert!(matches!(err, ArtifactError::FeatureMismatch { .. }), "{err}");

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["features"]["categorical"][0]["levels"].as_array_mut().unwrap().push("extra".into());
    let err = Artifact::from_slice(v.to_string().as_bytes(), "m.json").unwrap_err();
    assert!(err.to_string().contains("design_columns"), "{err}");

    let err = Artifact::from_slice(b"{not json", "m.json").unwrap_err();
    assert!(matches!(err, ArtifactError::Invalid { .. }), "{err}");
    let err = Pipeline::load(std::path::Path::new("/nonexistent/model.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.json"), "{err}");
}

#[test]
fn fast_scorer_equals_the_dense_model() {
    let p = Pipeline::new(small().clone());
    let a = p.artifact();
    let (table, _) = generated(300, 11);
    let cols = p.row_columns(&table);
    let mut tx = p.new_transaction();
    let mut x = vec![0.0; p.design_width()];
    for r in 0..table.rows {
        p.fill_from_row(&table, &cols, r, &mut tx);
        let s = p.score(&tx);
        p.encode_into(&tx, &mut x);
        let logit: f64 = a.logistic.intercept + a.logistic.prior_correction + x.iter().zip(&a.logistic.coefficients).map(|(x, c)| x * c).sum::<f64>();
        assert!((s.probability - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-12);
        let nearest = a
            .outlier
            .centroids
            .iter()
            .map(|c| c.iter().zip(&x).map(|(c, x)| (c - x) * (c - x)).sum::<f64>().sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!((s.outlier_score - nearest).abs() < 1e-9, "{} vs {nearest}", s.outlier_score);
        assert_eq!(s.is_fraud, s.probability >= a.decision.threshold);
        // Reasons are the largest positive contributions, in order.
        let rs = s.reasons();
        assert!(rs.windows(2).all(|w| w[0].contribution >= w[1].contribution));
        assert!(rs.iter().all(|r| r.contribution > 0.0));
    }
}

#[test]
fn preprocessing_imputes_with_the_median_and_standardises() {
    let csv = b"amt,kind,y\n1,a,0\n2,a,1\n,b,0\n10,a,0\n3,c,1\n4,a,0\n5,b,0\n6,a,1\n7,b,0\n8,a,0\n";
    let table = Table::parse(csv, Format::Csv, "user.csv").unwrap();
    let mut opts = TrainOptions::new("y");
    opts.hyper.holdout_fraction = 0.2;
    opts.hyper.kmeans_clusters = 2;
    opts.hyper.max_categories = 1;
    let a = train(&table, csv, "user.csv", &opts).unwrap();
    let amt = &a.features.numeric[0];
    assert_eq!(amt.name, "amt");
    assert!(amt.missing_indicator);
    assert_eq!(a.features.categorical[0].levels, vec!["a".to_string()]);
    assert_eq!(a.columns.id, None);
    // Median of the train split's present values fills the gap; mean/std are of the imputed values.
    assert!(amt.fill_value >= 1.0 && amt.fill_value <= 10.0);
    let p = Pipeline::new(a.clone());
    let mut tx = p.new_transaction();
    p.decode_into(br#"{"amt": null, "kind": "zzz"}"#, &mut tx).unwrap();
    let mut x = vec![0.0; p.design_width()];
    p.encode_into(&tx, &mut x);
    assert!((x[0] - (amt.fill_value - amt.mean) / amt.std).abs() < 1e-12);
    assert_eq!(x[1], 1.0, "missing indicator");
    // kind: [a, __other__, __missing__]; an unseen level goes to other and is counted.
    assert_eq!(&x[2..5], &[0.0, 1.0, 0.0]);
    assert_eq!(p.score(&tx).unseen_categories, 1);
    p.decode_into(br#"{"amt": 3}"#, &mut tx).unwrap();
    p.encode_into(&tx, &mut x);
    assert_eq!(&x[2..5], &[0.0, 0.0, 1.0], "absent categorical is missing");
}

#[test]
fn outlier_threshold_gives_the_requested_false_positive_rate() {
    let a = small();
    let fpr = a.training.hyperparameters.outlier_false_positive_rate;
    // Over all rows (train + held-out) the rate is close to the train-split quantile's.
    assert!((a.reference.outlier_rate - fpr).abs() < 0.006, "outlier rate {} for fpr {fpr}", a.reference.outlier_rate);
    assert!(a.outlier.threshold > 0.0);
}

#[test]
fn decoding_reports_what_is_wrong() {
    let p = Pipeline::new(small().clone());
    let mut tx = p.new_transaction();
    let ok = r#"{"transaction_id":"t1","account_id":"a1","event_time":"2026-01-05T00:00:01.5Z","amount":12.5,"country":"US","is_new_device":true,"extra":{"x":[1,2]}}"#;
    p.decode_into(ok.as_bytes(), &mut tx).unwrap();
    assert_eq!((tx.id.as_str(), tx.key.as_str()), ("t1", "a1"));
    assert_eq!(tx.event_time_ms, Some(1_767_571_201_500));
    let amount = p.artifact().features.numeric.iter().position(|f| f.name == "amount").unwrap();
    assert_eq!(tx.numeric[amount], 12.5);
    let dev = p.artifact().features.numeric.iter().position(|f| f.name == "is_new_device").unwrap();
    assert_eq!(tx.numeric[dev], 1.0);

    let cases: [(&str, &str); 8] = [
        ("{", "not_json"),
        ("[1,2]", "not_object"),
        (r#"{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z","amount":"12"}"#, "wrong_type"),
        (r#"{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z","amount":{"v":1}}"#, "wrong_type"),
        (r#"{"transaction_id":"t","account_id":"a","event_time":"yesterday"}"#, "bad_timestamp"),
        (r#"{"transaction_id":"t","event_time":"2026-01-05T00:00:00Z"}"#, "missing_field"),
        (r#"{"transaction_id":null,"account_id":"a","event_time":"2026-01-05T00:00:00Z"}"#, "missing_field"),
        (r#"{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z"} trailing"#, "not_json"),
    ];
    for (input, reason) in cases {
        let err = p.decode_into(input.as_bytes(), &mut tx).unwrap_err();
        assert_eq!(err.reason().as_str(), reason, "{input} -> {err}");
    }
    // A failed decode leaves nothing behind for the next event.
    p.decode_into(br#"{"transaction_id":"t\u0032","account_id":7,"event_time":1767571200000}"#, &mut tx).unwrap();
    assert_eq!((tx.id.as_str(), tx.key.as_str(), tx.event_time_ms), ("t2", "7", Some(1_767_571_200_000)));
    assert!(tx.numeric[amount].is_nan());
}

#[test]
fn a_users_own_csv_with_other_column_names_trains_and_scores() {
    let mut csv = String::from("ref,when,merchant_type,value_usd,velocity,label\n");
    for i in 0..400 {
        let kind = ["food", "travel", "tech", "fuel"][i % 4];
        let value = 10.0 + (i * 37 % 500) as f64;
        let label = u8::from((kind == "tech" && value > 300.0) || i % 97 == 0);
        csv.push_str(&format!("r{i},2026-02-01T10:{:02}:00Z,{kind},{value},{},{label}\n", i % 60, i % 7));
    }
    let table = Table::parse(csv.as_bytes(), Format::Csv, "mine.csv").unwrap();
    let mut opts = TrainOptions::new("label");
    opts.hyper.kmeans_clusters = 3;
    let a = train(&table, csv.as_bytes(), "mine.csv", &opts).unwrap();
    let names = |v: &[NumericFeature]| v.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a.features.numeric), vec!["value_usd", "velocity"]);
    assert_eq!(a.features.categorical.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["merchant_type"]);
    assert_eq!(a.columns.timestamp.as_deref(), Some("when"), "an all-RFC 3339 column is recognised as the timestamp");
    assert!(a.training.ignored_columns.iter().any(|c| c.name == "ref" && c.reason.contains("unique")));
    assert!(a.training.holdout_metrics.roc_auc > 0.8, "{:?}", a.training.holdout_metrics);
    let p = Pipeline::new(a);
    let mut tx = p.new_transaction();
    p.decode_into(br#"{"when":"2026-02-02T00:00:00Z","merchant_type":"tech","value_usd":450,"velocity":2}"#, &mut tx).unwrap();
    assert!(p.score(&tx).probability > 0.5);
}

#[test]
fn training_errors_name_the_problem() {
    let (table, bytes) = generated(500, 1);
    let err = train(&table, &bytes, "g", &TrainOptions::new("nope")).unwrap_err();
    assert!(err.to_string().contains("column `nope` is not in the data"), "{err}");
    let err = train(&table, &bytes, "g", &TrainOptions::new("merchant_id")).unwrap_err();
    assert!(err.to_string().contains("expected 0/1"), "{err}");
    let mut opts = TrainOptions::new("is_fraud");
    opts.numeric = Some(vec!["country".into()]);
    let err = train(&table, &bytes, "g", &opts).unwrap_err();
    assert!(err.to_string().contains("`country` row 1"), "{err}");
    let mut opts = TrainOptions::new("is_fraud");
    opts.hyper.threshold_policy = ThresholdPolicy::Precision { precision: 1.0 };
    opts.hyper.c = -1.0;
    assert!(train(&table, &bytes, "g", &opts).unwrap_err().to_string().contains("C must be"));
}

#[test]
fn precision_policy_picks_the_lowest_threshold_reaching_the_target() {
    let p = [0.9, 0.8, 0.7, 0.6, 0.5];
    let y = [true, false, true, false, false];
    // precision at 0.9: 1.0, at 0.8: 0.5, at 0.7: 0.667, at 0.6: 0.5, at 0.5: 0.4
    assert_eq!(train::choose_threshold(&p, &y, ThresholdPolicy::Precision { precision: 0.6 }).unwrap(), 0.7);
    assert_eq!(train::choose_threshold(&p, &y, ThresholdPolicy::AlertRate { rate: 0.4 }).unwrap(), 0.8);
    assert!(train::choose_threshold(&p, &[false; 5], ThresholdPolicy::Precision { precision: 0.5 }).is_err());
}

#[test]
fn event_times_in_every_common_unit_decode_and_train_reads_them_the_same_way() {
    let p = Pipeline::new(trained(2000, 3));
    let mut tx = p.new_transaction();
    let want = Some(1_780_000_000_000);
    for t in ["1780000000", "1780000000000", "1780000000000000", "1780000000000000000", "\"1780000000\"", "\"2026-05-28T22:26:40+02:00\""] {
        let line = format!(r#"{{"transaction_id":"t","account_id":"a","event_time":{t}}}"#);
        p.decode_into(line.as_bytes(), &mut tx).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(tx.event_time_ms, want, "{t}");
    }
    for t in ["1e30", "\"9999999999999999999999\"", "\"10000-01-01T00:00:00Z\"", "-1e25"] {
        let line = format!(r#"{{"transaction_id":"t","account_id":"a","event_time":{t}}}"#);
        let err = p.decode_into(line.as_bytes(), &mut tx).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_timestamp", "{t}: {err}");
    }
    // An explicit unit wins over magnitude.
    let mut a = p.artifact().clone();
    a.columns.timestamp_unit = crate::time::TimestampUnit::Milliseconds;
    let ms = Pipeline::new(a);
    let mut tx = ms.new_transaction();
    ms.decode_into(br#"{"transaction_id":"t","account_id":"a","event_time":1780000000}"#, &mut tx).unwrap();
    assert_eq!(tx.event_time_ms, Some(1_780_000_000));
    // Rows of a file (train, drift) are read with the same rule.
    let table = crate::dataset::Table::parse(b"transaction_id,account_id,event_time\nt,a,1780000000\nu,b,2026-05-28T20:26:40Z\n", crate::dataset::Format::Csv, "t.csv").unwrap();
    let cols = p.row_columns(&table);
    let mut tx = p.new_transaction();
    for row in 0..2 {
        p.fill_from_row(&table, &cols, row, &mut tx);
        assert_eq!(tx.event_time_ms, want, "row {row}");
    }
}

/// The SIMD decoder against serde_json's (the reference): on valid, odd and broken events alike,
/// the same transaction or the same refusal.
#[test]
fn the_simd_decoder_decodes_and_refuses_exactly_as_the_serde_json_reference() {
    use proptest::prelude::*;
    let p = Pipeline::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json"))).unwrap();
    let a = p.artifact();
    let mut names: Vec<String> = [&a.columns.id, &a.columns.key, &a.columns.timestamp].into_iter().flatten().cloned().collect();
    names.extend(a.features.numeric.iter().map(|f| f.name.clone()));
    names.extend(a.features.categorical.iter().map(|f| f.name.clone()));
    // Unknown keys, an escaped spelling of a known one, non-ASCII.
    names.extend(["extra", "amo\\u0075nt", "pa\u{ef}s", "\\ud83d\\ude00"].map(String::from));
    let value = prop_oneof![
        "\"[a-zA-Z0-9 é€]{0,12}\"",
        Just("\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"tab\there\"".to_string()),
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?",
        Just("01".to_string()),
        Just("1.".to_string()),
        Just("-".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        "\"(19|20|99)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|[+-][01][0-9]:[0-5][0-9])\"",
        "1[0-9]{9,18}",
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
        Just("{\"a\":[1,{\"b\":2}],\"c\":\"d\"}".to_string()),
        Just("[]".to_string()),
        Just("[1,2,".to_string()),
        Just("tru".to_string()),
    ];
    let field = (0..names.len(), value, "[ \\t\\n]{0,2}");
    // How the object is damaged: 0 not at all, 1 cut short, 2 trailing bytes, 3 one byte
    // changed, 4 wrapped in an array, 5 a bare value.
    // (6 to 15: undamaged.)
    let damage = (0..16u8, any::<prop::sample::Index>(), any::<u8>());
    // A valid event first (its fields may then be overridden by the random ones).
    let base = r#""transaction_id":"tx-1","account_id":"acct-7","event_time":"2026-01-05T00:00:00.250Z","amount":12.5"#;
    // What the property found while the SIMD decoder was written (each once differed).
    let event = |tail: &str| format!(r#"{{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z"{tail}}}"#);
    for (input, reason) in [
        (event(r#","amount":"\ud800""#), Some("not_json")),
        (event(r#","extra":1000000000000.000000#"#), Some("not_json")),
        (event(",\"amount\":1844674407370955161\u{1}"), Some("not_json")),
        (event(r#","amount":10000000000000000.00+000"#), Some("not_json")),
        (event(r#","extra":0.1e310"#), None),
        (event(r#","amount":-0"#), None),
        (event(",\"amount\":1\u{0}.5"), Some("not_json")),
        ("\"\\ud800\"".to_string(), Some("not_json")),
    ] {
        let (mut r, mut d) = (p.new_transaction(), p.new_transaction());
        let want = p.decode_into_serde(input.as_bytes(), &mut r).err().map(|e| e.reason().as_str());
        assert_eq!(want, reason, "reference on {input:?}");
        assert_eq!(p.decode_into(input.as_bytes(), &mut d).err().map(|e| e.reason().as_str()), reason, "{input:?}");
    }
    let checked = [std::cell::Cell::new(0usize), std::cell::Cell::new(0)];
    let (reference, simd) = (std::cell::RefCell::new(p.new_transaction()), std::cell::RefCell::new(p.new_transaction()));
    proptest!(ProptestConfig::with_cases(20_000), |(fields in prop::collection::vec(field, 0..6), (how, at, byte) in damage, with_base in any::<bool>())| {
        let mut body: Vec<String> = fields.iter().map(|(k, v, ws)| format!("{ws}\"{}\"{ws}:{ws}{v}", names[*k])).collect();
        if with_base {
            body.insert(0, base.to_string());
        }
        let object = format!("{{{}}}", body.join(","));
        let mut bytes = object.clone().into_bytes();
        match how {
            1 => bytes.truncate(at.index(bytes.len())),
            2 => bytes.extend_from_slice(b" x"),
            3 => { let i = at.index(bytes.len()); bytes[i] = byte; }
            4 => bytes = format!("[{object}]").into_bytes(),
            5 => bytes = fields.first().map_or(b"42".to_vec(), |f| f.1.clone().into_bytes()),
            _ => {}
        }
        let (mut reference, mut simd) = (reference.borrow_mut(), simd.borrow_mut());
        let want = p.decode_into_serde(&bytes, &mut reference);
        let got = p.decode_into(&bytes, &mut simd);
        prop_assert_eq!(got.as_ref().map_err(DecodeError::reason), want.as_ref().map_err(DecodeError::reason), "{:?}", String::from_utf8_lossy(&bytes));
        if let (Err(g), Err(w)) = (&got, &want) {
            if !matches!(w, DecodeError::NotJson(_)) {
                prop_assert_eq!(g, w, "same field, same message: {}", String::from_utf8_lossy(&bytes));
            }
        }
        if want.is_ok() {
            prop_assert_eq!((&simd.id, &simd.key, simd.event_time_ms), (&reference.id, &reference.key, reference.event_time_ms));
            // Bit for bit, except that `-0` may read as -0.0 or 0.0 (it scores the same).
            let bits = |t: &Transaction| t.numeric.iter().map(|v| (v + 0.0).to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&simd), bits(&reference), "{}", String::from_utf8_lossy(&bytes));
            let cats = |t: &Transaction| t.categorical.iter().map(|c| c.get().map(str::to_string)).collect::<Vec<_>>();
            prop_assert_eq!(cats(&simd), cats(&reference));
        }
        let seen = &checked[usize::from(want.is_ok())];
        seen.set(seen.get() + 1);
    });
    // Both outcomes were exercised (a strategy that only produced refusals would prove little).
    let [refused, decoded] = checked.map(|c| c.get());
    assert!(refused > 1000 && decoded > 1000, "refused {refused}, decoded {decoded}");
}

#[test]
fn training_calibrates_the_held_out_probabilities_unless_told_not_to() {
    let a = small();
    let c = a.calibration.as_ref().expect("isotonic by default");
    assert_eq!((c.rows, c.positives), (a.training.holdout_rows, a.training.holdout_metrics.positives));
    c.check().unwrap();
    // A broken section is refused on load, naming it.
    let mut v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
    v["calibration"]["rows"] = (c.rows + 1).into();
    let err = Artifact::from_slice(v.to_string().as_bytes(), "m.json").unwrap_err().to_string();
    assert!(err.contains("calibration"), "{err}");
    // `--calibration none`: no section, and another derived version for the other contents.
    let (table, bytes) = generated(15_000, 3);
    let mut opts = TrainOptions::new("is_fraud");
    opts.calibration = super::calibration::CalibrationMethod::None;
    let none = train(&table, &bytes, "gen.jsonl", &opts).unwrap();
    assert!(none.calibration.is_none());
    assert_ne!(none.model.version, a.model.version);
    assert_eq!(none.decision, a.decision, "calibration changes no decision");
}
