//! The engine on a secured listener of the real broker: SASL_SSL with SCRAM-SHA-512 and a
//! throw-away CA (both made by `scripts/kafka`). End to end over TLS and SASL, and one clear,
//! fast error for each way a secured connection goes wrong.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use driftwatch::generate::{Generator, GeneratorConfig};

fn sasl_brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_SASL_BROKERS").expect("DRIFTWATCH_TEST_SASL_BROKERS is not set: run scripts/test, which starts Kafka with a SASL_SSL listener")
}

fn tls_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("DRIFTWATCH_TEST_TLS_DIR").expect("DRIFTWATCH_TEST_TLS_DIR is not set: run scripts/test"));
    assert!(dir.join("ca.pem").is_file(), "no test CA in {}: start the broker with scripts/kafka", dir.display());
    dir
}

/// The engine's settings for the secured listener, all from the environment (as a deployment
/// would keep the password out of files).
fn secured(password: &str, ca: &str) -> Vec<(String, String)> {
    vec![
        ("DRIFTWATCH_KAFKA__BROKERS".into(), sasl_brokers()),
        ("DRIFTWATCH_KAFKA__OPTIONS__SECURITY_PROTOCOL".into(), "SASL_SSL".into()),
        ("DRIFTWATCH_KAFKA__OPTIONS__SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
        ("DRIFTWATCH_KAFKA__OPTIONS__SASL_USERNAME".into(), "driftwatch".into()),
        ("DRIFTWATCH_KAFKA__OPTIONS__SASL_PASSWORD".into(), password.into()),
        ("DRIFTWATCH_KAFKA__OPTIONS__SSL_CA_LOCATION".into(), tls_dir().join(ca).display().to_string()),
    ]
}

#[test]
fn the_engine_consumes_and_produces_over_sasl_ssl() {
    let t = Topics::new(2);
    let events: Vec<Vec<u8>> = Generator::new(GeneratorConfig { seed: 1, rows: 53_000, ..Default::default() }).take(53_000).skip(50_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    produce(&t.transactions, &events);
    let expected = offline_alert_ids(&events);
    let env = secured("driftwatch-secret", "ca.pem");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let engine = start_engine_with_env(&t, "[drift]\nenabled = false", &env);
    let m = engine.wait_for("every event scored over SASL_SSL", Duration::from_secs(60), |m| metric(m, "driftwatch_events_scored_total{}") >= events.len() as f64);
    assert_eq!(metric(&m, "driftwatch_events_consumed_total{}"), events.len() as f64);
    let alerts = consume_all(&t.alerts, expected.len(), Duration::from_secs(30));
    let got: BTreeSet<String> = alerts.iter().map(|a| serde_json::from_slice::<serde_json::Value>(&a.payload).unwrap()["transaction_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, expected, "alerts produced over SASL_SSL equal the offline scorer's");
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("driftwatch-secret"), "the password never reaches the log");
    assert_eq!(uncommitted(&t.group, &t.transactions), 0, "offsets committed over SASL_SSL");
}

/// Runs the engine expecting it to stop at once; returns its stderr.
fn fails_fast(env: &[(String, String)]) -> String {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--config", "config/default.toml"])
        .env("DRIFTWATCH_METRICS__LISTEN", "")
        .env("RUST_LOG", "off")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}, not an endless retry: {err}", started.elapsed());
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {err}");
    err
}

#[test]
fn a_wrong_password_is_one_clear_error() {
    let err = fails_fast(&secured("not-the-password", "ca.pem"));
    assert!(err.contains("SASL authentication error") && err.contains("invalid credentials"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn an_untrusted_certificate_is_one_clear_error() {
    let err = fails_fast(&secured("driftwatch-secret", "other-ca.pem"));
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[test]
fn a_missing_ca_file_is_one_clear_error() {
    let err = fails_fast(&secured("driftwatch-secret", "no-such-ca.pem"));
    assert!(err.contains("kafka.options.ssl.ca.location") && err.contains("no-such-ca.pem") && err.contains("No such file"), "{err}");
}
