"""verify_bundle: a bundle compared with the target it was imported into, on real servers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric

import mlflow_exim
from mlflow_exim import BundleError, EximError
from mlflow_exim.verify import read_id_map, verify_bundle
from tests.seed import MLMODEL_TEMPLATE, T0, make_run

PENDING = "mlflow_exim.import.pending"


def _tree(root: Path, files: dict[str, str]) -> str:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return str(root)


def _seed(client: MlflowClient, name: str, scratch: Path) -> dict:
    """An experiment with a parent, a child (metric history with NaN, a dataset input,
    artifacts with an MLmodel), a deleted run and a logged model of the child's."""
    experiment_id = client.create_experiment(name, tags={"team": "verify"})
    parent = make_run(client, experiment_id, "parent", 100)
    child = make_run(client, experiment_id, "child", 200, parent=parent)
    gone = make_run(client, experiment_id, "gone", 300)
    client.delete_run(gone)
    client.log_batch(child, metrics=[Metric("loss", v, T0 + i, i)
                                     for i, v in enumerate((0.9, 0.5, math.nan))])
    client.log_inputs(child, [DatasetInput(Dataset("train", "abc", "local", '{"uri": "/d"}'),
                                           tags=[InputTag("mlflow.data.context", "training")])])
    client.log_artifacts(parent, _tree(scratch / "parent", {"notes.txt": "hello\n"}))
    client.log_artifacts(child, _tree(scratch / "child", {
        "nested/data.bin": "0123456789", "model/MLmodel": MLMODEL_TEMPLATE.format(run_id=child)}))
    model = client.create_logged_model(experiment_id, name="clf", source_run_id=child,
                                       params={"C": "1.0"}, tags={"framework": "sk"},
                                       model_type="classifier")
    client.log_model_artifacts(model.model_id, _tree(scratch / "model", {
        "MLmodel": f"model_id: {model.model_id}\nrun_id: {child}\nflavors: {{}}\n",
        "weights.bin": "w" * 64}))
    client.log_batch(child, metrics=[Metric("acc", 0.9, T0 + 50, 0, model_id=model.model_id,
                                            dataset_name="eval", dataset_digest="d1")])
    client.finalize_logged_model(model.model_id, "READY")
    return {"id": experiment_id, "parent": parent, "child": child, "model": model.model_id}


def _export_import(stack, name: str, bundle: Path) -> dict:
    exported = mlflow_exim.export_experiment(name, bundle, tracking_uri=stack.source.uri,
                                             export_deleted_runs=True)
    assert exported.ok, exported.summary()
    imported = mlflow_exim.import_experiment(bundle, tracking_uri=stack.target.uri)
    assert imported.ok, imported.summary()
    return imported.extra["id_map"]


def _delete_artifact(uri: str, artifact_uri: str, path: str) -> None:
    """Delete one file behind the target's artifact proxy (no client call does that)."""
    relative = artifact_uri.removeprefix("mlflow-artifacts:/").lstrip("/")
    response = requests.delete(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{relative}/{path}",
                               timeout=30)
    response.raise_for_status()


def test_an_imported_experiment_verifies_and_each_change_is_reported(stack, unique, tmp_path):
    source = MlflowClient(stack.source.uri)
    name = f"{unique}-verify"
    seeded = _seed(source, name, tmp_path)
    bundle = tmp_path / "bundle"
    id_map = _export_import(stack, name, bundle)

    card = verify_bundle(bundle, stack.target.uri)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 1, "runs": 3, "logged_models": 1}
    assert card.identical == card.totals
    assert card.src == str(bundle.absolute())

    target = MlflowClient(stack.target.uri)
    parent, child = (id_map["runs"][seeded[k]] for k in ("parent", "child"))
    target.set_tag(child, "drift", "yes")
    target.log_metric(child, "loss", 0.1, timestamp=T0 + 99, step=3)
    target.log_artifacts(parent, _tree(tmp_path / "changed", {"notes.txt": "HELLO\n"}))
    _delete_artifact(stack.target.uri, target.get_run(child).info.artifact_uri,
                     "nested/data.bin")
    target.set_logged_model_tags(id_map["logged_models"][seeded["model"]], {"framework": "x"})
    target.set_experiment_tag(target.get_experiment_by_name(name).experiment_id, "team", "y")

    card = verify_bundle(bundle, stack.target.uri)
    assert not card.ok
    assert card.identical == {"experiments": 0, "runs": 1, "logged_models": 0}
    run = f"run {seeded['child']} (child)"
    assert sorted(card.differences) == sorted([
        f"experiment {name!r} tags: 'team' source 'verify', target 'y'",
        f"{run} tags: 'drift' only on the target",
        f"{run} metric 'loss': 3 source points, 4 target points, histories differ",
        f"{run} artifacts (path: size): 'nested/data.bin' missing on the target",
        f"run {seeded['parent']} (parent) artifact 'notes.txt': content differs",
        f"logged model {seeded['model']} (clf) tags: 'framework' source 'sk', target 'x'",
    ])
    assert "runs 1/3 identical (33.3%)" in [" ".join(line.split()) for line in
                                           card.text().splitlines()]

    # The server-to-server path compares the same documents and finds the same.
    servers = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name,
                                 models=None)
    assert (servers.totals, servers.identical) == (card.totals, card.identical)
    assert sorted(servers.differences) == sorted(card.differences)

    # Paths and sizes only: the same-size change to notes.txt goes unseen.
    shallow = verify_bundle(bundle, stack.target.uri, compare_artifact_content=False)
    assert not any("content differs" in d for d in shallow.differences)
    assert len(shallow.differences) == len(card.differences) - 1


