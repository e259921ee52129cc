"""Every command with embedded ``sqlite:///`` stores as source and target, as users call it.

One sqlite source is seeded once for the module: an experiment with a parent and a child
run, a registered model ``churn-clf`` whose v1 lies in the child's artifacts (MLflow 2
style) and whose v2 is a logged model (``models:/m-…``), in stage Production with alias
``champion``. Every test imports into new sqlite targets, with no MLFLOW_TRACKING_URI set
(the ``models:/m-…`` version too: see README, limits); only the seeding sets it, for
``mlflow.register_model``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import mlflow_exim
from mlflow_exim import cli
from tests.seed import MLMODEL_TEMPLATE, make_run

BIN = Path(sys.executable).parent
MODEL = "churn-clf"
EXPERIMENT = "emb-models"


def invoke(command, *args, env: dict | None = None):
    result = CliRunner().invoke(command, [str(a) for a in args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _tree(root: Path, files: dict[str, str]) -> str:
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    return str(root)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("embedded-source")
    uri = f"sqlite:///{home / 'src.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)  # the embedded store keeps its artifacts in ./mlruns
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # for mlflow.register_model (fluent)
        client = MlflowClient(uri, uri)
        experiment_id = client.create_experiment(EXPERIMENT, tags={"team": "risk"})
        parent = make_run(client, experiment_id, "parent", 100)
        child = make_run(client, experiment_id, "child", 200, parent=parent)
        client.log_artifacts(child, _tree(home / "scratch-run", {
            "model/MLmodel": MLMODEL_TEMPLATE.format(run_id=child)}), "")
        logged = client.create_logged_model(experiment_id, name="clf", source_run_id=child,
                                            params={"C": "1.0"}, model_type="classifier")
        client.log_model_artifacts(logged.model_id, _tree(home / "scratch-model", {
            "MLmodel": f"model_id: {logged.model_id}\nrun_id: {child}\nflavors: {{}}\n"}))
        client.finalize_logged_model(logged.model_id, "READY")
        client.create_registered_model(MODEL, tags={"team": "risk"}, description="churn")
        artifact_uri = client.get_run(child).info.artifact_uri
        client.create_model_version(MODEL, f"{artifact_uri}/model", run_id=child,
                                    description="MLflow 2 style")
        # As log_model(registered_model_name=…) registers: it tags the logged model with
        # mlflow.modelVersions, which an import into an embedded store does not write.
        mlflow.register_model(f"models:/{logged.model_id}", MODEL)
        client.update_model_version(MODEL, "2", description="logged model")
        client.transition_model_version_stage(MODEL, "2", "Production")
        client.set_registered_model_alias(MODEL, "champion", "2")
    assert "mlflow.modelVersions" in client.get_logged_model(logged.model_id).tags
    return {"home": home, "uri": uri, "experiment": experiment_id, "parent": parent,
            "child": child, "logged_model": logged.model_id}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """The directory of an empty sqlite store, made once: creating MLflow's tables takes
    seconds, copying them does not."""
    home = tmp_path_factory.mktemp("empty-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        MlflowClient(f"sqlite:///{home / 'empty.db'}").search_experiments()
    return home


@pytest.fixture
def target(empty_store, workdir) -> str:
    """A new sqlite target in the test's own directory: a copy of the empty store whose
    Default experiment keeps its artifacts in ./mlruns here, as a new store's would."""
    db = workdir / "dst.db"
    shutil.copyfile(empty_store / "empty.db", db)
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE experiments SET artifact_location = "
                           "replace(artifact_location, ?, ?)", (str(empty_store), str(workdir)))
    return f"sqlite:///{db}"


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _verified(src: str, dst: str, *args) -> dict:
    result = invoke(cli.verify_command, "--src-uri", src, "--dst-uri", dst, "--json", *args)
    card = json.loads(result.stdout)
    assert result.exit_code == 0 and card["ok"], card["differences"]
    return card["totals"]


def _versions(uri: str, name: str) -> dict[str, MlflowClient]:
    client = MlflowClient(uri, uri)
    return {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def test_export_and_import_run(source, target, workdir):
    _ok(invoke(cli.export_run_command, "--tracking-uri", source["uri"],
               "--run-id", source["child"], "--output-dir", workdir / "b"))
    _ok(invoke(cli.import_run_command, "--tracking-uri", target, "--input-dir", workdir / "b",
               "--experiment-name", "one-run"))
    client = MlflowClient(target)
    (run,) = client.search_runs([client.get_experiment_by_name("one-run").experiment_id])
    assert run.info.run_name == "child" and run.data.params == {"offset": "200"}


@pytest.mark.parametrize("export, export_args, import_, import_args", [
    (cli.export_experiment_command, ("--experiment", EXPERIMENT),
     cli.import_experiment_command, ()),
    (cli.export_experiments_command, ("--experiments", EXPERIMENT),
     cli.import_experiments_command, ()),
], ids=["experiment", "experiments"])
def test_export_and_import_experiments_then_verify(source, target, workdir, export,
                                                   export_args, import_, import_args):
    _ok(invoke(export, "--tracking-uri", source["uri"], *export_args,
               "--output-dir", workdir / "b"))
    _ok(invoke(import_, "--tracking-uri", target, "--input-dir", workdir / "b", *import_args))
    # Only the experiment was migrated: the model is not compared (nor reported missing).
    card = mlflow_exim.verify(source["uri"], target, experiments=EXPERIMENT)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 1, "runs": 2, "logged_models": 1}


