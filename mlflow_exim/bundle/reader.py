"""Opens a bundle and validates all of it before an importer writes anything to a target."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from mlflow_exim.bundle.format import (
    ARTIFACTS_DIR,
    FORMAT_NAME,
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    READABLE_VERSIONS,
    Section,
    singular,
)
from mlflow_exim.bundle.jsonio import read_json
from mlflow_exim.bundle.paths import inside
from mlflow_exim.bundle.writer import sha256_of
from mlflow_exim.errors import BundleError

_MANIFEST_KEYS = {
    "format": str,
    "format_version": int,
    "source": dict,
    "inventory": dict,
    "checksums": dict,
}


class OnDisk(Mapping[str, dict]):
    """Documents by id, read from their files on each access, so that a bundle of a million
    runs is not held in memory (they were all validated when the bundle was opened)."""

    def __init__(self):
        self.paths: dict[str, Path] = {}

    def __getitem__(self, object_id: str) -> dict:
        return read_json(self.paths[object_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __contains__(self, object_id) -> bool:  # Mapping's default would read the file
        return object_id in self.paths

    def __len__(self) -> int:
        return len(self.paths)


class Bundle:
    """A validated bundle, read section by section as the caller declares them.

    ``documents[section]`` gives each object's JSON document by source id (read from disk
    when asked for), ``dirs[section]`` its directory and ``facts[section]`` the little its
    section keeps in memory (see :class:`Section`)."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self.sections: dict[str, Section] = {}
        self.documents: dict[str, OnDisk] = {}
        self.dirs: dict[str, dict[str, Path]] = {}
        self.facts: dict[str, dict[str, dict]] = {}

    @classmethod
    def open(cls, path: str | Path, sections: Iterable[Section]) -> Bundle:
        """Read and check the manifest, every document of ``sections`` (in that order: a
        section's references point at sections before it) and every artifact checksum."""
        bundle = cls.at(path)
        for section in sections:
            bundle.load(section)
        bundle.check_artifacts()
        return bundle

    @classmethod
    def at(cls, path: str | Path) -> Bundle:
        """The bundle at ``path`` with its manifest checked and no section read yet."""
        root = Path(path).absolute()
        manifest_path = root / MANIFEST_FILE
        if not root.is_dir():
            raise BundleError(root, "is not a directory")
        if not manifest_path.exists():
            if (root / PROGRESS_FILE).exists() or root.name.endswith(PARTIAL_SUFFIX):
                raise BundleError(root, "is an unfinished export (no manifest.json); "
                                        "run the export again to complete it")
            raise BundleError(manifest_path, "file is missing; this is not an mlflow-exim bundle")
        manifest = read_json(manifest_path)
        _check_manifest(manifest, manifest_path)
        return cls(root, manifest)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    def entries(self, section: str) -> list[dict]:
        """The inventory entries of ``section`` (none when the bundle predates it)."""
        entries = self.manifest["inventory"].get(section, [])
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("path"), str)
            for e in entries
        ):
            raise BundleError(self.manifest_path, f"inventory.{section} must be a list of "
                                                  "objects with string 'id' and 'path'")
        return entries

    def load(self, section: Section) -> None:
        """Read and validate every object of ``section``; references must name objects of
        sections already loaded."""
        documents, dirs, facts = OnDisk(), {}, {}
        for entry in self.entries(section.name):
            directory = inside(self.root, entry["path"], source=self.manifest_path)
            doc_path = directory / section.document
            doc = read_json(doc_path)
            section.validate(doc, doc_path)
            for referenced, object_id in section.references(doc):
                if object_id not in self.dirs.get(referenced, {}):
                    raise BundleError(doc_path, f"its {singular(referenced)} {object_id} is not "
                                                "in the bundle's inventory")
            section.check_files(directory)
            documents.paths[entry["id"]] = doc_path
            dirs[entry["id"]] = directory
            facts[entry["id"]] = section.facts(doc)
        self.sections[section.name] = section
        self.documents[section.name] = documents
        self.dirs[section.name] = dirs
        self.facts[section.name] = facts

    def check_artifacts(self) -> None:
        """Every artifact file of the loaded sections is listed in the manifest with its
        size and checksum, and every listed file is present and intact."""
        expected = self.manifest["checksums"]
        seen = set()
        object_dirs = [d for name, section in self.sections.items() if section.artifacts
                       for d in self.dirs[name].values()]
        for object_dir in object_dirs:
            for dirpath, _dirs, files in os.walk(object_dir / ARTIFACTS_DIR):
                for name in files:
                    path = Path(dirpath) / name
                    relative = path.relative_to(self.root).as_posix()
                    entry = expected.get(relative)
                    if entry is None:
                        raise BundleError(path, "artifact is not listed in manifest.json")
                    if not isinstance(entry, dict):
                        raise BundleError(self.manifest_path, f"checksums[{relative!r}] is not "
                                                              "an object with 'sha256' and 'size'")
                    if path.stat().st_size != entry.get("size") or sha256_of(path) != entry.get(
                        "sha256"
                    ):
                        raise BundleError(path, "artifact does not match its checksum "
                                                "in manifest.json")
                    seen.add(relative)
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleError(self.root / missing[0], "artifact listed in manifest.json is missing")


def _check_manifest(manifest, path: Path) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(path, "must hold a JSON object")
    for key, kind in _MANIFEST_KEYS.items():
        if type(manifest.get(key)) is not kind:  # exact: True is no format_version
            raise BundleError(path, f"field {key!r} is missing or not a {kind.__name__}")
    if manifest["format"] != FORMAT_NAME:
        raise BundleError(path, f"format {manifest['format']!r} is not {FORMAT_NAME!r}")
    if manifest["format_version"] not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise BundleError(path, f"format_version {manifest['format_version']} is not supported "
                                f"by this mlflow-exim (reads {readable}); upgrade mlflow-exim")
