//! How the model is really doing: fraud labels joined to the scores kept for them, realised
//! precision/recall/ROC AUC/calibration per model version and label window, performance
//! estimated from the scores before labels arrive, and concept drift on the labelled errors.
//!
//! Plain data, no Kafka and no clock: the engine's performance thread
//! ([`crate::engine::performance`]) feeds [`Tracker`] the `retained-scores` and `labels`
//! records it consumes and the wall-clock time, and publishes what comes back.
//!
//! - Every transaction the serving (or shadow) version alerted on is retained, and a uniform
//!   sample of the others (hash of the transaction id, `retain_fraction`) with weight
//!   1 / `retain_fraction`; so precision is exact and recall, AUC and rates are estimated
//!   without bias from the sample (Horvitz–Thompson).
//! - A label joins its retained transaction; labels for transactions not retained (not sampled,
//!   expired, or unknown) and repeated labels are counted, never errors.
//! - Realised windows are by label time: a window closes when a label from a later window
//!   arrives, or when no label came for `idle_close_ms`. Estimated windows are by event time
//!   and close the same way on retained scores.
//! - Cohorts are the estimated windows again, settled: every retained transaction of an
//!   event-time window with the labels that came by `label_maturity_seconds` after its end
//!   (by the labels' own time); unlabelled then means legitimate. A cohort report carries the
//!   estimate published for its window, so the estimate can be checked against what happened.
//! - A join is written back to the compacted `retained-scores` topic (the record again, with
//!   its label: [`Tracker::take_changelog`]), so a restart's replay knows what was labelled
//!   and cohorts keep their labels; a label read again after a restart (same partition and
//!   offset) joins its realised window again rather than counting as a duplicate.

pub mod ddm;
pub mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::message::drift::{DriftAlert, RetrainRequest, Status, StatusMetric};
use crate::message::performance::{
    BelowFloor, CalibrationSource, CohortEstimate, CohortSummary, ConceptEvidence, DelaySummary, Interval, JoinedLabel, Label, PerformanceReport, ReportKind, RetainedScore, RetainedVersion, Role,
};
use crate::pipeline::calibration::ProbabilityCalibration;
use crate::time::{format_rfc3339_ms, parse_rfc3339_ms};
use ddm::{Ddm, DdmSettings, DdmState};
use stats::Row;

/// `[performance]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceSettings {
    /// Join labels to scores and report performance (needs a `labels` feed).
    pub enabled: bool,
    /// Share of non-alerted transactions retained for their labels (hash of the id).
    pub retain_fraction: f64,
    /// How long a retained score waits for its label (event time), hours. Also the
    /// `retained-scores` topic's `retention.ms` when the engine creates it.
    pub retention_hours: u64,
    /// At most this many retained scores in memory; the oldest go first.
    pub max_retained: usize,
    /// Length of a realised window (label time), seconds.
    pub label_window_seconds: u64,
    /// Length of an estimated window (event time), seconds.
    pub window_seconds: u64,
    /// A window closes once a record this much later (its own time: label time or event time)
    /// arrives, seconds: records from several partitions arrive a little out of order.
    pub lateness_seconds: u64,
    /// Close the open windows when no label (or retained score) arrived for this long, seconds
    /// of wall-clock time.
    pub idle_close_seconds: u64,
    /// Confidence level of every interval.
    pub confidence: f64,
    /// Bootstrap (realised) and simulation (estimated) replicates per interval.
    pub replicates: u32,
    /// Precision the model should keep; a realised window whose whole interval is below it
    /// counts towards `driftwatch_performance_below_floor_windows` (0: off).
    pub precision_floor: f64,
    /// Recall the model should keep (0: off).
    pub recall_floor: f64,
    /// Concept drift on the labelled error stream (`ddm` or `off`).
    pub concept_detector: String,
    /// How long after its event time a transaction's label is final, seconds (the longest
    /// delay of any kind of label: chargebacks within 45 days, legitimate transactions cleared
    /// after a month, in the generator's mix; default 46 days). Estimates are
    /// calibrated only on transactions this old (younger ones are labelled mostly if fraud), and
    /// the concept detector starts this long after the oldest retained score (until then the mix
    /// of labels — and with it the error rate — changes by itself).
    pub label_maturity_seconds: u64,
    /// Estimates are calibrated on labels once this many matured frauds are labelled (per
    /// version); until then the model's probabilities are taken at face value (`calibration: none`).
    pub calibration_min_frauds: u64,
    /// The newest matured labelled rows kept per version for calibration.
    pub calibration_rows: usize,
    /// The detector's settings.
    pub ddm: DdmSettings,
}

