"""Damaged and hostile bundles of a real export are refused before the target is touched;
`check` says whether a bundle is whole; an export run again into its own bundle refreshes
it, or with --overwrite replaces it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from mlflow_exim import cli
from mlflow_exim.bundle.jsonio import read_json, write_json
from tests.seed import make_run
from tests.test_cli import invoke
from tests.unit.samples import rehash


@pytest.fixture(scope="module")
def exported(stack, tmp_path_factory):
    """An experiment of a parent run and a child with an artifact, exported once."""
    client = MlflowClient(stack.source.uri)
    name = "integrity-" + tmp_path_factory.mktemp("n").name[-8:]
    experiment_id = client.create_experiment(name)
    parent = make_run(client, experiment_id, "parent", 100)
    child = make_run(client, experiment_id, "child", 200, parent=parent)
    client.log_batch(child, metrics=[_metric(step) for step in range(1, 50)])
    client.log_text(child, "weights", "model/weights.txt")
    bundle = tmp_path_factory.mktemp("exported") / "bundle"
    result = invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                    "--experiment", name, "--output-dir", bundle)
    assert result.exit_code == 0, result.output
    return {"name": name, "id": experiment_id, "parent": parent, "child": child,
            "bundle": bundle}


def _metric(step: int) -> Metric:
    return Metric("loss", 1.0 / step, 1_700_000_000_000 + step, step)


def _copy(exported, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported["bundle"], tmp_path / "copy"))


def _run_dir(bundle: Path, run_id: str) -> Path:
    manifest = read_json(bundle / "manifest.json")
    return bundle / next(e["path"] for e in manifest["inventory"]["runs"] if e["id"] == run_id)


def _import_refused(stack, bundle: Path, name: str, *fragments: str) -> str:
    """Import the bundle under a new name: exit 2, one line naming the file, and no
    experiment of that name on the target."""
    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", name)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {bundle}/"), line
    for fragment in fragments:
        assert fragment in line, line
    assert MlflowClient(stack.target.uri).get_experiment_by_name(name) is None
    return line


def test_a_whole_bundle_checks_ok(exported):
    result = invoke(cli.check_command, "--input-dir", exported["bundle"], "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    manifest = read_json(exported["bundle"] / "manifest.json")
    assert found["ok"] and found["problems"] == [] and found["unverified"] == {}
    assert found["verified"]["files"] == len(manifest["checksums"]) == 1 + 2 * 2 + 1
    assert "result: ok" in invoke(cli.check_command, "--input-dir", exported["bundle"]).output


def test_a_truncated_metric_history_is_refused_naming_it_and_nothing_is_written(
        stack, exported, unique, tmp_path):
    bundle = _copy(exported, tmp_path)
    history = _run_dir(bundle, exported["child"]) / "metrics.jsonl"
    lines = history.read_text().splitlines(keepends=True)
    history.write_text("".join(lines[:len(lines) // 2]))  # cut at a line end: still valid
    _import_refused(stack, bundle, f"{unique}-cut", "metrics.jsonl",
                    "does not match its checksum")
    result = invoke(cli.check_command, "--input-dir", bundle)
    assert result.exit_code == 1 and f"problem: {history}: does not match" in result.output
    inspected = invoke(cli.inspect_command, "--input-dir", bundle)
    assert inspected.exit_code == 1 and "INCOMPLETE" in inspected.output


def test_a_symlink_in_artifacts_is_refused(stack, exported, unique, tmp_path):
    bundle = _copy(exported, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the target")
    link = _run_dir(bundle, exported["child"]) / "artifacts/model/stolen.txt"
    link.symlink_to(secret)
    _import_refused(stack, bundle, f"{unique}-link", "stolen.txt", "symbolic link")
    assert invoke(cli.check_command, "--input-dir", bundle).exit_code == 1


def test_a_parentage_cycle_is_refused(stack, exported, unique, tmp_path):
    bundle = _copy(exported, tmp_path)
    parent_json = _run_dir(bundle, exported["parent"]) / "run.json"
    doc = read_json(parent_json)
    doc["tags"]["mlflow.parentRunId"] = exported["child"]
    write_json(parent_json, doc)
    rehash(bundle)  # consistent checksums: the check of the documents must catch it
    _import_refused(stack, bundle, f"{unique}-cycle", "mlflow.parentRunId",
                    "circle of parents", exported["parent"], exported["child"])


def test_an_over_long_param_is_refused_not_cut(stack, exported, unique, tmp_path):
    bundle = _copy(exported, tmp_path)
    run_json = _run_dir(bundle, exported["child"]) / "run.json"
    doc = read_json(run_json)
    doc["params"]["offset"] = "9" * 6001  # the target would keep 6,000 and say ok
    write_json(run_json, doc)
    rehash(bundle)
    _import_refused(stack, bundle, f"{unique}-long", "run.json",
                    "params['offset'] is 6001 characters; MLflow takes at most 6000")


def test_the_same_export_again_refreshes_and_overwrite_replaces(stack, exported, tmp_path):
    bundle = _copy(exported, tmp_path)
    args = ["--tracking-uri", stack.source.uri, "--experiment", exported["name"],
            "--output-dir", bundle]
    client = MlflowClient(stack.source.uri)
    parent_json = _run_dir(bundle, exported["parent"]) / "run.json"
    child_json = _run_dir(bundle, exported["child"]) / "run.json"
    kept_inode = parent_json.stat().st_ino
    client.set_tag(exported["child"], "reviewed", "yes")
    added = make_run(client, exported["id"], "added", 300)

    result = invoke(cli.export_experiment_command, *args, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["refreshed"] is True
    manifest = read_json(bundle / "manifest.json")
    assert {e["id"] for e in manifest["inventory"]["runs"]} == {
        exported["parent"], exported["child"], added}
    assert parent_json.stat().st_ino == kept_inode  # unchanged: kept, not written again
    assert read_json(child_json)["tags"]["reviewed"] == "yes"  # changed: written again
    assert invoke(cli.check_command, "--input-dir", bundle).exit_code == 0

    other = invoke(cli.export_experiment_command, *args, "--export-deleted-runs")
    assert other.exit_code == 2
    assert "already holds a bundle of another export (its options differ)" in other.output
    assert "--overwrite" in other.output

    result = invoke(cli.export_experiment_command, *args, "--export-deleted-runs",
                    "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_json(bundle / "manifest.json")["options"]["export_deleted_runs"] is True
    assert parent_json.stat().st_ino != kept_inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "r.json"]

    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        refused = invoke(cli.export_experiment_command, *args[:-1], elsewhere, *extra)
        assert refused.exit_code == 2 and "exists and is not an empty directory" in refused.output
    assert (elsewhere / "notes.txt").read_text() == "mine"
