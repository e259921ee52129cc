"""Every bundle format version ever written stays readable: a frozen fixture of each is
imported into an embedded store. Never regenerate a fixture; add one for a new version."""

from __future__ import annotations

import math
from pathlib import Path

from mlflow import MlflowClient

import mlflow_exim
from mlflow_exim.bundle import Bundle
from mlflow_exim.bundle.format import READABLE_VERSIONS

FIXTURES = Path(__file__).parent / "fixtures"
PARENT, CHILD = "de26413f24dc42b9b820161288c94020", "8aa56ec224dc41469d421c7fd574ce03"
T0 = 1_700_000_000_000


def test_there_is_a_fixture_for_every_readable_version():
    versions = {Bundle.open(p).format_version for p in FIXTURES.glob("bundle-v*")}
    assert versions == set(READABLE_VERSIONS)


def test_v1_fixture_imports_with_every_field(workdir):
    uri = f"sqlite:///{workdir / 'target.db'}"
    report = mlflow_exim.import_all(FIXTURES / "bundle-v1", tracking_uri=uri)
    assert report.ok, report.summary()
    run_map = report.extra["id_map"]["run"]
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
