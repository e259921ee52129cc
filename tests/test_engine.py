"""The engine that every kind goes through: the import plan (what a dry run prints is what
the import does), selective import of part of a bundle, and inspect, on the shared real
servers. One small workload is seeded and exported once for the module; each test imports
it under its own renamed names."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, ViewType

import mlflow_exim
from mlflow_exim import exporter, lineage
from mlflow_exim.kind import CREATE, REDO, SKIP, UPDATE
from mlflow_exim.report import FAILED, OK, PLANNED, SKIPPED
from tests.faultproxy import FaultProxy
from tests.seed import make_run, seed_bulk_workload


@pytest.fixture(scope="module")
def seeded(stack, tmp_path_factory):
    prefix = "eng" + os.urandom(3).hex()
    seed = seed_bulk_workload(stack.source.uri, prefix, runs=4, points=10)
    bundle = tmp_path_factory.mktemp("engine") / "bundle"
    exported = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                      experiments=f"{prefix}-*", models=seed["model"],
                                      export_deleted_runs=True)
    assert exported.ok, exported.summary()
    return prefix, seed, bundle


def _renames(prefix: str, new: str) -> dict:
    rule = ((f"{prefix}-", f"{new}-"),)
    return {"experiment_renames": rule, "model_renames": rule}


def _actions(report) -> list[tuple[str, str, str]]:
    """What was (or would be) done to each object; workers finish in any order."""
    return sorted((o.kind, o.source_id, o.action) for o in report.outcomes)


def test_the_dry_run_is_the_plan_the_import_carries_out(stack, seeded, unique):
    prefix, seed, bundle = seeded
    names = _renames(prefix, unique)
    planned = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, dry_run=True,
                                     **names)
    assert planned.ok and {o.status for o in planned.outcomes} == {PLANNED}
    assert {o.action for o in planned.outcomes} == {CREATE}
    assert not MlflowClient(stack.target.uri).search_experiments(
        filter_string=f"name LIKE '{unique}-%'")
    printed = planned.summary()
    assert printed.startswith("plan:") and f"create  runs {seed['runs']['bulk-0']}" in printed

    done = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, **names)
    assert done.ok, done.summary()
    assert _actions(done) == _actions(planned)  # the same steps, in any order

    # Change the target so that the next import has something of every action to do.
    client = MlflowClient(stack.target.uri)
    experiment = client.get_experiment_by_name(f"{unique}-bulk")
    client.set_experiment_tag(experiment.experiment_id, "kind", "changed on the target")
    half_written = done.extra["id_map"]["runs"][seed["runs"]["bulk-3"]]
    client.set_tag(half_written, lineage.PENDING, seed["runs"]["bulk-3"])

    replanned = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, dry_run=True,
                                       **names)
    by_object = {(o.kind, o.source_id): o for o in replanned.outcomes}
    assert by_object["experiments", seed["experiments"][f"{prefix}-bulk"]].action == UPDATE
    assert by_object["runs", seed["runs"]["bulk-3"]].action == REDO
    assert replanned.extra["half_written"] == {"runs": [half_written]}
    assert by_object["runs", seed["runs"]["bulk-0"]].action == SKIP
    assert client.get_experiment(experiment.experiment_id).tags["kind"] == (
        "changed on the target")  # a dry run writes nothing

    redone = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, **names)
    assert redone.ok, redone.summary()
    assert _actions(redone) == _actions(replanned)
    assert client.get_experiment(experiment.experiment_id).tags["kind"] == "bulk"
    assert client.get_run(half_written).info.lifecycle_stage == "deleted"
    again = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, dry_run=True,
                                   **names)
    assert {o.status for o in again.outcomes} == {SKIPPED}, again.summary()


def test_selective_import_takes_the_versions_runs_along(stack, seeded, unique):
    prefix, seed, bundle = seeded
    report = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                    experiments=f"{prefix}-other", models=seed["model"],
                                    **_renames(prefix, unique))
    assert report.ok, report.summary()
    client = MlflowClient(stack.target.uri, stack.target.uri)
    arrived = {e.name for e in client.search_experiments(
        view_type=ViewType.ALL, filter_string=f"name LIKE '{unique}-%'")}
    # The bulk experiment comes along only as the home of the versions' runs and model.
    assert arrived == {f"{unique}-other", f"{unique}-bulk"}
    bulk = client.get_experiment_by_name(f"{unique}-bulk")
    runs = {r.info.run_name for r in client.search_runs([bulk.experiment_id])}
    assert runs == {"bulk-0", "bulk-1", "bulk-2"}  # behind versions 1, 2 (and its model), 4
    assert [m.name for m in client.search_logged_models([bulk.experiment_id])] == ["bulk-model"]
    versions = client.search_model_versions(f"name = '{unique}-model'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 4]
    other = client.get_experiment_by_name(f"{unique}-other")
    source_other = MlflowClient(stack.source.uri).search_runs(
        [seed["experiments"][f"{prefix}-other"]], run_view_type=ViewType.ALL)
    assert len(client.search_runs([other.experiment_id], run_view_type=ViewType.ALL)) == len(
        source_other)


def test_selective_import_without_models_and_unknown_names(stack, seeded, unique, tmp_path):
    prefix, _seed, bundle = seeded
    report = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, dry_run=True,
                                    experiments=f"re:^{prefix}-(main|other)$", models="none")
    assert report.ok, report.summary()
    assert {o.kind for o in report.outcomes} == {"experiments", "runs"}
    assert {o.name for o in report.outcomes if o.kind == "experiments"} == {
        f"{prefix}-main", f"{prefix}-other"}
    with pytest.raises(mlflow_exim.EximError, match="matches no experiment"):
        mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, experiments="nope")


def test_inspect_lists_a_bundle_and_names_a_damaged_section(seeded, tmp_path):
    prefix, seed, bundle = seeded
    contents = mlflow_exim.inspect_bundle(bundle)
    listing = contents.to_dict()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert contents.complete and listing["command"] == "export-all"
    assert listing["source"]["tracking_uri"] == manifest["source"]["tracking_uri"]
    for kind in ("experiments", "runs", "logged_models", "registered_models"):
        assert listing["sections"][kind]["objects"] == len(manifest["inventory"][kind])
        assert listing["sections"][kind]["complete"]
    runs = listing["sections"]["runs"]
    assert runs["artifact_files"] == sum(1 for path in manifest["checksums"]
                                         if path.startswith("runs/") and "/artifacts/" in path)
    documents = [json.loads((bundle / e["path"] / "run.json").read_text())
                 for e in manifest["inventory"]["runs"]]
    assert runs["metric_points"] == sum(d["metrics"]["points"] for d in documents) > 40
    bulk = next(e for e in listing["experiments"] if e["name"] == f"{prefix}-bulk")
    assert bulk["objects"] == {"runs": 4, "logged_models": 1}
    assert "result: complete" in contents.text()

    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    entry = next(e for e in manifest["inventory"]["runs"]
                 if e["id"] == seed["runs"]["bulk-2"])
    run_json = damaged / entry["path"] / "run.json"
    run_json.write_text(run_json.read_text()[:40])
    broken = mlflow_exim.inspect_bundle(damaged)
    assert not broken.complete and broken.sections["experiments"]["complete"]
    (problem,) = broken.sections["runs"]["problems"]
    assert problem.startswith(str(Path(run_json))) and "does not match its checksum" in problem
    assert "INCOMPLETE" in broken.text()


def test_runs_sharing_a_dataset_import_in_parallel_without_a_clash(stack, unique, tmp_path):
    """The server gets or creates an experiment's dataset row as a run logs it; with many
    workers two runs logging the same dataset collide there, and the loser is sent again."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-shared")
    shared = DatasetInput(Dataset("shared", "0123abcd", "local", '{"uri": "/data.csv"}'),
                          tags=[InputTag("mlflow.data.context", "training")])
    for i in range(24):
        run = client.create_run(experiment, run_name=f"r{i}")
        client.log_inputs(run.info.run_id, [shared])
        client.set_terminated(run.info.run_id)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_experiment(f"{unique}-shared", bundle,
                                         tracking_uri=stack.source.uri).ok
    for copy in ("a", "b", "c"):  # each import into a new experiment: the race starts anew
        report = mlflow_exim.import_experiment(bundle, tracking_uri=stack.target.uri,
                                               experiment_name=f"{unique}-{copy}", workers=8)
        assert report.ok, report.summary()
        target = MlflowClient(stack.target.uri).get_experiment_by_name(f"{unique}-{copy}")
        runs = MlflowClient(stack.target.uri).search_runs([target.experiment_id])
        assert len(runs) == 24
        assert all([d.dataset.name for d in r.inputs.dataset_inputs] == ["shared"] for r in runs)