impl Default for PerformanceSettings {
    fn default() -> Self {
        PerformanceSettings {
            enabled: false,
            retain_fraction: 0.05,
            retention_hours: 45 * 24,
            max_retained: 2_000_000,
            label_window_seconds: 86_400,
            window_seconds: 3600,
            lateness_seconds: 60,
            idle_close_seconds: 60,
            confidence: 0.9,
            replicates: 200,
            precision_floor: 0.0,
            recall_floor: 0.0,
            concept_detector: "ddm".into(),
            label_maturity_seconds: 46 * 86_400,
            calibration_min_frauds: 30,
            calibration_rows: 200_000,
            ddm: DdmSettings::default(),
        }
    }
}

impl PerformanceSettings {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.retain_fraction > 0.0 && self.retain_fraction <= 1.0) {
            return Err(("performance.retain_fraction", "must be within (0, 1]"));
        }
        if self.retention_hours == 0 || self.max_retained == 0 || self.window_seconds == 0 || self.label_window_seconds == 0 || self.idle_close_seconds == 0 {
            return Err(("performance.window_seconds", "retention_hours, max_retained, window_seconds, label_window_seconds and idle_close_seconds must be ≥ 1"));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) || self.replicates < 20 {
            return Err(("performance.confidence", "needs a confidence within (0, 1) and replicates ≥ 20"));
        }
        if !(0.0..=1.0).contains(&self.precision_floor) || !(0.0..=1.0).contains(&self.recall_floor) {
            return Err(("performance.precision_floor", "floors must be within [0, 1]"));
        }
        if !matches!(self.concept_detector.as_str(), "ddm" | "off") {
            return Err(("performance.concept_detector", "must be `ddm` or `off`"));
        }
        let d = &self.ddm;
        if !(d.warning_threshold > 0.0 && d.warning_threshold <= d.drift_threshold) {
            return Err(("performance.ddm", "needs 0 < warning_threshold ≤ drift_threshold"));
        }
        Ok(())
    }
}

/// What became of a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Joined to its retained score.
    Matched,
    /// Its transaction is not retained (not sampled, expired, or never seen).
    NotRetained,
    /// Its transaction was labelled before (the first label counts).
    Duplicate,
    /// Not a label (bad JSON, unknown field, bad time); counted, never an error.
    Invalid,
}

impl LabelOutcome {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelOutcome::Matched => "matched",
            LabelOutcome::NotRetained => "not_retained",
            LabelOutcome::Duplicate => "duplicate",
            LabelOutcome::Invalid => "invalid",
        }
    }

    /// Every outcome.
    pub const ALL: [LabelOutcome; 4] = [LabelOutcome::Matched, LabelOutcome::NotRetained, LabelOutcome::Duplicate, LabelOutcome::Invalid];
}

/// A version's score of a retained transaction (versions interned).
#[derive(Debug, Clone, Copy)]
struct Scored {
    version: u32,
    score: f64,
    alert: bool,
}

/// A retained transaction waiting for its label.
#[derive(Debug)]
struct Entry {
    event_ms: i64,
    weight: f64,
    label: Option<EntryLabel>,
    scores: Box<[Scored]>,
    /// Its cohort (event-time window start) and its rows there, one per score; `None` when the
    /// cohort had closed before the score arrived.
    cohort: Option<(i64, Box<[u32]>)>,
}

/// The label joined to a retained transaction.
#[derive(Debug, Clone, Copy)]
struct EntryLabel {
    fraud: bool,
    label_ms: i64,
    /// Where it was read (labels partition, offset), when known.
    source: Option<(i32, i64)>,
}

/// One version's labelled rows in a realised window.
#[derive(Debug, Default)]
struct Joined {
    rows: Vec<Row>,
    delays_s: Vec<f64>,
}

/// What closing windows produced.
#[derive(Debug, Default)]
pub struct Published {
    /// Reports, realised and estimated.
    pub reports: Vec<PerformanceReport>,
    /// Concept-drift alerts (`drift-alerts`).
    pub alerts: Vec<DriftAlert>,
    /// Retrain requests from concept drift.
    pub retrain: Vec<RetrainRequest>,
}

impl Published {
    /// Appends another's outputs.
    pub fn extend(&mut self, other: Published) {
        self.reports.extend(other.reports);
        self.alerts.extend(other.alerts);
        self.retrain.extend(other.retrain);
    }
}

