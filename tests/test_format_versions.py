"""Every bundle format version ever written stays readable: a frozen fixture of each is
imported into an embedded store. Never regenerate a fixture; add one for a new version."""

from __future__ import annotations

import math
from pathlib import Path

from mlflow import MlflowClient

import mlflow_exim
from mlflow_exim.bundle.format import READABLE_VERSIONS
from mlflow_exim.catalog import open_bundle

FIXTURES = Path(__file__).parent / "fixtures"
PARENT, CHILD = "de26413f24dc42b9b820161288c94020", "8aa56ec224dc41469d421c7fd574ce03"
T0 = 1_700_000_000_000


def test_there_is_a_fixture_for_every_readable_version():
    versions = {open_bundle(p).format_version for p in FIXTURES.glob("bundle-v*")}
    assert versions == set(READABLE_VERSIONS)


def test_v1_fixture_imports_with_every_field(workdir):
    uri = f"sqlite:///{workdir / 'target.db'}"
    report = mlflow_exim.import_all(FIXTURES / "bundle-v1", tracking_uri=uri)
    assert report.ok, report.summary()
    run_map = report.extra["id_map"]["runs"]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fixture/v1 \u2713")
    assert experiment.tags["mlflow.note.content"] == "format v1 fixture"
    child = client.get_run(run_map[CHILD])
    assert (child.info.run_name, child.info.status) == ("child", "FAILED")
    assert (child.info.start_time, child.info.end_time) == (T0 + 10, T0 + 100)
    assert child.info.user_id == "ann"
    assert child.data.tags["mlflow.parentRunId"] == run_map[PARENT]
    assert child.data.params == {"lr": "0.1"}
    loss = sorted(client.get_metric_history(child.info.run_id, "loss"), key=lambda m: m.step)
    assert loss[0].value == 0.5 and math.isnan(loss[1].value)
    assert client.get_metric_history(child.info.run_id, "val/acc")[0].value == 0.9
    (dataset,) = child.inputs.dataset_inputs
    assert (dataset.dataset.name, dataset.tags[0].value) == ("train", "training")
    local = Path(client.download_artifacts(child.info.run_id, "", str(workdir / "dl")))
    assert (local / "notes" / "r\u00e9sum\u00e9 \u2713.txt").read_text() == "r\u00e9sum\u00e9\n"
    assert f"run_id: {child.info.run_id}" in (local / "model" / "MLmodel").read_text()


def test_v2_fixture_imports_logged_and_registered_models(workdir):
    uri = f"sqlite:///{workdir / 'target.db'}"
    report = mlflow_exim.import_all(FIXTURES / "bundle-v2", tracking_uri=uri)
    assert report.ok, report.summary()
    ids = report.extra["id_map"]
    (new_model,) = ids["logged_models"].values()
    (new_run,) = ids["runs"].values()
    client = MlflowClient(uri)
    model = client.get_logged_model(new_model)
    assert (model.name, model.model_type, model.params) == ("clf", "classifier", {"C": "1.0"})
    assert (model.source_run_id, str(model.status), model.tags["team"]) == (
        new_run, "READY", "a")
    (metric,) = model.metrics
    assert (metric.key, metric.value, metric.dataset_name, metric.run_id) == (
        "acc", 0.75, "eval", new_run)
    assert [o.model_id for o in client.get_run(new_run).outputs.model_outputs] == [new_model]
    registered = client.get_registered_model("fixture-v2-model")
    assert (registered.description, registered.tags) == ("frozen", {"owner": "ann"})
    assert {alias: str(v) for alias, v in registered.aliases.items()} == {"champion": "3"}
    v1 = client.get_model_version("fixture-v2-model", "1")
    assert v1.source == f"{client.get_run(new_run).info.artifact_uri}/model"
    assert (v1.description, v1.tags, v1.run_id) == ("mlflow 2 style", {"k": "v"}, new_run)
    v3 = client.get_model_version("fixture-v2-model", "3")
    assert (v3.source, v3.current_stage) == (f"models:/{new_model}", "Production")
    # Version 2 was deleted at the source: its number stays free on the target too.
    versions = client.search_model_versions("name = 'fixture-v2-model'")
    assert sorted(int(v.version) for v in versions) == [1, 3]
