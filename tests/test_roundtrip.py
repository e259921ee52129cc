"""export-all → import-all between real servers, compared field by field.

The source has proxied local artifacts and an experiment whose artifacts live directly in
S3; the target keeps its artifacts in S3 behind its proxy.
"""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import mlflow_exim
from tests.conftest import BUCKET
from tests.seed import ARTIFACTS, T0, seed_rich_source


@pytest.fixture(scope="module")
def migrated(stack, tmp_path_factory):
    prefix = "rt"
    seeded = seed_rich_source(stack.source.uri, prefix,
                              s3_artifact_root=f"s3://{BUCKET}/source-direct")
    bundle = tmp_path_factory.mktemp("roundtrip") / "bundle"
    exported = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                      export_deleted_runs=True)
    assert exported.ok, exported.summary()
    imported = mlflow_exim.import_all(bundle, tracking_uri=stack.s3_target.uri)
    assert imported.ok, imported.summary()
    return seeded, imported.extra["id_map"]["runs"], bundle


def test_verify_reports_the_target_identical(stack, migrated):
    card = mlflow_exim.verify(stack.source.uri, stack.s3_target.uri)
    assert card.ok, card.text()
    assert card.totals["runs"] >= 9
    assert card.identical == card.totals


def _target_run(stack, run_map, seeded, label):
    return MlflowClient(stack.s3_target.uri).get_run(run_map[seeded.runs[label]])


def test_run_info_user_and_times_are_kept(stack, migrated):
    seeded, run_map, _ = migrated
    grandchild = _target_run(stack, run_map, seeded, "grandchild")
    assert grandchild.info.run_name == "grandchild"
    assert grandchild.info.status == "KILLED"
    assert grandchild.info.start_time == T0 + 3_000
    assert grandchild.info.end_time == T0 + 8_000
    assert grandchild.info.user_id == "bob"
    assert grandchild.data.tags["mlflow.user"] == "bob"
    running = _target_run(stack, run_map, seeded, "running")
    assert running.info.status == "RUNNING"
    assert running.info.end_time is None
    assert _target_run(stack, run_map, seeded, "child").info.status == "FAILED"


def test_nested_runs_point_to_migrated_parents_across_experiments(stack, migrated):
    seeded, run_map, _ = migrated
    parent = run_map[seeded.runs["parent"]]
    child = _target_run(stack, run_map, seeded, "child")
    assert child.data.tags["mlflow.parentRunId"] == parent
    grandchild = _target_run(stack, run_map, seeded, "grandchild")
    assert grandchild.data.tags["mlflow.parentRunId"] == run_map[seeded.runs["child"]]
    cross = _target_run(stack, run_map, seeded, "cross_child")
    assert cross.data.tags["mlflow.parentRunId"] == parent
    assert cross.info.experiment_id != child.info.experiment_id


def test_params_tags_and_metric_histories_are_kept(stack, migrated):
    seeded, run_map, _ = migrated
    rich = _target_run(stack, run_map, seeded, "rich")
    assert rich.data.params["long"] == "x" * 6000
    assert rich.data.params["\u00fcn\u00efk\u00e9y"] == "v\u00e4lue \u2713"
    assert len(rich.data.params) == 152
    assert rich.data.tags["empty"] == ""
    assert rich.data.tags["mlflow.source.git.commit"].startswith("0123456789")
    assert rich.data.tags["mlflow.note.content"].startswith("# Notes")
    client = MlflowClient(stack.s3_target.uri)
    loss = client.get_metric_history(rich.info.run_id, "loss")
    assert len(loss) == 2500
    assert sorted((m.step, m.timestamp, m.value) for m in loss)[10] == (10, T0 + 10, 1 / 11)
    odd = sorted(client.get_metric_history(rich.info.run_id, "odd"), key=lambda m: m.step)
    assert math.isnan(odd[0].value)
    assert odd[1].value == 1.7976931348623157e308 and odd[2].value == -1.7976931348623157e308
    same_step = client.get_metric_history(rich.info.run_id, "same_step")
    assert sorted(m.value for m in same_step) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert {m.step for m in same_step} == {7}


def test_dataset_inputs_are_kept(stack, migrated):
    seeded, run_map, _ = migrated
    rich = _target_run(stack, run_map, seeded, "rich")
    inputs = {i.dataset.name: i for i in rich.inputs.dataset_inputs}
    train = inputs["train"]
    assert (train.dataset.digest, train.dataset.source_type) == ("abc123", "local")
    assert train.dataset.schema.startswith('{"mlflow_colspec"')
    assert train.dataset.profile == '{"num_rows": 100}'
    assert [(t.key, t.value) for t in train.tags] == [("mlflow.data.context", "training")]
    assert inputs["eval"].dataset.source == '{"url": "https://example.com/e"}'


def test_artifacts_arrive_byte_for_byte_and_mlmodel_names_the_new_run(stack, migrated,
                                                                        tmp_path):
    seeded, run_map, _ = migrated
    rich = _target_run(stack, run_map, seeded, "rich")
    local = MlflowClient(stack.s3_target.uri).download_artifacts(rich.info.run_id, "",
                                                                 str(tmp_path))
    for relative, content in ARTIFACTS.items():
        assert (tmp_path / relative).read_bytes() == content, relative
    mlmodel = (tmp_path / "model" / "MLmodel").read_text()
    assert f"run_id: {rich.info.run_id}\n" in mlmodel
    assert seeded.runs["rich"] not in mlmodel
    assert local
    # The target's proxy stored them in S3.
    assert any(key.endswith("binary/blob.bin") for key in stack.s3_objects("s3-target/"))


def test_s3_artifact_root_experiment_is_migrated(stack, migrated, tmp_path):
    seeded, run_map, _ = migrated
    run = _target_run(stack, run_map, seeded, "s3")
    MlflowClient(stack.s3_target.uri).download_artifacts(run.info.run_id, "", str(tmp_path))
    assert (tmp_path / "binary" / "blob.bin").read_bytes() == ARTIFACTS["binary/blob.bin"]
    assert stack.s3_objects("source-direct/rt/")  # the source really wrote to S3


def test_deleted_runs_and_experiments_stay_deleted(stack, migrated):
    seeded, run_map, _ = migrated
    client = MlflowClient(stack.s3_target.uri)
    assert _target_run(stack, run_map, seeded, "deleted").info.lifecycle_stage == "deleted"
    gone = client.get_experiment_by_name("rt-gone")
    assert gone.lifecycle_stage == "deleted"
    runs = client.search_runs([gone.experiment_id], run_view_type=ViewType.ALL)
    assert [r.info.run_name for r in runs] == ["in-deleted-experiment"]


def test_experiment_tags_and_description_are_kept(stack, migrated):
    experiment = MlflowClient(stack.s3_target.uri).get_experiment_by_name("rt-main")
    assert experiment.tags["mlflow.note.content"] == "The main experiment \u2713"
    assert experiment.tags["team"] == "forecasting"
    assert experiment.tags["empty"] == ""
    assert not any(k.startswith("mlflow_exim.") for k in experiment.tags)
