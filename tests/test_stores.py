"""Artifact roots in S3 (moto), Google Cloud Storage (gcp-storage-emulator) and Azure Blob
Storage (Azurite), on the source side and on the target side; a missing storage client is
one line before any work; and MLflow 3 model versions arriving in an embedded sqlite
target with no environment variable set.

The emulators are real processes, started once for the module. Experiments on the shared
servers get their artifact location in a store (``create_experiment(artifact_location=…)``),
so that this process reads and writes it directly; one more server has a direct S3
default root, for experiments that an import creates there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

import mlflow_exim
from mlflow_exim import cli
from tests.conftest import BUCKET
from tests.emulators import AZURE_ACCOUNT, Azurite, GcsEmulator
from tests.seed import ARTIFACTS, make_run
from tests.servers import MlflowServer

GCS_BUCKET = "mlflow-exim-gcs"
CONTAINER = "mlflow-exim"
FILES = {path: ARTIFACTS[path] for path in ("plain.txt", "nested/deeper/deepest/leaf.json",
                                            "binary/blob.bin", "with space/file name.txt")}


@pytest.fixture(scope="module")
def roots(stack, tmp_path_factory) -> dict[str, str]:
    """An artifact root in each store, by URI scheme."""
    work = tmp_path_factory.mktemp("stores")
    processes = []
    try:
        gcs = GcsEmulator(work, GCS_BUCKET)
        processes.append(gcs)
        azurite = Azurite(work)
        processes.append(azurite)
        gcs.wait()
        azurite.wait()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        BlobServiceClient.from_connection_string(azurite.connection_string).create_container(
            CONTAINER)
        yield {"s3": f"s3://{BUCKET}/stores", "gs": f"gs://{GCS_BUCKET}/stores",
               "wasbs": f"wasbs://{CONTAINER}@{AZURE_ACCOUNT}.blob.core.windows.net/stores"}
    finally:
        for name in ("STORAGE_EMULATOR_HOST", "AZURE_STORAGE_CONNECTION_STRING"):
            os.environ.pop(name, None)
        for process in reversed(processes):
            process.stop()


@pytest.fixture(scope="module")
def direct_s3(stack, tmp_path_factory) -> MlflowServer:
    """A server whose default artifact root is in S3 and not proxied: the experiments an
    import creates there keep their artifacts in S3, written by the importing process."""
    server = MlflowServer("direct-s3", tmp_path_factory.mktemp("direct-s3"),
                          f"s3://{BUCKET}/direct", proxied=False)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def _upload_tree(log, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for relative, content in files.items():
            (Path(scratch) / relative).parent.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / relative).write_bytes(content)
        log(scratch)


def _seed(uri: str, name: str, artifact_location: str | None = None) -> tuple[str, str, str]:
    """An experiment with a run and a logged model, both with artifacts. Returns the ids
    of the experiment, the run and the logged model."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    run_id = make_run(client, experiment_id, "with-artifacts", 1)
    _upload_tree(lambda d: client.log_artifacts(run_id, d), FILES)
    model = client.create_logged_model(experiment_id, name="clf", source_run_id=run_id,
                                       model_type="classifier")
    _upload_tree(lambda d: client.log_model_artifacts(model.model_id, d), {
        "MLmodel": f"model_id: {model.model_id}\nflavors: {{}}\n".encode(),
        "weights/w.bin": ARTIFACTS["binary/blob.bin"]})
    client.finalize_logged_model(model.model_id, "READY")
    return experiment_id, run_id, model.model_id


def _files(artifact_uri: str) -> dict[str, int]:
    """Every file under ``artifact_uri``, read from its store, with its size."""
    repo = get_artifact_repository(artifact_uri)

    def walk(path=None):
        for info in repo.list_artifacts(path):
            yield from walk(info.path) if info.is_dir else [(info.path, info.file_size)]
    return dict(walk())


def _invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# Round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["s3", "gs", "wasbs"])
def test_a_root_in_the_store_on_both_sides_round_trips(stack, roots, scheme, unique, tmp_path):
    """Export from a source experiment whose artifacts are in the store, import into a
    target experiment whose artifacts are in the store too: every file arrives, and verify
    compares both sides' files byte for byte."""
    root = f"{roots[scheme]}/{unique}"
    name = f"{unique}-{scheme}"
    _, run_id, model_id = _seed(stack.source.uri, name, f"{root}/source")
    dst = MlflowClient(stack.target.uri)
    target_experiment = dst.create_experiment(name, artifact_location=f"{root}/target")

    exported = mlflow_exim.export_experiment(name, tmp_path / "b", tracking_uri=stack.source.uri)
    assert exported.ok, exported.summary()
    imported = mlflow_exim.import_experiment(tmp_path / "b", tracking_uri=stack.target.uri)
    assert imported.ok, imported.summary()

    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 1, "runs": 1, "logged_models": 1}
    (run,) = dst.search_runs([target_experiment])
    assert run.info.artifact_uri.startswith(f"{root}/target/")
    assert _files(run.info.artifact_uri) == {p: len(c) for p, c in FILES.items()}
    (model,) = dst.search_logged_models([target_experiment])
    assert model.artifact_location.startswith(f"{root}/target/")
    assert set(_files(model.artifact_location)) == {"MLmodel", "weights/w.bin"}
    assert imported.extra["id_map"]["runs"] == {run_id: run.info.run_id}
    assert imported.extra["id_map"]["logged_models"] == {model_id: model.model_id}


