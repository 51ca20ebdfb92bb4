//! The command line as a user meets it: exit codes, what goes to stderr, environment variables,
//! and event times in every common unit, end to end through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo.json");

fn driftwatch(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the driftwatch binary runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const GOOD: &str = r#"{"transaction_id":"t1","account_id":"a1","event_time":"2026-01-05T00:00:00Z","amount":12.5}"#;

#[test]
fn score_exits_4_when_no_line_or_with_fail_on_error_any_line_could_not_be_scored() {
    let bad = "not json\n[1]\n";
    let all_bad = driftwatch(&["score", "--model", DEMO], bad.as_bytes(), &[]);
    assert_eq!(all_bad.status.code(), Some(4), "{}", stderr(&all_bad));
    assert!(stderr(&all_bad).contains("2 of 2 lines could not be scored"), "{}", stderr(&all_bad));
    assert_eq!(String::from_utf8_lossy(&all_bad.stdout).lines().count(), 2, "an error line per input line still");
    let mixed = format!("{GOOD}\nnot json\n");
    assert_eq!(driftwatch(&["score", "--model", DEMO], mixed.as_bytes(), &[]).status.code(), Some(0));
    assert_eq!(driftwatch(&["score", "--model", DEMO, "--fail-on-error"], mixed.as_bytes(), &[]).status.code(), Some(4));
    assert_eq!(driftwatch(&["score", "--model", DEMO, "--fail-on-error"], GOOD.as_bytes(), &[]).status.code(), Some(0));
}

#[test]
fn bad_values_are_usage_errors_and_missing_files_are_errors() {
    let usage = driftwatch(&["drift", "--reference", "a", "--current", "b", "--metric", "mse"], b"", &[]);
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    assert!(stderr(&usage).contains("possible values: psi, kl, js, ks, wasserstein_normalized"), "{}", stderr(&usage));
    let missing = driftwatch(&["score", "--model", "/nonexistent/model.json"], b"", &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).starts_with("error: ") && stderr(&missing).contains("/nonexistent/model.json"), "{}", stderr(&missing));
}

#[test]
fn offline_commands_log_with_rust_log_and_stay_quiet_when_piped() {
    let quiet = driftwatch(&["generate", "--rows", "5000"], b"", &[]);
    assert!(quiet.status.success());
    assert_eq!(stderr(&quiet), "", "no progress bar or logs on a pipe by default");
    assert_eq!(String::from_utf8_lossy(&quiet.stdout).lines().count(), 5000);
    let logged = driftwatch(&["generate", "--rows", "10"], b"", &[("RUST_LOG", "info")]);
    assert!(stderr(&logged).contains("Generated."), "RUST_LOG reaches offline commands: {}", stderr(&logged));
}

#[test]
fn brokers_come_from_the_same_variable_in_every_command() {
    for command in ["produce", "demo", "model"] {
        let help = driftwatch(&[command, "--help"], b"", &[]);
        assert!(String::from_utf8_lossy(&help.stdout).contains("[env: DRIFTWATCH_KAFKA__BROKERS="), "{command} --help");
    }
    // produce needs --brokers; the variable supplies it (and the unreachable address then fails as an error, not a usage error).
    let without = driftwatch(&["produce", "--duration", "1"], b"", &[]);
    assert_eq!(without.status.code(), Some(2), "no brokers at all is a usage error");
    let model = driftwatch(&["model", "list", "--help"], b"", &[]);
    assert!(String::from_utf8_lossy(&model.stdout).contains("DRIFTWATCH_MODEL__REGISTRY"));
}