/// The join of labels to retained scores, and every window open on it.
pub struct Tracker {
    settings: PerformanceSettings,
    model: String,
    versions: Vec<(String, Role)>,
    retained: HashMap<String, Entry>,
    /// Realised windows by start (label time): per version index, the joined rows.
    realised: BTreeMap<i64, HashMap<u32, Joined>>,
    /// Estimated windows by start (event time): per version index, the scored rows.
    estimated: BTreeMap<i64, HashMap<u32, Vec<Row>>>,
    /// Cohorts by start (event time): per version index, every retained row (labelled or
    /// not yet) and the delays of its labels.
    cohorts: BTreeMap<i64, HashMap<u32, Joined>>,
    /// Rows in all open cohorts.
    cohort_rows: usize,
    /// What was estimated for an open cohort's window, per (start, version index).
    cohort_estimates: HashMap<(i64, u32), CohortEstimate>,
    /// Cohorts dropped unpublished: their labels never matured (the label stream stalled for
    /// `retention_hours`) or `max_retained` rows were open.
    cohorts_abandoned: u64,
    /// Records for the compacted topic: retained scores with the label joined to them.
    changelog: Vec<RetainedScore>,
    label_watermark: i64,
    score_watermark: i64,
    /// The oldest retained event time seen (the concept detector's warm-up starts there).
    first_event_ms: i64,
    /// Windows before these starts are closed (a late record goes into the oldest open one).
    realised_closed_before: i64,
    estimated_closed_before: i64,
    /// Wall-clock time of the last label and the last retained score.
    last_label_wall: i64,
    last_score_wall: i64,
    /// Consecutive realised windows below the floors, per version index.
    below: HashMap<u32, (u32, u32)>,
    /// DDM per serving version and error stream.
    ddm: HashMap<(u32, ConceptStream), Ddm>,
    /// Per version: labelled rows (event time, score, fraud, weight), newest last, for calibration.
    labelled: HashMap<u32, VecDeque<(i64, f64, bool, f64)>>,
    /// Per version name: the artifact's calibration (held-out split), used by estimates until
    /// enough matured labels exist.
    training_calibration: HashMap<String, ProbabilityCalibration>,
    /// Counters since start, by outcome.
    outcomes: [u64; 4],
    /// Retained scores dropped because `max_retained` was reached (not the retention).
    evicted_by_cap: u64,
    /// The delay of the last matched label, seconds, and the realised window it went into.
    last_delay_s: Option<f64>,
    last_window: Option<i64>,
    evicted: u64,
}

impl Tracker {
    /// A tracker for model `model`.
    pub fn new(model: &str, settings: PerformanceSettings) -> Tracker {
        Tracker {
            settings,
            model: model.to_string(),
            versions: Vec::new(),
            retained: HashMap::new(),
            realised: BTreeMap::new(),
            estimated: BTreeMap::new(),
            cohorts: BTreeMap::new(),
            cohort_rows: 0,
            cohort_estimates: HashMap::new(),
            cohorts_abandoned: 0,
            changelog: Vec::new(),
            label_watermark: i64::MIN,
            score_watermark: i64::MIN,
            first_event_ms: i64::MAX,
            realised_closed_before: i64::MIN,
            estimated_closed_before: i64::MIN,
            last_label_wall: i64::MIN,
            last_score_wall: i64::MIN,
            below: HashMap::new(),
            ddm: HashMap::new(),
            labelled: HashMap::new(),
            training_calibration: HashMap::new(),
            outcomes: [0; 4],
            evicted_by_cap: 0,
            last_delay_s: None,
            last_window: None,
            evicted: 0,
        }
    }

    /// Sets the calibration `version`'s artifact was trained with (its `calibration` section);
    /// estimates of that version use it until `calibration_min_frauds` matured frauds exist.
    pub fn set_training_calibration(&mut self, version: &str, calibration: Option<&ProbabilityCalibration>) {
        match calibration {
            Some(c) => self.training_calibration.insert(version.to_string(), c.clone()),
            None => self.training_calibration.remove(version),
        };
    }

    /// Whether `version`'s training calibration is known.
    pub fn has_training_calibration(&self, version: &str) -> bool {
        self.training_calibration.contains_key(version)
    }

    /// Retained scores in memory.
    pub fn retained(&self) -> usize {
        self.retained.len()
    }

    /// Retained scores dropped (retention or `max_retained`) before their label came.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Labels by outcome since start.
    pub fn outcome_count(&self, o: LabelOutcome) -> u64 {
        self.outcomes[o as usize]
    }

    fn window_ms(&self) -> i64 {
        self.settings.window_seconds as i64 * 1000
    }

    fn label_window_ms(&self) -> i64 {
        self.settings.label_window_seconds as i64 * 1000
    }

    fn intern(&mut self, version: &str, role: Role) -> u32 {
        if let Some(i) = self.versions.iter().position(|(v, r)| v == version && *r == role) {
            return i as u32;
        }
        self.versions.push((version.to_string(), role));
        (self.versions.len() - 1) as u32
    }

