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
    EXPERIMENTS_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    RUNS_DIR,
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
        self._experiments: dict[str, dict] = {}
        self._runs: dict[str, dict] = {}

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

    def experiment_dir(self, experiment_id: str) -> Path:
        path = self.root / EXPERIMENTS_DIR / safe_component(experiment_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_dir(self, run_id: str) -> Path:
        return self.root / RUNS_DIR / safe_component(run_id)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # Inventory ----------------------------------------------------------------------------

    def add_experiment(self, experiment_id: str, name: str) -> None:
        with self._lock:
            self._experiments[experiment_id] = {
                "id": experiment_id,
                "name": name,
                "path": self.relative(self.experiment_dir(experiment_id)),
            }

    def add_run(self, run_id: str, experiment_id: str) -> None:
        with self._lock:
            self._runs[run_id] = {
                "id": run_id,
                "experiment_id": experiment_id,
                "path": self.relative(self.run_dir(run_id)),
            }

    # Completion ---------------------------------------------------------------------------

    def _checksums(self) -> dict[str, dict]:
        checksums = {}
        for entry in self._runs.values():
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
            "experiments": sorted(self._experiments.values(), key=lambda e: e["id"]),
            "runs": sorted(self._runs.values(), key=lambda r: r["id"]),
        }
        manifest["checksums"] = self._checksums()
        manifest["export_failures"] = failures
        write_json(self.root / MANIFEST_FILE, manifest)
        (self.root / PROGRESS_FILE).unlink()
        if self.final.exists():
            self.final.rmdir()  # empty, checked in __init__
        os.rename(self.root, self.final)
        return self.final
