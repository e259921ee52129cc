"""Builds a bundle under ``<dir>.partial`` and renames it to ``<dir>`` only when complete.

A directory without ``manifest.json`` is never a bundle, so an interrupted export cannot be
mistaken for a whole one. Started again with the same source and options, an export resumes:
objects whose JSON file was written (always last) are kept, the rest are redone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

from mlflow_exim.bundle.format import (
    ARTIFACTS_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    INVENTORY_DIRS,
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    WITH_ARTIFACTS,
)
from mlflow_exim.bundle.jsonio import read_json, write_json
from mlflow_exim.bundle.paths import safe_component
from mlflow_exim.errors import BundleError, EximError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BundleWriter:
    def __init__(self, output_dir: str | Path, *, command: str, source: dict, options: dict):
        from mlflow_exim import __version__

        self.final = Path(output_dir).absolute()
        self.root = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        if self.final.exists():
            if (self.final / MANIFEST_FILE).exists():
                raise EximError(f"{self.final}: already holds a bundle; choose a new directory")
            if not self.final.is_dir() or any(self.final.iterdir()):
                raise EximError(f"{self.final}: exists and is not an empty directory")
        self._header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "command": command,
            "source": source,
            "options": options,
        }
        self._prepare_partial()
        self._lock = threading.Lock()
        self._inventory: dict[str, dict[str, dict]] = {kind: {} for kind in INVENTORY_DIRS}

    def _prepare_partial(self) -> None:
        progress = self.root / PROGRESS_FILE
        if self.root.exists():
            try:
                same = read_json(progress) == self._header
            except BundleError:
                same = False
            if not same:
                shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(progress, self._header)

    # Layout -------------------------------------------------------------------------------

    def object_dir(self, kind: str, object_id: str) -> Path:
        """The directory of one object of an inventory section (not created)."""
        return self.root / INVENTORY_DIRS[kind] / safe_component(object_id)

    def experiment_dir(self, experiment_id: str) -> Path:
        path = self.object_dir("experiments", experiment_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_dir(self, run_id: str) -> Path:
        return self.object_dir("runs", run_id)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # Inventory ----------------------------------------------------------------------------

    def add(self, kind: str, object_id: str, **fields) -> None:
        """List a completely written object in the manifest's inventory."""
        with self._lock:
            self._inventory[kind][object_id] = {
                "id": object_id,
                "path": self.relative(self.object_dir(kind, object_id)),
                **fields,
            }

    def has(self, kind: str, object_id: str) -> bool:
        with self._lock:
            return object_id in self._inventory[kind]

    def add_experiment(self, experiment_id: str, name: str) -> None:
        self.add("experiments", experiment_id, name=name)

    def add_run(self, run_id: str, experiment_id: str) -> None:
        self.add("runs", run_id, experiment_id=experiment_id)

    # Completion ---------------------------------------------------------------------------

    def _checksums(self) -> dict[str, dict]:
        checksums = {}
        for kind in WITH_ARTIFACTS:
            for entry in self._inventory[kind].values():
                artifacts = self.root / entry["path"] / ARTIFACTS_DIR
                for dirpath, _dirs, files in os.walk(artifacts):
                    for name in files:
                        path = Path(dirpath) / name
                        checksums[self.relative(path)] = {
                            "sha256": sha256_of(path),
                            "size": path.stat().st_size,
                        }
        return checksums

    def finish(self, failures: list[dict]) -> Path:
        """Write the manifest and move the bundle into place. ``failures`` lists the objects
        the export could not write, so an importer knows the bundle is partial."""
        manifest = dict(self._header)
        manifest["created_at"] = datetime.now(timezone.utc).isoformat()
        manifest["inventory"] = {
            kind: sorted(entries.values(), key=lambda e: e["id"])
            for kind, entries in self._inventory.items()
        }
        manifest["checksums"] = self._checksums()
        manifest["export_failures"] = failures
        write_json(self.root / MANIFEST_FILE, manifest)
        (self.root / PROGRESS_FILE).unlink()
        if self.final.exists():
            self.final.rmdir()  # empty, checked in __init__
        os.rename(self.root, self.final)
        return self.final
