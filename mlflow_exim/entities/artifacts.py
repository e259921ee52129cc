"""Artifact trees shared by runs and logged models: download, and upload with the ids
inside ``MLmodel`` files rewritten to the target's ids; and the storage clients a root
needs on this machine.

A tree may hold empty directories. A download keeps them (MLflow creates them in the
bundle's ``artifacts/`` tree); an upload recreates them where the target store is a file
system, the only kind that can hold one."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError
from mlflow_exim.report import Outcome
from mlflow_exim.work import Workers

MLMODEL_FILE = "MLmodel"

# The artifact stores whose client MLflow imports on first use (a root in one of them is
# read and written by this process itself, unlike ``mlflow-artifacts:`` served by a
# tracking server): scheme -> (the modules MLflow imports, the extra of mlflow-exim that
# brings them). r2:// and b2:// are S3 APIs, spoken through boto3.
_CLIENTS = {
    "s3": (("boto3", "botocore"), "s3"),
    "r2": (("boto3", "botocore"), "s3"),
    "b2": (("boto3", "botocore"), "s3"),
    "gs": (("google.cloud.storage",), "gcs"),
    "wasbs": (("azure.storage.blob",), "azure"),
    "abfss": (("azure.storage.filedatalake",), "azure"),
}


def require_client(artifact_root: str | None, owner: str) -> None:
    """Fail in one line when the storage client for ``artifact_root`` is not installed,
    before any work: otherwise every run under it fails alone, with MLflow's
    ``No module named 'botocore'``. ``owner`` names what keeps its artifacts there
    (``experiment 3``)."""
    scheme = urlparse(artifact_root or "").scheme
    if scheme not in _CLIENTS:
        return
    modules, extra = _CLIENTS[scheme]
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise EximError(f"artifacts of {owner} are in {artifact_root}: install "
                        f"mlflow-exim[{extra}] (no module {', '.join(missing)})")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a stand-in
        return False


def count_files(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file())


def upload_tree(local_dir: Path, dst: Endpoint, artifact_uri: str,
                replacements: dict[str, tuple[str, str]], transfers: Workers, *,
                outcome: Outcome) -> None:
    """Upload every file under ``local_dir`` into the artifact store at ``artifact_uri`` (a
    run's or a logged model's, as ``dst`` gave it), at the same relative path, several at a
    time through ``transfers``. In an ``MLmodel`` file, each ``key: old`` line of
    ``replacements`` (key → (old id, new id)) is rewritten to the new id first. Empty
    directories are recreated where the store is a file system; elsewhere ``outcome``
    names them."""
    repo = dst.artifact_repository(artifact_uri)

    def one(path: Path) -> None:
        parent = path.parent.relative_to(local_dir).as_posix()
        if path.name == MLMODEL_FILE:
            path = _rewritten_mlmodel(path, replacements, Path(scratch))
        repo.log_artifact(str(path), None if parent == "." else parent)

    entries = sorted(local_dir.rglob("*"))
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-mlmodel-") as scratch:
        transfers.each(one, [p for p in entries if p.is_file()])
    empty = [p.relative_to(local_dir).as_posix() for p in entries
             if p.is_dir() and not any(p.iterdir())]
    if not empty:
        return
    if urlparse(artifact_uri).scheme not in ("", "file"):
        outcome.warn(f"empty artifact directories not recreated, as {artifact_uri} holds "
                     f"files only: {', '.join(empty)}")
        return
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-dirs-") as tree:
        for relative in empty:
            (Path(tree) / relative).mkdir(parents=True)
        repo.log_artifacts(tree)


def _rewritten_mlmodel(path: Path, replacements: dict[str, tuple[str, str]],
                       scratch: Path) -> Path:
    text = path.read_text(encoding="utf-8")
    rewritten = text
    for key, (old, new) in replacements.items():
        pattern = re.compile(rf"^(\s*{re.escape(key)}:\s*['\"]?){re.escape(old)}(['\"]?\s*)$",
                             re.MULTILINE)
        rewritten = pattern.sub(lambda m, new=new: f"{m.group(1)}{new}{m.group(2)}", rewritten)
    if rewritten == text:
        return path
    target = Path(tempfile.mkdtemp(dir=scratch)) / MLMODEL_FILE
    target.write_text(rewritten, encoding="utf-8")
    return target
