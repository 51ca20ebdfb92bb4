"""Retrain on drift: the loop from a driftwatch retrain request to a judged challenger.

    retrain-requests --> await_retrain_request --> gather_data --> retrain (dvc repro)
        --> register_challenger (MLflow alias `challenger`; the engine shadow-scores it)
        --> compare_on_shadow_scores (the same events, champion vs challenger)
        --> decide (promote to `champion`, or leave a note for a person)
        --> acknowledge_request (commit the request's offset: a failed run leaves it for the next)

Triggered by a message on `retrain-requests` (read through the Apache Kafka provider's
connection, `kafka_conn_id`): schedule it (e.g. every few minutes, one active run) or trigger it
by hand; `airflow dags test driftwatch_retrain -c '{...}'` runs it once without a scheduler.
Every setting is a DAG param (below), overridable per run with `--conf`.

The engine must serve the registry `mlflow:<model>` (model.registry) with shadow scoring on
(model.shadow_fraction > 0). `driftwatch` and `dvc` must be on PATH (or set the `driftwatch`
and `dvc` params); MLFLOW_TRACKING_URI names the tracking server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pendulum
import yaml
from airflow.providers.apache.kafka.hooks.consume import KafkaConsumerHook
from airflow.sdk import Param, dag, get_current_context, task
from driftwatch_policy import compare, judge

PARAMS = {
    "model": Param("card-fraud", type="string", description="Registered model (the engine serves mlflow:<model>)."),
    "kafka_conn_id": Param("driftwatch_kafka", type="string", description="Airflow connection of the Kafka cluster (conn_type kafka; librdkafka settings in extra)."),
    "retrain_topic": Param("retrain-requests", type="string"),
    "shadow_topic": Param("shadow-scores", type="string"),
    "request_timeout_s": Param(600, type="integer", description="How long to wait for a retrain request."),
    "dvc_project": Param("", type="string", description="The DVC project (orchestration/dvc's dvc.yaml and params.yaml)."),
    "data": Param({}, type="object", description="Overrides of params.yaml's `data` (e.g. {\"scenario\": \"new_country\"})."),
    "min_shadow_scores": Param(2000, type="integer", description="Shadow scores of the challenger to wait for."),
    "shadow_timeout_s": Param(900, type="integer"),
    "labels": Param("", type="string", description="Optional JSONL of labelled events (transaction_id, is_fraud): precision and recall of both models where labels exist."),
    "min_agreement": Param(0.9, type="number", description="Promote only if champion and challenger agree on at least this share of events."),
    "max_alert_rate_ratio": Param(1.5, type="number", description="...and the challenger's alert rate is within this factor of the champion's."),
    "min_labelled": Param(50, type="integer", description="Labelled positives needed before recall is judged."),
    "auto_promote": Param(True, type="boolean", description="False: never promote, always leave a note."),
    "notes_dir": Param("", type="string", description="Where notes for a person are written (empty: the DVC project's notes/)."),
    "driftwatch": Param("driftwatch", type="string"),
    "dvc": Param("dvc", type="string"),
}


def _params() -> dict:
    return get_current_context()["params"]


def _run(cmd: list[str], cwd: str | None = None) -> str:
    print("$", " ".join(cmd))
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    print(done.stdout)
    print(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed with status {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


class _ConsumerHook(KafkaConsumerHook):
    """The provider's consumer hook, with settings of ours over the connection's."""

    def __init__(self, topics: list[str], kafka_config_id: str, **overrides):
        super().__init__(topics=topics, kafka_config_id=kafka_config_id)
        self.overrides = overrides

    def _get_client(self, config):
        return super()._get_client({**config, **self.overrides})


def _consumer(p: dict, topic: str, **overrides):
    """A consumer of `topic` configured by the Kafka connection (brokers, group.id, security)."""
    return _ConsumerHook([topic], p["kafka_conn_id"], **overrides).get_consumer()


@dag(
    dag_id="driftwatch_retrain",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    tags=["driftwatch", "mlops"],
    doc_md=__doc__,
)
def driftwatch_retrain():
    @task
    def await_retrain_request() -> dict:
        """The next retrain request for our model. Its offset is committed by the last task,
        so a run that fails leaves the request for the next run."""
        p = _params()
        consumer = _consumer(p, p["retrain_topic"], **{"enable.auto.commit": False})
        deadline = time.monotonic() + p["request_timeout_s"]
        try:
            while time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    print("consumer error:", msg.error())
                    continue
                # Keyed by model name; `model` in the value is "name version".
                if (msg.key() or b"").decode() != p["model"]:
                    continue
                request = json.loads(msg.value())
                print("retrain request:", json.dumps(request))
                request["_source"] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
                return request
        finally:
            consumer.close()
        raise TimeoutError(f"no retrain request for {p['model']} on {p['retrain_topic']} within {p['request_timeout_s']} s")

    @task
    def gather_data(request: dict) -> dict:
        """Points the DVC pipeline's data stage at recent labelled data: params.yaml's `data`,
        with this run's overrides and a seed from the request (new data per request)."""
        p = _params()
        path = Path(p["dvc_project"]) / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params["model"]["name"] = p["model"]
        params["data"].update(p["data"])
        # New data per request: a seed from the window that asked for it.
        params["data"]["seed"] = int(hashlib.sha256(request["window_end"].encode()).hexdigest()[:8], 16)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return params["data"]

    @task
    def retrain(data: dict) -> dict:
        """`dvc repro`: data, train, evaluate, register (a new MLflow version)."""
        p = _params()
        project = p["dvc_project"]
        _run([p["dvc"], "repro"], cwd=project)
        registered = json.loads((Path(project) / "registered.json").read_text())
        registered["eval_metrics"] = json.loads((Path(project) / "metrics" / "eval.json").read_text())
        registered["number"] = registered["file"].rsplit("/", 1)[-1]
        return registered

    @task
    def register_challenger(registered: dict) -> dict:
        p = _params()
        _run([p["driftwatch"], "model", "--registry", f"mlflow:{p['model']}", "--by", "airflow", "challenge", registered["number"]])
        return registered

    @task
    def compare_on_shadow_scores(registered: dict) -> dict:
        """Waits for the challenger's shadow scores and compares it with the champion on the
        same events: agreement, alert rates, and precision/recall where labels exist."""
        p = _params()
        labels = {}
        if p["labels"]:
            with open(p["labels"]) as f:
                for line in f:
                    e = json.loads(line)
                    labels[e["transaction_id"]] = int(e["is_fraud"]) == 1
        # Its own group: shadow-score offsets never mix with the requests'.
        consumer = _consumer(p, p["shadow_topic"], **{"group.id": f"{p['model']}-retrain-shadow", "auto.offset.reset": "earliest"})
        seen = {}
        deadline = time.monotonic() + p["shadow_timeout_s"]
        try:
            while len(seen) < p["min_shadow_scores"] and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                s = json.loads(msg.value())
                if s["candidate_version"] == registered["version"]:
                    seen[s["transaction_id"]] = s
        finally:
            consumer.close()
        n = len(seen)
        if n < p["min_shadow_scores"]:
            raise TimeoutError(f"only {n} shadow scores of {registered['version']} within {p['shadow_timeout_s']} s (is the engine shadow-scoring mlflow:{p['model']}?)")
        scores = list(seen.values())
        out = compare(scores, labels)
        out.update(version=registered["version"], number=registered["number"], champion=scores[0]["production_version"], eval_metrics=registered["eval_metrics"])
        print("comparison:", json.dumps(out, indent=2))
        return out

    @task
    def decide(cmp: dict) -> dict:
        """Promotes the challenger if the policy passes, else leaves a note for a person."""
        p = _params()
        reasons = judge(cmp, p["min_agreement"], p["max_alert_rate_ratio"], p["min_labelled"], p["auto_promote"])
        decision = {"comparison": cmp, "promote": not reasons, "reasons": reasons}
        if not reasons:
            why = f"airflow: agreement {cmp['agreement']:.3f}, alert rate x{cmp['alert_rate_ratio']:.2f} on {cmp['shadow_scores']} shadow scores"
            _run([p["driftwatch"], "model", "--registry", f"mlflow:{p['model']}", "--by", "airflow", "promote", cmp["number"], "--reason", why])
            decision["action"] = f"promoted {cmp['version']} to champion"
        else:
            notes = Path(p["notes_dir"] or Path(p["dvc_project"]) / "notes")
            notes.mkdir(parents=True, exist_ok=True)
            note = notes / f"{p['model']}-{cmp['number']}.json"
            note.write_text(json.dumps(decision, indent=2))
            decision["action"] = f"left for review: {note}"
        print("decision:", json.dumps(decision, indent=2))
        return decision

    @task
    def acknowledge_request(request: dict, decision: dict) -> None:
        """Commits the request's offset: it has been answered (promoted or noted)."""
        from confluent_kafka import TopicPartition

        p = _params()
        src = request["_source"]
        consumer = _ConsumerHook([src["topic"]], p["kafka_conn_id"], **{"enable.auto.commit": False}).get_conn
        try:
            consumer.commit(offsets=[TopicPartition(src["topic"], src["partition"], src["offset"] + 1)], asynchronous=False)
        finally:
            consumer.close()
        print(f"answered the retrain request at {src}: {decision['action']}")

    request = await_retrain_request()
    decision = decide(compare_on_shadow_scores(register_challenger(retrain(gather_data(request)))))
    acknowledge_request(request, decision)


driftwatch_retrain()