#[test]
fn drift_names_the_columns_it_compares_and_flags_a_label_compared_as_a_feature() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    for (path, seed) in [(&a, "1"), (&b, "2")] {
        let out = driftwatch(&["generate", "--rows", "500", "--seed", seed, "--format", "csv", "-o", path.to_str().unwrap()], b"", &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let plain = driftwatch(&["drift", "--reference", a.to_str().unwrap(), "--current", b.to_str().unwrap()], b"", &[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = stderr(&plain);
    assert!(text.contains("comparing ") && text.contains("amount") && text.contains("country"), "{text}");
    assert!(text.contains("note: `is_fraud` looks like a label"), "{text}");
    let labelled = driftwatch(&["drift", "--reference", a.to_str().unwrap(), "--current", b.to_str().unwrap(), "--label", "is_fraud"], b"", &[]);
    assert!(stderr(&labelled).contains("label `is_fraud` left out") && !stderr(&labelled).contains("note:"), "{}", stderr(&labelled));
}

#[test]
fn epoch_seconds_events_land_in_the_right_windows() {
    // The same transactions with event times as RFC 3339, epoch seconds, epoch ms (numbers and
    // numeric strings): the replay's windows must be the same, in 2026, not in January 1970.
    let generated = driftwatch(&["generate", "--rows", "3000", "--seed", "1", "--rate", "5"], b"", &[]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&generated.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut windows = Vec::new();
    for (name, convert) in [
        ("rfc3339", &(|v: &serde_json::Value| v.clone()) as &dyn Fn(&serde_json::Value) -> serde_json::Value),
        ("seconds", &|v: &serde_json::Value| serde_json::json!(driftwatch::time::parse_rfc3339_ms(v.as_str().unwrap()).unwrap() / 1000)),
        ("millis-string", &|v: &serde_json::Value| serde_json::json!(driftwatch::time::parse_rfc3339_ms(v.as_str().unwrap()).unwrap().to_string())),
    ] {
        let path = dir.path().join(format!("{name}.jsonl"));
        let mut f = std::fs::File::create(&path).unwrap();
        for r in &rows {
            let mut r = r.clone();
            // Whole seconds, so every encoding says the same instant.
            let t = driftwatch::time::parse_rfc3339_ms(r["event_time"].as_str().unwrap()).unwrap() / 1000 * 1000;
            r["event_time"] = convert(&serde_json::json!(driftwatch::time::format_rfc3339_ms(t)));
            writeln!(f, "{r}").unwrap();
        }
        drop(f);
        let out = driftwatch(
            &["drift", "--model", DEMO, "--current", path.to_str().unwrap(), "--window-minutes", "2", "--slide-minutes", "2", "--sample", "1", "--format", "json"],
            b"",
            &[],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let ends: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["report"]["window_end"].as_str().unwrap().to_string()).collect();
        assert!(!ends.is_empty() && ends.iter().all(|e| e.starts_with("2026-01-05T")), "{name}: {ends:?}");
        windows.push(ends);
    }
    assert_eq!(windows[0], windows[1], "epoch seconds read as seconds");
    assert_eq!(windows[0], windows[2], "epoch milliseconds as a string");
}

#[test]
fn run_check_never_prints_secrets() {
    let out = driftwatch(
        &["run", "--config", "config/default.toml", "--check"],
        b"",
        &[
            ("DRIFTWATCH_KAFKA__OPTIONS__SECURITY_PROTOCOL", "SASL_SSL"),
            ("DRIFTWATCH_KAFKA__OPTIONS__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("DRIFTWATCH_KAFKA__OPTIONS__SASL_USERNAME", "fraud-engine"),
            ("DRIFTWATCH_KAFKA__OPTIONS__SASL_PASSWORD", "hunter2-very-secret"),
            ("DRIFTWATCH_KAFKA__PRODUCER_OPTIONS__SSL_KEY_PASSWORD", "another-secret"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2") && !text.contains("another-secret"), "a secret was printed:\n{text}");
    assert!(text.contains(r#""sasl.password": "***""#) && text.contains(r#""ssl.key.password": "***""#), "{text}");
    assert!(text.contains(r#""sasl.username": "fraud-engine""#) && text.contains(r#""security.protocol": "SASL_SSL""#), "non-secrets are shown: {text}");
}

#[test]
fn tls_sasl_scram_and_every_codec_are_built_in() {
    use rdkafka::producer::BaseProducer;
    // Each of these is refused at client creation by a librdkafka built without it ("… not
    // available at build time").
    for (key, value) in [("compression.type", "gzip"), ("compression.type", "snappy"), ("compression.type", "lz4"), ("compression.type", "zstd")] {
        let made = rdkafka::ClientConfig::new().set("bootstrap.servers", "127.0.0.1:1").set(key, value).create::<BaseProducer>();
        assert!(made.is_ok(), "{key}={value}: {:?}", made.err());
    }
    let secured = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "u")
        .set("sasl.password", "p")
        .create::<BaseProducer>();
    assert!(secured.is_ok(), "SASL_SSL with SCRAM: {:?}", secured.err());
}

#[test]
fn a_missing_ca_file_is_a_clear_error() {
    // The engine stops at once, naming the option and the file (librdkafka itself would only
    // say "ssl.ca.location failed: … system lib").
    let started = std::time::Instant::now();
    let out = driftwatch(
        &["run", "--config", "config/default.toml"],
        b"",
        &[
            ("DRIFTWATCH_KAFKA__BROKERS", "127.0.0.1:1"),
            ("DRIFTWATCH_KAFKA__OPTIONS__SECURITY_PROTOCOL", "SSL"),
            ("DRIFTWATCH_KAFKA__OPTIONS__SSL_CA_LOCATION", "/nonexistent/driftwatch-ca.pem"),
            ("DRIFTWATCH_METRICS__LISTEN", ""),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kafka.options.ssl.ca.location") && err.contains("/nonexistent/driftwatch-ca.pem") && err.contains("No such file"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "no endless retry");
}

#[test]
fn two_processes_registering_at_once_never_lose_a_version() {
    // Two `driftwatch model` processes, each registering 8 versions as fast as it can: every
    // write is a read-modify-write of index.json under the registry's file lock.
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(DEMO).unwrap()).unwrap();
    let mut files = Vec::new();
    for i in 0..16 {
        let mut a = base.clone();
        a["model"]["version"] = serde_json::Value::from(format!("v{i:02}"));
        let path = dir.path().join(format!("v{i:02}.json"));
        std::fs::write(&path, serde_json::to_vec(&a).unwrap()).unwrap();
        files.push(path);
    }
    let writers: Vec<_> = files
        .chunks(8)
        .map(|half| {
            let (registry, half) = (registry.clone(), half.to_vec());
            std::thread::spawn(move || {
                for f in half {
                    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch")).args(["model", "--registry"]).arg(&registry).arg("register").arg(&f).output().unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(registry.join("index.json")).unwrap()).unwrap();
    let versions: Vec<&str> = index["models"]["card-fraud"]["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions.len(), 16, "every registration kept: {versions:?}");
}
