"""Registered models, model versions and MLflow 3 logged models, between real servers.

``tests/seed_registry.py`` seeds the shared source once for this module, in a subprocess;
``migrated`` moves every ``<prefix>-*`` registered model to the shared target with
``export_models`` → ``import_models``. The other tests import under names of their own
(``unique``), so nothing here collides with the module's migration or with other modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow.artifacts
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlflow_exim
from mlflow_exim import cli
from mlflow_exim.report import Report
from tests.conftest import BUCKET

ROOT = Path(__file__).resolve().parent.parent
S3_ROOT = f"s3://{BUCKET}/source-registry"
# MLmodel keys that name the model's own ids and location; a migration may rewrite them.
MLMODEL_ID_KEYS = {"model_id", "model_uuid", "run_id", "artifact_path"}


def _seed_process(*args: str) -> dict:
    """Run ``python -m tests.seed_registry ARGS`` and return the JSON on its last line."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.seed_registry", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=300,
        env={**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def predictions(uri: str, *model_uris: str) -> dict[str, list]:
    """``mlflow.pyfunc.load_model(uri).predict`` on the seed's rows, in a subprocess so
    that this process's global tracking and registry URIs stay unset."""
    return _seed_process("predict", uri, *model_uris)


@dataclass
class Migrated:
    seed: dict
    exported: Report
    imported: Report

    @property
    def prefix(self) -> str:
        return self.seed["prefix"]

    def name(self, key: str) -> str:
        return self.seed["models"][key]

    def run(self, key: str) -> str:
        """The target id of the seed's run ``key``."""
        return self.imported.extra["id_map"]["runs"][self.seed["runs"][key]]

    def logged_model(self, key: str) -> str:
        """The target id of the seed's logged model ``key``."""
        return self.imported.extra["id_map"]["logged_models"][self.seed["logged_models"][key]]


@pytest.fixture(scope="module")
def seed(stack) -> dict:
    prefix = "reg" + uuid.uuid4().hex[:6]
    return _seed_process(stack.source.uri, prefix, "--s3-artifact-root", S3_ROOT)


@pytest.fixture(scope="module")
def migrated(stack, seed, tmp_path_factory) -> Migrated:
    bundle = tmp_path_factory.mktemp("registry") / "bundle"
    exported = mlflow_exim.export_models(f"{seed['prefix']}-*", bundle,
                                         tracking_uri=stack.source.uri)
    imported = mlflow_exim.import_models(bundle, tracking_uri=stack.target.uri)
    return Migrated(seed, exported, imported)


@pytest.fixture(scope="module")
def source_predictions(stack, seed) -> dict[str, list]:
    models = seed["models"]
    return predictions(stack.source.uri, *(f"models:/{models['clf']}/{v}" for v in "124"),
                       f"models:/{models['s3']}/1")


def invoke(*args) -> object:
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _client(uri: str) -> MlflowClient:
    return MlflowClient(uri, uri)


def _version_numbers(client: MlflowClient, name: str) -> list[str]:
    found = client.search_model_versions(f"name = '{name}'")
    return sorted((v.version for v in found), key=int)


def _outcomes(report: Report, kind: str) -> dict[str, object]:
    return {o.source_id: o for o in report.outcomes if o.kind == kind}


def _user_tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items()
            if k != "mlflow.modelVersions" and not k.startswith("mlflow_exim.")}


def _download(uri: str, artifact_location: str, dst: Path) -> dict[str, bytes]:
    """The files of a logged model, by path relative to its artifact root."""
    dst.mkdir(parents=True)
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_location,
                                                    tracking_uri=uri, dst_path=str(dst)))
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def _assert_same_model_files(source: dict[str, bytes], target: dict[str, bytes]) -> None:
    assert sorted(source) == sorted(target)
    assert "MLmodel" in source and "model.skops" in source
    for relative in source:
        if relative != "MLmodel":
            assert source[relative] == target[relative], relative
    src_mlmodel, dst_mlmodel = (yaml.safe_load(side["MLmodel"]) for side in (source, target))
    assert ({k: v for k, v in src_mlmodel.items() if k not in MLMODEL_ID_KEYS}
            == {k: v for k, v in dst_mlmodel.items() if k not in MLMODEL_ID_KEYS})


# --- export_models → import_models of every <prefix>-* registered model ---------------------


