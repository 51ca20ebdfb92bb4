"""Writes grafana/dashboards/*.json: the Drift, Fraud and model, and System dashboards.

Run `python3 grafana/gen_dashboards.py` after editing. The dashboards import into any Grafana:
the datasource is a `$datasource` variable (any Prometheus; the provisioned one by default),
`$model` picks a model and `$instance` the engines serving it, and every driftwatch and process
query is filtered by `instance=~"$instance"`. tests/python/test_monitoring.py checks the
structure and evaluates every expression (variables substituted) in a real Prometheus scraping a
running engine."""
import json
import pathlib
import re

DS = {"type": "prometheus", "uid": "${datasource}"}
TEMPLATING = [
    {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0, "current": {}},
    {"name": "model", "label": "Model", "type": "query", "datasource": DS, "hide": 0, "refresh": 2, "includeAll": True, "multi": True,
     "definition": "label_values(driftwatch_model_info, name)", "query": {"query": "label_values(driftwatch_model_info, name)", "refId": "model"},
     "current": {"text": "All", "value": "$__all"}, "sort": 1},
    {"name": "instance", "label": "Engine", "type": "query", "datasource": DS, "hide": 0, "refresh": 2, "includeAll": True, "multi": True,
     "definition": 'label_values(driftwatch_model_info{name=~"$model"}, instance)',
     "query": {"query": 'label_values(driftwatch_model_info{name=~"$model"}, instance)', "refId": "instance"},
     "current": {"text": "All", "value": "$__all"}, "sort": 1},
]
ENGINE_METRIC = re.compile(r'\b((?:driftwatch|process)_[a-z0-9_]+|up(?=\{))(\{[^}]*\})?')


def scoped(expr):
    """Adds instance=~"$instance" to every driftwatch_*, process_* and up selector."""
    def add(m):
        inner = m.group(2)[1:-1] if m.group(2) else ""
        return m.group(1) + "{" + (inner + "," if inner else "") + 'instance=~"$instance"}'
    return ENGINE_METRIC.sub(add, expr)
OUT = pathlib.Path(__file__).parent / "dashboards"
STATUS_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "green", "color": "green", "index": 0},
    "1": {"text": "amber", "color": "orange", "index": 1},
    "2": {"text": "red", "color": "red", "index": 2}}}]


def target(expr, legend="", ref="A"):
    return {"datasource": DS, "expr": scoped(expr), "legendFormat": legend, "refId": ref}


class Board:
    def __init__(self, uid, title, description):
        self.uid, self.title, self.description, self.panels, self.y = uid, title, description, [], 0

    def panel(self, kind, title, targets, w=12, h=8, description="", **extra):
        x = 0 if not self.panels or self.panels[-1]["gridPos"]["x"] + self.panels[-1]["gridPos"]["w"] + w > 24 else self.panels[-1]["gridPos"]["x"] + self.panels[-1]["gridPos"]["w"]
        if x == 0 and self.panels:
            self.y = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in self.panels)
        refs = "ABCDEFGH"
        p = {"id": len(self.panels) + 1, "type": kind, "title": title, "description": description, "datasource": DS,
             "gridPos": {"x": x, "y": self.y, "w": w, "h": h},
             "targets": [target(e, l, refs[i]) for i, (e, l) in enumerate(targets)]}
        p.update(extra)
        self.panels.append(p)

    def write(self):
        doc = {"uid": self.uid, "title": self.title, "description": self.description, "tags": ["driftwatch"],
               "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s", "time": {"from": "now-3h", "to": "now"},
               "timezone": "utc", "panels": self.panels, "templating": {"list": TEMPLATING}, "annotations": {"list": []}}
        (OUT / f"{self.uid}.json").write_text(json.dumps(doc, indent=2) + "\n")


def thresholds(amber, red, unit=None, line=True):
    fc = {"defaults": {"thresholds": {"mode": "absolute", "steps": [
        {"color": "green", "value": None}, {"color": "orange", "value": amber}, {"color": "red", "value": red}]},
        "custom": {"thresholdsStyle": {"mode": "line" if line else "off"}}}, "overrides": []}
    if unit:
        fc["defaults"]["unit"] = unit
    return fc


