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
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    Section,
)
from mlflow_exim.bundle.jsonio import read_json, write_json
from mlflow_exim.bundle.paths import safe_component
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.version import __version__


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BundleWriter:
    """Writes the objects of ``sections`` and, on :meth:`finish`, the manifest."""

    def __init__(self, output_dir: str | Path, sections: list[Section], *, command: str,
                 source: dict, options: dict):
        self.sections = {section.name: section for section in sections}
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
        self._inventory: dict[str, dict[str, dict]] = {name: {} for name in self.sections}

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

    def object_dir(self, section: str, object_id: str) -> Path:
        """The directory of one object of an inventory section (not created)."""
        return self.root / section / safe_component(object_id)

    def is_written(self, section: str, object_id: str) -> bool:
        """Whether an interrupted export already wrote this object whole (its document is
        written last), so that a resumed export keeps it."""
        document = self.sections[section].document
        return (self.object_dir(section, object_id) / document).exists()

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # Inventory ----------------------------------------------------------------------------

    def add(self, section: str, object_id: str, **fields) -> None:
        """List a completely written object in the manifest's inventory."""
        with self._lock:
            self._inventory[section][object_id] = {
                "id": object_id,
                "path": self.relative(self.object_dir(section, object_id)),
                **fields,
            }

    def has(self, section: str, object_id: str) -> bool:
        with self._lock:
            return object_id in self._inventory[section]

    # Completion ---------------------------------------------------------------------------

    def _checksums(self) -> dict[str, dict]:
        checksums = {}
        for name in (name for name, section in self.sections.items() if section.artifacts):
            for entry in self._inventory[name].values():
                artifacts = self.root / entry["path"] / ARTIFACTS_DIR
                for dirpath, _dirs, files in os.walk(artifacts):
                    for name in files:
                        path = Path(dirpath) / name
                        checksums[self.relative(path)] = {
                            "sha256": sha256_of(path),
                            "size": path.stat().st_size,
                        }
        return checksums

    def finish(self, failures: list[dict], not_carried: dict[str, int] | None = None) -> Path:
        """Write the manifest and move the bundle into place. ``failures`` lists the objects
        the export could not write, so an importer knows the bundle is partial;
        ``not_carried`` counts, per kind, what the source holds that no bundle carries."""
        manifest = dict(self._header)
        manifest["created_at"] = datetime.now(timezone.utc).isoformat()
        manifest["inventory"] = {
            name: sorted(entries.values(), key=lambda e: e["id"])
            for name, entries in self._inventory.items()
        }
        manifest["checksums"] = self._checksums()
        manifest["export_failures"] = failures
        manifest["not_carried"] = not_carried or {}
        write_json(self.root / MANIFEST_FILE, manifest)
        (self.root / PROGRESS_FILE).unlink()
        if self.final.exists():
            self.final.rmdir()  # empty, checked in __init__
        os.rename(self.root, self.final)
        return self.final