    /// Takes one retained score (a replay of the compacted topic after a restart included).
    /// Returns the estimated windows its event time closed.
    pub fn retain(&mut self, r: &RetainedScore, now_ms: i64) -> Published {
        self.last_score_wall = now_ms;
        let Some(event_ms) = parse_rfc3339_ms(&r.event_time) else { return Published::default() };
        let scores: Box<[Scored]> = r.scores.iter().map(|s| Scored { version: self.intern(&s.version, s.role), score: s.score, alert: s.alert }).collect();
        let w = self.window_ms();
        let start = event_ms.div_euclid(w) * w;
        let start = start.max(self.estimated_closed_before);
        let lateness = self.settings.lateness_seconds as i64 * 1000;
        let mut out = Published::default();
        // A label in the record (the changelog, replayed after a restart, or read back live).
        let mut from_record = None;
        let recorded = r.label.as_ref().and_then(|l| Some(EntryLabel { fraud: l.label == 1, label_ms: parse_rfc3339_ms(&l.label_time)?, source: Some((l.partition, l.offset)) }));
        match self.retained.get_mut(&r.transaction_id) {
            // The same transaction again (an event re-read after a restart of the engine, at
            // least once, or its changelog record read back): its latest scores count, its label
            // state stays, and it is not estimated twice.
            Some(e) => {
                e.event_ms = event_ms;
                e.weight = r.weight;
                if e.scores.len() == scores.len() {
                    e.scores = scores;
                }
                match (e.label, recorded) {
                    // A member's record overwrote the labelled one on the compacted topic:
                    // write the label again.
                    (Some(_), None) => self.changelog.push(Self::record(&self.model, &self.versions, &r.transaction_id, e)),
                    (None, Some(l)) => {
                        e.label = Some(l);
                        from_record = Some(l);
                    }
                    _ => {}
                }
            }
            None => {
                let window = self.estimated.entry(start).or_default();
                for s in scores.iter() {
                    window.entry(s.version).or_default().push(Row { score: s.score, alert: s.alert, fraud: false, weight: r.weight });
                }
                let cohort_start = event_ms.div_euclid(w) * w;
                let cohort = (!self.cohort_due(cohort_start)).then(|| {
                    let c = self.cohorts.entry(cohort_start).or_default();
                    let slots: Box<[u32]> = scores
                        .iter()
                        .map(|s| {
                            let j = c.entry(s.version).or_default();
                            j.rows.push(Row { score: s.score, alert: s.alert, fraud: false, weight: r.weight });
                            (j.rows.len() - 1) as u32
                        })
                        .collect();
                    self.cohort_rows += slots.len();
                    (cohort_start, slots)
                });
                self.retained.insert(r.transaction_id.clone(), Entry { event_ms, weight: r.weight, label: recorded, scores, cohort });
                from_record = recorded;
            }
        }
        if let Some(l) = from_record {
            out.extend(self.labelled_from_record(&r.transaction_id, l));
        }
        self.score_watermark = self.score_watermark.max(event_ms);
        self.first_event_ms = self.first_event_ms.min(event_ms);
        // Windows that ended at least `lateness` before the newest event time.
        let due: Vec<i64> = self.estimated.range(..(self.score_watermark - lateness - w + 1).max(i64::MIN + 1)).map(|(k, _)| *k).collect();
        for start in due {
            out.extend(self.close_estimated(start));
        }
        if self.retained.len() > self.settings.max_retained {
            self.evict_oldest();
        }
        while self.cohort_rows > self.settings.max_retained {
            self.abandon_oldest_cohort();
        }
        out
    }

    /// A label known from the changelog: into its cohort and the calibration rows (its realised
    /// window was published before, or its record on the labels topic is read again); it moves
    /// the label watermark, closing cohorts a restart finds already closed.
    fn labelled_from_record(&mut self, id: &str, l: EntryLabel) -> Published {
        let out = self.advance_label_watermark(l.label_ms);
        let e = self.retained.get(id).expect("the entry exists");
        let delay_s = (l.label_ms - e.event_ms) as f64 / 1000.0;
        Self::into_cohort(&mut self.cohorts, e, l.fraud, delay_s);
        for s in e.scores.iter() {
            let rows = self.labelled.entry(s.version).or_default();
            rows.push_back((e.event_ms, s.score, l.fraud, e.weight));
            if rows.len() > self.settings.calibration_rows {
                rows.pop_front();
            }
        }
        out
    }

    /// Sets the label of `e`'s rows in its cohort (if still open).
    fn into_cohort(cohorts: &mut BTreeMap<i64, HashMap<u32, Joined>>, e: &Entry, fraud: bool, delay_s: f64) {
        let Some((start, slots)) = &e.cohort else { return };
        let Some(c) = cohorts.get_mut(start) else { return };
        for (s, &slot) in e.scores.iter().zip(slots.iter()) {
            if let Some(j) = c.get_mut(&s.version) {
                if let Some(row) = j.rows.get_mut(slot as usize) {
                    row.fraud = fraud;
                    j.delays_s.push(delay_s);
                }
            }
        }
    }

