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


V3_RUN, V3_TRACE = "fc7f21f426a1490aa5f14c735baee365", "tr-d8d4175f98cb709087cba59227447def"


def test_v3_fixture_imports_traces_prompts_and_datasets(workdir):
    uri = f"sqlite:///{workdir / 'target.db'}"
    report = mlflow_exim.import_all(FIXTURES / "bundle-v3", tracking_uri=uri)
    assert report.ok, report.summary()
    new_run = report.extra["id_map"]["runs"][V3_RUN]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fixture/v3 \u2713")
    assert experiment.tags["mlflow.note.content"] == "format v3 fixture"
    trace = client.get_trace(V3_TRACE)  # the trace keeps its id
    assert trace.info.experiment_id == experiment.experiment_id
    assert trace.info.trace_metadata["mlflow.sourceRun"] == new_run
    assert trace.info.tags["team"] == "s\u00f8k"
    spans = {span.name: span for span in trace.data.spans}
    assert spans["lookup"].parent_id == spans["agent"].span_id
    assert [event.name for event in spans["lookup"].events] == ["retry"]
    assert spans["agent"].get_attribute("depth") == 3
    assert spans["lookup"].outputs == {"rows": [1, 2]}
    assessments = {a.name: a for a in trace.info.assessments}
    assert assessments["quality"].feedback.value is True
    assert assessments["answer"].expectation.value == {"text": "hello"}
    registry = client._get_registry_client().store
    assert int(registry.get_prompt_version_by_alias("fixture-v3-prompt",
                                                    "production").version) == 2
    assert registry.get_prompt_version("fixture-v3-prompt", 2).template == "Hello {{name}}!"
    assert registry.get_prompt_version("fixture-v3-prompt", 1).commit_message == "first"
    (dataset,) = client._tracking_client.store.search_datasets(
        experiment_ids=[experiment.experiment_id])
    assert dataset.name == "fixture-v3-set"
    records = client._tracking_client.store._load_dataset_records(dataset.dataset_id)
    records = records[0] if isinstance(records, tuple) else records
    assert [(r.inputs, r.expectations) for r in records] == [
        ({"question": "hi"}, {"answer": "hello"})]
