//! Streaming drift detection on generated scenarios, against the shipped demo model.
//!
//! Each stream is 2 hours of event time at 50 transactions/s (360,000 events) drawn from the
//! same account population the model was trained on but after its training rows (the first
//! 50,000 rows of seed 1 *are* the training data, so they are skipped). The drift starts one
//! hour in. Windows: 10 minutes sliding by 2, 5 % sampled (~1,500 samples a window), default
//! PSI thresholds and hysteresis (red after 2 windows). Without drift no feature may turn red;
//! with each scenario exactly its declared features must turn red, none before the onset, each
//! within 8 windows of it (25 for the gradual amount inflation).

use std::path::Path;

use driftwatch::drift::online::{DriftConfig, StreamDrift};
use driftwatch::drift::Status;
use driftwatch::generate::{Generator, GeneratorConfig, Scenario};
use driftwatch::pipeline::Pipeline;
use driftwatch::profile::window::WindowSpec;

const TRAINING_ROWS: u64 = 50_000;
const RATE: f64 = 50.0;
const STREAM_ROWS: u64 = 360_000;
/// Step changes must be red within this many windows after the onset.
const MAX_DELAY_WINDOWS: usize = 8;
/// The amount inflation is a one-hour ramp to +150 %: red once it is large (~+100 %).
const MAX_DELAY_RAMP_WINDOWS: usize = 25;

struct Outcome {
    red: Vec<(String, usize)>,
    red_before_onset: Vec<String>,
    amber: Vec<String>,
    windows: usize,
}