def _hold_until(condition, seen: list[str], met: str, timed_out: str, seconds: float = 30):
    """A proxy action that holds its request until ``condition()`` holds (noting ``met``
    in ``seen``) or ``seconds`` have passed (noting ``timed_out``)."""
    def hold() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                seen.append(met)
                return
            time.sleep(0.1)
        seen.append(timed_out)
    return hold


def test_an_export_writes_a_model_while_a_run_it_does_not_need_is_read(
        stack, unique, tmp_path):
    """Through a proxy in front of the source: the first request naming a run that the
    registered model does not need is held until the model's document is on disk. With a
    barrier between kinds the model would wait for that run, and the hold would time
    out."""
    client = MlflowClient(stack.source.uri, stack.source.uri)
    ids = {name: client.create_experiment(f"{unique}-{name}") for name in ("a", "b")}
    run_a = make_run(client, ids["a"], "a", 1)
    run_b = make_run(client, ids["b"], "b", 2)
    model = f"{unique}-model"
    client.create_registered_model(model)
    client.create_model_version(model, f"runs:/{run_a}/model", run_id=run_a)
    bundle = tmp_path / "bundle"
    seen: list[str] = []
    hold = _hold_until(lambda: any(tmp_path.rglob("registered_model.json")), seen,
                       "model written while run b was read",
                       "timed out: the model waited for run b")

    proxy = FaultProxy(stack.source.uri)
    try:
        proxy.arm(run_b, "call", 1, action=hold)
        report = mlflow_exim.export_all(bundle, tracking_uri=proxy.uri, workers=4,
                                        experiments=f"{unique}-*", models=model)
    finally:
        proxy.close()
    assert proxy.fired() == 1
    assert seen == ["model written while run b was read"]
    assert report.ok
    assert {(o.kind, o.source_id) for o in report.outcomes} >= {
        ("runs", run_a), ("runs", run_b), ("registered_models", model),
        ("model_versions", f"{model}/1")}


