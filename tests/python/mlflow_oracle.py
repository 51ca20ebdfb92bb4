"""What MLflow's own client sees: the oracle of the MLflow tests (run with the MLflow venv).

    mlflow_oracle.py describe NAME        -> JSON: aliases, versions (tags, run), their runs
                                             (params, metrics, tags) and the SHA-256 of each
                                             version's artifact as MLflow's client downloads it
    mlflow_oracle.py alias NAME ALIAS N   -> points ALIAS at version N (as a person would in
                                             MLflow's UI)
"""
import hashlib
import json
import os
import sys
import tempfile

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts


def describe(name):
    client = MlflowClient()
    model = client.get_registered_model(name)
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    out = {"aliases": dict(model.aliases), "versions": [], "runs": {}}
    for v in versions:
        with tempfile.TemporaryDirectory() as d:
            path = download_artifacts(artifact_uri=f"{v.source}/artifact.json", dst_path=d)
            sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        out["versions"].append({"version": v.version, "tags": dict(v.tags), "run_id": v.run_id, "source": v.source, "downloaded_sha256": sha})
        if v.run_id and v.run_id not in out["runs"]:
            run = client.get_run(v.run_id)
            out["runs"][v.run_id] = {
                "params": dict(run.data.params),
                "metrics": dict(run.data.metrics),
                "tags": {k: t for k, t in run.data.tags.items() if not k.startswith("mlflow.log")},
                "status": run.info.status,
                "experiment": client.get_experiment(run.info.experiment_id).name,
                "artifacts": sorted(f.path for f in client.list_artifacts(v.run_id, "pipeline")),
            }
    return out


def main():
    if "MLFLOW_TRACKING_URI" not in os.environ:
        sys.exit("MLFLOW_TRACKING_URI is not set")
    cmd = sys.argv[1]
    if cmd == "describe":
        print(json.dumps(describe(sys.argv[2])))
    elif cmd == "alias":
        MlflowClient().set_registered_model_alias(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
