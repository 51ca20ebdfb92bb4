//! The retraining loop with the tools ML teams run, all real: an MLflow tracking server
//! (`scripts/mlops start-mlflow`: SQLite store, artifacts through the server), DVC and Airflow
//! from PyPI, each in its own virtual environment, and the Kafka broker.
//!
//! The oracle for MLflow is MLflow's own Python client (`tests/python/mlflow_oracle.py`): what
//! it sees of runs, versions, aliases and tags is what an MLflow user sees.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sha2::Digest;

fn env_or_fail(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: {what}. Run `scripts/test`, which installs the tools and starts the services."))
}

fn mlflow_uri() -> String {
    env_or_fail("DRIFTWATCH_TEST_MLFLOW", "the MLflow tracking server these tests use (scripts/mlops start-mlflow)")
}

/// MLflow's Python client: `describe NAME` (JSON) or `alias NAME ALIAS VERSION`.
fn oracle(args: &[&str]) -> Value {
    let python = env_or_fail("DRIFTWATCH_MLFLOW_PYTHON", "the MLflow venv's python (the oracle)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mlflow_oracle.py");
    let out = Command::new(python).arg(script).args(args).env("MLFLOW_TRACKING_URI", mlflow_uri()).output().unwrap();
    assert!(out.status.success(), "mlflow oracle {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    if out.stdout.is_empty() { Value::Null } else { serde_json::from_slice(&out.stdout).unwrap() }
}

fn sha256_file(path: &Path) -> String {
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `driftwatch model --registry mlflow:NAME ARGS…` against the test server.
fn model_cli(name: &str, args: &[&str]) -> String {
    let registry = format!("mlflow:{name}");
    let mut all = vec!["model", "--registry", registry.as_str(), "--by", "tester"];
    all.extend_from_slice(args);
    let uri = mlflow_uri();
    let out = driftwatch_ok(&all, &[("MLFLOW_TRACKING_URI", uri.as_str())]);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn version_of<'a>(described: &'a Value, number: &str) -> &'a Value {
    described["versions"].as_array().unwrap().iter().find(|v| v["version"] == number).unwrap_or_else(|| panic!("no version {number}: {described}"))
}

#[test]
fn training_is_logged_and_registered_in_mlflow_as_its_own_client_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("fraud");
    let data = dir.path().join("train.jsonl");
    driftwatch_ok(&["generate", "--rows", "12000", "--seed", "5", "-o", data.to_str().unwrap()], &[]);
    let uri = mlflow_uri();
    let train = |c: &str, out: &Path, metrics: &Path| {
        driftwatch_ok(
            &["train", "--data", data.to_str().unwrap(), "--label", "is_fraud", "--name", &name, "--c", c, "--out", out.to_str().unwrap(), "--metrics-out", metrics.to_str().unwrap(), "--mlflow", &uri, "--mlflow-experiment", &name],
            &[],
        )
    };
    let (a1, m1) = (dir.path().join("a1.json"), dir.path().join("m1.json"));
    train("1.0", &a1, &m1);
    let artifact = json_file(&a1);
    let described = oracle(&["describe", &name]);
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{described}");
    let v1 = &versions[0];
    let sha = sha256_file(&a1);
    assert_eq!(v1["tags"]["driftwatch.version"], artifact["model"]["version"]);
    assert_eq!(v1["tags"]["driftwatch.artifact_sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(v1["downloaded_sha256"].as_str(), Some(sha.as_str()), "MLflow's client downloads the very artifact that was written");
    let run = &described["runs"][v1["run_id"].as_str().unwrap()];
    assert_eq!((run["status"].as_str(), run["experiment"].as_str()), (Some("FINISHED"), Some(name.as_str())), "{run}");
    assert_eq!(run["artifacts"], serde_json::json!(["pipeline/artifact.json"]));
    // The data checksum, computed here from the file, not taken from the artifact.
    assert_eq!(run["tags"]["driftwatch.data_sha256"].as_str(), Some(sha256_file(&data).as_str()));
    assert_eq!((run["params"]["c"].as_str(), run["params"]["class_weight"].as_str()), (Some("1.0"), Some("balanced")), "{run}");
    assert_eq!(run["params"]["rows"].as_str(), Some("12000"));
    let held_out = &artifact["training"]["holdout_metrics"];
    let metrics_file = json_file(&m1);
    for key in ["roc_auc", "pr_auc", "precision", "recall", "alert_rate"] {
        let want = held_out[key].as_f64().unwrap();
        assert!((run["metrics"][key].as_f64().unwrap() - want).abs() < 1e-12, "{key}: {run}");
        assert!((metrics_file[key].as_f64().unwrap() - want).abs() < 1e-12, "{key} in --metrics-out: {metrics_file}");
    }
    assert!(run["metrics"]["roc_auc"].as_f64().unwrap() > 0.6, "a model that learned something: {run}");

    // The same bytes again: no second version.
    let said = model_cli(&name, &["register", a1.to_str().unwrap()]);
    assert!(said.contains("already registered"), "{said}");
    let (a2, m2) = (dir.path().join("a2.json"), dir.path().join("m2.json"));
    train("0.05", &a2, &m2);
    assert_eq!(oracle(&["describe", &name])["versions"].as_array().unwrap().len(), 2);

    // Aliases: champion, challenger; a promotion records the previous champion; a rollback
    // moves champion back and records its reason on the version rolled back.
    model_cli(&name, &["promote", "1", "--reason", "first release"]);
    model_cli(&name, &["challenge", "2"]);
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"], serde_json::json!({"champion": "1", "challenger": "2"}));
    let listed = model_cli(&name, &["list"]);
    assert!(listed.lines().any(|l| l.contains("production") && l.contains(&format!("models:/{name}/1"))), "{listed}");
    model_cli(&name, &["promote", "2", "--reason", "better recall"]);
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"], serde_json::json!({"champion": "2"}), "promoting the challenger uses up the alias");
    assert_eq!(version_of(&d, "2")["tags"]["driftwatch.previous_champion"], "1");
    model_cli(&name, &["rollback", "--reason", "alert storm"]);
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"], serde_json::json!({"champion": "1"}));
    assert_eq!(version_of(&d, "2")["tags"]["driftwatch.rollback_reason"], "alert storm");
    assert_eq!(version_of(&d, "1")["tags"]["driftwatch.stage_reason"], "rollback: alert storm");
}

/// The engine serving `mlflow:<name>` from the test server, shadow-scoring every event, with
/// `engine_extra` and the guard watching `guard_windows` windows (0: off).
fn engine_on_mlflow(t: &Topics, dir: &Path, name: &str, engine_extra: &str, guard_windows: u32) -> EngineProcess {
    let (uri, registry, cache, guard) = (mlflow_uri(), format!("mlflow:{name}"), dir.join("cache").display().to_string(), guard_windows.to_string());
    start_engine_with_env(
        t,
        engine_extra,
        &[
            ("DRIFTWATCH_MODEL__REGISTRY", registry.as_str()),
            ("DRIFTWATCH_MODEL__MLFLOW_URI", uri.as_str()),
            ("DRIFTWATCH_MODEL__MLFLOW_CACHE", cache.as_str()),
            ("DRIFTWATCH_MODEL__REGISTRY_POLL_MS", "200"),
            ("DRIFTWATCH_MODEL__SHADOW_FRACTION", "1.0"),
            ("DRIFTWATCH_MODEL__GUARD_WINDOWS", guard.as_str()),
        ],
    )
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_engine_serves_mlflows_champion_shadow_scores_its_challenger_and_the_guard_moves_champion_back() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("served");
    let good = demo_variant(dir.path(), Some(&name), "good-1", None);
    let eager = demo_variant(dir.path(), Some(&name), "alerts-everything", Some(0.0));
    model_cli(&name, &["register", good.to_str().unwrap()]);
    model_cli(&name, &["register", eager.to_str().unwrap()]);
    model_cli(&name, &["promote", "good-1"]);
    model_cli(&name, &["challenge", "alerts-everything"]);

    let t = Topics::new(3);
    let events: Vec<Vec<u8>> = driftwatch::generate::Generator::new(driftwatch::generate::GeneratorConfig { seed: 1, rows: 80_000, rate_per_sec: 100.0, ..Default::default() })
        .skip(50_000)
        .take(30_000)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    let engine = engine_on_mlflow(&t, dir.path(), &name, "[drift]\nsample_fraction = 0.5\nwindow_seconds = 20\nslide_seconds = 10\nlateness_seconds = 5\nmin_samples = 50", 3);
    wait_until("the challenger loaded", Duration::from_secs(60), || {
        assert!(!engine.exited(), "the engine stopped; log:\n{}", engine.log_text());
        engine.log_text().contains("Shadow candidate changed.")
    });
    produce(&t.transactions, &events[..5_000]);
    let m = engine.wait_for("the champion scoring, the challenger shadow-scoring", Duration::from_secs(60), |m| {
        metric(m, "driftwatch_events_scored_total{}") >= 5_000.0 && metric(m, "driftwatch_shadow_scored_total{}") >= 5_000.0
    });
    assert_eq!(metric(&m, &format!("driftwatch_model_info{{name={name},version=good-1}}")), 1.0);
    assert_eq!(metric(&m, "driftwatch_shadow_alerts_total{}"), 5_000.0, "the challenger (threshold 0) alerts on everything");
    let shadow = consume_all(&t.retrain.replace("retrain", "shadow"), 5_000, Duration::from_secs(30));
    let first: Value = serde_json::from_slice(&shadow[0].payload).unwrap();
    assert_eq!((first["production_version"].as_str(), first["candidate_version"].as_str()), (Some("good-1"), Some("alerts-everything")), "{first}");

    // Someone moves `champion` in MLflow (UI or client), not through driftwatch: the engine
    // follows, and its guard rolls the misbehaving version back by moving the alias back.
    let d = oracle(&["describe", &name]);
    let eager_number = d["versions"].as_array().unwrap().iter().find(|v| v["tags"]["driftwatch.version"] == "alerts-everything").unwrap()["version"].as_str().unwrap().to_string();
    let good_number = d["aliases"]["champion"].as_str().unwrap().to_string();
    oracle(&["alias", &name, "champion", &eager_number]);
    engine.wait_for("the moved champion serving", Duration::from_secs(30), |m| metric(m, &format!("driftwatch_model_info{{name={name},version=alerts-everything}}")) == 1.0);
    produce(&t.transactions, &events[5_000..]);
    engine.wait_for("the guard's rollback", Duration::from_secs(90), |m| {
        metric(m, "driftwatch_model_rollbacks_total{}") >= 1.0 && metric(m, &format!("driftwatch_model_info{{name={name},version=good-1}}")) == 1.0
    });
    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(90), &engine);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"]["champion"].as_str(), Some(good_number.as_str()), "champion is back on the good version: {d}");
    let rolled = version_of(&d, &eager_number);
    assert!(rolled["tags"]["driftwatch.rollback_reason"].as_str().unwrap_or("").contains("fraud-alert rate"), "{rolled}");
    assert_eq!(rolled["tags"]["driftwatch.previous_champion"].as_str(), Some(good_number.as_str()), "the engine recorded where a rollback returns to");
    let model_events = consume_all(&t.retrain.replace("retrain", "model-events"), 2, Duration::from_secs(30));
    let parsed: Vec<Value> = model_events.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect();
    assert!(parsed.iter().any(|v| v["version"] == "good-1" && v["to"] == "production" && v["by"] == "guard"), "{parsed:?}");
}

fn dvc(project: &Path, args: &[&str]) -> String {
    let dvc = env_or_fail("DRIFTWATCH_DVC", "the DVC venv's dvc");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_driftwatch")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(dvc).args(args).current_dir(project).env("PATH", path).env("MLFLOW_TRACKING_URI", mlflow_uri()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dvc {args:?} failed:\n{text}");
    text
}

