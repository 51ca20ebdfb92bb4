use super::*;
use crate::message::performance::RetainedVersion;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

fn retained(id: &str, event_ms: i64, score: f64, alert: bool, weight: f64) -> RetainedScore {
    RetainedScore {
        transaction_id: id.into(),
        model: "fraud".into(),
        event_time: format_rfc3339_ms(event_ms),
        weight,
        scores: vec![RetainedVersion { version: "v1".into(), role: Role::Production, score, alert }],
        label: None,
    }
}

fn label(id: &str, label_ms: i64, fraud: bool) -> Label {
    Label { transaction_id: id.into(), label: u8::from(fraud), label_time: format_rfc3339_ms(label_ms), source: "analyst".into() }
}

fn settings() -> PerformanceSettings {
    PerformanceSettings { enabled: true, window_seconds: 3600, label_window_seconds: 3600, replicates: 50, label_maturity_seconds: 0, lateness_seconds: 0, ..Default::default() }
}

#[test]
fn labels_join_their_scores_and_a_later_label_closes_the_window_with_exact_precision() {
    let mut t = Tracker::new("fraud", settings());
    // 4 alerts (3 fraud), 6 sampled non-alerts of weight 20 (1 fraud).
    for i in 0..10 {
        let alert = i < 4;
        t.retain(&retained(&format!("a{i}"), T0 + i, if alert { 0.8 } else { 0.1 }, alert, if alert { 1.0 } else { 20.0 }), 0);
    }
    for i in 0..10 {
        let fraud = i < 3 || i == 9;
        let (o, out) = t.label(&label(&format!("a{i}"), T0 + 2 * HOUR + i, fraud), 0);
        assert_eq!(o, LabelOutcome::Matched);
        assert!(!out.reports.iter().any(|r| r.kind == ReportKind::Realised), "the window is still open");
    }
    assert_eq!(t.label(&label("a1", T0 + 2 * HOUR + 50, true), 0).0, LabelOutcome::Duplicate);
    assert_eq!(t.label(&label("nope", T0 + 2 * HOUR + 60, true), 0).0, LabelOutcome::NotRetained);
    let (_, out) = t.label(&label("nope2", T0 + 3 * HOUR, false), 0);
    let r = out.reports.iter().find(|r| r.kind == ReportKind::Realised).expect("the 02:00 window closed");
    assert_eq!((r.transactions, r.alerts), (10, 4));
    assert_eq!(r.precision.value, Some(0.75));
    // Recall: 3 alerted frauds over 3 + 20 (one sampled missed fraud stands for 20).
    assert!((r.recall.value.unwrap() - 3.0 / 23.0).abs() < 1e-12);
    assert!((r.positives - 23.0).abs() < 1e-12);
    assert!((r.alert_rate - 4.0 / 124.0).abs() < 1e-12);
    assert_eq!(r.window_start, "2026-01-05T02:00:00.000Z");
    let d = r.label_delay_seconds.unwrap();
    assert!((d.p50 - 7200.0).abs() < 1.0, "{d:?}");
    assert_eq!(t.outcome_count(LabelOutcome::Matched), 10);
    assert_eq!(t.outcome_count(LabelOutcome::NotRetained), 2);
}

#[test]
fn estimated_windows_close_on_event_time_and_expect_precision_from_the_scores() {
    let mut t = Tracker::new("fraud", settings());
    for i in 0..100 {
        t.retain(&retained(&format!("e{i}"), T0 + i * 1000, if i < 10 { 0.5 } else { 0.02 }, i < 10, if i < 10 { 1.0 } else { 20.0 }), 0);
    }
    let out = t.retain(&retained("late", T0 + HOUR + 5, 0.02, false, 20.0), 0);
    let r = out.reports.iter().find(|r| r.kind == ReportKind::Estimated).expect("the first hour closed");
    assert_eq!(r.precision.value, Some(0.5));
    // Expected positives: 10 × 0.5 + 90 × 20 × 0.02 = 41; recall 5 / 41.
    assert!((r.positives - 41.0).abs() < 1e-9, "{}", r.positives);
    assert!((r.recall.value.unwrap() - 5.0 / 41.0).abs() < 1e-9);
    let (lo, hi) = (r.precision.lower.unwrap(), r.precision.upper.unwrap());
    assert!(lo < 0.5 && 0.5 < hi, "{lo}..{hi}");
}

