"""Empty artifact directories. A file-system artifact store keeps them, so they arrive where
the target's store is one too: a server's plain local artifact root, an embedded store's
./mlruns. A proxied (mlflow-artifacts:) or object store holds files only; there the
outcome names the directories left out. verify does not look at directories, so these
tests list both sides themselves, directories included."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

import mlflow_exim

# "only" holds nothing but an empty directory; "nested" holds one beside a file.
EMPTY_DIRS = ["empty", "nested/empty", "only/inner"]
FILES = {"nested/file.txt": b"beside an empty directory\n", "top.txt": b"top\n"}


def seed(uri: str, experiment: str) -> tuple[str, str]:
    """A run and a logged model whose artifacts hold empty directories; their ids."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(experiment)
    run_id = client.create_run(experiment_id, run_name="with empty dirs").info.run_id
    model_id = client.create_logged_model(experiment_id, name="with-empty-dirs",
                                          source_run_id=run_id).model_id
    with tempfile.TemporaryDirectory() as scratch:
        for relative in EMPTY_DIRS:
            (Path(scratch) / relative).mkdir(parents=True)
        for relative, content in FILES.items():
            (Path(scratch) / relative).write_bytes(content)
        client.log_artifacts(run_id, scratch)
        client.log_model_artifacts(model_id, scratch)
    client.set_terminated(run_id)
    client.finalize_logged_model(model_id, "READY")
    return run_id, model_id


def listing(lister: Callable[[str | None], list]) -> list[tuple[str, bool]]:
    """Every path under an artifact root, directories too, with whether it is one."""
    found, pending = [], [None]
    while pending:
        for info in lister(pending.pop()):
            found.append((info.path, info.is_dir))
            if info.is_dir:
                pending.append(info.path)
    return sorted(found)


def listings(uri: str, run_id: str, model_id: str) -> dict[str, list[tuple[str, bool]]]:
    client = MlflowClient(uri)
    return {"run": listing(lambda path: client.list_artifacts(run_id, path)),
            "logged model": listing(lambda path: client.list_logged_model_artifacts(model_id,
                                                                                   path))}


def migrate(src: str, dst: str, experiment: str, bundle: Path):
    exported = mlflow_exim.export_experiment(experiment, bundle, tracking_uri=src)
    assert exported.ok, exported.summary()
    for relative in EMPTY_DIRS:  # kept in the bundle (the run's and the model's), and read
        kept = [p for p in bundle.rglob("*") if p.as_posix().endswith(f"/artifacts/{relative}")]
        assert len(kept) == 2 and all(p.is_dir() and not any(p.iterdir()) for p in kept)
    imported = mlflow_exim.import_experiment(bundle, tracking_uri=dst)
    assert imported.ok, imported.summary()
    return imported


@pytest.mark.parametrize("source, target", [("embedded", "server"), ("server", "embedded")])
def test_empty_dirs_arrive_on_a_file_system_artifact_store(local_root_server, workdir, unique,
                                                           source, target):
    uris = {"server": local_root_server.uri,
            "embedded": f"sqlite:///{workdir / 'mlflow.db'}"}  # artifacts in ./mlruns
    run_id, model_id = seed(uris[source], f"{unique}-dirs")
    expected = listings(uris[source], run_id, model_id)
    assert {path for path, is_dir in expected["run"] if is_dir} >= set(EMPTY_DIRS)

    imported = migrate(uris[source], uris[target], f"{unique}-dirs", workdir / "bundle")
    assert [o.warnings for o in imported.outcomes] == [[]] * len(imported.outcomes)
    ids = imported.extra["id_map"]
    assert listings(uris[target], ids["runs"][run_id], ids["logged_models"][model_id]) == expected


def test_a_proxied_target_holds_no_empty_dir_and_the_outcomes_name_them(stack, workdir, unique):
    src = f"sqlite:///{workdir / 'mlflow.db'}"
    run_id, model_id = seed(src, f"{unique}-dirs")
    imported = migrate(src, stack.target.uri, f"{unique}-dirs", workdir / "bundle")

    ids = imported.extra["id_map"]
    arrived = listings(stack.target.uri, ids["runs"][run_id], ids["logged_models"][model_id])
    for kind, expected in listings(src, run_id, model_id).items():
        assert [path for path, is_dir in arrived[kind] if not is_dir] == [
            path for path, is_dir in expected if not is_dir], kind
    for source_id in (run_id, model_id):
        [outcome] = [o for o in imported.outcomes if o.source_id == source_id]
        [warning] = outcome.warnings
        assert "mlflow-artifacts:" in warning and warning.endswith(": " + ", ".join(EMPTY_DIRS))