/// The stages `dvc repro` ran, from its output.
fn ran(output: &str) -> Vec<String> {
    output.lines().filter_map(|l| l.strip_prefix("Running stage '")).map(|s| s.trim_end_matches("':").to_string()).collect()
}

/// ROC AUC by scikit-learn, from `score` on the evaluation file (an oracle for `evaluate`).
fn sklearn_auc(model: &Path, data: &Path) -> f64 {
    let events: Vec<Vec<u8>> = std::fs::read_to_string(data).unwrap().lines().map(|l| l.as_bytes().to_vec()).collect();
    let scored = score_cli(model, &[], &events);
    let rows: Vec<(bool, f64)> = events
        .iter()
        .zip(&scored)
        .map(|(e, s)| (serde_json::from_slice::<Value>(e).unwrap()["is_fraud"].as_i64().unwrap() == 1, s["score"].as_f64().unwrap()))
        .collect();
    let python = env_or_fail("DRIFTWATCH_PYTHON", "a Python with scikit-learn");
    let script = "import json,sys\nfrom sklearn.metrics import roc_auc_score\nrows=json.load(sys.stdin)\nprint(roc_auc_score([r[0] for r in rows],[r[1] for r in rows]))";
    let mut child = Command::new(python).args(["-c", script]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), serde_json::to_string(&rows).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn the_dvc_pipeline_reruns_exactly_the_stages_downstream_of_a_change() {
    let project = tempfile::tempdir().unwrap();
    let p = project.path();
    let name = unique("dvc");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("orchestration/dvc");
    std::fs::copy(template.join("dvc.yaml"), p.join("dvc.yaml")).unwrap();
    let params = std::fs::read_to_string(template.join("params.yaml")).unwrap().replace("name: card-fraud", &format!("name: {name}")).replace("rows: 40000", "rows: 12000").replace("eval_rows: 20000", "eval_rows: 6000");
    std::fs::write(p.join("params.yaml"), &params).unwrap();
    dvc(p, &["init", "--no-scm", "-q"]);

    let first = dvc(p, &["repro"]);
    assert_eq!(ran(&first), ["data", "train", "evaluate", "register"], "{first}");
    let registered = json_file(&p.join("registered.json"));
    let d = oracle(&["describe", &name]);
    assert_eq!(d["versions"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["versions"][0]["downloaded_sha256"].as_str(), Some(sha256_file(&p.join("model/artifact.json")).as_str()));
    assert_eq!(registered["version"], d["versions"][0]["tags"]["driftwatch.version"]);

    let again = dvc(p, &["repro"]);
    assert!(ran(&again).is_empty() && again.contains("up to date"), "an unchanged tree reruns nothing:\n{again}");

    // `dvc metrics show` reads the small metrics files; evaluate's ROC AUC is scikit-learn's.
    let shown: Value = serde_json::from_str(&dvc(p, &["metrics", "show", "--json"])).unwrap();
    let eval_auc = shown[""]["data"]["metrics/eval.json"]["data"]["roc_auc"].as_f64().unwrap_or_else(|| panic!("{shown}"));
    let oracle_auc = sklearn_auc(&p.join("model/artifact.json"), &p.join("data/eval.jsonl"));
    assert!((eval_auc - oracle_auc).abs() < 1e-9, "evaluate {eval_auc} vs scikit-learn {oracle_auc}");
    assert!(shown[""]["data"]["metrics/train.json"]["data"]["roc_auc"].as_f64().is_some(), "{shown}");

    // A training parameter: train and what follows, not the data.
    std::fs::write(p.join("params.yaml"), params.replace("  c: 1.0", "  c: 0.2")).unwrap();
    let out = dvc(p, &["repro"]);
    assert_eq!(ran(&out), ["train", "evaluate", "register"], "{out}");
    assert_eq!(oracle(&["describe", &name])["versions"].as_array().unwrap().len(), 2, "a new version for the new artifact");

    // The evaluation data only: the training file comes out byte-identical, so train does not
    // rerun; evaluate does, and register finds the same artifact already registered.
    std::fs::write(p.join("params.yaml"), params.replace("  c: 1.0", "  c: 0.2").replace("eval_seed: 4242", "eval_seed: 7")).unwrap();
    let out = dvc(p, &["repro"]);
    assert_eq!(ran(&out), ["data", "evaluate", "register"], "{out}");
    assert_eq!(oracle(&["describe", &name])["versions"].as_array().unwrap().len(), 2, "the same artifact is not registered twice");
}

fn airflow(home: &Path, args: &[&str], envs: &[(String, String)]) -> Command {
    let airflow = env_or_fail("DRIFTWATCH_AIRFLOW", "the Airflow venv's airflow");
    let mut cmd = Command::new(airflow);
    cmd.args(args)
        .env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__DAGS_FOLDER", Path::new(env!("CARGO_MANIFEST_DIR")).join("orchestration/airflow/dags"))
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

/// `airflow dags test driftwatch_retrain -c CONF`; once the DAG has set a challenger, `then` is
/// produced to `topic` (traffic for it to be shadow-scored on). Returns the challenger (as
/// MLflow's client describes the version) and the DAG's log; fails if the run fails.
fn run_dag(home: &Path, name: &str, conf: &Value, envs: &[(String, String)], log_path: &Path, topic: &str, then: &[Vec<u8>]) -> (Value, String) {
    let mut dag = airflow(home, &["dags", "test", "driftwatch_retrain", "-c", &conf.to_string()], envs)
        .stdout(std::fs::File::create(log_path).unwrap())
        .stderr(std::process::Stdio::from(std::fs::File::options().append(true).open(log_path).unwrap()))
        .spawn()
        .unwrap();
    let dag_log = || std::fs::read_to_string(log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(240);
    let challenger = loop {
        let d = oracle(&["describe", name]);
        if let Some(n) = d["aliases"]["challenger"].as_str() {
            break version_of(&d, n).clone();
        }
        assert!(dag.try_wait().unwrap().is_none(), "the DAG ended before setting a challenger:\n{}", dag_log());
        assert!(Instant::now() < deadline, "no challenger within 240 s:\n{}", dag_log());
        std::thread::sleep(Duration::from_secs(1));
    };
    produce(topic, then);
    let deadline = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if let Some(s) = dag.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = dag.kill();
            panic!("the DAG run did not end within 400 s:\n{}", dag_log());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = dag_log();
    assert!(status.success(), "airflow dags test failed:\n{log}");
    (challenger, log)
}

fn labels_file(path: &Path, events: &[Vec<u8>]) {
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(e).unwrap();
            serde_json::json!({"transaction_id": v["transaction_id"], "is_fraud": v["is_fraud"]}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_drift_retrain_request_runs_the_airflow_dag_to_a_shadow_scored_challenger_that_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("loop");
    let good = demo_variant(dir.path(), Some(&name), "good-1", None);
    model_cli(&name, &["register", good.to_str().unwrap()]);
    model_cli(&name, &["promote", "good-1"]);
    // The DVC project the DAG retrains with.
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("orchestration/dvc");
    std::fs::copy(template.join("dvc.yaml"), project.join("dvc.yaml")).unwrap();
    let params = std::fs::read_to_string(template.join("params.yaml")).unwrap().replace("rows: 40000", "rows: 12000").replace("eval_rows: 20000", "eval_rows: 6000");
    std::fs::write(project.join("params.yaml"), params).unwrap();
    dvc(&project, &["init", "--no-scm", "-q"]);

    // The engine serves mlflow:<name>, shadow-scores every event, and asks for a retrain when
    // a new country stays red (as in engine_kafka's drift test).
    let t = Topics::new(3);
    let shadow_topic = t.retrain.replace("retrain", "shadow");
    let rows = 124_000u64;
    let cfg = driftwatch::generate::GeneratorConfig { seed: 1, rows, rate_per_sec: 50.0, scenario: driftwatch::generate::Scenario::NewCountry, onset: 0.5, ..Default::default() };
    let all: Vec<Vec<u8>> = driftwatch::generate::Generator::new(cfg).take(rows as usize).skip(50_000).map(|e| serde_json::to_vec(&e).unwrap()).collect();
    let (drifting, rest) = all.split_at(all.len() - 8_000);
    let (later, more) = rest.split_at(4_000);
    let uri = mlflow_uri();
    let engine = engine_on_mlflow(
        &t,
        dir.path(),
        &name,
        "[drift]\nsample_fraction = 0.2\nwindow_seconds = 240\nslide_seconds = 120\nlateness_seconds = 120\n[drift.hysteresis]\nretrain_after_windows = 2\nretrain_cooldown = 100",
        0,
    );
    produce(&t.transactions, drifting);
    engine.wait_for("a retrain request", Duration::from_secs(120), |m| metric(m, "driftwatch_retrain_requests_total{}") >= 1.0);

    // The DAG, once, without a scheduler, on SQLite.
    let home = dir.path().join("airflow");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_driftwatch")).parent().unwrap().display().to_string();
    let dvc_dir = Path::new(&env_or_fail("DRIFTWATCH_DVC", "the DVC venv's dvc")).parent().unwrap().display().to_string();
    let airflow_group = unique("airflow");
    let connection = serde_json::json!({"conn_type": "kafka", "extra": {"bootstrap.servers": brokers(), "group.id": airflow_group, "auto.offset.reset": "earliest"}});
    let envs = vec![
        ("AIRFLOW_CONN_DRIFTWATCH_KAFKA".to_string(), connection.to_string()),
        ("MLFLOW_TRACKING_URI".to_string(), uri.clone()),
        ("PATH".to_string(), format!("{bin_dir}:{dvc_dir}:{}", std::env::var("PATH").unwrap_or_default())),
    ];
    let migrate = airflow(&home, &["db", "migrate"], &envs).output().unwrap();
    assert!(migrate.status.success(), "airflow db migrate: {}", String::from_utf8_lossy(&migrate.stderr));
    let labels = dir.path().join("labels.jsonl");
    labels_file(&labels, later);
    let conf = serde_json::json!({
        "model": name, "retrain_topic": t.retrain, "shadow_topic": shadow_topic, "dvc_project": project,
        "request_timeout_s": 120, "min_shadow_scores": 3_000, "shadow_timeout_s": 300, "labels": labels,
        "data": {"scenario": "new_country"},
        // A policy this run passes: the test is the loop, not the policy's thresholds.
        "min_agreement": 0.0, "max_alert_rate_ratio": 1000.0, "min_labelled": 1_000_000,
    });
    let run = |conf: &Value, log_path: &Path, then: &[Vec<u8>]| run_dag(&home, &name, conf, &envs, log_path, &t.transactions, then);
    let (challenger, log) = run(&conf, &dir.path().join("dag1.log"), later);
    let new_version = challenger["tags"]["driftwatch.version"].as_str().unwrap().to_string();
    // What the DAG compared and decided (its task log), for the record.
    let decided: Vec<&str> = log.lines().skip_while(|l| !l.contains("comparison:")).take(60).collect();
    println!("{}", decided.join("\n"));
    // The new version: trained by DVC on the drifted data, registered with its run, shadow-
    // scored by the engine on the later events, promoted by the DAG, served by the engine.
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"]["champion"].as_str(), challenger["version"].as_str(), "the DAG promoted the challenger: {d}\n{log}");
    assert_eq!(version_of(&d, challenger["version"].as_str().unwrap())["tags"]["driftwatch.changed_by"], "airflow");
    let trained = json_file(&project.join("model/artifact.json"));
    assert_eq!(trained["model"]["version"].as_str(), Some(new_version.as_str()));
    engine.wait_for("the promoted version serving", Duration::from_secs(60), |m| metric(m, &format!("driftwatch_model_info{{name={name},version={new_version}}}")) == 1.0);
    let shadow = consume_all(&shadow_topic, drifting.len() + later.len(), Duration::from_secs(30));
    let of_new = shadow.iter().filter(|m| serde_json::from_slice::<Value>(&m.payload).unwrap()["candidate_version"] == new_version.as_str()).count();
    assert!(of_new >= 3_000, "{of_new} shadow scores of the challenger");
    // The request is acknowledged (its offset committed) only now that it has been answered.
    assert_eq!(committed_offsets(&airflow_group, &t.retrain, 3), end_offsets(&t.retrain, 3), "the answered request is committed, and only it");

    wait_all_committed(&t.group, &t.transactions, Duration::from_secs(60), &engine);
    // A second request, and a policy that leaves the decision to a person: the new challenger
    // is shadow-scored, champion stays, and a note holds the comparison and the reason.
    let request = serde_json::json!({"model": format!("{name} {new_version}"), "features": [], "window_end": "2026-01-05T12:00:00.000Z", "red_windows": 2, "reason": "a second request, by the test"});
    let producer: rdkafka::producer::BaseProducer = rdkafka::config::ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    send_waiting(&producer, &t.retrain, &name, request.to_string().as_bytes());
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("the second request delivered");
    let labels2 = dir.path().join("labels2.jsonl");
    labels_file(&labels2, more);
    let mut conf2 = conf.clone();
    conf2["auto_promote"] = false.into();
    conf2["labels"] = labels2.display().to_string().into();
    let (second, log2) = run(&conf2, &dir.path().join("dag2.log"), more);
    let d = oracle(&["describe", &name]);
    assert_eq!(d["aliases"]["champion"].as_str(), challenger["version"].as_str(), "champion stays: {d}\n{log2}");
    assert_eq!(d["aliases"]["challenger"].as_str(), second["version"].as_str(), "the new version stays the challenger");
    assert_ne!(second["version"], challenger["version"]);
    let note = json_file(&project.join("notes").join(format!("{name}-{}.json", second["version"].as_str().unwrap())));
    assert_eq!(note["promote"], false, "{note}");
    assert_eq!(note["reasons"], serde_json::json!(["auto_promote is off"]), "{note}");
    assert!(note["comparison"]["shadow_scores"].as_u64().unwrap() >= 3_000, "{note}");
    assert_eq!(note["comparison"]["labelled"].as_u64(), Some(note["comparison"]["shadow_scores"].as_u64().unwrap()), "every shadow-scored event of this run is labelled: {note}");
    assert_eq!(committed_offsets(&airflow_group, &t.retrain, 3), end_offsets(&t.retrain, 3), "both requests answered");
    let (status, elog) = engine.terminate();
    assert!(status.success(), "{elog}");
}

#[test]
fn an_unreachable_or_missing_mlflow_server_is_one_clear_error() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_driftwatch")).args(args).env_remove("MLFLOW_TRACKING_URI").envs(env.iter().copied()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Nothing listens on port 1.
    let (code, err) = run(&["model", "--registry", "mlflow:card-fraud", "list"], &[("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("MLflow server http://127.0.0.1:1") && err.contains("Connection refused"), "{err}");
    let (code, err) = run(&["model", "--registry", "mlflow:card-fraud", "list"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("MLFLOW_TRACKING_URI"), "says where the server is set: {err}");
    // The engine's configuration is checked before anything starts.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[model]\nregistry = \"mlflow:\"\n").unwrap();
    let (code, err) = run(&["run", "--config", config.to_str().unwrap(), "--check"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("model.registry") && err.contains("mlflow:NAME"), "{err}");
    std::fs::write(&config, "[model]\nregistry = \"mlflow:card-fraud\"\n").unwrap();
    let (code, err) = run(&["run", "--config", config.to_str().unwrap(), "--check"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("model.mlflow_uri"), "{err}");
}