def test_an_export_writes_a_page_of_runs_before_it_reads_the_next(stack, unique, tmp_path,
                                                                  monkeypatch):
    """Through a proxy in front of the source, with pages of one run and one worker: the
    search for the second page of an experiment's runs is held until a run is on disk.
    With the whole plan (or the experiment's whole listing) made before the first write,
    the hold would time out."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-paged")
    runs = [make_run(client, experiment, name, number)
            for number, name in enumerate(("a", "b"), 1)]
    monkeypatch.setattr(exporter, "RUNS_PER_PAGE", 1)
    bundle = tmp_path / "bundle"
    seen: list[str] = []
    hold = _hold_until(lambda: any(bundle.parent.rglob("run.json")), seen,
                       "a run written before the second page was read",
                       "timed out: nothing was written before the listing ended")

    proxy = FaultProxy(stack.source.uri)
    try:
        proxy.arm("/runs/search", "delay", 1)  # the first page goes through
        proxy.arm("/runs/search", "call", 1, action=hold)
        report = mlflow_exim.export_experiments(f"{unique}-paged", bundle,
                                                tracking_uri=proxy.uri, workers=1)
    finally:
        proxy.close()
    assert proxy.fired() == 2
    assert seen == ["a run written before the second page was read"]
    assert report.ok, report.summary()
    assert {o.source_id for o in report.outcomes if o.kind == "runs"} == set(runs)


def test_no_barrier_between_kinds_and_a_version_fails_with_its_runs_reason(
        stack, unique, tmp_path):
    """Through a proxy in front of the target: the only dataset input (of a run in an
    experiment the model does not need) is held until the model's version exists on the
    target. With a barrier between kinds the version would wait for that run, and the
    hold would time out. Meanwhile the run behind version 2 fails for real (its target
    experiment is deleted under it): version 2 and the run's child fail with its reason,
    version 1 arrives."""
    client = MlflowClient(stack.source.uri, stack.source.uri)
    ids = {name: client.create_experiment(f"{unique}-{name}") for name in ("a", "b", "x")}
    run_a = make_run(client, ids["a"], "a", 1)
    run_b = make_run(client, ids["b"], "b", 2)
    client.log_inputs(run_b, [DatasetInput(Dataset("d", "0123abcd", "local", "{}"))])
    run_x = make_run(client, ids["x"], "x", 3)
    child = make_run(client, ids["x"], "x-child", 4, parent=run_x)
    model = f"{unique}-model"
    client.create_registered_model(model)
    for run_id in (run_a, run_x):
        client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                  experiments=f"{unique}-*", models=model).ok

    target = MlflowClient(stack.target.uri, stack.target.uri)
    doomed = target.create_experiment(f"{unique}-x")  # found by the plan, deleted on apply
    seen: list[str] = []

    def delete_doomed() -> None:
        if target.get_experiment(doomed).lifecycle_stage == "active":
            target.delete_experiment(doomed)

    def hold_until_the_version_exists() -> None:
        experiment_b = target.get_experiment_by_name(f"{unique}-b").experiment_id
        for _ in range(600):
            if target.search_model_versions(f"name = '{model}'"):
                going_in = [r for r in target.search_runs(
                    [experiment_b], f"tags.`{lineage.SOURCE_RUN_ID}` = '{run_b}'")
                    if lineage.is_pending(r.data.tags)]
                seen.append("version created while the run of b was going in" if going_in
                            else "version created after the run of b")
                return
            time.sleep(0.1)
        seen.append("timed out: the version waited for the run of b")

    proxy = FaultProxy(stack.target.uri)
    try:
        proxy.arm("/runs/create", "call", 10, action=delete_doomed)
        proxy.arm("/runs/log-inputs", "call", 1, action=hold_until_the_version_exists)
        report = mlflow_exim.import_all(bundle, tracking_uri=proxy.uri, workers=4)
    finally:
        proxy.close()
    assert seen == ["version created while the run of b was going in"]
    outcomes = {(o.kind, o.source_id): o for o in report.outcomes}
    failed_run = outcomes["runs", run_x]
    assert failed_run.status == FAILED and failed_run.reason
    assert outcomes["runs", child].status == FAILED
    assert outcomes["runs", child].reason == (
        f"its run {run_x} could not be imported: {failed_run.reason}")
    assert outcomes["model_versions", f"{model}/2"].status == FAILED
    assert outcomes["model_versions", f"{model}/2"].reason == (
        f"its run {run_x} could not be imported: {failed_run.reason}")
    assert outcomes["model_versions", f"{model}/1"].status == OK
    assert outcomes["runs", run_b].status == OK
    assert [v.version for v in target.search_model_versions(f"name = '{model}'")] == ["1"]
