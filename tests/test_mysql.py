"""A tracking server on MySQL's dialect (a MariaDB server the tests start): the whole of
a rich source arrives on one with a utf8mb4 database; and on one whose database compares
names without regard to case (MySQL's and MariaDB's default collations), which, asked for
experiment ``case``, answers with ``Case``, the import writes no two source objects into
one and no key over another, and verify does not count one as the other."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

import mlflow_exim
from tests.databases import DatabaseServer
from tests.seed import seed_rich_source
from tests.test_database import cli

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"experiments": ("Fold", "fold"), "registered_models": ("Model", "model"),
         "prompts": ("Greet", "greet")}
RENAMED = ("experiments", "registered_models")  # prompts have no rename option


def test_a_rich_source_arrives_whole_on_a_mysql_target(mariadb, tmp_path):
    """Runs of every shape (unicode keys and values, a 6,000-character param, NaN and
    ±inf, nested runs, deleted ones), logged models, registered models with versions and
    aliases, a prompt and traces: verify finds all of it identical."""
    servers = []
    try:
        src = DatabaseServer("rich-source", tmp_path, f"sqlite:///{tmp_path / 'source.db'}")
        servers.append(src)
        dst = DatabaseServer("rich-target", tmp_path, mariadb.create_database(
            "rich", "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
        servers.append(dst)
        seed_rich_source(src.uri, "rich")
        for module, name in (("tests.seed_registry", "reg"), ("tests.seed_traces", "trc")):
            subprocess.run([sys.executable, "-m", module, src.uri, name], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, check=True,
                           env={**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"})
        bundle = tmp_path / "bundle"
        exported = mlflow_exim.export_all(bundle, tracking_uri=src.uri, export_deleted_runs=True)
        assert exported.ok, exported.summary()
        imported = mlflow_exim.import_all(bundle, tracking_uri=dst.uri)
        assert imported.ok, imported.summary()
        card = mlflow_exim.verify(src.uri, dst.uri)
        assert card.ok, card.text()
        assert card.identical == card.totals
        assert {kind for kind, count in card.totals.items() if count} >= {
            "experiments", "runs", "logged_models", "registered_models", "model_versions",
            "prompts", "traces"}
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def sides(mariadb, tmp_path_factory):
    """A sqlite source holding two experiments, two models and two prompts whose names
    differ only by case, each with a run or a version of its own (the models' runs in a
    third experiment), and its bundle; a target on a fresh
    MariaDB database of the server's defaults (latin1, case-insensitive)."""
    work = tmp_path_factory.mktemp("collation")
    servers = []
    try:
        src = DatabaseServer("collation-source", work, f"sqlite:///{work / 'source.db'}")
        servers.append(src)
        dst = DatabaseServer("collation-target", work, mariadb.create_database("folding"))
        servers.append(dst)
        client = MlflowClient(src.uri)
        for name in NAMES["experiments"]:
            run = client.create_run(client.create_experiment(name), run_name=f"run of {name}")
            client.set_terminated(run.info.run_id)
        run = client.create_run(client.create_experiment("versions"))  # no name folds
        client.set_terminated(run.info.run_id)
        for name in NAMES["registered_models"]:
            client.create_registered_model(name, description=f"the {name}")
            client.create_model_version(name, f"runs:/{run.info.run_id}/model",
                                        run.info.run_id, description=f"version of {name}")
        for name in NAMES["prompts"]:
            client.register_prompt(name, f"Hello from {name}, {{{{person}}}}")
        bundle = work / "bundle"
        done = cli("export-all", "--tracking-uri", src.uri, "--output-dir", bundle)
        assert done.returncode == 0, done.stderr
        yield {"src": src, "dst": dst, "bundle": bundle, "work": work,
               "keys": _keys_bundle(client, src.uri, work)}
    finally:
        for server in servers:
            server.stop()