    /// The retained-scores record of `e`, with its label.
    fn record(model: &str, versions: &[(String, Role)], id: &str, e: &Entry) -> RetainedScore {
        RetainedScore {
            transaction_id: id.to_string(),
            model: model.to_string(),
            event_time: format_rfc3339_ms(e.event_ms),
            weight: e.weight,
            scores: e.scores.iter().map(|s| RetainedVersion { version: versions[s.version as usize].0.clone(), role: versions[s.version as usize].1, score: s.score, alert: s.alert }).collect(),
            label: e.label.map(|l| JoinedLabel {
                label: u8::from(l.fraud),
                label_time: format_rfc3339_ms(l.label_ms),
                partition: l.source.map_or(-1, |s| s.0),
                offset: l.source.map_or(-1, |s| s.1),
            }),
        }
    }

    /// The records to write to the compacted `retained-scores` topic since the last call: each
    /// newly joined transaction's record with its label.
    pub fn take_changelog(&mut self) -> Vec<RetainedScore> {
        std::mem::take(&mut self.changelog)
    }

    /// Whether the cohort starting at `start` is due: its labels have matured by the label
    /// watermark (with the lateness allowed between partitions).
    fn cohort_due(&self, start: i64) -> bool {
        let s = &self.settings;
        let after = self.window_ms() + s.label_maturity_seconds as i64 * 1000 + s.lateness_seconds as i64 * 1000;
        start.saturating_add(after) <= self.label_watermark
    }

    /// Moves the label watermark to `label_ms` if later, closing the realised windows and the
    /// cohorts it makes due.
    fn advance_label_watermark(&mut self, label_ms: i64) -> Published {
        let mut out = Published::default();
        if label_ms <= self.label_watermark {
            return out;
        }
        self.label_watermark = label_ms;
        let w = self.label_window_ms();
        let lateness = self.settings.lateness_seconds as i64 * 1000;
        let due: Vec<i64> = self.realised.range(..(label_ms - lateness - w + 1).max(i64::MIN + 1)).map(|(k, _)| *k).collect();
        for start in due {
            out.extend(self.close_realised(start));
        }
        let due: Vec<i64> = self.cohorts.keys().copied().take_while(|&k| self.cohort_due(k)).collect();
        for start in due {
            out.extend(self.close_cohort(start));
        }
        out
    }

    /// Drops the oldest open cohort unpublished.
    fn abandon_oldest_cohort(&mut self) {
        if let Some((start, c)) = self.cohorts.pop_first() {
            self.cohort_rows -= c.values().map(|j| j.rows.len()).sum::<usize>();
            self.cohort_estimates.retain(|k, _| k.0 != start);
            self.cohorts_abandoned += 1;
        }
    }

    /// Cohorts dropped unpublished (labels stalled, or `max_retained` rows open).
    pub fn cohorts_abandoned(&self) -> u64 {
        self.cohorts_abandoned
    }

    /// Cohorts open (waiting for their labels to mature).
    pub fn cohorts_open(&self) -> usize {
        self.cohorts.len()
    }

    /// Takes one label. Returns what became of it and the realised windows its time closed
    /// (with any concept-drift alert and retrain request).
    pub fn label(&mut self, label: &Label, now_ms: i64) -> (LabelOutcome, Published) {
        self.label_from(label, None, now_ms)
    }

    /// As [`Tracker::label`], for the label read at `source` (labels partition, offset): the
    /// record already joined there (known from the changelog after a restart) joins its
    /// realised window again, as the restart must read it for that window.
    pub fn label_from(&mut self, label: &Label, source: Option<(i32, i64)>, now_ms: i64) -> (LabelOutcome, Published) {
        self.last_label_wall = now_ms;
        let Some(label_ms) = parse_rfc3339_ms(&label.label_time) else {
            self.outcomes[LabelOutcome::Invalid as usize] += 1;
            return (LabelOutcome::Invalid, Published::default());
        };
        let w = self.label_window_ms();
        let mut out = self.advance_label_watermark(label_ms);
        let outcome = match self.retained.get_mut(&label.transaction_id) {
            None => LabelOutcome::NotRetained,
            Some(e) if e.label.is_some_and(|l| source.is_none() || l.source != source) => LabelOutcome::Duplicate,
            Some(e) => {
                // Read again after a restart: only its realised window (and the detector) lack it.
                let again = e.label.is_some();
                let fraud = label.label == 1;
                e.label = Some(EntryLabel { fraud, label_ms, source });
                let start = (label_ms.div_euclid(w) * w).max(self.realised_closed_before);
                let delay_s = (label_ms - e.event_ms) as f64 / 1000.0;
                self.last_delay_s = Some(delay_s);
                self.last_window = Some(start);
                let window = self.realised.entry(start).or_default();
                let mut serving_error = None;
                for s in e.scores.iter() {
                    let j = window.entry(s.version).or_default();
                    j.rows.push(Row { score: s.score, alert: s.alert, fraud, weight: e.weight });
                    j.delays_s.push(delay_s);
                    if !again {
                        let rows = self.labelled.entry(s.version).or_default();
                        rows.push_back((e.event_ms, s.score, fraud, e.weight));
                        if rows.len() > self.settings.calibration_rows {
                            rows.pop_front();
                        }
                    }
                    if self.versions[s.version as usize].1 == Role::Production {
                        serving_error = Some((s.version, s.alert));
                    }
                }
                if !again {
                    Self::into_cohort(&mut self.cohorts, e, fraud, delay_s);
                    self.changelog.push(Self::record(&self.model, &self.versions, &label.transaction_id, e));
                }
                if let Some((version, alert)) = serving_error {
                    out.extend(self.concept(version, alert, fraud, label_ms));
                }
                LabelOutcome::Matched
            }
        };
        self.outcomes[outcome as usize] += 1;
        (outcome, out)
    }