status_field = {"defaults": {"mappings": STATUS_MAPPINGS, "min": 0, "max": 2, "thresholds": {"mode": "absolute", "steps": [
    {"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}]}}, "overrides": []}

d = Board("driftwatch-drift", "driftwatch — Drift", "Per-feature drift of live traffic against the model's training reference (shown status is after hysteresis).")
d.panel("stat", "Drift status by feature", [("max by (feature) (driftwatch_feature_drift_status)", "{{feature}}")], w=24, h=6,
        description="One tile per feature: green, amber or red as shown after evidence over non-overlapping panes (a CUSUM of their no-drift p-values) and the window's effect against the rule's thresholds.",
        fieldConfig=status_field, options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name", "reduceOptions": {"calcs": ["lastNotNull"]}})
d.panel("state-timeline", "Drift status over time", [("max by (feature) (driftwatch_feature_drift_status)", "{{feature}}")], w=24, h=9,
        fieldConfig=status_field, options={"showValue": "never", "mergeValues": True})
d.panel("timeseries", "PSI per feature (amber 0.1, red 0.25)", [("max by (feature) (driftwatch_feature_drift_psi)", "{{feature}}")], fieldConfig=thresholds(0.1, 0.25))
d.panel("timeseries", "Jensen–Shannon distance per feature", [("max by (feature) (driftwatch_feature_drift_js)", "{{feature}}")], fieldConfig=thresholds(0.1, 0.2))
d.panel("timeseries", "KS statistic D per numeric feature", [("max by (feature) (driftwatch_feature_drift_ks)", "{{feature}}")], fieldConfig=thresholds(0.1, 0.2))
d.panel("timeseries", "Samples per window", [("sum(driftwatch_drift_window_samples)", "samples")],
        description="A window with fewer than drift.min_samples samples is insufficient data, never drift.")
d.panel("timeseries", "Model score drift (PSI)", [('max(driftwatch_feature_drift_psi{feature="model_score"})', "model_score")], fieldConfig=thresholds(0.1, 0.25))
d.panel("timeseries", "Outlier rate in window vs trained", [("max(driftwatch_drift_outlier_rate)", "window"), ("max(driftwatch_model_trained_outlier_rate)", "trained")],
        fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
d.panel("timeseries", "Windows closed and late events (per minute)", [("sum(rate(driftwatch_drift_windows_closed_total[1m])) * 60", "windows closed"),
                                                                        ("sum(rate(driftwatch_drift_late_events_total[1m])) * 60", "late events")])
d.panel("timeseries", "Drift status changes and retrain requests", [("sum by (to) (increase(driftwatch_drift_status_changes_total[1h]))", "to {{to}}"),
                                                                    ("sum(increase(driftwatch_retrain_requests_total[1h]))", "retrain requests")])
# Model performance on delayed labels, next to the drift it may explain.
perf = 'driftwatch_model_performance{role="production",kind="%s",metric="%s",bound="%s"}'
pct = {"defaults": {"unit": "percentunit", "min": 0, "max": 1}, "overrides": []}
for metric in ("precision", "recall"):
    d.panel("timeseries", f"{metric.capitalize()}: realised on labels vs estimated before labels",
            [(f"max by (version) ({perf % ('realised', metric, b)})", f"realised {b} {{{{version}}}}") for b in ("value", "lower", "upper")]
            + [(f"max by (version) ({perf % ('estimated', metric, 'value')})", "estimated {{version}}")],
            description=f"Realised: {metric} over the labels that arrived in the last closed label window, with its interval (performance.confidence). "
                        "Estimated: from the scores of the last closed event-time window, before their labels (calibrated on matured labels). "
                        "A realised value far from the estimate while features are green is the sign of concept drift.",
            fieldConfig=pct)
d.panel("timeseries", "Labels per minute by outcome", [("sum by (outcome) (rate(driftwatch_labels_total[5m])) * 60", "{{outcome}}")],
        description="matched: joined to a retained score; not_retained: not in the retained sample, expired or unknown; duplicate; invalid.")
d.panel("timeseries", "Label delay (label time - event time)", [(f"histogram_quantile({q}, sum by (le) (rate(driftwatch_label_delay_seconds_bucket[1h])))", f"p{int(q*100)}") for q in (0.5, 0.9)],
        fieldConfig={"defaults": {"unit": "s"}, "overrides": []})
d.panel("timeseries", "Concept drift and performance below floor", [("sum(increase(driftwatch_concept_drift_detections_total[1h]))", "concept drift detections (1 h)"),
                                                                    ("max by (version, metric) (driftwatch_performance_below_floor_windows)", "{{metric}} windows below floor {{version}}")],
        description="Concept drift: DDM on the labelled error streams (missed frauds, false alerts). Windows below floor: consecutive realised windows whose whole interval is under performance.precision_floor / recall_floor (alert at 2).")
d.panel("timeseries", "Calibration (realised)", [(f"max by (version) ({perf % ('realised', 'brier', 'value')})", "Brier {{version}}"), (f"max by (version) ({perf % ('realised', 'ece', 'value')})", "ECE {{version}}")])
d.panel("timeseries", "Group aggregation: aggregator and missing partitions", [("max by (instance) (driftwatch_drift_aggregator)", "aggregator {{instance}}"),
                                                                               ("max(driftwatch_drift_missing_partitions)", "partitions the last window closed without")],
        description="drift.aggregation = group: which instance evaluates the group's windows (1), and partitions a window closed without because their owner went silent (alert: DriftwatchDriftPartitionsMissing). Empty with local aggregation.")
d.panel("timeseries", "Group aggregation: drift-profiles traffic", [("sum by (instance) (rate(driftwatch_drift_profile_bytes_total[5m]))", "bytes/s published {{instance}}"),
                                                                    ("sum by (outcome) (rate(driftwatch_drift_profiles_read_total[5m]))", "read by the aggregator: {{outcome}}/s")],
        description="Pane and progress bytes each instance publishes, and what the aggregator did with the records it read (duplicate: a pane read twice after a crash, kept once; late: arrived after its windows; other_model: another version's).")
d.write()

f = Board("driftwatch-fraud", "driftwatch — Fraud and model", "Throughput, alert and outlier rates, latency, invalid events and the model in use.")
f.panel("timeseries", "Events per second", [("sum(rate(driftwatch_events_consumed_total[1m]))", "consumed"), ("sum(rate(driftwatch_events_scored_total[1m]))", "scored")], fieldConfig={"defaults": {"unit": "ops"}, "overrides": []})
f.panel("timeseries", "Fraud-alert rate", [("sum(rate(driftwatch_fraud_alerts_total[5m])) / sum(rate(driftwatch_events_scored_total[5m]))", "live"),
                                           ("max(driftwatch_model_trained_alert_rate)", "trained")], fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
f.panel("timeseries", "Outlier rate", [("sum(rate(driftwatch_outliers_total[5m])) / sum(rate(driftwatch_events_scored_total[5m]))", "live"),
                                       ("max(driftwatch_model_trained_outlier_rate)", "trained")], fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
f.panel("timeseries", "Scoring latency (decode + score)", [(f"histogram_quantile({q}, sum by (le) (rate(driftwatch_score_latency_seconds_bucket[5m])))", f"p{int(q*100)}") for q in (0.5, 0.95, 0.99)],
        fieldConfig={"defaults": {"unit": "s"}, "overrides": []})
f.panel("timeseries", "End-to-end latency (event time → alert acknowledged)", [(f"histogram_quantile({q}, sum by (le) (rate(driftwatch_end_to_end_latency_seconds_bucket[5m])))", f"p{int(q*100)}") for q in (0.5, 0.95, 0.99)],
        fieldConfig={"defaults": {"unit": "s"}, "overrides": []})
f.panel("timeseries", "Invalid events by reason (dead-lettered)", [("sum by (reason) (rate(driftwatch_events_invalid_total[5m]))", "{{reason}}")], fieldConfig={"defaults": {"unit": "ops"}, "overrides": []})
f.panel("table", "Model in use", [("max by (name, version) (driftwatch_model_info)", "{{name}} {{version}}")], options={"showHeader": True})
f.panel("timeseries", "Messages produced per topic", [("sum by (topic) (rate(driftwatch_messages_produced_total[5m]))", "{{topic}}")], fieldConfig={"defaults": {"unit": "ops"}, "overrides": []})
f.write()

s = Board("driftwatch-system", "driftwatch — System", "Kafka health of the engine, host resources (node-exporter) and the engine process.")
s.panel("timeseries", "Consumer lag per partition", [("max by (topic, partition) (driftwatch_consumer_lag)", "{{topic}}/{{partition}}")])
s.panel("timeseries", "Producer and Kafka client errors", [("sum(rate(driftwatch_producer_errors_total[5m]))", "delivery failures"), ("sum(rate(driftwatch_kafka_errors_total[5m]))", "client errors")])
s.panel("timeseries", "Oldest unacknowledged output and committed lag", [("max(driftwatch_output_oldest_unacked_age_seconds)", "oldest unacknowledged output (s)"),
                                                                          ("sum(driftwatch_consumer_committed_lag)", "committed lag (messages, from the broker)")],
        description="An output waiting for the broker holds back every later offset: the age grows and the committed lag stops falling. Alerts: DriftwatchOutputUnacknowledged, DriftwatchCommitsStalled.")
s.panel("timeseries", "Faults absorbed", [("sum by (topic) (rate(driftwatch_outputs_dropped_total[5m]))", "dropped {{topic}}"),
                                          ("sum by (reason) (rate(driftwatch_dead_letters_reduced_total[5m]))", "dead letters {{reason}}"),
                                          ("sum by (reason) (rate(driftwatch_event_time_out_of_bounds_total[5m]))", "event time {{reason}}")],
        description="Non-critical outputs dropped after a permanent refusal, dead letters truncated or reduced to a reference, events whose time is out of bounds (kept out of drift windows).",
        fieldConfig={"defaults": {"unit": "ops"}, "overrides": []})
s.panel("stat", "Engines up and ready", [('sum(up{job="driftwatch"})', "up"), ("sum(driftwatch_ready)", "ready")], w=8, options={"reduceOptions": {"calcs": ["lastNotNull"]}})
s.panel("timeseries", "Host CPU busy", [('1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m]))', "cpu")], w=8, fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
s.panel("timeseries", "Host memory available", [("min(node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)", "available")], w=8, fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
s.panel("timeseries", "Disk used", [('max by (mountpoint) (1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"})', "{{mountpoint}}")],
        w=8, fieldConfig={"defaults": {"unit": "percentunit"}, "overrides": []})
s.panel("timeseries", "Engine CPU", [("sum(rate(process_cpu_seconds_total[1m]))", "cores")], w=8)
s.panel("timeseries", "Engine memory and descriptors", [("sum(process_resident_memory_bytes)", "resident bytes"), ("sum(process_open_fds)", "open fds"), ("sum(process_max_fds)", "max fds"), ("sum(process_threads)", "threads")], w=8)
s.write()