fn run(scenario: Scenario) -> Outcome {
    let pipeline = Pipeline::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json")).unwrap();
    let total = TRAINING_ROWS + STREAM_ROWS;
    let onset_row = TRAINING_ROWS + STREAM_ROWS / 2;
    let cfg = GeneratorConfig { seed: 1, rows: total, rate_per_sec: RATE, scenario, onset: onset_row as f64 / total as f64, ..Default::default() };
    let config = DriftConfig { window: WindowSpec { size_ms: 600_000, slide_ms: 120_000, lateness_ms: 30_000 }, ..Default::default() };
    let mut drift = StreamDrift::new(&pipeline, config);
    let mut tx = pipeline.new_transaction();
    let mut onset_ms = None;
    let mut out = Outcome { red: vec![], red_before_onset: vec![], amber: vec![], windows: 0 };
    let mut windows_after_onset = 0usize;
    for (i, event) in Generator::new(cfg).enumerate().take(total as usize).skip(TRAINING_ROWS as usize) {
        pipeline.decode_into(&serde_json::to_vec(&event).unwrap(), &mut tx).unwrap();
        if i as u64 == onset_row {
            onset_ms = tx.event_time_ms;
        }
        let score = pipeline.score(&tx);
        for closed in drift.observe(&tx, &score) {
            out.windows += 1;
            let after = onset_ms.is_some_and(|o| driftwatch::time::parse_rfc3339_ms(&closed.report.window_end).unwrap() > o);
            windows_after_onset += usize::from(after);
            for a in &closed.alerts {
                match a.to {
                    Status::Red if after => out.red.push((a.feature.clone(), windows_after_onset)),
                    Status::Red => out.red_before_onset.push(a.feature.clone()),
                    Status::Amber => out.amber.push(a.feature.clone()),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(drift.late_events(), 0, "generated event time is in order");
    out
}

#[test]
fn each_scenario_turns_exactly_its_features_red_and_no_drift_raises_no_red() {
    let mut table = String::new();
    for scenario in Scenario::ALL {
        let o = run(scenario);
        let mut red: Vec<&str> = o.red.iter().map(|(f, _)| f.as_str()).collect();
        red.sort_unstable();
        red.dedup();
        let mut expected: Vec<&str> = scenario.drifted_features().to_vec();
        expected.sort_unstable();
        let delays: Vec<String> = o.red.iter().map(|(f, d)| format!("{f}:{d}")).collect();
        table.push_str(&format!(
            "{:<17} windows {:>3}  red {:<45} delay (windows after onset) {:<45} amber {:?}  false red before onset {}\n",
            scenario.name(),
            o.windows,
            red.join(","),
            delays.join(","),
            o.amber,
            o.red_before_onset.len()
        ));
        assert!(o.red_before_onset.is_empty(), "{scenario}: red before the onset: {:?}", o.red_before_onset);
        assert_eq!(red, expected, "{scenario}: features turned red");
        let bound = if scenario == Scenario::AmountInflation { MAX_DELAY_RAMP_WINDOWS } else { MAX_DELAY_WINDOWS };
        for (f, d) in &o.red {
            assert!(*d <= bound, "{scenario}: {f} red only after {d} windows");
        }
        for f in &o.amber {
            assert!(
                scenario.drifted_features().contains(&f.as_str()) || scenario.side_effects().contains(&f.as_str()),
                "{scenario}: unexpected amber on {f}"
            );
        }
    }
    println!("{table}");
}

/// One file both ways: `drift --model` (the whole file as one window) and the streaming path
/// (sampling everything, one window spanning the file) give the same report.
#[test]
fn offline_and_streaming_reports_agree_on_the_same_file() {
    use driftwatch::commands::drift::{run_with_model, ModelDriftOutput};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("current.jsonl");
    let cfg = GeneratorConfig { seed: 3, rows: 20_000, scenario: Scenario::NewCountry, onset: 0.3, ..Default::default() };
    let mut bytes = Vec::new();
    driftwatch::generate::write(&cfg, driftwatch::generate::OutputFormat::JsonLines, &mut bytes).unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json");
    let settings = driftwatch::drift::DriftSettings::default();
    let ModelDriftOutput::Whole(offline) = run_with_model(&model, &file, &settings, None).unwrap() else { panic!("whole-file report expected") };
    let day = 86_400_000;
    let replay = DriftConfig {
        sample_fraction: 1.0,
        window: WindowSpec { size_ms: day, slide_ms: day, lateness_ms: 0 },
        settings: settings.clone(),
        ..Default::default()
    };
    let ModelDriftOutput::Windows(windows) = run_with_model(&model, &file, &settings, Some(replay)).unwrap() else { panic!("windows expected") };
    assert_eq!(windows.len(), 1, "one window spans the file");
    let streaming = &windows[0].report;
    assert_eq!(streaming.drift.current.rows, 20_000);
    assert_eq!(offline.drift.status, streaming.drift.status);
    for (a, b) in offline.drift.features.iter().zip(&streaming.drift.features) {
        assert_eq!(a.bins.current_counts, b.bins.current_counts, "{}", a.bins.name);
        assert_eq!((a.psi, a.kl, a.js, a.status), (b.psi, b.kl, b.js, b.status), "{}", a.bins.name);
        assert_eq!(a.chi2, b.chi2, "{}", a.bins.name);
        if let (Some(x), Some(y)) = (a.ks, b.ks) {
            // Two sketches of the same data: D within their error.
            assert!((x.statistic - y.statistic).abs() <= x.rank_error + y.rank_error, "{}: {} vs {}", a.bins.name, x.statistic, y.statistic);
        }
    }
    let red: Vec<&str> = streaming.drift.features.iter().filter(|f| f.status == Status::Red).map(|f| f.bins.name.as_str()).collect();
    // Seed 3 is another account population, so its devices are genuinely new too.
    assert!(red.contains(&"country") && red.contains(&"currency") && red.contains(&"device_id"), "{red:?}");
}

/// Retrain requests and drift alerts of a one-hour stream at 50 tx/s, 10-minute windows sliding
/// by 2, where `scenario` applies from minute 30 for `burst_minutes` (None: to the end).
fn retrain_run(scenario: Scenario, burst_minutes: Option<i64>) -> (Vec<usize>, Vec<(String, Status, usize)>) {
    let pipeline = Pipeline::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo.json")).unwrap();
    let rows = 180_000u64;
    let onset_row = TRAINING_ROWS + rows / 2;
    let total = TRAINING_ROWS + rows;
    let cfg = |scenario| GeneratorConfig { seed: 1, rows: total, rate_per_sec: RATE, scenario, onset: onset_row as f64 / total as f64, ..Default::default() };
    let config = DriftConfig { window: WindowSpec { size_ms: 600_000, slide_ms: 120_000, lateness_ms: 30_000 }, ..Default::default() };
    let mut drift = StreamDrift::new(&pipeline, config);
    let mut tx = pipeline.new_transaction();
    // The drifted generator until the burst ends, then the plain one (same seed: same accounts
    // and clock), keeping event time in order.
    let drifted = Generator::new(cfg(scenario)).take(total as usize).skip(TRAINING_ROWS as usize);
    let plain = Generator::new(cfg(Scenario::None)).take(total as usize).skip(TRAINING_ROWS as usize);
    let (mut onset_ms, mut burst_end_ms, mut last_ms) = (None::<i64>, None::<i64>, i64::MIN);
    let (mut retrain, mut alerts) = (Vec::new(), Vec::new());
    let mut windows = 0usize;
    let mut feed = |event: &driftwatch::generate::GeneratedTransaction, drift: &mut StreamDrift, tx: &mut driftwatch::pipeline::Transaction| {
        pipeline.decode_into(&serde_json::to_vec(event).unwrap(), tx).unwrap();
        let score = pipeline.score(tx);
        for closed in drift.observe(tx, &score) {
            windows += 1;
            if closed.retrain.is_some() {
                retrain.push(windows);
            }
            alerts.extend(closed.alerts.iter().map(|a| (a.feature.clone(), a.to, windows)));
        }
    };
    for (i, event) in drifted.enumerate() {
        let t = driftwatch::time::parse_rfc3339_ms(&event.event_time).unwrap();
        if i as u64 + TRAINING_ROWS == onset_row {
            onset_ms = Some(t);
            burst_end_ms = burst_minutes.map(|m| t + m * 60_000);
        }
        if burst_end_ms.is_some_and(|end| t >= end) {
            break;
        }
        last_ms = t;
        feed(&event, &mut drift, &mut tx);
    }
    if burst_end_ms.is_some() {
        for event in plain {
            if driftwatch::time::parse_rfc3339_ms(&event.event_time).unwrap() > last_ms {
                feed(&event, &mut drift, &mut tx);
            }
        }
    }
    assert!(onset_ms.is_some());
    (retrain, alerts)
}

#[test]
fn a_two_minute_burst_requests_no_retrain_and_sustained_drift_does() {
    let (retrain, alerts) = retrain_run(Scenario::DeviceBurst, Some(2));
    println!("2-minute device burst: retrain requests at windows {retrain:?}; status changes {alerts:?}");
    assert!(retrain.is_empty(), "a 2-minute burst must not request a retrain: {retrain:?}");
    assert!(!alerts.iter().any(|(_, to, _)| *to == Status::Red), "nor page anyone red: {alerts:?}");
    let (retrain, alerts) = retrain_run(Scenario::DeviceBurst, None);
    println!("sustained device burst from window 15: retrain requests at windows {retrain:?}; status changes {alerts:?}");
    let first_red = alerts.iter().filter(|(_, to, _)| *to == Status::Red).map(|(_, _, w)| *w).min().expect("sustained drift turns red");
    assert_eq!(retrain.len(), 1, "one request (then the cool-down): {retrain:?}");
    // Two window lengths (10 slides) of drift after the first red window.
    assert!(retrain[0] >= first_red + 10 && retrain[0] <= first_red + 11, "red at {first_red}, retrain at {}", retrain[0]);
}