def test_registered_model_and_versions_verify_and_changes_are_reported(stack, unique,
                                                                        tmp_path):
    source = MlflowClient(stack.source.uri)
    seeded = _seed(source, f"{unique}-reg", tmp_path)
    name = f"{unique}-model"
    source.create_registered_model(name, tags={"team": "risk"}, description="a model")
    source.create_model_version(name, f"runs:/{seeded['child']}/model", run_id=seeded["child"],
                                tags={"quality": "old"}, description="from the run")
    source.create_model_version(name, f"models:/{seeded['model']}", run_id=seeded["child"],
                                model_id=seeded["model"], description="logged model")
    source.transition_model_version_stage(name, "2", "Production")
    source.set_registered_model_alias(name, "champion", "2")
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_model(name, bundle, tracking_uri=stack.source.uri).ok
    imported = mlflow_exim.import_model(bundle, tracking_uri=stack.target.uri)
    assert imported.ok, imported.summary()

    card = verify_bundle(bundle, stack.target.uri)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 1, "runs": 1, "logged_models": 1,
                           "registered_models": 1, "model_versions": 2}
    assert card.identical == card.totals

    target = MlflowClient(stack.target.uri)
    target.set_model_version_tag(name, "1", "quality", "new")
    target.transition_model_version_stage(name, "2", "Archived")
    target.set_registered_model_alias(name, "champion", "1")
    target.create_model_version(name, "s3://elsewhere/model", description="extra")

    card = verify_bundle(bundle, stack.target.uri)
    assert card.identical["registered_models"] == 0
    assert card.identical["model_versions"] == 0
    model = f"registered model {name!r}"
    assert sorted(card.differences) == sorted([
        f"{model} aliases: 'champion' source '2', target '1'",
        f"{model} version 1 tags: 'quality' source 'old', target 'new'",
        f"{model} version 2 current_stage: source 'Production', target 'Archived'",
        f"{model} version 3: only on the target",
    ])


def test_leftovers_of_an_interrupted_import_are_ignored(stack, unique, tmp_path):
    source = MlflowClient(stack.source.uri)
    name = f"{unique}-killed"
    seeded = _seed(source, name, tmp_path)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_experiment(name, bundle, tracking_uri=stack.source.uri,
                                         export_deleted_runs=True).ok
    # What a killed import leaves: a deleted half-written twin of the child, tagged pending
    # and even with its source-id tag, and a pending twin of the logged model.
    target = MlflowClient(stack.target.uri)
    experiment_id = target.create_experiment(name, tags={"team": "verify"})
    child = source.get_run(seeded["child"])
    leftover = target.create_run(experiment_id, start_time=child.info.start_time,
                                 run_name="child", tags={
                                     PENDING: seeded["child"],
                                     "mlflow_exim.run_info.run_id": seeded["child"]})
    target.delete_run(leftover.info.run_id)
    target.create_logged_model(experiment_id, name="clf", params={"C": "1.0"},
                               model_type="classifier",
                               tags={PENDING: seeded["model"], "framework": "sk"})

    card = verify_bundle(bundle, stack.target.uri)
    assert card.totals == {"experiments": 1, "runs": 3, "logged_models": 1}
    assert card.identical == {"experiments": 1, "runs": 0, "logged_models": 0}
    assert not any("only on the target" in d for d in card.differences), card.text()
    assert f"run {seeded['child']} (child): missing on the target" in card.differences
    assert f"logged model {seeded['model']} (clf): missing on the target" in card.differences

    assert mlflow_exim.import_experiment(bundle, tracking_uri=stack.target.uri).ok
    card = verify_bundle(bundle, stack.target.uri)
    assert card.ok, card.text()
    assert card.identical == {"experiments": 1, "runs": 3, "logged_models": 1}
    servers = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name,
                                 models=None)
    assert servers.ok, servers.text()