    /// Label time − event time of the last matched label, seconds.
    pub fn last_delay_seconds(&self) -> Option<f64> {
        self.last_delay_s
    }

    /// The start of the realised window the last matched label went into.
    pub fn last_window_start(&self) -> Option<i64> {
        self.last_window
    }

    /// Realised windows starting before this are closed (published).
    pub fn realised_closed_before(&self) -> i64 {
        self.realised_closed_before
    }

    /// Counts a record of the labels topic that is not a label.
    pub fn invalid_label(&mut self) {
        self.outcomes[LabelOutcome::Invalid as usize] += 1;
    }

    /// Closes every open window when nothing arrived for `idle_close_seconds`, and drops
    /// retained scores older than the retention (relative to the newest event time).
    pub fn tick(&mut self, now_ms: i64) -> Published {
        let idle = self.settings.idle_close_seconds as i64 * 1000;
        let mut out = Published::default();
        if self.last_label_wall != i64::MIN && now_ms - self.last_label_wall >= idle {
            let open: Vec<i64> = self.realised.keys().copied().collect();
            for start in open {
                out.extend(self.close_realised(start));
            }
        }
        if self.last_score_wall != i64::MIN && now_ms - self.last_score_wall >= idle {
            let open: Vec<i64> = self.estimated.keys().copied().collect();
            for start in open {
                out.extend(self.close_estimated(start));
            }
        }
        let cutoff = self.score_watermark.saturating_sub(self.settings.retention_hours as i64 * 3_600_000);
        // Cohorts whose labels should have matured a whole retention ago (in event time): the
        // label stream is stalled or gone; their memory goes.
        let stale = cutoff.saturating_sub(self.window_ms() + self.settings.label_maturity_seconds as i64 * 1000);
        while self.cohorts.first_key_value().is_some_and(|(&k, _)| k < stale) {
            self.abandon_oldest_cohort();
        }
        let before = self.retained.len();
        self.retained.retain(|_, e| e.event_ms >= cutoff);
        self.evicted += (before - self.retained.len()) as u64;
        out
    }

    /// Keeps the newest 90 % of `max_retained`.
    fn evict_oldest(&mut self) {
        let keep = self.settings.max_retained * 9 / 10;
        let mut times: Vec<i64> = self.retained.values().map(|e| e.event_ms).collect();
        let cut = times.len() - keep;
        let (_, &mut cutoff, _) = times.select_nth_unstable(cut);
        let before = self.retained.len();
        self.retained.retain(|_, e| e.event_ms >= cutoff);
        self.evicted += (before - self.retained.len()) as u64;
        self.evicted_by_cap += (before - self.retained.len()) as u64;
    }

    /// Retained scores dropped because `max_retained` was reached, before the retention.
    pub fn evicted_by_cap(&self) -> u64 {
        self.evicted_by_cap
    }

    fn seed(&self, start: i64, version: u32, kind: ReportKind) -> u64 {
        (start as u64).rotate_left(17) ^ u64::from(version).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ kind as u64
    }