def test_glob_selects_the_registered_models_and_never_the_prompt(migrated):
    models = migrated.seed["models"]
    exported = _outcomes(migrated.exported, "registered_models")
    assert set(exported) == {models[k] for k in ("clf", "external", "broken", "s3")}
    assert not any(models["prompt"] in (o.source_id, o.name)
                   for o in migrated.exported.outcomes + migrated.imported.outcomes)
    assert {k for k in _outcomes(migrated.exported, "model_versions")
            if k.startswith(models["clf"] + "/")} == {f"{models['clf']}/{v}" for v in "124"}
    imported = _outcomes(migrated.imported, "registered_models")
    for key in ("clf", "external", "s3"):
        assert imported[models[key]].status == "ok", imported[models[key]]


def test_prompt_is_not_migrated_as_a_registered_model(stack, migrated):
    prompt = migrated.name("prompt")
    target = _client(stack.target.uri)
    assert target.search_registered_models(f"name = '{prompt}'") == []
    # ...whereas the source really has it, hidden from a plain search in the same way.
    source = _client(stack.source.uri)
    assert source.search_registered_models(f"name = '{prompt}'") == []
    assert source.get_prompt(prompt) is not None


def test_version_whose_run_is_deleted_fails_alone_and_the_next_arrives(stack, migrated):
    broken, deleted_run = migrated.name("broken"), migrated.seed["runs"]["broken_v1"]
    failures = migrated.exported.failures + migrated.imported.failures
    assert not (migrated.exported.ok and migrated.imported.ok)
    failed = [o for o in failures if o.kind == "model_versions"]
    assert failed and {o.source_id for o in failed} == {f"{broken}/1"}
    assert "deleted" in failed[0].reason.lower(), failed[0].reason
    # Nothing but the broken version (and at most its deleted run and model) failed.
    assert {o.source_id for o in failures} <= {f"{broken}/1", deleted_run, broken}
    target = _client(stack.target.uri)
    v2 = target.get_model_version(broken, "2")
    assert (v2.description, v2.tags, v2.status) == ("fine", {"ok": "yes"}, "READY")
    assert v2.run_id == migrated.run("broken_v2")
    with pytest.raises(MlflowException):
        target.get_model_version(broken, "1")


def test_registered_model_description_tags_and_aliases_are_kept(stack, migrated):
    clf = migrated.name("clf")
    model = _client(stack.target.uri).get_registered_model(clf)
    assert model.description == "The classifier \u2713"
    assert model.tags == {"team": "risk", "empty": ""}
    assert model.aliases == {"champion": "4", "challenger": "2"}
    external = _client(stack.target.uri).get_registered_model(migrated.name("external"))
    assert external.description == "a model built elsewhere"


def test_version_numbers_are_kept_and_the_deleted_one_stays_a_gap(stack, migrated):
    clf = migrated.name("clf")
    target = _client(stack.target.uri)
    assert _version_numbers(target, clf) == ["1", "2", "4"]
    with pytest.raises(MlflowException, match="not found"):
        target.get_model_version(clf, "3")
    assert [o.status for k, o in _outcomes(migrated.imported, "model_versions").items()
            if k.startswith(clf + "/")] == ["ok"] * 3


def test_version_description_tags_stage_status_and_run_are_kept(stack, migrated):
    clf = migrated.name("clf")
    source, target = _client(stack.source.uri), _client(stack.target.uri)
    expected_stage = {"1": "Archived", "2": "Staging", "4": "Production"}
    for number, run_key in (("1", "v1"), ("2", "v2"), ("4", "v4")):
        src, dst = source.get_model_version(clf, number), target.get_model_version(clf, number)
        assert dst.description == src.description, number
        assert dst.tags == src.tags and dst.tags["quality"], number
        assert dst.current_stage == expected_stage[number]
        assert dst.status == "READY"
        assert dst.run_id == migrated.run(run_key) != src.run_id
    assert target.get_model_version(clf, "4").aliases == ["champion"]


def test_version_sources_point_to_the_migrated_logged_models_and_runs(stack, migrated):
    clf = migrated.name("clf")
    target = _client(stack.target.uri)
    for number, key in (("2", "v2"), ("4", "v4")):
        assert target.get_model_version(clf, number).source == (
            f"models:/{migrated.logged_model(key)}")
    v1 = target.get_model_version(clf, "1")
    run = target.get_run(migrated.run("v1"))
    assert v1.source == f"{run.info.artifact_uri}/model"
    assert migrated.seed["runs"]["v1"] not in v1.source
    assert [a.path for a in target.list_artifacts(run.info.run_id, "model")] == [
        a.path for a in _client(stack.source.uri).list_artifacts(migrated.seed["runs"]["v1"],
                                                                  "model")]
    external = target.get_model_version(migrated.name("external"), "1")
    assert external.source == f"models:/{migrated.logged_model('external')}"
    assert not external.run_id


