"""Seed a server with registered models, model versions and MLflow 3 logged models.

Run it in a subprocess, so that the test process's global MLflow state (tracking and
registry URI, active run) is never touched and the library cannot lean on it::

    python -m tests.seed_registry URI PREFIX [--s3-artifact-root s3://bucket/path]

prints one JSON object naming everything it created (see :func:`seed`). And::

    python -m tests.seed_registry predict URI MODEL_URI [MODEL_URI ...]

prints ``{model_uri: predictions}`` for :func:`rows` loaded through ``mlflow.pyfunc``.

What ``seed`` creates, all named ``<PREFIX>-…``:

* experiment ``-models``: the runs and logged models of ``-clf`` and the external model;
* registered model ``-clf``: v1 MLflow-2 style (artifacts in the run), v2 and v4 MLflow-3
  style (``models:/m-…``), v3 deleted (a gap); stages v1 Archived, v2 Staging,
  v4 Production; aliases champion→4, challenger→2; descriptions and tags everywhere.
  v4's run also has v2's logged model as a model input;
* registered model ``-external``: v1 is a logged model with no run and no artifacts;
* experiment ``-broken`` and registered model ``-broken``: v1's run is deleted, v2 is fine;
* prompt ``-prompt`` (a registered model underneath; never to be migrated as one);
* with ``--s3-artifact-root``: experiment ``-models-s3`` whose artifact location is
  ``<root>/<PREFIX>``, holding the logged model of registered model ``-s3`` v1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Metric, Param

T0 = 1_700_000_000_000
COLUMNS = ["x0", "x1", "x2", "x3"]
# Each version is trained with its own regularisation, so their predictions differ.
# Given explicitly: inferring them would load every model in yet another subprocess.
REQUIREMENTS = ["mlflow", "scikit-learn"]
STRENGTH = {"v1": 0.05, "v2": 1.0, "v4": 20.0, "s3": 3.0, "broken": 1.0}


def rows() -> pd.DataFrame:
    """The tiny synthetic data set: 20 rows, fixed seed."""
    features = np.random.default_rng(7).normal(size=(20, len(COLUMNS))).round(3)
    return pd.DataFrame(features, columns=COLUMNS)


def labels(frame: pd.DataFrame) -> np.ndarray:
    return (frame["x0"] + 0.5 * frame["x1"] - frame["x3"] > 0).astype(int).to_numpy()


def train(label: str):
    from sklearn.linear_model import LogisticRegression

    frame = rows()
    return LogisticRegression(C=STRENGTH[label], random_state=0).fit(frame, labels(frame))


def _saved_model(label: str, scratch: Path) -> Path:
    """An MLflow-2 style model directory (MLmodel and friends) saved outside any run."""
    path = scratch / label
    mlflow.sklearn.save_model(train(label), str(path), input_example=rows().head(2),
                              pyfunc_predict_fn="predict_proba", pip_requirements=REQUIREMENTS)
    return path


def _mlflow2_version(client: MlflowClient, experiment_id: str, model: str, label: str,
                     scratch: Path, *, description: str, tags: dict) -> tuple[str, str]:
    """A run holding the model in its own artifacts, registered from there."""
    run = client.create_run(experiment_id, start_time=T0, run_name=f"{label}-mlflow2",
                            tags={"mlflow.user": "alice", "style": "mlflow2"})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("C", str(STRENGTH[label]))],
                     metrics=[Metric("train_acc", 0.8, T0 + 1, 0)])
    client.log_artifacts(run_id, str(_saved_model(label, scratch)), "model")
    client.set_terminated(run_id, "FINISHED", end_time=T0 + 1_000)
    version = client.create_model_version(model, source=f"{run.info.artifact_uri}/model",
                                          run_id=run_id, tags=tags, description=description)
    return run_id, version.version


def _mlflow3_version(client: MlflowClient, experiment_id: str, model: str, label: str, *,
                     consumes: str | None = None) -> tuple[str, str, str]:
    """``log_model`` inside a run: a LoggedModel with a ``models:/m-…`` version source,
    plus a model metric linked to a data set. Returns (run id, model id, version)."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{label}-mlflow3") as run:
        run_id = run.info.run_id
        mlflow.log_param("C", STRENGTH[label])
        info = mlflow.sklearn.log_model(
            train(label), name="model", registered_model_name=model,
            params={"solver": "lbfgs", "label": label}, model_type="classifier",
            tags={"trained_by": "seed", "label": label}, input_example=rows().head(2),
            pyfunc_predict_fn="predict_proba", pip_requirements=REQUIREMENTS)
        model_id = info.model_id
        client.log_batch(run_id, metrics=[
            Metric("acc", 0.9, T0 + 10, 0, model_id=model_id, dataset_name="eval",
                   dataset_digest="d1"),
            Metric("acc", 0.95, T0 + 20, 1, model_id=model_id, dataset_name="eval",
                   dataset_digest="d1"),
            Metric("loss", 0.25, T0 + 30, 0, model_id=model_id),
        ])
        if consumes:
            client.log_inputs(run_id, models=[LoggedModelInput(consumes)])
    version = info.registered_model_version
    return run_id, model_id, str(version)


