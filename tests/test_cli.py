"""The commands as users call them, against the shared source and target servers."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.metadata import distribution
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

import mlflow_exim
from mlflow_exim import cli
from mlflow_exim.bundle.jsonio import read_json, write_json
from mlflow_exim.entities import run as run_entity
from mlflow_exim.errors import EximError
from mlflow_exim.work import ProgressLines
from tests.seed import T0, make_run
from tests.servers import free_port
from tests.unit.samples import rehash

BIN = Path(sys.executable).parent


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

    verify = (cli.verify_command, "--src-uri", stack.source.uri, "--dst-uri", stack.target.uri,
              "--experiments", family["name"], "--models", "none")
    result = invoke(*verify)
    assert result.exit_code == 0, result.output  # renamed, but found by its source tags
    assert "result: identical" in result.output
    result = invoke(*verify, "--id-map", report_path)  # the report knows the new name too
    assert result.exit_code == 0, result.output


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
    doc["params"]["a/../b"] = "a key the server refuses (it resolves to another name)"
    write_json(run_json, doc)
    rehash(bundle)  # the bundle stays whole: the server is what refuses the key
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

    def interrupted_after_one(src, run_id, directory, run=None):
        calls.append(run_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_export(src, run_id, directory, run)

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
    assert result.exit_code == 2 and "set --export-deleted-runs" in result.output
    with pytest.raises(EximError) as raised:  # a script is told the parameter, not the flag
        mlflow_exim.export_run(family["children"][1], tmp_path / "a",
                               tracking_uri=stack.source.uri)
    assert "set `export_deleted_runs`" in str(raised.value) and "--" not in str(raised.value)
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
    as_json = invoke(cli.verify_command, *args, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output) == json.loads(
        invoke(cli.verify_command, *args, "--output", "json").output)


def test_every_command_is_installed_on_its_own_with_real_boolean_flags():
    scripts = {entry.name: entry.value for entry in distribution("mlflow-exim").entry_points
               if entry.group == "console_scripts"}
    assert scripts.pop("mlflow-exim") == "mlflow_exim.cli:main"
    for name, command in cli.main.commands.items():
        module, _, attribute = scripts.pop(name).partition(":")
        assert module == "mlflow_exim.cli" and getattr(cli, attribute) is command, name
        assert (BIN / name).exists(), name
    assert not scripts, f"console scripts that are not commands of the group: {scripts}"
    help_text = subprocess.run([str(BIN / "import-all"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--import-source-tags / --no-import-source-tags" in help_text
    grouped = subprocess.run([str(BIN / "mlflow-exim"), "export-all", "--help"],
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


# --- the command line itself: names, help, start-up, output ----------------------------------

CONFIG_DEFAULT = re.compile(r" \[default: the config's, else [^]]*\]")


def test_an_option_name_has_one_meaning_and_one_help_text():
    """Shared options come from one factory: the same help everywhere, at most followed by
    a detail of the command (or, in migrate, the config's default)."""
    helps: dict[str, dict[str, str]] = {}
    for command in cli.COMMANDS:
        for param in command.params:
            if isinstance(param, click.Option):
                helps.setdefault(param.opts[0], {})[command.name] = CONFIG_DEFAULT.sub(
                    "", param.help or "")
    shared = {flag: by_command for flag, by_command in helps.items() if len(by_command) > 1}
    assert {"--tracking-uri", "--src-uri", "--experiments", "--workers",
            "--import-source-tags", "-v"} <= set(shared)
    for flag, by_command in shared.items():
        texts = set(by_command.values())
        assert len(texts) == 1 or len(os.path.commonprefix(list(texts))) >= 40, (
            flag, by_command)


@pytest.mark.parametrize("command, required, old, new, dest, value", [
    (cli.import_model_command, [], ["--model", "m"], ["--model-name", "m"], "model", "m"),
    (cli.import_model_version_command, [], ["--model", "m"], ["--model-name", "m"], "model",
     "m"),
    (cli.copy_run_command, ["--src-uri", "a", "--dst-uri", "b", "--experiment-name", "e"],
     ["--run-id", "r"], ["--src-run-id", "r"], "run_id", "r"),
    (cli.copy_run_command, ["--src-uri", "a", "--dst-uri", "b", "--run-id", "r"],
     ["--experiment-name", "e"], ["--dst-experiment-name", "e"], "experiment_name", "e"),
    (cli.copy_model_version_command, ["--src-uri", "a", "--dst-uri", "b", "--src-model", "m",
                                      "--src-version", "1", "--dst-model", "n"],
     ["--copy-lineage-tags"], ["--import-source-tags"], "copy_lineage_tags", True),
])
def test_an_older_spelling_is_an_alias_of_the_consistent_one(command, required, old, new,
                                                             dest, value, tmp_path):
    required = required or ["--input-dir", str(tmp_path)]

    def parsed(args):
        return command.make_context(command.name, [*required, *args]).params

    assert parsed(old) == parsed(new)
    assert parsed(new)[dest] == value


def test_help_does_not_load_mlflow_and_the_package_loads_what_is_asked():
    probe = """
import sys
from mlflow_exim.cli import main
for args in (["--help"], ["export-all", "--help"], ["migrate", "--help"]):
    try:
        main(args)
    except SystemExit as exit:
        assert exit.code == 0, args
print("after help:", "mlflow" in sys.modules)
import mlflow_exim.migrate
import mlflow_exim
from mlflow_exim import export_all
print("functions:", callable(mlflow_exim.migrate), callable(mlflow_exim.verify),
      export_all.__module__)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    lines = done.stdout.splitlines()
    assert lines[-2] == "after help: False"
    assert lines[-1] == "functions: True True mlflow_exim.exporter"


def test_progress_lines_without_a_terminal_come_every_interval_and_at_the_end():
    now = [100.0]
    stream = io.StringIO()
    bar = ProgressLines(10, "import runs", interval=5, stream=stream, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 1.5
        bar.update()
    bar.close()
    assert stream.getvalue().splitlines() == [
        "import runs: 4/10 (40%) in 6.0 s, 0.7/s",
        "import runs: 8/10 (80%) in 12.0 s, 0.7/s",
        "import runs: 10/10 (100%) done in 15.0 s, 0.7/s",
    ]
    quiet = io.StringIO()
    ProgressLines(0, "export logged models", stream=quiet).close()
    assert quiet.getvalue() == ""  # nothing done, nothing said


def test_without_a_terminal_progress_shows_and_mlflow_stays_quiet_unless_verbose(workdir):
    """A nightly job's log (stderr a pipe): a progress line per phase, no MLflow INFO
    lines nor deprecation warnings; with -v, MLflow's INFO lines too."""
    src = f"sqlite:///{workdir / 'src.db'}"
    client = MlflowClient(src)
    experiment_id = client.create_experiment("nightly",
                                             artifact_location=(workdir / "art").as_uri())
    runs = [make_run(client, experiment_id, f"run-{i}", i) for i in range(3)]
    client.create_registered_model("nightly-model")
    version = client.create_model_version("nightly-model", f"runs:/{runs[0]}/model",
                                          run_id=runs[0])
    client.set_registered_model_alias("nightly-model", "champion", version.version)
    with pytest.warns(FutureWarning):  # what the import would print, if it did not silence it
        client.transition_model_version_stage("nightly-model", version.version, "Production")

    def run(*argv):
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}
        done = subprocess.run([str(BIN / argv[0]), *map(str, argv[1:])], cwd=workdir,
                              capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stderr

    exported = run("export-all", "--tracking-uri", src, "--output-dir", workdir / "bundle")
    assert "export runs: 3/3 (100%) done in" in exported
    quiet = run("import-all", "--tracking-uri", f"sqlite:///{workdir / 'quiet.db'}",
                "--input-dir", workdir / "bundle")
    assert "import runs: 3/3 (100%) done in" in quiet
    assert "INFO" not in quiet and "Creating initial MLflow database tables" not in quiet
    assert "Warning" not in quiet  # neither FutureWarning nor any other
    assert MlflowClient(f"sqlite:///{workdir / 'quiet.db'}").get_model_version(
        "nightly-model", version.version).current_stage == "Production"
    verbose = run("import-all", "-v", "--tracking-uri", f"sqlite:///{workdir / 'loud.db'}",
                  "--input-dir", workdir / "bundle")
    assert "INFO mlflow.store.db.utils: Creating initial MLflow database tables" in verbose
    assert "import runs: 3/3 (100%) done in" in verbose


def test_migrate_with_a_config_file_is_one_library_call_and_arguments_override_it(
        stack, family, tmp_path):
    config = tmp_path / "migrate.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"tracking_uri": stack.source.uri},
        "target": {"tracking_uri": f"http://127.0.0.1:{free_port()}"},  # replaced below
        "select": {"experiments": f"{family['name']}-nowhere", "models": "none"},
        "options": {"report": str(tmp_path / "configured.json"), "workers": 2},
    }))
    report = mlflow_exim.migrate(config=config, target=stack.target.uri,
                                 experiments=family["name"], dry_run=True)
    assert report.ok, report.summary()
    assert report.counts() == {"experiments": {"ok": 0, "skipped": 0, "planned": 1, "failed": 0},
                               "runs": {"ok": 0, "skipped": 0, "planned": 3, "failed": 0}}
    assert read_json(tmp_path / "configured.json")["target"] == stack.target.uri
    assert MlflowClient(stack.target.uri).get_experiment_by_name(family["name"]) is None

    result = invoke(cli.migrate_command, "--config", config, "--dst-uri", stack.target.uri,
                    "--experiments", family["name"], "--dry-run", "--report",
                    tmp_path / "flag.json")
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "flag.json")["counts"] == report.counts()
    result = invoke(cli.migrate_command, "--config", config, "--dst-uri", stack.target.uri)
    assert result.exit_code == 2  # the config's selection, when no flag replaces it
    assert f"'{family['name']}-nowhere' matches no experiment" in result.output