    fn close_realised(&mut self, start: i64) -> Published {
        let Some(window) = self.realised.remove(&start) else { return Published::default() };
        let w = self.label_window_ms();
        self.realised_closed_before = self.realised_closed_before.max(start + w);
        let s = &self.settings;
        let mut out = Published::default();
        let mut versions: Vec<(u32, Joined)> = window.into_iter().collect();
        versions.sort_by_key(|(v, _)| *v);
        for (v, mut j) in versions {
            let mut r = self.labelled_report(ReportKind::Realised, v, start, w, &mut j);
            let below = self.below.entry(v).or_insert((0, 0));
            let under = |i: &Interval, floor: f64| floor > 0.0 && i.upper.is_some_and(|u| u < floor);
            below.0 = if under(&r.precision, s.precision_floor) { below.0 + 1 } else { 0 };
            below.1 = if under(&r.recall, s.recall_floor) { below.1 + 1 } else { 0 };
            r.below_floor = BelowFloor { precision_floor: s.precision_floor, precision_windows: below.0, recall_floor: s.recall_floor, recall_windows: below.1 };
            out.reports.push(r);
        }
        out
    }

    /// Closes a cohort whose labels have matured: one report per version.
    fn close_cohort(&mut self, start: i64) -> Published {
        let Some(window) = self.cohorts.remove(&start) else { return Published::default() };
        let w = self.window_ms();
        let mut out = Published::default();
        let mut versions: Vec<(u32, Joined)> = window.into_iter().collect();
        versions.sort_by_key(|(v, _)| *v);
        for (v, mut j) in versions {
            self.cohort_rows -= j.rows.len();
            let labelled = j.delays_s.len() as u64;
            let estimated = self.cohort_estimates.remove(&(start, v));
            let r = self.labelled_report(ReportKind::Cohort, v, start, w, &mut j);
            out.reports.push(PerformanceReport { cohort: Some(CohortSummary { labelled, estimated }), ..r });
        }
        self.cohort_estimates.retain(|k, _| k.0 != start);
        out
    }

    /// A report on labelled rows (a realised window's, or a cohort's with its unlabelled rows
    /// as legitimate): precision exact from the alerts, recall and ROC AUC from the weighted
    /// sample with bootstrap intervals, Brier, ECE and the label delays.
    fn labelled_report(&self, kind: ReportKind, v: u32, start: i64, w: i64, j: &mut Joined) -> PerformanceReport {
        let s = &self.settings;
        let rows = &j.rows;
        let alerts = rows.iter().filter(|r| r.alert).count() as u64;
        let tp = rows.iter().filter(|r| r.alert && r.fraud).count() as u64;
        let precision = stats::wilson(tp, alerts, s.confidence);
        let (recall, roc_auc) = stats::realised_recall_auc(rows, s.confidence, s.replicates, self.seed(start, v, kind));
        let positives: f64 = rows.iter().filter(|r| r.fraud).map(|r| r.weight).sum();
        let delays = (!j.delays_s.is_empty()).then(|| DelaySummary {
            p50: stats::quantile(&mut j.delays_s, 0.5).unwrap_or(0.0),
            p90: stats::quantile(&mut j.delays_s, 0.9).unwrap_or(0.0),
            max: j.delays_s.iter().copied().fold(f64::MIN, f64::max),
        });
        PerformanceReport {
            alerts,
            positives,
            precision,
            recall,
            roc_auc,
            brier: stats::brier(rows),
            ece: stats::ece(rows, 10),
            label_delay_seconds: delays,
            ..self.report(kind, v, start, w, rows)
        }
    }

    fn close_estimated(&mut self, start: i64) -> Published {
        let Some(window) = self.estimated.remove(&start) else { return Published::default() };
        let w = self.window_ms();
        self.estimated_closed_before = self.estimated_closed_before.max(start + w);
        let s = &self.settings;
        let mut out = Published::default();
        let mut versions: Vec<(u32, Vec<Row>)> = window.into_iter().collect();
        versions.sort_by_key(|(v, _)| *v);
        let matured_before = self.label_watermark.saturating_sub(s.label_maturity_seconds as i64 * 1000);
        for (v, rows) in versions {
            let mut matured: Vec<(f64, bool, f64)> = self.labelled.get(&v).map_or_else(Vec::new, |l| l.iter().filter(|r| r.0 <= matured_before).map(|r| (r.1, r.2, r.3)).collect());
            let frauds = matured.iter().filter(|r| r.1).count() as u64;
            let calibrate = frauds >= s.calibration_min_frauds && !matured.is_empty();
            matured.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Matured labels once there are enough of them; until then the artifact's own.
            let training = self.training_calibration.get(&self.versions[v as usize].0);
            let (input, calibration, calibrated_on) = match training {
                _ if calibrate => (stats::CalibrationInput::Matured(&matured[..]), CalibrationSource::Matured, matured.len() as u64),
                Some(t) => (stats::CalibrationInput::Training(t), CalibrationSource::Training, t.rows),
                None => (stats::CalibrationInput::Raw, CalibrationSource::None, 0),
            };
            let (positives, precision, recall) = stats::estimate(&rows, input, s.confidence, s.replicates, self.seed(start, v, ReportKind::Estimated));
            if self.cohorts.contains_key(&start) {
                self.cohort_estimates.insert((start, v), CohortEstimate { precision, recall, calibration });
            }
            out.reports.push(PerformanceReport { positives, precision, recall, calibration, calibrated_on, ..self.report(ReportKind::Estimated, v, start, w, &rows) });
        }
        out
    }