def _wait_ready(client: MlflowClient, model: str, version: str) -> None:
    deadline = time.monotonic() + 60
    while client.get_model_version(model, version).status != "READY":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model}/{version} never became READY")
        time.sleep(0.2)


def seed(uri: str, prefix: str, s3_artifact_root: str | None = None) -> dict:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    out: dict = {"prefix": prefix, "experiments": {}, "models": {}, "runs": {},
                 "logged_models": {}, "versions": {}}
    experiments, models, runs, logged, versions = (out["experiments"], out["models"],
                                                   out["runs"], out["logged_models"],
                                                   out["versions"])
    experiments["models"] = client.create_experiment(f"{prefix}-models",
                                                     tags={"purpose": "registry"})
    experiments["broken"] = client.create_experiment(f"{prefix}-broken")
    main = experiments["models"]

    clf = models["clf"] = f"{prefix}-clf"
    client.create_registered_model(clf, tags={"team": "risk", "empty": ""},
                                   description="The classifier \u2713")
    with tempfile.TemporaryDirectory() as scratch:
        runs["v1"], v1 = _mlflow2_version(
            client, main, clf, "v1", Path(scratch), description="first, MLflow 2 style",
            tags={"style": "mlflow2", "quality": "old"})
        runs["v2"], logged["v2"], v2 = _mlflow3_version(client, main, clf, "v2")
        v1_source = client.get_model_version(clf, v1).source
        v3 = client.create_model_version(clf, source=v1_source, run_id=runs["v1"]).version
        runs["v4"], logged["v4"], v4 = _mlflow3_version(client, main, clf, "v4",
                                                        consumes=logged["v2"])
        for version in (v1, v2, v3, v4):
            _wait_ready(client, clf, version)
        client.delete_model_version(clf, v3)
        assert (v1, v2, v3, v4) == ("1", "2", "3", "4"), (v1, v2, v3, v4)
        client.update_model_version(clf, v2, description="second, logged model")
        client.update_model_version(clf, v4, description="fourth, the best \u2713")
        client.set_model_version_tag(clf, v2, "quality", "fair")
        client.set_model_version_tag(clf, v4, "quality", "good")
        for version, stage in ((v1, "Archived"), (v2, "Staging"), (v4, "Production")):
            client.transition_model_version_stage(clf, version, stage)
        client.set_registered_model_alias(clf, "champion", v4)
        client.set_registered_model_alias(clf, "challenger", v2)
        versions["clf"] = [v1, v2, v4]

        external_model = client.create_logged_model(
            main, name="external", model_type="agent",
            tags={"provider": "elsewhere", "kind": "external"},
            params={"endpoint": "https://example.com/agent", "temperature": "0.2"})
        logged["external"] = external_model.model_id
        client.finalize_logged_model(logged["external"], "READY")
        external = models["external"] = f"{prefix}-external"
        client.create_registered_model(external, description="a model built elsewhere")
        client.create_model_version(external, source=f"models:/{logged['external']}",
                                    model_id=logged["external"], tags={"origin": "vendor"},
                                    description="no run, no artifacts")
        versions["external"] = ["1"]

        broken = models["broken"] = f"{prefix}-broken"
        client.create_registered_model(broken, description="v1's run is deleted")
        runs["broken_v1"], _ = _mlflow2_version(client, experiments["broken"], broken,
                                                "broken", Path(scratch) / "a",
                                                description="doomed", tags={})
        runs["broken_v2"], _ = _mlflow2_version(client, experiments["broken"], broken,
                                                "broken", Path(scratch) / "b",
                                                description="fine", tags={"ok": "yes"})
        client.delete_run(runs["broken_v1"])
        versions["broken"] = ["1", "2"]

    prompt = models["prompt"] = f"{prefix}-prompt"
    mlflow.genai.register_prompt(prompt, "Answer {{question}} briefly.",
                                 commit_message="first prompt", tags={"task": "qa"})

    if s3_artifact_root:
        experiments["s3"] = client.create_experiment(
            f"{prefix}-models-s3", artifact_location=f"{s3_artifact_root.rstrip('/')}/{prefix}")
        models["s3"] = f"{prefix}-s3"
        runs["s3"], logged["s3"], _ = _mlflow3_version(client, experiments["s3"],
                                                       models["s3"], "s3")
        _wait_ready(client, models["s3"], "1")
        versions["s3"] = ["1"]
    return out


def predict(uri: str, model_uris: list[str]) -> dict:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    frame = rows()
    return {model_uri: np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame)).tolist()
            for model_uri in model_uris}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "predict":
        parser = argparse.ArgumentParser(prog="python -m tests.seed_registry predict")
        parser.add_argument("uri")
        parser.add_argument("model_uris", nargs="+")
        args = parser.parse_args(argv[1:])
        result = predict(args.uri, args.model_uris)
    else:
        parser = argparse.ArgumentParser(prog="python -m tests.seed_registry")
        parser.add_argument("uri")
        parser.add_argument("prefix")
        parser.add_argument("--s3-artifact-root")
        args = parser.parse_args(argv)
        result = seed(args.uri, args.prefix, args.s3_artifact_root)
    # Anything MLflow printed went to stderr or came before; the JSON is the last line.
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