#[test]
fn idle_time_closes_open_windows_and_retention_evicts_old_scores() {
    let mut t = Tracker::new("fraud", settings());
    t.retain(&retained("x", T0, 0.9, true, 1.0), 1_000);
    t.label(&label("x", T0 + HOUR, true), 1_000);
    assert!(t.tick(30_000).reports.is_empty(), "not idle yet");
    let out = t.tick(61_000);
    assert_eq!(out.reports.iter().filter(|r| r.kind == ReportKind::Realised).count(), 1);
    assert_eq!(out.reports.iter().filter(|r| r.kind == ReportKind::Estimated).count(), 1);
    // A score far newer makes `x` older than the retention.
    t.retain(&retained("y", T0 + 46 * 24 * HOUR, 0.1, false, 20.0), 62_000);
    t.tick(62_000);
    assert_eq!(t.retained(), 1);
    assert_eq!(t.evicted(), 1);
    assert_eq!(t.label(&label("x", T0 + 47 * 24 * HOUR, true), 62_000).0, LabelOutcome::NotRetained);
}

#[test]
fn a_shadow_version_gets_its_own_report_on_the_same_labels() {
    let mut t = Tracker::new("fraud", settings());
    let mut r = retained("s", T0, 0.2, false, 1.0);
    r.scores.push(RetainedVersion { version: "v2".into(), role: Role::Shadow, score: 0.9, alert: true });
    t.retain(&r, 0);
    t.label(&label("s", T0 + HOUR, true), 0);
    let out = t.tick(100_000);
    let realised: Vec<_> = out.reports.iter().filter(|r| r.kind == ReportKind::Realised).collect();
    assert_eq!(realised.len(), 2);
    assert_eq!((realised[0].version.as_str(), realised[0].role, realised[0].recall.value), ("v1", Role::Production, Some(0.0)));
    assert_eq!((realised[1].version.as_str(), realised[1].role, realised[1].recall.value), ("v2", Role::Shadow, Some(1.0)));
}

#[test]
fn a_rise_in_missed_frauds_is_concept_drift_with_a_retrain_request() {
    let mut t = Tracker::new("fraud", settings());
    let mut found = None;
    for i in 0..3000i64 {
        // Labelled frauds: alerted 97 % of the time for 2,000 labels, then 80 %.
        let missed = if i < 2000 { i % 33 == 0 } else { i % 5 == 0 };
        let id = format!("c{i}");
        t.retain(&retained(&id, T0 + i, 0.5, !missed, 1.0), 0);
        let (_, out) = t.label(&label(&id, T0 + HOUR + i, true), 0);
        if let Some(req) = out.retrain.first() {
            found.get_or_insert((i, req.clone(), out.alerts[0].clone()));
        }
    }
    let (at, req, alert) = found.expect("concept drift detected");
    assert!((2000..2400).contains(&at), "detected at label {at}");
    let e = req.concept.expect("evidence");
    assert_eq!((e.detector.as_str(), e.stream.as_str(), e.version.as_str()), ("ddm", "missed_fraud", "v1"));
    assert!(e.error_rate > e.min_error_rate);
    assert!(req.features.is_empty());
    assert_eq!((alert.feature.as_str(), alert.metric, alert.to), ("concept", StatusMetric::ErrorRate, Status::Red));
}

#[test]
fn more_legitimate_labels_on_alerts_are_concept_drift_too_but_more_legitimate_labels_overall_are_not() {
    // Alerts turning legitimate: the false-alert stream rises.
    let mut t = Tracker::new("fraud", settings());
    let mut streams = Vec::new();
    for i in 0..3000i64 {
        let legit = if i < 2000 { i % 10 == 0 } else { i % 3 == 0 };
        let id = format!("a{i}");
        t.retain(&retained(&id, T0 + i, 0.9, true, 1.0), 0);
        streams.extend(t.label(&label(&id, T0 + HOUR + i, !legit), 0).1.retrain.into_iter().map(|r| r.concept.unwrap().stream));
    }
    assert_eq!(streams.first().map(String::as_str), Some("false_alert"));
    // Many more legitimate labels on non-alerted transactions (a change in the label mix, not
    // in the model's errors): neither stream moves.
    let mut t = Tracker::new("fraud", settings());
    for i in 0..3000i64 {
        let id = format!("m{i}");
        let (fraud, alert) = match (i < 2000, i % 4) {
            (_, 0) => (true, i % 8 == 0),
            (true, _) => (i % 2 == 0, false),
            (false, _) => (false, false),
        };
        t.retain(&retained(&id, T0 + i, 0.3, alert, 1.0), 0);
        assert!(t.label(&label(&id, T0 + HOUR + i, fraud), 0).1.retrain.is_empty(), "label {i}");
    }
}

