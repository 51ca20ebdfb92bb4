//! The artifact and `score` output against their JSON Schemas, and the shipped demo model
//! against the documented command that reproduces it.

use std::path::Path;

use driftwatch::dataset::{Format, Table};
use driftwatch::generate::{self, GeneratorConfig, OutputFormat};
use driftwatch::pipeline::train::{train, TrainOptions};
use driftwatch::pipeline::Pipeline;

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, instance: &serde_json::Value) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
}

fn demo_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json")
}

/// README: `driftwatch generate --rows 50000 --seed 1 -o demo-train.jsonl` then
/// `driftwatch train --data demo-train.jsonl --label is_fraud --name card-fraud --model-version demo-1 --out models/demo.json`.
#[test]
fn shipped_demo_model_is_reproduced_byte_for_byte_by_the_documented_command() {
    let mut bytes = Vec::new();
    generate::write(&GeneratorConfig { rows: 50_000, seed: 1, ..Default::default() }, OutputFormat::JsonLines, &mut bytes).unwrap();
    let table = Table::parse(&bytes, Format::JsonLines, "demo-train.jsonl").unwrap();
    let mut opts = TrainOptions::new("is_fraud");
    opts.name = "card-fraud".into();
    opts.version = Some("demo-1".into());
    let artifact = train(&table, &bytes, "demo-train.jsonl", &opts).unwrap();
    let shipped = std::fs::read_to_string(demo_path()).unwrap();
    assert!(artifact.to_json() == shipped, "models/demo.json differs from a fresh training run; regenerate it with the README command");
}

#[test]
fn artifact_validates_against_its_schema_and_the_schema_rejects_breakage() {
    let v = schema("pipeline.schema.json");
    let mut artifact: serde_json::Value = serde_json::from_slice(&std::fs::read(demo_path()).unwrap()).unwrap();
    assert_valid(&v, &artifact);
    artifact["format_version"] = 2.into();
    assert!(!v.is_valid(&artifact), "the schema must pin the format version");
    artifact["format_version"] = 1.into();
    artifact.as_object_mut().unwrap().remove("outlier");
    assert!(!v.is_valid(&artifact), "the schema must require every section");
}

#[test]
fn every_score_line_validates_against_its_schema() {
    let v = schema("score-line.schema.json");
    let pipeline = Pipeline::load(&demo_path()).unwrap();
    let mut input: Vec<u8> = Vec::new();
    generate::write(&GeneratorConfig { rows: 300, seed: 77, ..Default::default() }, OutputFormat::JsonLines, &mut input).unwrap();
    input.extend_from_slice(b"not json\n\n[1]\n{\"transaction_id\":\"x\"}\n{\"transaction_id\":\"x\",\"account_id\":\"a\",\"event_time\":\"2026-01-01T00:00:00Z\",\"amount\":\"1\"}\n");
    let mut out = Vec::new();
    let summary = driftwatch::commands::score::score_lines(&pipeline, &input[..], &mut out).unwrap();
    assert_eq!((summary.scored, summary.errors), (300, 5));
    let lines: Vec<serde_json::Value> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 305, "one output line per input line");
    for (i, line) in lines.iter().enumerate() {
        assert_valid(&v, line);
        assert_eq!(line["line"], serde_json::json!(i + 1));
    }
    let reasons: Vec<&str> = lines[300..].iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["not_json", "empty", "not_object", "missing_field", "wrong_type"]);
}

#[test]
fn the_transaction_schema_and_the_engine_decoder_agree() {
    let v = schema("transaction.schema.json");
    let pipeline = Pipeline::load(&demo_path()).unwrap();
    let mut tx = pipeline.new_transaction();
    for t in generate::Generator::new(GeneratorConfig { seed: 5, ..Default::default() }).take(500) {
        let json = serde_json::to_value(&t).unwrap();
        assert_valid(&v, &json);
        pipeline.decode_into(json.to_string().as_bytes(), &mut tx).unwrap();
    }
    let rejected_by_both = [
        r#"{"event_time":"2026-01-05T00:00:00Z","account_id":"a"}"#,
        r#"{"transaction_id":"t","event_time":"2026-01-05T00:00:00Z"}"#,
        r#"{"transaction_id":"t","account_id":"a","event_time":"yesterday"}"#,
        r#"{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z","amount":"12"}"#,
        r#"{"transaction_id":"t","account_id":"a","event_time":"2026-01-05T00:00:00Z","country":{"code":"US"}}"#,
        r#"[1]"#,
    ];
    for input in rejected_by_both {
        let json: serde_json::Value = serde_json::from_str(input).unwrap();
        assert!(!v.is_valid(&json), "schema accepts {input}");
        assert!(pipeline.decode_into(input.as_bytes(), &mut tx).is_err(), "decoder accepts {input}");
    }
    // Nulls and absent features are fine for both (they are imputed).
    let sparse = r#"{"transaction_id":"t","account_id":"a","event_time":1767571200000,"amount":null}"#;
    assert_valid(&v, &serde_json::from_str(sparse).unwrap());
    pipeline.decode_into(sparse.as_bytes(), &mut tx).unwrap();
}
