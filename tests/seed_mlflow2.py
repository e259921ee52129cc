"""Seed an MLflow 2 server with the MLflow 2 client, as a 2.x user would have filled it.

Run it with MLflow 2's own python (``tests.servers.MLFLOW2_PYTHON``), in a subprocess::

    .venv-mlflow2/bin/python tests/seed_mlflow2.py URI PREFIX

It prints one JSON object naming what it created (the last line of its output):

* experiment ``<PREFIX>-m2`` (tags, a description): run ``parent`` (params, tags, a
  metric history of 40 points, a dataset input, the artifacts of ``ARTIFACTS`` including a
  file whose name is not Latin-1), its child ``child`` with an MLflow 2 model (``model/``,
  ``mlflow.pyfunc.log_model``) and a grandchild; run ``retrain`` with another model; run
  ``unservable`` with one plain artifact (a test adds what its server cannot send);
* registered model ``<PREFIX>-m2-model`` (tags, a description): v1 registered from
  ``runs:/<child>/model``, v2 from ``retrain``'s artifact URI, v3 deleted (a gap), v4 from
  ``runs:/<child>/model`` again; stages v1 Archived, v2 Production, v4 Staging; aliases
  champion → 2, next → 4; version tags and descriptions.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

T0 = 1_700_000_000_000
NOT_LATIN1 = "\u6a21\u578b/\u20ac report \u2713.txt"  # the proxy of a 2.x server cannot send it
ARTIFACTS = {
    "plain.txt": b"hello\n",
    "nested/deeper/leaf.json": b'{"a": 1}\n',
    "binary/blob.bin": bytes(range(256)) * 40,
    "na\u00efve/r\u00e9sum\u00e9.txt": b"Latin-1 is fine\n",
    NOT_LATIN1: "not Latin-1 \u2713\n".encode(),
}


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


def _log_files(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for relative, content in files.items():
            path = Path(scratch, relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        mlflow.log_artifacts(scratch)


def _log_model() -> None:
    mlflow.pyfunc.log_model("model", python_model=Echo(), pip_requirements=["mlflow"])


def seed(uri: str, prefix: str) -> dict:
    mlflow.set_tracking_uri(uri)  # a process of its own: global state is fine here
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    experiment = f"{prefix}-m2"
    experiment_id = client.create_experiment(
        experiment, tags={"team": "risk", "mlflow.note.content": "MLflow 2 experiment \u2713"})
    runs = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name="parent") as parent:
        runs["parent"] = parent.info.run_id
        mlflow.log_params({"lr": "0.1", "layers": "3"})
        mlflow.set_tags({"stage": "dev", "empty": ""})
        for step in range(40):
            mlflow.log_metric("loss", 1 / (step + 1), step=step, timestamp=T0 + step)
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
        mlflow.log_input(mlflow.data.from_pandas(frame, source="s3://bucket/train.csv",
                                                 name="train", targets="y"),
                         context="training", tags={"split": "train"})
        _log_files(ARTIFACTS)
        with mlflow.start_run(experiment_id=experiment_id, run_name="child", nested=True) as child:
            runs["child"] = child.info.run_id
            mlflow.log_metric("acc", 0.9, step=0)
            mlflow.log_metric("acc", 0.95, step=1)
            _log_model()
            with mlflow.start_run(experiment_id=experiment_id, run_name="grandchild",
                                  nested=True) as grandchild:
                runs["grandchild"] = grandchild.info.run_id
                mlflow.log_param("depth", "2")
    with mlflow.start_run(experiment_id=experiment_id, run_name="retrain") as retrain:
        runs["retrain"] = retrain.info.run_id
        mlflow.log_metric("acc", 0.97)
        _log_model()
    with mlflow.start_run(experiment_id=experiment_id, run_name="unservable") as unservable:
        runs["unservable"] = unservable.info.run_id
        _log_files({"fine.txt": b"fine\n"})

    model = f"{prefix}-m2-model"
    client.create_registered_model(model, tags={"team": "risk", "empty": ""},
                                   description="An MLflow 2 model \u2713")
    v1 = mlflow.register_model(f"runs:/{runs['child']}/model", model).version
    v2 = client.create_model_version(
        model, f"{client.get_run(runs['retrain']).info.artifact_uri}/model",
        run_id=runs["retrain"], tags={"quality": "good"}, description="retrained").version
    v3 = mlflow.register_model(f"runs:/{runs['child']}/model", model).version
    client.delete_model_version(model, v3)
    v4 = mlflow.register_model(f"runs:/{runs['child']}/model", model).version
    assert (v1, v2, v3, v4) == ("1", "2", "3", "4"), (v1, v2, v3, v4)
    client.update_model_version(model, v1, description="first")
    client.set_model_version_tag(model, v1, "quality", "old")
    for version, stage in ((v1, "Archived"), (v2, "Production"), (v4, "Staging")):
        client.transition_model_version_stage(model, version, stage)
    client.set_registered_model_alias(model, "champion", v2)
    client.set_registered_model_alias(model, "next", v4)
    return {"experiment": experiment, "experiment_id": experiment_id, "runs": runs,
            "model": model, "versions": [v1, v2, v4], "mlflow_version": mlflow.__version__,
            "artifacts": {path: len(content) for path, content in ARTIFACTS.items()}}


if __name__ == "__main__":
    # Anything MLflow printed came before; the JSON is the last line.
    print(json.dumps(seed(sys.argv[1], sys.argv[2]), sort_keys=True))
