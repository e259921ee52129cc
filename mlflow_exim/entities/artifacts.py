"""Artifact trees shared by runs and logged models: download, and upload with the ids
inside ``MLmodel`` files rewritten to the target's ids."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from mlflow_exim.work import Workers

MLMODEL_FILE = "MLmodel"


def count_files(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file())


def upload_tree(local_dir: Path, upload: Callable[[str, str | None], None],
                replacements: dict[str, tuple[str, str]], transfers: Workers) -> None:
    """Call ``upload(local_path, artifact_dir)`` for every file under ``local_dir``, at the
    same relative path, several at a time through ``transfers``. In an ``MLmodel`` file,
    each ``key: old`` line of ``replacements`` (key → (old id, new id)) is rewritten to the
    new id first."""
    def one(path: Path) -> None:
        parent = path.parent.relative_to(local_dir).as_posix()
        if path.name == MLMODEL_FILE:
            path = _rewritten_mlmodel(path, replacements, Path(scratch))
        upload(str(path), None if parent == "." else parent)

    with tempfile.TemporaryDirectory(prefix="mlflow-exim-mlmodel-") as scratch:
        transfers.each(one, sorted(p for p in local_dir.rglob("*") if p.is_file()))


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
