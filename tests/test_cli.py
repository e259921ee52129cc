"""The commands as users call them, against the shared source and target servers."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlflow_exim import cli
from mlflow_exim.bundle.jsonio import read_json, write_json
from mlflow_exim.entities import run as run_entity
from tests.seed import T0, make_run
from tests.servers import free_port


def invoke(command, *args: str):
    result = CliRunner().invoke(command, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def family(stack, unique):
    """An experiment with a parent run and two children, one with an artifact."""
    client = MlflowClient(stack.source.uri)
    name = f"{unique}-family"
    experiment_id = client.create_experiment(name, tags={"owner": "cli"})
    parent = make_run(client, experiment_id, "parent", 100)
    children = [make_run(client, experiment_id, f"child-{i}", 200 + i, parent=parent)
                for i in range(2)]
    client.log_text(children[0], "weights", "model/weights.txt")
    return {"name": name, "id": experiment_id, "parent": parent, "children": children}


def _runs(uri: str, experiment_name: str, view=ViewType.ACTIVE_ONLY):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], run_view_type=view)


def test_export_and_import_experiment_with_rename_and_source_tags(stack, family, tmp_path):
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    result = invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                    "--experiment", family["name"], "--output-dir", bundle)
    assert result.exit_code == 0, result.output
    new_name = family["name"] + "-renamed"
    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", new_name,
                    "--import-source-tags", "--report", report_path)
    assert result.exit_code == 0, result.output

    report = json.loads(report_path.read_text())
    assert report["ok"] and report["counts"]["runs"]["ok"] == 3
    run_map = report["id_map"]["runs"]
    runs = {r.info.run_name: r for r in _runs(stack.target.uri, new_name)}
    child = runs["child-0"]
    assert child.data.tags["mlflow.parentRunId"] == run_map[family["parent"]]
    assert child.data.tags["mlflow_exim.run_info.run_id"] == family["children"][0]
    assert child.data.tags["mlflow_exim.mlflow_tag.parentRunId"] == family["parent"]
    assert child.data.tags["mlflow_exim.run_info.start_time"] == str(T0 + 200)
    assert child.data.tags["mlflow_exim.run_info._start_time"].startswith("2023-11-14T22:13:20")
    experiment = MlflowClient(stack.target.uri).get_experiment_by_name(new_name)
    assert experiment.tags["owner"] == "cli"
    assert experiment.tags["mlflow_exim.field.experiment_id"] == family["id"]
    assert experiment.tags["mlflow_exim.field.name"] == family["name"]

    result = invoke(cli.verify_command, "--src-uri", stack.source.uri, "--dst-uri",
                    stack.target.uri, "--experiments", family["name"], "--models", "none")
    assert result.exit_code == 0, result.output  # renamed, but found by its source tags
    assert "result: identical" in result.output


def test_import_run_drops_the_parent_it_cannot_map_and_says_so(stack, family, tmp_path):
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    child = family["children"][0]
    assert invoke(cli.export_run_command, "--tracking-uri", stack.source.uri,
                  "--run-id", child, "--output-dir", bundle).exit_code == 0
    target_name = family["name"] + "-single"
    result = invoke(cli.import_run_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", target_name,
                    "--import-source-tags", "--report", report_path)
    assert result.exit_code == 0, result.output
    (run,) = _runs(stack.target.uri, target_name)
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.tags["mlflow_exim.mlflow_tag.parentRunId"] == family["parent"]
    (run_outcome,) = [o for o in json.loads(report_path.read_text())["objects"]
                      if o["kind"] == "runs"]
    assert run_outcome["status"] == "ok"
    assert any(family["parent"] in w for w in run_outcome["warnings"])


def test_copy_run_copies_server_to_server_and_leaves_nothing_on_disk(stack, family):
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("mlflow-exim-copy-*"))
    target_name = family["name"] + "-copy"
    result = invoke(cli.copy_run_command, "--run-id", family["children"][0],
                    "--src-uri", stack.source.uri, "--dst-uri", stack.target.uri,
                    "--experiment-name", target_name)
    assert result.exit_code == 0, result.output
    assert set(scratch.glob("mlflow-exim-copy-*")) == before
    (run,) = _runs(stack.target.uri, target_name)
    assert run.info.run_name == "child-0" and run.info.start_time == T0 + 200
    text = MlflowClient(stack.target.uri).download_artifacts(run.info.run_id,
                                                             "model/weights.txt")
    assert Path(text).read_text() == "weights"


def test_one_failing_run_is_reported_and_the_others_arrive(stack, family, tmp_path):
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
           "--experiment", family["name"], "--output-dir", bundle)
    bad = family["children"][1]
    run_json = bundle / "runs" / bad / run_entity.RUN_FILE
    doc = read_json(run_json)
    doc["params"]["k" * 300] = "a key longer than the server accepts"
    write_json(run_json, doc)
    target_name = family["name"] + "-partial"

    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", target_name,
                    "--report", report_path)
    assert result.exit_code == 1
    assert f"FAILED run {bad}" in result.output
    report = json.loads(report_path.read_text())
    (failed,) = [o for o in report["objects"] if o["status"] == "failed"]
    assert failed["source_id"] == bad and failed["reason"]
    assert sorted(r.info.run_name for r in _runs(stack.target.uri, target_name)) == [
        "child-0", "parent"]
    # The half-written run was deleted, not left looking complete.
    deleted = _runs(stack.target.uri, target_name, ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [failed["target_id"]]


@pytest.mark.parametrize("damage, expected", [
    (lambda b: (b / "manifest.json").write_text("{not json"), "manifest.json: is not valid JSON"),
    (lambda b: _edit_manifest(b, format_version=99), "format_version 99 is not supported"),
    (lambda b: next((b / "runs").iterdir()).joinpath("run.json").unlink(),
     "run.json: file is missing"),
    (lambda b: next(b.rglob("weights.txt")).write_text("tampered"),
     "does not match its checksum"),
])
def test_bad_bundle_gets_one_line_error_and_nothing_is_written(stack, family, tmp_path,
                                                               damage, expected):
    bundle = tmp_path / "bundle"
    invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
           "--experiment", family["name"], "--output-dir", bundle)
    damage(bundle)
    target_name = family["name"] + "-never"
    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", target_name)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert str(bundle) in lines[0]
    assert MlflowClient(stack.target.uri).get_experiment_by_name(target_name) is None


def _edit_manifest(bundle: Path, **changes) -> None:
    manifest = read_json(bundle / "manifest.json")
    manifest.update(changes)
    write_json(bundle / "manifest.json", manifest)


def test_unreachable_server_is_one_line_error(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    result = invoke(cli.export_all_command, "--tracking-uri", dead,
                    "--output-dir", tmp_path / "bundle")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot reach tracking server {dead}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "bundle.partial").exists()


def test_credentials_never_reach_bundle_report_or_output(stack, family, tmp_path):
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    uri = stack.source.uri.replace("http://", "http://alice:s3cr3t-pw@")
    result = invoke(cli.export_experiment_command, "--tracking-uri", uri,
                    "--experiment", family["name"], "--output-dir", bundle,
                    "--report", report_path)
    assert result.exit_code == 0, result.output
    assert read_json(bundle / "manifest.json")["source"]["tracking_uri"] == stack.source.uri
    assert "s3cr3t-pw" not in result.output
    assert "s3cr3t-pw" not in report_path.read_text()
    for path in bundle.rglob("*.json*"):
        assert "s3cr3t-pw" not in path.read_text(), path


def test_interrupted_export_is_not_a_bundle_and_resumes(stack, family, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    real_export = run_entity.export
    calls = []

    def interrupted_after_one(src, run_id, directory):
        calls.append(run_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_export(src, run_id, directory)

    monkeypatch.setattr(run_entity, "export", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        from mlflow_exim import export_experiment
        export_experiment(family["name"], bundle, tracking_uri=stack.source.uri)
    assert not bundle.exists() and (tmp_path / "bundle.partial").is_dir()
    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", tmp_path / "bundle.partial")
    assert result.exit_code == 2 and "unfinished export" in result.output

    monkeypatch.setattr(run_entity, "export", lambda *a: calls.append(a[1]) or real_export(*a))
    result = invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                    "--experiment", family["name"], "--output-dir", bundle)
    assert result.exit_code == 0, result.output
    assert len(calls) == 4  # 2 before the interruption, then only the 2 not yet complete
    assert len(read_json(bundle / "manifest.json")["inventory"]["runs"]) == 3
    assert not (tmp_path / "bundle.partial").exists()


def test_deleted_run_is_exported_only_on_request(stack, family, tmp_path):
    client = MlflowClient(stack.source.uri)
    client.delete_run(family["children"][1])
    result = invoke(cli.export_run_command, "--tracking-uri", stack.source.uri,
                    "--run-id", family["children"][1], "--output-dir", tmp_path / "a")
    assert result.exit_code == 2 and "--export-deleted-runs" in result.output
    result = invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                    "--experiment", family["name"], "--output-dir", tmp_path / "b")
    assert result.exit_code == 0
    assert len(read_json(tmp_path / "b" / "manifest.json")["inventory"]["runs"]) == 2
    result = invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                    "--experiment", family["name"], "--output-dir", tmp_path / "c",
                    "--export-deleted-runs")
    assert len(read_json(tmp_path / "c" / "manifest.json")["inventory"]["runs"]) == 3


def test_experiment_selection_by_glob_file_and_unknown_name(stack, unique, tmp_path):
    client = MlflowClient(stack.source.uri)
    for suffix in ("a", "b", "c"):
        client.create_experiment(f"{unique}-sel-{suffix}")
    selection = tmp_path / "selection.txt"
    selection.write_text(f"# wanted\n{unique}-sel-a\n\n{unique}-sel-c\n")
    for spec, expected in ((f"{unique}-sel-*", {"a", "b", "c"}), (str(selection), {"a", "c"}),
                           (f"{unique}-sel-b,{unique}-sel-a", {"a", "b"})):
        out = tmp_path / f"bundle-{len(list(tmp_path.iterdir()))}"
        result = invoke(cli.export_experiments_command, "--tracking-uri", stack.source.uri,
                        "--experiments", spec, "--output-dir", out)
        assert result.exit_code == 0, result.output
        names = {e["name"] for e in read_json(out / "manifest.json")["inventory"]["experiments"]}
        assert names == {f"{unique}-sel-{s}" for s in expected}
    result = invoke(cli.export_experiments_command, "--tracking-uri", stack.source.uri,
                    "--experiments", f"{unique}-nope", "--output-dir", tmp_path / "none")
    assert result.exit_code == 2 and f"'{unique}-nope' matches no experiment" in result.output


def test_verify_finds_a_difference_and_exits_1(stack, family, tmp_path):
    bundle = tmp_path / "bundle"
    invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
           "--experiment", family["name"], "--output-dir", bundle)
    invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
           "--input-dir", bundle)
    args = ("--src-uri", stack.source.uri, "--dst-uri", stack.target.uri,
            "--experiments", family["name"])
    result = invoke(cli.verify_command, *args)
    assert result.exit_code == 0, result.output
    assert "runs 3/3 identical (100.0%)" in " ".join(result.output.split())
    target_run = _runs(stack.target.uri, family["name"])[0]
    MlflowClient(stack.target.uri).set_tag(target_run.info.run_id, "drift", "yes")
    result = invoke(cli.verify_command, *args)
    assert result.exit_code == 1
    assert "'drift' only on the target" in result.output


def test_console_scripts_are_installed_with_real_boolean_flags():
    bin_dir = Path(sys.executable).parent
    for script in ("export-run", "import-run", "export-experiment", "import-experiment",
                   "export-experiments", "import-experiments", "export-all", "import-all",
                   "copy-run"):
        assert (bin_dir / script).exists(), script
    help_text = subprocess.run([str(bin_dir / "import-all"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--import-source-tags / --no-import-source-tags" in help_text
    grouped = subprocess.run([str(bin_dir / "mlflow-exim"), "export-all", "--help"],
                             capture_output=True, text=True, check=True).stdout
    assert "--export-deleted-runs / --no-export-deleted-runs" in grouped


def test_a_deleted_source_experiment_never_deletes_an_existing_active_one(stack, unique,
                                                                         tmp_path):
    source = MlflowClient(stack.source.uri)
    name = f"{unique}-retired"
    experiment_id = source.create_experiment(name)
    make_run(source, experiment_id, "old", 10)
    source.delete_experiment(experiment_id)
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    assert invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
                  "--experiment", name, "--output-dir", bundle,
                  "--export-deleted-runs").exit_code == 0

    target = MlflowClient(stack.target.uri)
    assert invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                  "--input-dir", bundle).exit_code == 0
    assert target.get_experiment_by_name(name).lifecycle_stage == "deleted"

    kept = f"{unique}-kept"
    target.create_experiment(kept)
    result = invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiment-name", kept, "--report", report_path)
    assert result.exit_code == 0, result.output
    assert target.get_experiment_by_name(kept).lifecycle_stage == "active"
    (outcome,) = [o for o in json.loads(report_path.read_text())["objects"]
                  if o["kind"] == "experiments"]
    assert any("left active" in w for w in outcome["warnings"])
    (run,) = _runs(stack.target.uri, kept, ViewType.ALL)
    assert run.info.lifecycle_stage == "deleted"