#[test]
fn floors_count_consecutive_windows_whose_whole_interval_is_below() {
    let mut t = Tracker::new("fraud", PerformanceSettings { precision_floor: 0.5, ..settings() });
    let mut windows = Vec::new();
    for h in 0..3i64 {
        for i in 0..50 {
            let id = format!("f{h}-{i}");
            t.retain(&retained(&id, T0 + h * HOUR + i, 0.9, true, 1.0), 0);
            // 5 of 50 alerts are fraud: precision 0.1, far below 0.5.
            t.label(&label(&id, T0 + (h + 1) * HOUR + i, i < 5), 0);
        }
        let (_, out) = t.label(&label("tick", T0 + (h + 2) * HOUR, false), 0);
        windows.extend(out.reports.into_iter().filter(|r| r.kind == ReportKind::Realised).map(|r| r.below_floor.precision_windows));
    }
    assert_eq!(windows, vec![1, 2, 3]);
}

#[test]
fn the_concept_detector_waits_for_the_label_mix_to_settle() {
    // The same rise as above, but every label within the warm-up: nothing is detected.
    let mut t = Tracker::new("fraud", PerformanceSettings { label_maturity_seconds: 10 * 24 * 3600, ..settings() });
    for i in 0..3000i64 {
        let missed = if i < 2000 { i % 33 == 0 } else { i % 5 == 0 };
        let id = format!("w{i}");
        t.retain(&retained(&id, T0 + i, 0.5, !missed, 1.0), 0);
        assert!(t.label(&label(&id, T0 + HOUR + i, true), 0).1.retrain.is_empty(), "label {i} is within the warm-up");
    }
}

#[test]
fn a_transaction_retained_twice_counts_once() {
    // At least once: an event re-read after a restart is retained again.
    let mut t = Tracker::new("fraud", settings());
    for _ in 0..2 {
        t.retain(&retained("d", T0, 0.9, true, 1.0), 0);
    }
    t.retain(&retained("e", T0 + 1, 0.1, false, 20.0), 0);
    assert_eq!(t.retained(), 2);
    assert_eq!(t.label(&label("d", T0 + HOUR, true), 0).0, LabelOutcome::Matched);
    let out = t.tick(100_000);
    let est = out.reports.iter().find(|r| r.kind == ReportKind::Estimated).unwrap();
    assert_eq!((est.transactions, est.alerts), (2, 1));
    let real = out.reports.iter().find(|r| r.kind == ReportKind::Realised).unwrap();
    assert_eq!((real.transactions, real.alerts), (1, 1));
}

