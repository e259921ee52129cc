"""Builds a bundle under ``<dir>.partial`` and renames it to ``<dir>`` only when complete.

A directory without ``manifest.json`` is never a bundle, so an interrupted export cannot be
mistaken for a whole one. Started again with the same source and options, an export resumes:
objects whose JSON file was written (always last) are kept, the rest are redone. Started
again into a complete bundle of the same export (a nightly job), it refreshes it the same
way: the bundle goes back to ``<dir>.partial`` and the export resumes from it. With
``overwrite`` a complete bundle is replaced instead, once the new one is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from mlflow_exim.bundle.format import (
    CHECKSUMS_ALL,
    CHECKSUMS_SCOPE,
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

# The manifest's fields that say which export wrote a bundle: its header, which the
# progress file of a partial bundle holds.
HEADER_KEYS = ("format", "format_version", "tool_version", "command", "source", "options")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BundleWriter:
    """Writes the objects of ``sections`` and, on :meth:`finish`, the manifest."""

    def __init__(self, output_dir: str | Path, sections: list[Section], *, command: str,
                 source: dict, options: dict, overwrite: bool = False):
        self.sections = {section.name: section for section in sections}
        self.final = Path(output_dir).absolute()
        self.root = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        self._header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "command": command,
            "source": source,
            "options": options,
        }
        self.replaces = False  # finish replaces the complete bundle in ``final``
        self.refreshes = False  # the complete bundle in ``final`` was taken up to refresh
        if self.final.exists():
            self._take_over(overwrite)
        self._prepare_partial()
        self._lock = threading.Lock()
        self._inventory: dict[str, dict[str, dict]] = {name: {} for name in self.sections}

    def _take_over(self, overwrite: bool) -> None:
        """``final`` exists: an empty directory is taken as it is; a complete bundle of the
        same export (command, options, source URI, format version) is refreshed, or with
        ``overwrite`` replaced; anything else is refused, a bundle of another export
        included unless ``overwrite``."""
        manifest_path = self.final / MANIFEST_FILE
        if not manifest_path.is_file() or manifest_path.is_symlink():
            if not self.final.is_dir() or any(self.final.iterdir()):
                raise EximError(f"{self.final}: exists and is not an empty directory")
            return
        try:
            manifest = read_json(manifest_path)
        except BundleError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise EximError(f"{manifest_path}: is not the manifest of an mlflow-exim bundle; "
                            "choose a new directory")
        if overwrite:
            self.replaces = True
            return
        different = [key for key, value in self._export_identity(self._header).items()
                     if self._export_identity(manifest).get(key) != value]
        if different:
            raise EximError(f"{self.final}: already holds a bundle of another export (its "
                            f"{', '.join(different)} differ); choose a new directory, or set "
                            "`overwrite` to replace it")
        self.refreshes = True
        _to_partial(self.final, self._header)

    @staticmethod
    def _export_identity(header: dict) -> dict:
        """What makes two bundles the same export, so that one can refresh the other."""
        source = header.get("source")
        return {"command": header.get("command"), "options": header.get("options"),
                "source": source.get("tracking_uri") if isinstance(source, dict) else None,
                "format_version": header.get("format_version")}

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
        """Size and SHA-256 of every file of every object written, whoever wrote it into
        the object's directory, so that a reader can tell a damaged file from a whole one."""
        checksums = {}
        for entries in self._inventory.values():
            for entry in entries.values():
                for dirpath, _dirs, files in os.walk(self.root / entry["path"]):
                    for name in files:
                        path = Path(dirpath) / name
                        checksums[self.relative(path)] = {
                            "sha256": sha256_of(path),
                            "size": path.stat().st_size,
                        }
        return checksums

    def _prune(self) -> None:
        """Remove the object directories the inventory does not list: those a resumed or
        refreshed export kept of objects that have since left the source or failed."""
        listed = {entry["path"] for entries in self._inventory.values()
                  for entry in entries.values()}
        for name in self.sections:
            if (self.root / name).is_dir():
                for directory in (self.root / name).iterdir():
                    if self.relative(directory) not in listed:
                        shutil.rmtree(directory)

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
        self._prune()
        manifest["checksums"] = self._checksums()
        manifest[CHECKSUMS_SCOPE] = CHECKSUMS_ALL
        manifest["export_failures"] = failures
        manifest["not_carried"] = not_carried or {}
        write_json(self.root / MANIFEST_FILE, manifest)
        (self.root / PROGRESS_FILE).unlink()
        if self.final.exists() and self.replaces:  # moved aside first: never no bundle at all
            old = Path(tempfile.mkdtemp(prefix=self.final.name + ".old-", dir=self.final.parent))
            os.rename(self.final, old / "bundle")
            os.rename(self.root, self.final)
            shutil.rmtree(old)
            return self.final
        if self.final.exists():
            self.final.rmdir()  # empty, checked in __init__
        os.rename(self.root, self.final)
        return self.final


def _to_partial(final: Path, header: dict) -> None:
    """Turn the complete bundle ``final`` into the partial bundle beside it that an export
    with ``header`` resumes (a partial one there is older than it, and removed)."""
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    write_json(final / PROGRESS_FILE, header)
    os.rename(final, partial)
    (partial / MANIFEST_FILE).unlink()


def reopen(final: Path) -> None:
    """Turn a complete bundle back into the partial one it was before its manifest, so that
    the same export written again there resumes it: what still reads the same at the
    source is kept, the rest written again, what has left the plan pruned. Its header
    must match the new export's for anything to be kept."""
    manifest = read_json(final / MANIFEST_FILE)
    if not isinstance(manifest, dict):
        raise BundleError(final / MANIFEST_FILE, "is not an object")
    _to_partial(final, {key: manifest.get(key) for key in HEADER_KEYS})