# A missing client ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_bundle(stack, tmp_path_factory) -> Path:
    """A bundle of one experiment whose artifacts the source server proxies."""
    bundle = tmp_path_factory.mktemp("local-bundle") / "b"
    _seed(stack.source.uri, "stores-local")
    exported = mlflow_exim.export_experiment("stores-local", bundle,
                                             tracking_uri=stack.source.uri)
    assert exported.ok, exported.summary()
    return bundle


def test_a_source_in_s3_without_boto3_is_one_line_before_any_work(stack, roots, unique,
                                                                  tmp_path):
    """As `pip install mlflow-exim` without the extra leaves it: a real process in which
    boto3 and botocore cannot be imported."""
    root = f"{roots['s3']}/{unique}/source"
    experiment_id, _, _ = _seed(stack.source.uri, unique, root)
    hide = ("import sys; sys.modules.update(dict.fromkeys(['boto3', 'botocore']));"
            "from mlflow_exim.cli import export_experiment_command; export_experiment_command()")
    result = subprocess.run([sys.executable, "-c", hide, "--tracking-uri", stack.source.uri,
                             "--experiment", unique, "--output-dir", str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: artifacts of experiment {experiment_id} ({unique}) on {stack.source.uri} are "
        f"in {root}: install mlflow-exim[s3] (no module boto3, botocore)")
    assert not (tmp_path / "b").exists()


def test_an_existing_target_experiment_in_azure_without_its_client_stops_the_import_first(
        stack, roots, local_bundle, unique, monkeypatch):
    root = f"{roots['wasbs']}/{unique}"
    dst = MlflowClient(stack.target.uri)
    experiment_id = dst.create_experiment(unique, artifact_location=root)
    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    for dry_run in ("--dry-run", None):
        result = _invoke(cli.import_experiment_command, "--tracking-uri", stack.target.uri,
                         "--input-dir", local_bundle, "--experiment-name", unique,
                         *filter(None, [dry_run]))
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == (
            f"error: artifacts of experiment {experiment_id} ({unique}) on "
            f"{stack.target.uri} are in {root}: install mlflow-exim[azure] "
            "(no module azure.storage.blob)")
    assert dst.search_runs([experiment_id]) == []
    assert dst.search_logged_models([experiment_id]) == []


def test_a_new_target_experiment_in_s3_without_boto3_stops_before_its_runs_then_completes(
        direct_s3, local_bundle, tmp_path, monkeypatch):
    """The target decides where a new experiment keeps its artifacts: it is known once the
    experiment exists, and checked before anything is written into it. A re-run with the
    client installed fills it."""
    with monkeypatch.context() as hidden:
        for module in ("boto3", "botocore"):
            hidden.setitem(sys.modules, module, None)
        result = _invoke(cli.import_experiment_command, "--tracking-uri", direct_s3.uri,
                         "--input-dir", local_bundle)
    assert result.exit_code == 2, result.output
    dst = MlflowClient(direct_s3.uri)
    experiment = dst.get_experiment_by_name("stores-local")
    assert result.stderr.strip() == (
        f"error: artifacts of experiment {experiment.experiment_id} (stores-local) on "
        f"{direct_s3.uri} are in {experiment.artifact_location}: install mlflow-exim[s3] "
        "(no module boto3, botocore)")
    assert experiment.artifact_location.startswith(f"s3://{BUCKET}/direct/")
    assert dst.search_runs([experiment.experiment_id]) == []

    imported = mlflow_exim.import_experiment(local_bundle, tracking_uri=direct_s3.uri)
    assert imported.ok, imported.summary()
    (run,) = dst.search_runs([experiment.experiment_id])
    assert _files(run.info.artifact_uri) == {p: len(c) for p, c in FILES.items()}


# MLflow 3 model versions into an embedded sqlite target ------------------------------

def test_a_logged_model_version_arrives_in_sqlite_without_any_environment(stack, unique,
                                                                         workdir):
    """MLflow's embedded registry would look the logged model up in the process-wide
    tracking store (./mlflow.db here, as MLFLOW_TRACKING_URI is unset) and fail."""
    experiment_id, run_id, model_id = _seed(stack.source.uri, unique)
    src = MlflowClient(stack.source.uri)
    name = f"{unique}-clf"
    src.create_registered_model(name)
    src.create_model_version(name, f"models:/{model_id}", run_id=run_id, model_id=model_id)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    environment = dict(os.environ)

    exported = mlflow_exim.export_model(name, workdir / "b", tracking_uri=stack.source.uri)
    assert exported.ok, exported.summary()
    target = f"sqlite:///{workdir / 'dst.db'}"
    imported = mlflow_exim.import_model(workdir / "b", tracking_uri=target)
    assert imported.ok, imported.summary()

    assert dict(os.environ) == environment
    assert not (workdir / "mlflow.db").exists()
    new_model = imported.extra["id_map"]["logged_models"][model_id]
    dst = MlflowClient(target, target)
    version = dst.get_model_version(name, "1")
    assert version.source == f"models:/{new_model}"
    assert version.run_id == imported.extra["id_map"]["runs"][run_id]
    assert (dst.get_model_version_download_uri(name, "1")
            == dst.get_logged_model(new_model).artifact_location)
    card = mlflow_exim.verify(stack.source.uri, target, models=name)
    assert card.ok, card.text()
    assert card.totals["model_versions"] == 1