#[test]
fn estimates_use_the_training_calibration_until_matured_labels_take_over() {
    // The artifact says: scores 0.5 were fraud 1 time in 5 on the held-out split, 0.02 never.
    let p: Vec<f64> = (0..10).map(|i| if i < 5 { 0.5 } else { 0.02 }).collect();
    let y: Vec<bool> = (0..10).map(|i| i == 0).collect();
    let training = ProbabilityCalibration::fit_isotonic(&p, &y);
    let mut t = Tracker::new("fraud", PerformanceSettings { calibration_min_frauds: 2, ..settings() });
    t.set_training_calibration("v1", Some(&training));
    assert!(t.has_training_calibration("v1"));
    let hour = |t: &mut Tracker, h: i64| {
        for i in 0..100 {
            let alert = i < 10;
            t.retain(&retained(&format!("h{h}-{i}"), T0 + h * HOUR + i * 1000, if alert { 0.5 } else { 0.02 }, alert, if alert { 1.0 } else { 20.0 }), 0);
        }
    };
    hour(&mut t, 0);
    let first = |out: &Published| out.reports.iter().find(|r| r.kind == ReportKind::Estimated).cloned().expect("an hour closed");
    // The first hour closes when the second begins: calibrated with the artifact's map.
    let out = t.retain(&retained("closer", T0 + HOUR + 999_000, 0.02, false, 20.0), 0);
    let r = first(&out);
    assert_eq!((r.calibration, r.calibrated_on), (CalibrationSource::Training, 10));
    assert!((r.precision.value.unwrap() - 0.2).abs() < 1e-12, "{:?}", r.precision);
    // Expected positives: 10 alerts × 0.2 + 90 × 20 × 0 = 2; recall 1.
    assert!((r.positives - 2.0).abs() < 1e-9 && (r.recall.value.unwrap() - 1.0).abs() < 1e-12, "{r:?}");
    // Matured labels of the first hour (every alert fraud, maturity 0): they take over.
    for i in 0..10 {
        assert_eq!(t.label(&label(&format!("h0-{i}"), T0 + 2 * HOUR + i, true), 0).0, LabelOutcome::Matched);
    }
    hour(&mut t, 1);
    let out = t.retain(&retained("closer2", T0 + 2 * HOUR, 0.02, false, 20.0), 0);
    let r = first(&out);
    assert_eq!((r.calibration, r.calibrated_on), (CalibrationSource::Matured, 10));
    assert_eq!(r.precision.value, Some(1.0));
    // Without either, the probabilities at face value.
    let mut t = Tracker::new("fraud", settings());
    hour(&mut t, 0);
    let r = first(&t.retain(&retained("closer", T0 + HOUR, 0.02, false, 20.0), 0));
    assert_eq!((r.calibration, r.calibrated_on, r.precision.value), (CalibrationSource::None, 0, Some(0.5)));
}

/// Ten transactions in the first hour (4 alerts), then one in the second; labels two hours on
/// for five of them (a3 and a5..a8 never labelled), each read at (partition 0, offset i).
fn cohort_hour(t: &mut Tracker) -> PerformanceReport {
    for i in 0..10 {
        let alert = i < 4;
        t.retain(&retained(&format!("a{i}"), T0 + i, if alert { 0.8 } else { 0.1 }, alert, if alert { 1.0 } else { 20.0 }), 0);
    }
    let out = t.retain(&retained("next", T0 + HOUR + 5, 0.1, false, 20.0), 0);
    out.reports.into_iter().find(|r| r.kind == ReportKind::Estimated).expect("the first hour's estimate")
}

fn cohort_labels(t: &mut Tracker) {
    for (i, fraud) in [(0, true), (1, true), (2, true), (4, false), (9, true)] {
        let (o, out) = t.label_from(&label(&format!("a{i}"), T0 + 2 * HOUR + i, fraud), Some((0, i)), 0);
        assert_eq!(o, LabelOutcome::Matched);
        assert!(!out.reports.iter().any(|r| r.kind == ReportKind::Cohort), "labels not matured yet");
    }
}

fn matured() -> PerformanceSettings {
    PerformanceSettings { label_maturity_seconds: 2 * 3600, ..settings() }
}

#[test]
fn a_cohort_closes_when_its_labels_matured_with_unlabelled_as_legitimate_and_its_estimate() {
    let mut t = Tracker::new("fraud", matured());
    let estimate = cohort_hour(&mut t);
    cohort_labels(&mut t);
    assert_eq!(t.cohorts_open(), 2);
    // Maturity: the first hour's end + 2 h, by label time.
    let (_, out) = t.label(&label("nope", T0 + 3 * HOUR - 1, false), 0);
    assert!(!out.reports.iter().any(|r| r.kind == ReportKind::Cohort), "one millisecond early");
    let (_, out) = t.label(&label("nope", T0 + 3 * HOUR, false), 0);
    let c: Vec<_> = out.reports.iter().filter(|r| r.kind == ReportKind::Cohort).collect();
    assert_eq!(c.len(), 1, "{out:?}");
    let c = c[0];
    assert_eq!((c.window_start.as_str(), c.transactions, c.alerts), ("2026-01-05T00:00:00.000Z", 10, 4));
    // a3 alerted and never labelled: legitimate. Precision 3 / 4; recall 3 / (3 + 20).
    assert_eq!(c.precision.value, Some(0.75));
    assert!((c.recall.value.unwrap() - 3.0 / 23.0).abs() < 1e-12);
    let s = c.cohort.as_ref().expect("cohort summary");
    assert_eq!(s.labelled, 5);
    let e = s.estimated.as_ref().expect("the estimate of the same window");
    assert_eq!((e.precision.value, e.recall.value, e.calibration), (estimate.precision.value, estimate.recall.value, estimate.calibration));
    assert_eq!(t.cohorts_open(), 1);
    assert_eq!(t.cohorts_abandoned(), 0);
}