def test_migrated_versions_load_and_predict_like_the_source(stack, migrated,
                                                            source_predictions):
    clf, s3 = migrated.name("clf"), migrated.name("s3")
    target = predictions(stack.target.uri, *(f"models:/{clf}/{v}" for v in "124"),
                         f"models:/{s3}/1")
    assert target == source_predictions
    per_version = [json.dumps(p) for p in source_predictions.values()]
    assert len(set(per_version)) == len(per_version)  # so a swapped version would show
    assert len(target[f"models:/{clf}/4"]) == 20


def test_logged_model_fields_are_kept(stack, migrated):
    source, target = _client(stack.source.uri), _client(stack.target.uri)
    experiment = target.get_experiment_by_name(f"{migrated.prefix}-models")
    for key in ("v2", "v4"):
        src = source.get_logged_model(migrated.seed["logged_models"][key])
        dst = target.get_logged_model(migrated.logged_model(key))
        assert dst.model_id != src.model_id
        assert (dst.name, dst.model_type) == ("model", "classifier")
        assert dst.params == src.params and dst.params["label"] == key
        assert _user_tags(dst.tags) == _user_tags(src.tags)
        assert dst.tags["trained_by"] == "seed" and "mlflow.source.name" in dst.tags
        assert str(dst.status) == str(src.status) == "READY"
        assert dst.source_run_id == migrated.run(key)
        assert dst.experiment_id == experiment.experiment_id
        # The server rebuilds this tag from the target's registrations: exactly the one
        # migrated version (a placeholder for a gap must not be registered from this model).
        registrations = json.loads(dst.tags["mlflow.modelVersions"])
        assert {(r["name"], str(r["version"])) for r in registrations} == {
            (migrated.name("clf"), key.removeprefix("v"))}


def test_logged_model_metrics_keep_dataset_links_and_point_to_migrated_runs(stack, migrated):
    source, target = _client(stack.source.uri), _client(stack.target.uri)

    def points(model):
        return sorted((m.key, m.step, m.timestamp, m.value, m.dataset_name, m.dataset_digest)
                      for m in model.metrics)

    for key in ("v2", "v4"):
        src = source.get_logged_model(migrated.seed["logged_models"][key])
        dst = target.get_logged_model(migrated.logged_model(key))
        assert points(dst) == points(src)
        assert ("acc", 1, 1_700_000_000_020, 0.95, "eval", "d1") in points(dst)
        assert {m.run_id for m in dst.metrics} == {migrated.run(key)}
        assert {m.model_id for m in dst.metrics} == {dst.model_id}
        found = target.search_logged_models(
            [dst.experiment_id], filter_string="metrics.acc > 0.9",
            datasets=[{"dataset_name": "eval", "dataset_digest": "d1"}])
        assert dst.model_id in {m.model_id for m in found}


def test_logged_model_artifacts_arrive(stack, migrated, tmp_path):
    source, target = _client(stack.source.uri), _client(stack.target.uri)
    src = source.get_logged_model(migrated.seed["logged_models"]["v4"])
    dst = target.get_logged_model(migrated.logged_model("v4"))
    assert dst.artifact_location != src.artifact_location
    _assert_same_model_files(_download(stack.source.uri, src.artifact_location, tmp_path / "s"),
                             _download(stack.target.uri, dst.artifact_location, tmp_path / "d"))


def test_run_model_outputs_and_inputs_point_to_the_migrated_models(stack, migrated):
    target = _client(stack.target.uri)
    v4_run = target.get_run(migrated.run("v4"))
    assert [(o.model_id, o.step) for o in v4_run.outputs.model_outputs] == [
        (migrated.logged_model("v4"), 0)]
    assert [i.model_id for i in v4_run.inputs.model_inputs] == [migrated.logged_model("v2")]
    v2_run = target.get_run(migrated.run("v2"))
    assert [o.model_id for o in v2_run.outputs.model_outputs] == [migrated.logged_model("v2")]
    assert v2_run.inputs.model_inputs == []