def test_a_directory_that_is_no_bundle_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not an mlflow-exim bundle"):
        verify_bundle(tmp_path, "http://127.0.0.1:9")


def _seed_registered(source: MlflowClient, seeded: dict, name: str) -> None:
    """``name`` with v1 in the child's artifacts and v2 the logged model, alias on v2."""
    source.create_registered_model(name, tags={"team": "risk"}, description="a model")
    source.create_model_version(name, f"runs:/{seeded['child']}/model", run_id=seeded["child"])
    source.create_model_version(name, f"models:/{seeded['model']}", run_id=seeded["child"],
                                model_id=seeded["model"])
    source.set_registered_model_alias(name, "champion", "2")


def test_verify_follows_the_id_map_or_source_tags_of_a_renamed_import(stack, unique, tmp_path):
    source = MlflowClient(stack.source.uri)
    experiment, model = f"{unique}-renamed", f"{unique}-clf"
    seeded = _seed(source, experiment, tmp_path)
    _seed_registered(source, seeded, model)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri, experiments=experiment,
                                  models=model, export_deleted_runs=True).ok
    renames = [(f"{unique}-", f"{unique}-moved-")]
    imported = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                      experiment_renames=renames, model_renames=renames)
    assert imported.ok, imported.summary()
    report = tmp_path / "report.json"
    imported.write(report)
    totals = {"experiments": 1, "runs": 3, "logged_models": 1, "registered_models": 1,
              "model_versions": 2}

    for id_map in (imported.extra["id_map"], report):
        card = verify_bundle(bundle, stack.target.uri, id_map=id_map)
        assert card.ok, card.text()
        assert card.totals == card.identical == totals
    servers = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=experiment,
                                 models=model, id_map=report)
    assert servers.ok, servers.text()
    assert servers.totals == servers.identical == totals

    # Matched by name, the renamed objects are not found.
    blind = verify_bundle(bundle, stack.target.uri)
    assert sorted(blind.differences) == [f"experiment {experiment!r}: missing on the target",
                                         f"registered model {model!r}: missing on the target"]

    # Imported under other names with source tags, they are found by those tags.
    tagged = [(f"{unique}-", f"{unique}-tagged-")]
    assert mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, import_source_tags=True,
                                  experiment_renames=tagged, model_renames=tagged).ok
    card = verify_bundle(bundle, stack.target.uri)
    assert card.ok, card.text()
    assert card.totals == card.identical == totals


def test_verify_after_import_experiment_compares_no_registered_model(stack, unique, tmp_path):
    source = MlflowClient(stack.source.uri)
    experiment = f"{unique}-alone"
    seeded = _seed(source, experiment, tmp_path)
    _seed_registered(source, seeded, f"{unique}-not-migrated")
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_experiment(experiment, bundle, tracking_uri=stack.source.uri,
                                         export_deleted_runs=True).ok
    imported = mlflow_exim.import_experiment(bundle, tracking_uri=stack.target.uri,
                                             experiment_name=f"{experiment}-copy")
    assert imported.ok, imported.summary()

    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=experiment,
                              id_map=imported.extra["id_map"])
    assert card.ok, card.text()
    assert card.totals == {"experiments": 1, "runs": 3, "logged_models": 1}
    blind = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=experiment)
    assert blind.differences == [f"experiment {experiment!r}: missing on the target"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ('{"id_map": {"run": ["a"]}}', "not an id map"),
    ('["a"]', "not an id map"),
])
def test_an_unreadable_id_map_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(EximError, match=f"^{re.escape(str(path))}: {message}"):
        read_id_map(path)
    with pytest.raises(EximError, match=f"^{re.escape(str(tmp_path / 'nope.json'))}: cannot"):
        read_id_map(tmp_path / "nope.json")


def test_the_id_map_of_a_report_gives_the_registered_model_renames():
    ids = read_id_map({"experiments": {"1": "7", "2": None},
                       "model_version": {"team/clf/1": "prod/clf/4"}})  # an older report's
    assert ids == {"experiments": {"1": "7"}, "model_versions": {"team/clf/1": "prod/clf/4"},
                   "registered_models": {"team/clf": "prod/clf"}}