#[test]
fn joins_go_to_the_changelog_and_a_restart_replaying_it_keeps_cohorts_and_joins_each_label_once() {
    let mut t = Tracker::new("fraud", matured());
    cohort_hour(&mut t);
    cohort_labels(&mut t);
    let log = t.take_changelog();
    assert_eq!(log.len(), 5);
    assert!(t.take_changelog().is_empty(), "taken");
    let a9 = log.iter().find(|r| r.transaction_id == "a9").expect("a9 joined");
    let l = a9.label.as_ref().expect("with its label");
    assert_eq!((l.label, l.partition, l.offset, l.label_time.as_str()), (1, 0, 9, "2026-01-05T02:00:00.009Z"));
    assert_eq!((a9.weight, a9.scores[0].score), (20.0, 0.1));

    // A restart: the compacted topic holds the first records and the labelled ones after them.
    let mut r = Tracker::new("fraud", matured());
    for i in 0..10 {
        let alert = i < 4;
        r.retain(&retained(&format!("a{i}"), T0 + i, if alert { 0.8 } else { 0.1 }, alert, if alert { 1.0 } else { 20.0 }), 0);
    }
    for rec in &log {
        r.retain(rec, 0);
    }
    assert!(r.take_changelog().is_empty(), "nothing new was joined");
    // The labels topic is read again from the committed offset: the same records join their
    // realised window again, no cohort twice; the same transaction from elsewhere is a duplicate.
    assert_eq!(r.label_from(&label("a0", T0 + 2 * HOUR, true), Some((0, 0)), 0).0, LabelOutcome::Matched);
    assert_eq!(r.label_from(&label("a0", T0 + 2 * HOUR, true), Some((1, 7)), 0).0, LabelOutcome::Duplicate);
    assert!(r.take_changelog().is_empty(), "a label read again is not a new join");
    r.retain(&retained("next", T0 + HOUR + 5, 0.1, false, 20.0), 0);
    let (_, out) = r.label(&label("nope", T0 + 3 * HOUR, false), 0);
    let c = out.reports.iter().find(|r| r.kind == ReportKind::Cohort).expect("the cohort from the changelog");
    assert_eq!((c.transactions, c.alerts, c.precision.value, c.cohort.as_ref().unwrap().labelled), (10, 4, Some(0.75), 5));
    let real = out.reports.iter().find(|r| r.kind == ReportKind::Realised).expect("the 02:00 label window");
    assert_eq!(real.transactions, 1, "only a0 was read again");

    // A member's record written after the labelled one (the event re-read): the label is
    // written again so that compaction keeps it.
    r.retain(&retained("a9", T0 + 9, 0.1, false, 20.0), 0);
    let again = r.take_changelog();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].label.as_ref().map(|l| (l.label, l.offset)), Some((1, 9)));
}

#[test]
fn cohorts_whose_labels_never_come_are_abandoned_not_kept() {
    let mut t = Tracker::new("fraud", PerformanceSettings { retention_hours: 2, ..matured() });
    cohort_hour(&mut t);
    assert_eq!(t.cohorts_open(), 2);
    // Scores go on 6 hours later, no labels: the first hour's labels should have matured
    // (1 h + 2 h) a retention (2 h) before.
    t.retain(&retained("late", T0 + 6 * HOUR + 1, 0.1, false, 20.0), 0);
    t.tick(0);
    assert_eq!(t.cohorts_abandoned(), 2, "the 00:00 and 01:00 cohorts");
    assert_eq!(t.cohorts_open(), 1);
}