def _keys_bundle(client: MlflowClient, uri: str, work) -> dict:
    """Objects whose keys differ only by case (an experiment's tags; a run's tags, a
    run's params; a version's tags) beside ones that do not, exported on their own."""
    clashing = client.create_experiment("clash-tags", tags={"Owner": "a", "owner": "b"})
    client.create_run(clashing, run_name="in clash-tags")
    runs = client.create_experiment("clash-runs")
    ids = {}
    for name, data in (("tags", {"tags": {"Stage": "1", "stage": "2"}}),
                       ("params", {"params": {"LR": "1", "lr": "2"}}), ("plain", {})):
        run = client.create_run(runs, run_name=name, tags=data.get("tags"))
        for key, value in data.get("params", {}).items():
            client.log_param(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id
    client.create_registered_model("Keyed")
    client.create_model_version("Keyed", f"runs:/{ids['plain']}/model", ids["plain"],
                                tags={"Env": "dev", "env": "prod"})
    bundle = work / "keys-bundle"
    done = cli("export-all", "--tracking-uri", uri, "--output-dir", bundle,
               "--experiments", "clash-tags,clash-runs", "--models", "Keyed")
    assert done.returncode == 0, done.stderr
    return {"bundle": bundle, "runs": ids}


def test_an_object_whose_keys_the_target_takes_for_one_is_refused_before_any_is_written(
        sides):
    dst, work, keys = sides["dst"], sides["work"], sides["keys"]
    report = work / "keys-report.json"
    done = cli("import-all", "--tracking-uri", dst.uri, "--input-dir", keys["bundle"],
               "--report", report)
    assert done.returncode == 1, done.stdout + done.stderr
    outcomes = {(o["kind"], o["name"] if o["kind"] == "experiments" else o["source_id"]): o
                for o in json.loads(report.read_text())["objects"]}
    clash = ("are one key to the target's database, which compares them without regard to "
             "case or trailing spaces")
    runs = keys["runs"]
    expected = {("experiments", "clash-tags"): "its tag keys 'Owner' and 'owner' ",
                ("runs", runs["tags"]): "its tag keys 'Stage' and 'stage' ",
                ("runs", runs["params"]): "its param keys 'LR' and 'lr' ",
                ("model_versions", "Keyed/1"): "its tag keys 'Env' and 'env' "}
    for key, words in expected.items():
        assert outcomes[key]["status"] == "failed" and outcomes[key]["reason"].startswith(
            words + clash), (key, outcomes[key])
    assert {key for key, o in outcomes.items() if o["status"] == "failed"} == {
        *expected, *[k for k in outcomes if k[0] == "runs" and k[1] not in runs.values()]}
    for key in (("experiments", "clash-runs"), ("runs", runs["plain"]),
                ("registered_models", "Keyed")):
        assert outcomes[key]["status"] == "ok", outcomes[key]
    target = MlflowClient(dst.uri)
    assert target.get_experiment_by_name("clash-tags") is None
    experiment = target.get_experiment_by_name("clash-runs").experiment_id
    assert [r.info.run_name for r in target.search_runs([experiment])] == ["plain"]
    assert target.search_model_versions("name = 'Keyed'") == []


def test_names_that_differ_by_case_are_not_merged_and_import_under_a_rename(sides):
    src, dst, work = sides["src"], sides["dst"], sides["work"]
    report = work / "report.json"
    done = cli("import-all", "--tracking-uri", dst.uri, "--input-dir", sides["bundle"],
               "--report", report)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = {o["kind"]: o for o in json.loads(report.read_text())["objects"]
              if o["status"] == "failed" and o["kind"] in NAMES}
    assert set(failed) == set(NAMES)
    refused = {}  # kind -> the source name the target took for the other one's
    for kind, outcome in failed.items():
        what = kind[:-1].replace("_", " ")
        words = re.search(rf"took {what} name '(\w+)' for its {what} '(\w+)' .* not merged",
                          outcome["reason"])
        assert words is not None, outcome["reason"]
        assert sorted(words.groups()) == sorted(NAMES[kind])
        refused[kind] = words[1]

    # the target holds each kept object as it was at the source, nothing of the other
    target = MlflowClient(dst.uri)
    kept = {kind: next(n for n in names if n != refused[kind]) for kind, names in NAMES.items()}
    experiment = target.get_experiment_by_name(kept["experiments"])
    assert experiment.name == kept["experiments"]
    assert [r.info.run_name for r in target.search_runs([experiment.experiment_id])] == [
        f"run of {kept['experiments']}"]
    model = target.get_registered_model(kept["registered_models"])
    assert model.name == kept["registered_models"]
    assert model.description == f"the {kept['registered_models']}"
    assert [v.description for v in target.search_model_versions(
        f"name = '{kept['registered_models']}'")] == [f"version of {kept['registered_models']}"]
    prompt = target.load_prompt(f"prompts:/{kept['prompts']}/1")
    assert prompt.template == f"Hello from {kept['prompts']}, {{{{person}}}}"

    # verify is not taken in: the refused ones are missing on the target
    check = cli("verify", "--src-uri", src.uri, "--dst-uri", dst.uri)
    assert check.returncode == 1
    for kind, name in refused.items():
        assert f"{kind[:-1].replace('_', ' ')} {name!r}: missing on the target" in check.stdout

    # under another name, each arrives beside the other, and verify finds all of it
    rename = {kind: f"{refused[kind]}={refused[kind]}-2" for kind in RENAMED}
    done = cli("import-all", "--tracking-uri", dst.uri, "--input-dir", sides["bundle"],
               "--experiment-rename", rename["experiments"],
               "--model-rename", rename["registered_models"], "--report", report)
    assert done.returncode == 1  # the prompt is refused again
    assert [(o["kind"], o["source_id"]) for o in json.loads(report.read_text())["objects"]
            if o["status"] == "failed"] == [("prompts", refused["prompts"])]
    moved = target.get_experiment_by_name(f"{refused['experiments']}-2")
    assert [r.info.run_name for r in target.search_runs([moved.experiment_id])] == [
        f"run of {refused['experiments']}"]
    model = refused["registered_models"]
    assert target.get_registered_model(f"{model}-2").description == f"the {model}"
    assert target.get_experiment_by_name(kept["experiments"]).name == kept["experiments"]