def test_export_all_import_all_and_verify_both_ways(source, target, workdir):
    _ok(invoke(cli.export_all_command, "--tracking-uri", source["uri"],
               "--output-dir", workdir / "b"))
    _ok(invoke(cli.import_all_command, "--tracking-uri", target, "--input-dir", workdir / "b"))
    totals = {"experiments": 2, "runs": 2, "logged_models": 1, "registered_models": 1,
              "model_versions": 2}
    # The source's logged model carries mlflow.modelVersions, the embedded target's not.
    assert _verified(source["uri"], target) == totals
    result = invoke(cli.verify_command, "--input-dir", workdir / "b", "--dst-uri", target)
    assert result.exit_code == 0, result.stdout
    versions = _versions(target, MODEL)
    assert sorted(versions) == ["1", "2"] and versions["2"].current_stage == "Production"


def test_export_model_by_version_and_import_model(source, target, workdir):
    _ok(invoke(cli.export_model_command, "--tracking-uri", source["uri"], "--model", MODEL,
               "--versions", "1", "--output-dir", workdir / "b"))
    _ok(invoke(cli.import_model_command, "--tracking-uri", target, "--input-dir", workdir / "b",
               "--model", "renamed-clf"))
    (version,) = _versions(target, "renamed-clf").values()
    assert (str(version.version), version.description) == ("1", "MLflow 2 style")


def test_export_models_and_import_models(source, target, workdir):
    _ok(invoke(cli.export_models_command, "--tracking-uri", source["uri"], "--models", MODEL,
               "--output-dir", workdir / "b"))
    _ok(invoke(cli.import_models_command, "--tracking-uri", target, "--input-dir", workdir / "b"))
    assert sorted(_versions(target, MODEL)) == ["1", "2"]


def test_export_and_import_model_version(source, target, workdir):
    _ok(invoke(cli.export_model_version_command, "--tracking-uri", source["uri"],
               "--model", MODEL, "--version", "1", "--output-dir", workdir / "b"))
    _ok(invoke(cli.import_model_version_command, "--tracking-uri", target,
               "--input-dir", workdir / "b", "--model", "promoted"))
    (version,) = _versions(target, "promoted").values()
    assert version.description == "MLflow 2 style"


def test_copy_run_and_copy_model_version(source, target, workdir):
    _ok(invoke(cli.copy_run_command, "--src-uri", source["uri"], "--dst-uri", target,
               "--run-id", source["parent"], "--experiment-name", "copied"))
    assert MlflowClient(target).get_experiment_by_name("copied") is not None
    args = ("--src-uri", source["uri"], "--dst-uri", target, "--src-model", MODEL,
            "--src-version", "1", "--dst-model", "prod-clf", "--output", "json")
    first = invoke(cli.copy_model_version_command, *args)
    _ok(first)
    assert json.loads(first.stdout)["status"] == "created"
    again = invoke(cli.copy_model_version_command, *args)
    _ok(again)
    assert json.loads(again.stdout)["status"] == "already_present"


def test_migrate_then_verify(source, target, workdir):
    _ok(invoke(cli.migrate_command, "--src-uri", source["uri"], "--dst-uri", target))
    assert _verified(source["uri"], target)["model_versions"] == 2


# A store that is only read is never created ----------------------------------------------

def _refused(result, missing: Path) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: tracking store sqlite:///"), result.stderr
    assert f"{missing} does not exist" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not missing.exists()


def test_a_missing_source_database_is_an_error_and_is_not_created(source, target, workdir):
    missing = workdir / "nope.db"
    nope = f"sqlite:///{missing}"
    _refused(invoke(cli.export_all_command, "--tracking-uri", nope,
                    "--output-dir", workdir / "b"), missing)
    assert not (workdir / "b").exists()
    _refused(invoke(cli.verify_command, "--src-uri", nope, "--dst-uri", source["uri"]), missing)
    _refused(invoke(cli.verify_command, "--src-uri", source["uri"], "--dst-uri", nope), missing)
    _refused(invoke(cli.copy_run_command, "--src-uri", nope, "--dst-uri", target,
                    "--run-id", source["parent"], "--experiment-name", "x"), missing)
    _refused(invoke(cli.copy_model_version_command, "--src-uri", nope, "--dst-uri", target,
                    "--src-model", MODEL, "--src-version", "1", "--dst-model", "x"), missing)
    _refused(invoke(cli.migrate_command, "--src-uri", nope, "--dst-uri", target), missing)
    experiments = MlflowClient(target).search_experiments()
    assert [e.name for e in experiments] == ["Default"]  # nothing reached the target


def test_a_dry_run_into_a_missing_store_creates_nothing_and_plans_everything(source, workdir):
    _ok(invoke(cli.export_all_command, "--tracking-uri", source["uri"],
               "--output-dir", workdir / "b"))
    missing = workdir / "new.db"
    # A real process, so that stderr is what a user sees (logging included).
    result = subprocess.run([str(BIN / "import-all"), "--tracking-uri", f"sqlite:///{missing}",
                             "--input-dir", str(workdir / "b"), "--dry-run",
                             "--report", str(workdir / "r.json")],
                            cwd=workdir, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not missing.exists() and not (workdir / "mlruns").exists()
    assert f"{missing} does not exist: the import would create a new store" in result.stderr
    report = json.loads((workdir / "r.json").read_text())
    assert report["new_store"] == str(missing)
    assert {o["action"] for o in report["objects"]} == {"create"}
    assert report["counts"] == {
        kind: {"ok": 0, "skipped": 0, "planned": n, "failed": 0}
        for kind, n in (("experiments", 2), ("runs", 2), ("logged_models", 1),
                        ("registered_models", 1), ("model_versions", 2))}

    migrated = invoke(cli.migrate_command, "--src-uri", source["uri"], "--dst-uri",
                      f"sqlite:///{missing}", "--dry-run")
    _ok(migrated)
    assert not missing.exists()