def test_import_all_takes_part_of_a_bundle(stack, family, unique, tmp_path):
    client = MlflowClient(stack.source.uri)
    other = f"{unique}-left-behind"
    make_run(client, client.create_experiment(other), "alone", 1)
    bundle = tmp_path / "bundle"
    assert invoke(cli.export_experiments_command, "--tracking-uri", stack.source.uri,
                  "--experiments", f"{family['name']},{other}",
                  "--output-dir", bundle).exit_code == 0
    result = invoke(cli.import_all_command, "--tracking-uri", stack.target.uri,
                    "--input-dir", bundle, "--experiments", family["name"], "--models", "none",
                    "--experiment-rename", f"{unique}-=part-{unique}-")
    assert result.exit_code == 0, result.output
    assert len(_runs(stack.target.uri, f"part-{family['name']}")) == 3
    assert MlflowClient(stack.target.uri).get_experiment_by_name(f"part-{other}") is None


def test_inspect_prints_the_bundle_contents_as_text_or_json_and_exits_2_on_a_bad_one(
        stack, family, tmp_path):
    bundle = tmp_path / "bundle"
    invoke(cli.export_experiment_command, "--tracking-uri", stack.source.uri,
           "--experiment", family["name"], "--output-dir", bundle)
    contents = mlflow_exim.inspect_bundle(bundle)
    result = invoke(cli.inspect_command, "--input-dir", bundle)
    assert result.exit_code == 0, result.output
    assert result.output == contents.text() + "\n"
    result = invoke(cli.inspect_command, "--input-dir", bundle, "--json")
    assert json.loads(result.output) == json.loads(json.dumps(contents.to_dict()))

    (bundle / "manifest.json").write_text("{not json")
    result = invoke(cli.inspect_command, "--input-dir", bundle)
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and "manifest.json" in line
