"""A real MLflow 2 server (2.22, from its own venv) as a source and as a target.

As a source it is seeded by the MLflow 2 client (tests/seed_mlflow2.py) and migrated into
the session's MLflow 3 target: everything it holds must arrive, and a file it cannot send
must be named. As a target it receives a bundle of an MLflow 3 source: all but the logged
models, which fail one line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import mlflow.artifacts
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, LoggedModelOutput, Metric, Param

import mlflow_exim
from mlflow_exim.catalog import open_bundle
from mlflow_exim.endpoint import Endpoint
from tests.seed import MLMODEL_TEMPLATE, T0
from tests.servers import MLFLOW2_PYTHON, Mlflow2Server

PREFIX = "m2" + uuid.uuid4().hex[:6]
SEED = Path(__file__).with_name("seed_mlflow2.py")
NOT_LATIN1 = "\u6a21\u578b/\u20ac report \u2713.txt"  # as in seed_mlflow2.ARTIFACTS
STUCK = "stuck.fifo"


@pytest.fixture(scope="module")
def mlflow2(tmp_path_factory):
    server = Mlflow2Server("mlflow2", tmp_path_factory.mktemp("mlflow2"))
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeded(mlflow2) -> dict:
    """What seed_mlflow2 made, plus a named pipe in the artifacts of run ``unservable``:
    the server lists it (a file of size 0) but cannot send it, as it cannot send an object
    its storage refuses to read."""
    done = subprocess.run([str(MLFLOW2_PYTHON), str(SEED), mlflow2.uri, PREFIX],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seeded = json.loads(done.stdout.strip().splitlines()[-1])
    os.mkfifo(mlflow2.artifacts_dir / seeded["experiment_id"] / seeded["runs"]["unservable"]
              / "artifacts" / STUCK)
    return seeded


@pytest.fixture(scope="module")
def exported(mlflow2, seeded, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("mlflow2-export") / "bundle"
    report = mlflow_exim.export_all(bundle, tracking_uri=mlflow2.uri,
                                    experiments=seeded["experiment"], models=seeded["model"])
    return report, open_bundle(bundle)


def test_capabilities_are_asked_of_the_server(mlflow2, stack):
    old = Endpoint.connect(mlflow2.uri).server_info
    assert old["mlflow_version"] == "2.22.1"
    assert old["capabilities"] == {"logged_models": False, "traces": False,
                                   "evaluation_datasets": False, "scorers": False}
    new = Endpoint.connect(stack.source.uri)
    assert new.supports("logged_models") and new.supports("traces")


def test_mlflow2_export_takes_everything_and_names_the_file_it_cannot_read(exported, seeded):
    report, bundle = exported
    runs = seeded["runs"]
    assert report.exit_code == 1
    assert [(o.kind, o.source_id) for o in report.failures] == [("runs", runs["unservable"])]
    reason = report.failures[0].reason
    assert "1 artifact file(s) cannot be read from http://127.0.0.1:" in reason
    assert f"'{STUCK}'" in reason and "fine.txt" not in reason
    assert f"FAILED run {runs['unservable']}" in report.summary()
    assert report.counts()["runs"]["ok"] == 4
    assert report.counts()["model_versions"]["ok"] == 3

    source = bundle.manifest["source"]
    assert source["mlflow_version"] == "2.22.1"
    assert source["capabilities"]["logged_models"] is False
    assert not bundle.documents["logged_models"]
    documents = bundle.documents["runs"]
    assert set(documents) == {runs[label] for label in ("parent", "child", "grandchild",
                                                    "retrain")}
    parent_dir = bundle.dirs["runs"][runs["parent"]] / "artifacts"
    assert {p.relative_to(parent_dir).as_posix(): p.stat().st_size
            for p in parent_dir.rglob("*") if p.is_file()} == seeded["artifacts"]
    assert (parent_dir / NOT_LATIN1).read_text(encoding="utf-8") == "not Latin-1 \u2713\n"
    parent = bundle.documents["runs"][runs["parent"]]
    assert parent["metrics"]["points"] == 40
    assert [d["dataset"]["name"] for d in parent["inputs"]["datasets"]] == ["train"]
    assert documents[runs["grandchild"]]["tags"]["mlflow.parentRunId"] == runs["child"]

    model = bundle.documents["registered_models"][seeded["model"]]
    assert model["description"] == "An MLflow 2 model \u2713"
    assert model["tags"] == {"team": "risk", "empty": ""}
    assert model["aliases"] == {"champion": "2", "next": "4"}
    assert [(v["version"], v["current_stage"], v["source_ref"]["kind"])
            for v in model["versions"]] == [("1", "Archived", "run_artifact"),
                                           ("2", "Production", "run_artifact"),
                                           ("4", "Staging", "run_artifact")]


def test_mlflow2_bundle_arrives_whole_on_mlflow3(exported, stack):
    _, bundle = exported
    imported = mlflow_exim.import_all(bundle.root, tracking_uri=stack.target.uri)
    assert imported.ok, imported.summary()
    card = mlflow_exim.verify_bundle(bundle.root, stack.target.uri)
    assert card.ok, card.text()
    assert card.identical == card.totals
    assert card.totals["runs"] == 4 and card.totals["model_versions"] == 3


@pytest.fixture(scope="module")
def mlflow3_bundle(stack, tmp_path_factory) -> tuple[dict, Path]:
    """A small MLflow 3 source: a run with an MLflow 2 style model in its artifacts and
    the logged model it produced; registered model v1 from the run, v2 from the logged
    model."""
    client = MlflowClient(stack.source.uri)
    experiment = f"{PREFIX}-m3"
    experiment_id = client.create_experiment(experiment, tags={"team": "risk"})
    run_id = client.create_run(experiment_id, start_time=T0, run_name="trainer").info.run_id
    client.log_batch(run_id, params=[Param("lr", "0.1")],
                     metrics=[Metric("loss", 1 / (i + 1), T0 + i, i) for i in range(10)])
    client.log_inputs(run_id, [DatasetInput(Dataset("train", "d1", "local", '{"uri": "x"}'))])
    with tempfile.TemporaryDirectory() as scratch:
        mlmodel = Path(scratch, "model", "MLmodel")
        mlmodel.parent.mkdir()
        mlmodel.write_text(MLMODEL_TEMPLATE.format(run_id=run_id))
        Path(scratch, "notes.txt").write_text("notes\n")
        client.log_artifacts(run_id, scratch)
        logged = client.create_logged_model(experiment_id, name="m3-model",
                                            source_run_id=run_id, params={"k": "v"})
        client.log_model_artifact(logged.model_id, str(mlmodel))
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
    client.set_terminated(run_id, "FINISHED", end_time=T0 + 1_000)
    model = f"{PREFIX}-m3-model"
    client.create_registered_model(model, tags={"team": "risk"}, description="from 3.x")
    client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id,
                                tags={"style": "mlflow2"}, description="run artifacts")
    client.create_model_version(model, f"models:/{logged.model_id}", run_id=run_id,
                                model_id=logged.model_id, description="logged model")
    client.transition_model_version_stage(model, "1", "Staging")
    client.set_registered_model_alias(model, "stable", "1")
    client.set_registered_model_alias(model, "champion", "2")
    bundle = tmp_path_factory.mktemp("mlflow3-export") / "bundle"
    report = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                    experiments=experiment, models=model)
    assert report.ok, report.summary()
    return {"experiment": experiment, "run_id": run_id, "model_id": logged.model_id,
            "model": model}, bundle


def test_mlflow3_bundle_into_mlflow2_fails_only_the_logged_models(mlflow2, mlflow3_bundle,
                                                                  tmp_path):
    made, bundle = mlflow3_bundle
    report = mlflow_exim.import_all(bundle, tracking_uri=mlflow2.uri)
    assert report.exit_code == 1
    missing = f"the target server {mlflow2.uri} (MLflow 2.22.1) has no logged models"
    assert [(o.kind, o.source_id, o.reason) for o in report.failures] == [
        ("logged_models", made["model_id"], missing),
        ("model_versions", f"{made['model']}/2",
         f"its logged model {made['model_id']} cannot arrive: {missing}"),
    ]
    assert sum(line.startswith("  FAILED ") for line in report.summary().splitlines()) == 2
    counts = report.counts()
    assert counts["experiments"]["ok"] == counts["runs"]["ok"] == 1
    assert counts["registered_models"]["ok"] == counts["model_versions"]["ok"] == 1

    client = MlflowClient(mlflow2.uri)
    run = client.get_run(report.extra["id_map"]["runs"][made["run_id"]])
    assert run.data.params == {"lr": "0.1"}
    assert run.info.status == "FINISHED" and run.info.start_time == T0
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 10
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["train"]
    files = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=run.info.artifact_uri, tracking_uri=mlflow2.uri, dst_path=str(tmp_path)))
    assert (files / "notes.txt").read_text() == "notes\n"
    assert f"run_id: {run.info.run_id}\n" in (files / "model" / "MLmodel").read_text()
    version = client.get_model_version(made["model"], "1")
    assert (version.current_stage, version.run_id, version.source) == (
        "Staging", run.info.run_id, f"runs:/{run.info.run_id}/model")
    assert version.tags == {"style": "mlflow2"} and version.description == "run artifacts"
    registered = client.get_registered_model(made["model"])
    assert registered.aliases == {"stable": "1"}
    assert registered.description == "from 3.x"
    assert [v.version for v in client.search_model_versions(f"name = '{made['model']}'")] \
        == ["1"]
