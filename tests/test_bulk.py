"""Whole-server migrations: re-runs, interruptions, dry runs, renames, selection, filters,
and the migrate command with a config file, on the shared real servers.

One workload (``tests.seed.seed_bulk_workload``) is seeded and exported once for the
module; each test imports it under its own renamed names, so the tests share no target
objects.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

import mlflow_exim
from mlflow_exim import cli, lineage
from mlflow_exim.catalog import open_bundle
from mlflow_exim.report import OK, PLANNED, SKIPPED
from mlflow_exim.selection import RunFilter
from tests.seed import T0, seed_bulk_workload

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Workload:
    prefix: str
    seeded: dict
    bundle: Path

    def renames(self, new_prefix: str) -> dict:
        rule = ((f"{self.prefix}-", f"{new_prefix}-"),)
        return {"experiment_renames": rule, "model_renames": rule}


@pytest.fixture(scope="module")
def workload(stack, tmp_path_factory) -> Workload:
    prefix = "bulk" + os.urandom(3).hex()
    seeded = seed_bulk_workload(stack.source.uri, prefix)
    bundle = tmp_path_factory.mktemp("bulk") / "bundle"
    exported = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                      experiments=f"{prefix}-*", models=seeded["model"],
                                      export_deleted_runs=True)
    assert exported.ok, exported.summary()
    return Workload(prefix, seeded, bundle)


def invoke(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def snapshot(uri: str, prefix: str) -> dict:
    """Everything a user sees of the experiments and model named ``prefix-*``, with ids
    replaced by names, and every object counted (deleted ones too)."""
    client = MlflowClient(uri, uri)
    seen: dict = {"experiments": {}, "versions": {}}
    for experiment in client.search_experiments(view_type=ViewType.ALL,
                                                filter_string=f"name LIKE '{prefix}-%'"):
        runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                                  max_results=1000)
        names = {run.info.run_id: run.info.run_name for run in runs}
        seen["experiments"][experiment.name] = {
            "lifecycle": experiment.lifecycle_stage,
            "tags": _user_tags(experiment.tags),
            "runs": sorted(
                (run.info.run_name, run.info.start_time, run.info.end_time, run.info.status,
                 run.info.lifecycle_stage, sorted(run.data.params.items()),
                 sorted(_user_tags(run.data.tags).items()), sorted(run.data.metrics.items()),
                 names.get(run.data.tags.get("mlflow.parentRunId")))
                for run in runs),
            "logged_models": sorted(
                (m.name, m.status.value if hasattr(m.status, "value") else m.status,
                 sorted(m.params.items()))
                for m in client.search_logged_models([experiment.experiment_id])),
        }
    for model in client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'"):
        seen["versions"][model.name] = {
            "aliases": dict(model.aliases),
            "versions": sorted(
                (v.version, v.description, v.current_stage, sorted(_user_tags(v.tags).items()),
                 v.source.split(":")[0])
                for v in client.search_model_versions(f"name = '{model.name}'")),
        }
    return seen


def _user_tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if not lineage.is_lineage_tag(k)}


def _statuses(report) -> set[str]:
    return {o.status for o in report.outcomes}


def test_import_twice_gives_the_same_target_and_creates_nothing(stack, workload):
    first = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                   workers=4, **workload.renames("twice"))
    assert first.ok, first.summary()
    before = snapshot(stack.target.uri, "twice")
    assert len(before["experiments"]["twice-bulk"]["runs"]) == 12
    assert before["versions"]["twice-model"]["aliases"] == {"champion": "4"}
    assert [v[0] for v in before["versions"]["twice-model"]["versions"]] == ["1", "2", "4"]

    second = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                    workers=4, **workload.renames("twice"))
    assert second.ok, second.summary()
    assert _statuses(second) == {SKIPPED}, [o for o in second.outcomes if o.status != SKIPPED]
    assert second.extra["id_map"] == first.extra["id_map"]
    assert snapshot(stack.target.uri, "twice") == before
    runs = open_bundle(workload.bundle).facts["runs"]
    points = sum(fact["metric_points"] for fact in runs.values())
    assert points and first.extra["metric_histories"] == {"path": "rest", "runs": len(runs),
                                                          "points": points}
    assert second.extra["metric_histories"] == {"path": "rest", "runs": 0, "points": 0}


def test_sigkill_while_writing_then_rerun_verifies_100_percent(stack, workload):
    """The import runs in its own process and is killed with SIGKILL as soon as the target
    holds a random number of its runs (fewer than the bundle's), watched by polling, so a
    slow machine moves the kill but never past the end. The kill must land while the
    import is still writing: the re-run creates exactly the runs that were not complete,
    and at least one object. It completes the target, and verify finds it identical."""
    seed = random.randrange(1_000_000)
    bundle_runs = set(open_bundle(workload.bundle).documents["runs"])
    kill_at = random.Random(seed).randint(1, len(bundle_runs) - 1)
    client = MlflowClient(stack.target.uri)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_exim", "import-all", "--input-dir", workload.bundle,
         "--tracking-uri", stack.target.uri, "--workers", "4"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(seen := _runs_of(client, workload.prefix)) < kill_at:
            assert process.poll() is None, f"the import ended having written {len(seen)} runs"
            assert time.monotonic() < deadline, f"{len(seen)} runs written in 300 s"
            time.sleep(0.05)
    finally:
        writing = process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert writing, "the import had ended before the kill"
    complete = {run.data.tags[lineage.SOURCE_RUN_ID]
                for run in _settled_runs_of(client, workload.prefix)
                if lineage.SOURCE_RUN_ID in run.data.tags and not lineage.is_pending(run.data.tags)}
    print(f"random seed {seed}: killed once {kill_at} runs were on the target; "
          f"{len(complete)} of {len(bundle_runs)} were complete")

    rerun = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri)
    assert rerun.ok, rerun.summary()
    created = [o for o in rerun.outcomes if o.status == OK]
    assert created, "the re-run found everything in place: the kill interrupted nothing"
    assert {o.source_id for o in created if o.kind == "runs"} == bundle_runs - complete
    card = mlflow_exim.verify(stack.source.uri, stack.target.uri,
                              experiments=f"{workload.prefix}-*", models=workload.seeded["model"])
    assert card.ok, card.differences
    assert all(card.identical[kind] == card.totals[kind] for kind in card.totals)
    again = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri)
    assert _statuses(again) == {SKIPPED}


def _settled_runs_of(client: MlflowClient, prefix: str) -> list:
    """The runs of :func:`_runs_of` once the server has finished the requests the killed
    import had in flight: a request sent just before SIGKILL (a run's last step, deleting
    its pending tag) still completes on the server, so the runs are read until three reads
    half a second apart agree."""
    def state(runs: list) -> list:
        return sorted((r.info.run_id, r.info.status, r.info.lifecycle_stage,
                       sorted(r.data.tags.items())) for r in runs)
    reads = [_runs_of(client, prefix)]
    deadline = time.monotonic() + 60
    while len(reads) < 3 or len({repr(state(runs)) for runs in reads[-3:]}) > 1:
        assert time.monotonic() < deadline, "the target's runs still changed 60 s after the kill"
        time.sleep(0.5)
        reads.append(_runs_of(client, prefix))
    return reads[-1]


def _runs_of(client: MlflowClient, prefix: str) -> list:
    """Every run (deleted ones too) in the experiments named ``prefix-*``."""
    ids = [e.experiment_id for e in client.search_experiments(
        view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}-%'")]
    return client.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000) if ids else []


@pytest.mark.parametrize("mark", ["name", "tag"])
def test_half_written_run_is_detected_deleted_and_written_again(stack, workload, mark):
    """What a kill leaves mid-run, made deterministic: a run still named pending, as a run
    with a name is until its last request, or still tagged pending, as one without a name
    is (and as imports before the pending name left every run)."""
    prefix = f"half{mark}"
    first = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                   **workload.renames(prefix))
    assert first.ok, first.summary()
    client = MlflowClient(stack.target.uri)
    source_id = workload.seeded["runs"]["bulk-5"]
    target_id = first.extra["id_map"]["runs"][source_id]
    assert not lineage.is_pending(client.get_run(target_id).data.tags)
    before = snapshot(stack.target.uri, prefix)
    if mark == "name":  # as if its last request never came
        client.update_run(target_id, status="RUNNING", name=lineage.pending_run_name(source_id))
    else:
        client.set_tag(target_id, lineage.PENDING, source_id)
    assert lineage.is_pending(client.get_run(target_id).data.tags)

    rerun = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                   **workload.renames(prefix))
    assert rerun.ok, rerun.summary()
    assert rerun.extra["half_written"]["runs"] == [target_id]
    redone = rerun.extra["id_map"]["runs"][source_id]
    assert redone != target_id
    assert client.get_run(target_id).info.lifecycle_stage == "deleted"
    assert not lineage.is_pending(client.get_run(redone).data.tags)
    [outcome] = [o for o in rerun.outcomes if o.source_id == source_id]
    assert outcome.status == OK
    after = snapshot(stack.target.uri, prefix)
    # The same, but for the deleted leftover, which is the redone run's deleted twin.
    leftover = [r for r in after["experiments"][f"{prefix}-bulk"]["runs"] if r[4] == "deleted"]
    assert len(leftover) == 1 and leftover[0][0] == (
        lineage.pending_run_name(source_id) if mark == "name" else "bulk-5")
    after["experiments"][f"{prefix}-bulk"]["runs"].remove(leftover[0])
    assert after == before


def test_dry_run_reports_the_plan_and_writes_nothing(stack, workload):
    report = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                    dry_run=True, **workload.renames("dry"))
    assert report.ok and report.extra["dry_run"] is True
    assert _statuses(report) == {PLANNED}
    kinds = {o.kind for o in report.outcomes}
    assert kinds == {"experiments", "runs", "logged_models", "registered_models",
                     "model_versions"}
    assert snapshot(stack.target.uri, "dry") == {"experiments": {}, "versions": {}}
    assert sorted(o.name for o in report.outcomes if o.kind == "experiments") == sorted(
        name.replace(workload.prefix, "dry") for name in workload.seeded["experiments"]
        if name.startswith(workload.prefix))

    imported = mlflow_exim.import_all(workload.bundle, tracking_uri=stack.target.uri,
                                      **workload.renames("dry"))
    assert imported.ok
    after = snapshot(stack.target.uri, "dry")
    again = invoke("import-all", "--input-dir", workload.bundle, "--tracking-uri",
                   stack.target.uri, "--dry-run", "--experiment-rename",
                   f"{workload.prefix}-=dry-", "--model-rename", f"{workload.prefix}-=dry-")
    assert again.exit_code == 0, again.output
    assert "dry run: nothing written" in again.output
    assert snapshot(stack.target.uri, "dry") == after


def test_renames_from_flags_and_files(stack, workload, tmp_path):
    rules = tmp_path / "models.txt"
    rules.write_text(f"# model renames\n{workload.prefix}-=filed-\n")
    result = invoke("import-all", "--input-dir", workload.bundle, "--tracking-uri",
                    stack.target.uri, "--experiment-rename", f"{workload.prefix}-main=main-x",
                    "--experiment-rename", f"{workload.prefix}-=flag-",
                    "--model-rename-file", rules)
    assert result.exit_code == 0, result.output
    client = MlflowClient(stack.target.uri, stack.target.uri)
    assert client.get_experiment_by_name("main-x") is not None  # the first matching rule
    assert client.get_experiment_by_name("flag-bulk") is not None
    assert client.get_registered_model("filed-model").aliases == {"champion": "4"}
    bad = invoke("import-all", "--input-dir", workload.bundle, "--tracking-uri",
                 stack.target.uri, "--experiment-rename", "no-equals-sign")
    assert bad.exit_code == 2 and "OLD=NEW" in bad.output


def test_selection_by_regex_glob_and_file(stack, workload, tmp_path):
    listed = tmp_path / "models.txt"
    listed.write_text(f"{workload.seeded['model']}\n")
    bundle = tmp_path / "bundle"
    report = mlflow_exim.export_all(
        bundle, tracking_uri=stack.source.uri,
        experiments=[f"re:^{workload.prefix}-(main|oth)", f"{workload.prefix}-bu*"],
        models=f"file:{listed}")
    assert report.ok, report.summary()
    opened = open_bundle(bundle)
    assert sorted(d["name"] for d in opened.documents["experiments"].values()) == [
        f"{workload.prefix}-bulk", f"{workload.prefix}-main", f"{workload.prefix}-other"]
    assert list(opened.documents["registered_models"]) == [workload.seeded["model"]]
    missing = invoke("export-all", "--output-dir", tmp_path / "none", "--tracking-uri",
                     stack.source.uri, "--experiments", "re:^no-such-experiment$")
    assert missing.exit_code == 2 and "matches no experiment" in missing.output


def test_run_filters_and_since_take_only_the_runs_asked_for(stack, workload, tmp_path):
    main = f"{workload.prefix}-main"
    since = mlflow_exim.export_experiment(
        main, tmp_path / "since", tracking_uri=stack.source.uri,
        run_filter=RunFilter(since=_moment(T0 + 6_500)))
    names = sorted(d["info"]["run_name"]
                   for d in open_bundle(tmp_path / "since").documents["runs"].values())
    # Runs end 5 s after they start: parent (+1 s) ended at +6 s, before the point; child
    # (+2 s) and grandchild (+3 s) ended after it; "rich" started after it; "running" runs.
    assert names == ["child", "grandchild", "rich \u2713", "running"], since.summary()
    windowed = invoke("export-experiment", "--experiment", main, "--output-dir",
                      tmp_path / "window", "--tracking-uri", stack.source.uri,
                      "--started-after", _moment(T0 + 1_000).isoformat(),
                      "--started-before", _moment(T0 + 3_000).isoformat(),
                      "--run-filter", "attributes.status = 'FINISHED'")
    assert windowed.exit_code == 0, windowed.output
    window = open_bundle(tmp_path / "window").documents["runs"]
    assert [d["info"]["run_name"] for d in window.values()] == ["parent"]
    bad = invoke("export-experiment", "--experiment", main, "--output-dir", tmp_path / "bad",
                 "--tracking-uri", stack.source.uri, "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since" in bad.output and "ISO 8601" in bad.output


def _moment(millis: int):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def test_migrate_with_a_config_file_dry_run_then_twice(stack, workload, tmp_path):
    config = tmp_path / "migrate.yaml"
    config.write_text(f"""
source:
  tracking_uri: {stack.source.uri}
target:
  tracking_uri: {stack.target.uri}
bundle_dir: {tmp_path / "work"}
select:
  experiments: ["{workload.prefix}-bulk", "re:^{workload.prefix}-oth"]
  models: {workload.seeded["model"]}
rename:
  experiments: {{"{workload.prefix}-": "cfg-"}}
  models: {{"{workload.prefix}-": "cfg-"}}
options:
  workers: 2
  report: {tmp_path / "report.json"}
""")
    dry = invoke("migrate", "--config", config, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert snapshot(stack.target.uri, "cfg") == {"experiments": {}, "versions": {}}

    real = invoke("migrate", "--config", config)
    assert real.exit_code == 0, real.output
    migrated = snapshot(stack.target.uri, "cfg")
    assert sorted(migrated["experiments"]) == ["cfg-bulk", "cfg-other"]
    assert list((tmp_path / "work" / "bundle").glob("part-*-of-*/manifest.json"))

    again = invoke("migrate", "--config", config, "--report", tmp_path / "again.json")
    assert again.exit_code == 0, again.output
    import json

    outcome_statuses = {o["status"] for o in
                        json.loads((tmp_path / "again.json").read_text())["objects"]}
    assert outcome_statuses == {SKIPPED}
    assert snapshot(stack.target.uri, "cfg") == migrated


def test_migrate_with_a_bad_config_is_one_clear_line(tmp_path):
    config = tmp_path / "migrate.yaml"
    config.write_text("source:\n  tracking_uri: http://127.0.0.1:1\n  pasword_env: X\n"
                      "target:\n  tracking_uri: http://127.0.0.1:2\n")
    result = invoke("migrate", "--config", config)
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert str(config) in line and "pasword_env" in line


def test_an_export_says_what_an_interrupted_import_into_its_source_left_half_written(
        tmp_path):
    """A source that was itself the target of a killed import holds its half-written
    objects: the export carries them as they are, each with a warning that says so, and
    the import makes them complete objects (the marks are the import's own), which verify
    counts on both sides. Embedded stores of its own, so that no whole-server test of the
    shared servers finds them."""
    source, target = f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"
    client = MlflowClient(source)
    name = "left"
    experiment = client.create_experiment(name)
    marked = "0" * 32
    pending = client.create_run(experiment, run_name=lineage.pending_run_name(marked),
                                tags={lineage.SOURCE_RUN_ID: marked}).info.run_id
    complete = client.create_run(experiment, run_name="complete").info.run_id
    model = client.create_logged_model(experiment, name="half",
                                       tags={lineage.PENDING: marked}).model_id
    report = mlflow_exim.export_experiment(name, tmp_path / "bundle", tracking_uri=source)
    assert report.ok, report.summary()
    warned = {o.source_id: o.warnings for o in report.outcomes}
    assert warned[pending] == [lineage.LEFT_HALF_WRITTEN]
    assert warned[model] == [lineage.LEFT_HALF_WRITTEN]
    assert warned[complete] == []
    imported = mlflow_exim.import_experiment(tmp_path / "bundle", tracking_uri=target)
    assert imported.ok, imported.summary()
    copied = MlflowClient(target)
    runs = copied.search_runs([copied.get_experiment_by_name(name).experiment_id])
    assert len(runs) == 2 and not any(lineage.is_pending(r.data.tags) for r in runs)
    card = mlflow_exim.verify(source, target)  # the source's leftovers count, and arrived
    assert card.ok, card.text()
    assert card.totals["runs"] == 2 and card.totals["logged_models"] == 1