def test_external_model_without_run_or_artifacts(stack, migrated):
    target = _client(stack.target.uri)
    dst = target.get_logged_model(migrated.logged_model("external"))
    assert dst.model_id != migrated.seed["logged_models"]["external"]
    assert (dst.name, dst.model_type, str(dst.status)) == ("external", "agent", "READY")
    assert not dst.source_run_id
    assert dst.params == {"endpoint": "https://example.com/agent", "temperature": "0.2"}
    assert _user_tags(dst.tags) == {"provider": "elsewhere", "kind": "external"}
    assert dst.metrics == []
    assert target.list_logged_model_artifacts(dst.model_id) == []
    experiment = target.get_experiment_by_name(f"{migrated.prefix}-models")
    assert dst.experiment_id == experiment.experiment_id


def test_logged_model_in_an_s3_artifact_root_experiment(stack, migrated, tmp_path):
    source, target = _client(stack.source.uri), _client(stack.target.uri)
    src = source.get_logged_model(migrated.seed["logged_models"]["s3"])
    assert src.artifact_location.startswith(f"{S3_ROOT}/{migrated.prefix}/")
    assert stack.s3_objects(f"source-registry/{migrated.prefix}/")  # really written to S3
    dst = target.get_logged_model(migrated.logged_model("s3"))
    assert dst.experiment_id == target.get_experiment_by_name(
        f"{migrated.prefix}-models-s3").experiment_id
    assert dst.source_run_id == migrated.run("s3")
    _assert_same_model_files(_download(stack.source.uri, src.artifact_location, tmp_path / "s"),
                             _download(stack.target.uri, dst.artifact_location, tmp_path / "d"))
    version = target.get_model_version(migrated.name("s3"), "1")
    assert version.source == f"models:/{dst.model_id}"


def test_id_map_names_versions_by_name_and_number(migrated):
    clf = migrated.name("clf")
    versions = migrated.imported.extra["id_map"]["model_versions"]
    assert {k: v for k, v in versions.items() if k.startswith(clf + "/")} == {
        f"{clf}/{n}": f"{clf}/{n}" for n in "124"}
    assert set(migrated.imported.extra["id_map"]["logged_models"]) == set(
        migrated.seed["logged_models"].values())


def test_verify_reports_the_migrated_model_identical(stack, migrated):
    card = mlflow_exim.verify(stack.source.uri, stack.target.uri,
                              experiments=f"{migrated.prefix}-models",
                              models=migrated.name("clf"))
    assert card.ok, card.text()
    assert card.totals["registered_models"] == 1
    assert card.totals["model_versions"] == 3
    assert card.totals["runs"] == 3
    assert card.identical == card.totals


def test_verify_covers_the_run_less_and_s3_models(stack, migrated):
    prefix = migrated.prefix
    card = mlflow_exim.verify(
        stack.source.uri, stack.target.uri,
        experiments=f"{prefix}-models,{prefix}-models-s3",
        models=",".join(migrated.name(k) for k in ("clf", "external", "s3")))
    assert card.ok, card.text()
    assert card.totals["registered_models"] == 3
    assert card.totals["model_versions"] == 5
    assert card.totals["logged_models"] == 4
    assert card.identical == card.totals


# --- one model, one version, and copies; each under names of its own -----------------------


def test_import_model_under_a_new_name_into_a_new_experiment(stack, seed, unique, tmp_path):
    clf = seed["models"]["clf"]
    exported = mlflow_exim.export_model(clf, tmp_path / "b", tracking_uri=stack.source.uri)
    assert exported.ok, exported.summary()
    renamed, experiment_name = f"{unique}-renamed", f"{unique}-renamed-exp"
    report = mlflow_exim.import_model(tmp_path / "b", model=renamed,
                                      experiment_name=experiment_name,
                                      tracking_uri=stack.target.uri)
    assert report.ok, report.summary()
    target = _client(stack.target.uri)
    model = target.get_registered_model(renamed)
    assert model.description == "The classifier \u2713"
    assert model.aliases == {"champion": "4", "challenger": "2"}
    assert not any(k.startswith("mlflow_exim.") for k in model.tags)
    assert _version_numbers(target, renamed) == ["1", "2", "4"]
    experiment_id = target.get_experiment_by_name(experiment_name).experiment_id
    for number in ("1", "2", "4"):
        version = target.get_model_version(renamed, number)
        assert target.get_run(version.run_id).info.experiment_id == experiment_id
        assert not any(k.startswith("mlflow_exim.") for k in version.tags)
    v4 = target.get_model_version(renamed, "4")
    assert v4.current_stage == "Production"
    logged = target.get_logged_model(v4.source.removeprefix("models:/"))
    assert logged.experiment_id == experiment_id and logged.source_run_id == v4.run_id
    assert set(report.extra["id_map"]["model_versions"].values()) == {
        f"{renamed}/{n}" for n in "124"}