    /// A report of version `v` on `rows` in the window from `start` (`w` long): what both
    /// kinds share (counts, alert rate), no estimates yet.
    fn report(&self, kind: ReportKind, v: u32, start: i64, w: i64, rows: &[Row]) -> PerformanceReport {
        let s = &self.settings;
        let total: f64 = rows.iter().map(|r| r.weight).sum();
        let alerted: f64 = rows.iter().filter(|r| r.alert).map(|r| r.weight).sum();
        let (version, role) = self.versions[v as usize].clone();
        PerformanceReport {
            kind,
            model: self.model.clone(),
            version,
            role,
            window_start: format_rfc3339_ms(start),
            window_end: format_rfc3339_ms(start + w),
            transactions: rows.len() as u64,
            alerts: rows.iter().filter(|r| r.alert).count() as u64,
            positives: 0.0,
            precision: Interval::NONE,
            recall: Interval::NONE,
            roc_auc: Interval::NONE,
            alert_rate: if total > 0.0 { alerted / total } else { 0.0 },
            brier: None,
            ece: None,
            label_delay_seconds: None,
            calibration: CalibrationSource::None,
            calibrated_on: 0,
            confidence: s.confidence,
            below_floor: BelowFloor { precision_floor: s.precision_floor, precision_windows: 0, recall_floor: s.recall_floor, recall_windows: 0 },
            cohort: None,
        }
    }

    /// Feeds the serving version's labelled decision to its concept-drift detectors: one on
    /// the labelled frauds (error: missed), one on the labelled alerts (error: a legitimate
    /// transaction). Each error rate is homogeneous in its kind of label, so a change in how
    /// many frauds against legitimate labels arrive does not move it; together they see a new
    /// fraud pattern the model misses and old signals that stopped meaning fraud.
    fn concept(&mut self, version: u32, alert: bool, fraud: bool, label_ms: i64) -> Published {
        let warmup_ms = self.settings.label_maturity_seconds as i64 * 1000;
        if self.settings.concept_detector == "off" || label_ms < self.first_event_ms.saturating_add(warmup_ms) {
            return Published::default();
        }
        let mut out = Published::default();
        for (stream, applies, error) in [(ConceptStream::MissedFraud, fraud, !alert), (ConceptStream::FalseAlert, alert, !fraud)] {
            if !applies {
                continue;
            }
            let settings = self.settings.ddm;
            let d = self.ddm.entry((version, stream)).or_insert_with(|| Ddm::new(settings));
            let seen = d.seen() + 1;
            if d.update(error) != DdmState::Drift {
                continue;
            }
            let (p_min, s_min) = d.minimum();
            let name = &self.versions[version as usize].0;
            let at = format_rfc3339_ms(label_ms);
            let evidence = ConceptEvidence {
                detector: "ddm".into(),
                stream: stream.as_str().into(),
                version: name.clone(),
                labels_seen: seen,
                error_rate: d.error_rate(),
                min_error_rate: p_min,
                min_std: s_min,
                detected_at: at.clone(),
            };
            let model = format!("{} {}", self.model, name);
            let reason = format!(
                "concept drift: the {} rate of {name} rose to {:.4} over {seen} labels, above the best {:.4} + {} × {:.4} (DDM); the features may not have moved",
                stream.describe(),
                evidence.error_rate,
                p_min,
                settings.drift_threshold,
                s_min
            );
            out.alerts.push(DriftAlert { model: model.clone(), feature: "concept".into(), from: Status::Green, to: Status::Red, window_end: at.clone(), metric: StatusMetric::ErrorRate, value: evidence.error_rate, consecutive_windows: 1 });
            out.retrain.push(RetrainRequest { model, features: Vec::new(), window_end: at, red_windows: 1, reason, concept: Some(evidence) });
        }
        out
    }
}

/// The labelled error streams the concept detectors watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ConceptStream {
    /// Labelled frauds; error: not alerted.
    MissedFraud,
    /// Labelled alerts; error: legitimate.
    FalseAlert,
}

impl ConceptStream {
    fn as_str(self) -> &'static str {
        match self {
            ConceptStream::MissedFraud => "missed_fraud",
            ConceptStream::FalseAlert => "false_alert",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ConceptStream::MissedFraud => "missed-fraud (labelled frauds not alerted)",
            ConceptStream::FalseAlert => "false-alert (labelled alerts that were legitimate)",
        }
    }
}

#[cfg(test)]
mod tests;