def test_cli_import_model_with_stage_to_alias_and_source_tags(stack, seed, unique, tmp_path):
    clf = seed["models"]["clf"]
    bundle, report_path = tmp_path / "bundle", tmp_path / "report.json"
    result = invoke("export-model", "--tracking-uri", stack.source.uri, "--model", clf,
                    "--output-dir", bundle)
    assert result.exit_code == 0, result.output
    name = f"{unique}-cli"
    result = invoke("import-model", "--tracking-uri", stack.target.uri, "--input-dir", bundle,
                    "--model", name, "--experiment-name", f"{unique}-cli-exp",
                    "--stage-to-alias", "Production=champion2,Staging=challenger2",
                    "--import-source-tags", "--report", report_path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["counts"]["model_versions"]["ok"] == 3
    target = _client(stack.target.uri)
    model = target.get_registered_model(name)
    assert model.aliases == {"champion": "4", "challenger": "2", "champion2": "4",
                             "challenger2": "2"}
    assert model.tags["mlflow_exim.field.name"] == clf
    assert model.tags["team"] == "risk"
    source_v4 = _client(stack.source.uri).get_model_version(clf, "4")
    v4 = target.get_model_version(name, "4")
    assert v4.tags["mlflow_exim.field.name"] == clf
    assert v4.tags["mlflow_exim.field.version"] == "4"
    assert v4.tags["mlflow_exim.field.run_id"] == source_v4.run_id
    assert v4.tags["mlflow_exim.field.source"] == source_v4.source
    assert v4.tags["quality"] == "good"
    assert v4.current_stage == "Production"


def test_export_model_selects_versions_by_number_and_by_stage(stack, seed, tmp_path):
    clf = seed["models"]["clf"]
    result = invoke("export-model", "--tracking-uri", stack.source.uri, "--model", clf,
                    "--versions", "1,4", "--output-dir", tmp_path / "numbers")
    assert result.exit_code == 0, result.output
    by_stage = mlflow_exim.export_model(clf, tmp_path / "stages", stages=["Staging"],
                                        tracking_uri=stack.source.uri)
    assert by_stage.ok, by_stage.summary()
    assert set(_outcomes(by_stage, "model_versions")) == {f"{clf}/2"}
    by_number = mlflow_exim.export_model(clf, tmp_path / "numbers-lib", versions=["1", "4"],
                                         tracking_uri=stack.source.uri)
    assert set(_outcomes(by_number, "model_versions")) == {f"{clf}/1", f"{clf}/4"}
    assert set(_outcomes(by_number, "runs")) == {seed["runs"]["v1"], seed["runs"]["v4"]}


def test_exported_model_version_is_appended_as_the_next_version(stack, seed, unique, tmp_path):
    clf = seed["models"]["clf"]
    exported = mlflow_exim.export_model_version(clf, "4", tmp_path / "v4",
                                                tracking_uri=stack.source.uri)
    assert exported.ok, exported.summary()
    target = _client(stack.target.uri)
    name = f"{unique}-appended"
    target.create_registered_model(name)
    target.create_model_version(name, source=f"s3://{BUCKET}/placeholder/model")
    report = mlflow_exim.import_model_version(tmp_path / "v4", name,
                                              experiment_name=f"{unique}-appended-exp",
                                              tracking_uri=stack.target.uri)
    assert report.ok, report.summary()
    assert report.extra["id_map"]["model_versions"] == {f"{clf}/4": f"{name}/2"}
    version = target.get_model_version(name, "2")
    assert version.description == "fourth, the best \u2713"
    assert version.tags["quality"] == "good"
    logged = target.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.params["label"] == "v4" and logged.source_run_id == version.run_id
    run = target.get_run(version.run_id)
    assert run.info.experiment_id == target.get_experiment_by_name(
        f"{unique}-appended-exp").experiment_id
    # v2's logged model (the run's model input) was not migrated: no link to a source id.
    source_input = seed["logged_models"]["v2"]
    assert source_input not in [i.model_id for i in run.inputs.model_inputs]
    assert any(source_input in w for o in report.outcomes for w in o.warnings)


def test_copy_model_version_deep_copies_once(stack, seed, unique, source_predictions):
    clf = seed["models"]["clf"]
    name, experiment_name = f"{unique}-copied", f"{unique}-copy-exp"

    def copy():
        return mlflow_exim.copy_model_version(
            stack.source.uri, stack.target.uri, clf, "4", name,
            dst_experiment_name=experiment_name, copy_stages_and_aliases=True,
            aliases=("blessed",))

    first = copy()
    assert first.ok, first.summary()
    copied = first.extra["model_version"]
    assert (copied["name"], copied["version"], copied["status"]) == (name, "1", "created")
    target = _client(stack.target.uri)
    version = target.get_model_version(name, "1")
    assert version.source == copied["source"] != f"models:/{seed['logged_models']['v4']}"
    assert version.run_id == copied["run_id"]
    assert version.current_stage == "Production"
    assert version.description == "fourth, the best \u2713"
    assert target.get_registered_model(name).aliases == {"champion": "1", "blessed": "1"}
    experiment_id = target.get_experiment_by_name(experiment_name).experiment_id
    assert target.get_run(copied["run_id"]).info.experiment_id == experiment_id
    logged = target.get_logged_model(copied["source"].removeprefix("models:/"))
    assert logged.experiment_id == experiment_id and logged.params["label"] == "v4"
    assert predictions(stack.target.uri, f"models:/{name}/1")[f"models:/{name}/1"] == (
        source_predictions[f"models:/{clf}/4"])

    second = copy()
    assert second.ok, second.summary()
    again = second.extra["model_version"]
    assert again["status"] == "already_present"
    assert (again["name"], again["version"], again["source"]) == (name, "1", copied["source"])
    (outcome,) = _outcomes(second, "model_versions").values()
    assert outcome.status == "skipped"
    assert _version_numbers(target, name) == ["1"]
    assert len(target.search_runs([experiment_id])) == 1
    assert len(target.search_logged_models([experiment_id])) == 1


def test_cli_copy_model_version_prints_json_and_adds_lineage_tags(stack, seed, unique):
    clf = seed["models"]["clf"]
    name = f"{unique}-cli-copy"
    args = ("copy-model-version", "--src-uri", stack.source.uri, "--dst-uri", stack.target.uri,
            "--src-model", clf, "--src-version", "1", "--dst-model", name,
            "--dst-experiment-name", f"{unique}-cli-copy-exp", "--copy-lineage-tags",
            "--alias", "cli-blessed", "--output", "json")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    copied = json.loads(result.stdout)
    assert (copied["name"], copied["version"], copied["status"]) == (name, "1", "created")
    target = _client(stack.target.uri)
    run = target.get_run(copied["run_id"])
    assert copied["source"] == f"{run.info.artifact_uri}/model"
    version = target.get_model_version(name, "1")
    assert version.source == copied["source"] and version.run_id == run.info.run_id
    assert version.tags["mlflow_exim.src_version.name"] == clf
    assert version.tags["mlflow_exim.src_version.version"] == "1"
    assert version.tags["mlflow_exim.src_version.run_id"] == seed["runs"]["v1"]
    assert version.tags["mlflow_exim.src_client.tracking_uri"] == stack.source.uri
    assert version.current_stage == "None"  # stages are copied only on request
    assert target.get_registered_model(name).aliases == {"cli-blessed": "1"}

    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "already_present"
    assert _version_numbers(target, name) == ["1"]


def test_cli_export_models_rejects_a_selection_that_matches_nothing(stack, unique, tmp_path):
    result = invoke("export-models", "--tracking-uri", stack.source.uri,
                    "--models", f"{unique}-nope*", "--output-dir", tmp_path / "none")
    assert result.exit_code == 2
    assert f"'{unique}-nope*' matches no registered model" in result.output
    assert not (tmp_path / "none").exists()


def test_console_scripts_for_models_are_installed():
    bin_dir = Path(sys.executable).parent
    for script in ("export-model", "import-model", "export-models", "import-models",
                   "export-model-version", "import-model-version", "copy-model-version"):
        assert (bin_dir / script).exists(), script
    help_text = subprocess.run([str(bin_dir / "copy-model-version"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--copy-stages-and-aliases" in help_text and "--output" in help_text
