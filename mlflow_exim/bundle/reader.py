"""Opens a bundle and validates all of it before an importer writes anything to a target.

Nothing in a bundle is trusted: it is a file tree that may come from someone else, or
arrive cut short by a full disk. Before any document is parsed, every file of every object
is checked against the manifest's size and SHA-256 (format 3; formats 1 and 2 recorded
them for artifacts only, and the others are counted as unverified), symbolic links and
special files anywhere are refused, and every path the manifest names must stay inside the
bundle. A problem is one ``BundleError`` naming the file (and the field).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mlflow_exim.bundle.format import (
    ARTIFACTS_DIR,
    CHECKSUMS_ALL,
    CHECKSUMS_ALL_SINCE,
    CHECKSUMS_SCOPE,
    FORMAT_NAME,
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    READABLE_VERSIONS,
    Section,
    singular,
)
from mlflow_exim.bundle.jsonio import read_json
from mlflow_exim.bundle.paths import check_relative, inside
from mlflow_exim.bundle.writer import sha256_of
from mlflow_exim.errors import BundleError

_MANIFEST_KEYS = {
    "format": str,
    "format_version": int,
    "source": dict,
    "inventory": dict,
    "checksums": dict,
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What a section's hooks raise on a document of the wrong shape that they did not foresee.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
              RecursionError)


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
    section keeps in memory (see :class:`Section`). ``files[section]`` counts the files and
    bytes verified against their checksums (all files, and those under ``artifacts/``);
    ``unverified`` counts, by file name, the files the bundle's format gave no checksum."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self.sections: dict[str, Section] = {}
        self.documents: dict[str, OnDisk] = {}
        self.dirs: dict[str, dict[str, Path]] = {}
        self.facts: dict[str, dict[str, dict]] = {}
        self.files: dict[str, Counter] = {}
        self.unverified: Counter = Counter()
        self._claimed: dict[str, str] = {}  # object directory -> "section id"
        self._matched = 0  # checksums entries a file was checked against

    @classmethod
    def open(cls, path: str | Path, sections: Iterable[Section]) -> Bundle:
        """Read and check the manifest, every file of the bundle's tree (no link, no special
        file), every document of ``sections`` (in that order: a section's references point
        at sections before it) with every file's checksum, and that no listed file is
        missing."""
        bundle = cls.at(path)
        bundle.scan()
        for section in sections:
            bundle.load(section)
        bundle.check_all_listed()
        return bundle

    @classmethod
    def at(cls, path: str | Path) -> Bundle:
        """The bundle at ``path`` with its manifest checked and no section read yet."""
        root = Path(path).absolute()
        manifest_path = root / MANIFEST_FILE
        if not root.is_dir():
            raise BundleError(root, "is not a directory")
        if not manifest_path.exists() and not manifest_path.is_symlink():
            if (root / PROGRESS_FILE).exists() or root.name.endswith(PARTIAL_SUFFIX):
                raise BundleError(root, "is an unfinished export (no manifest.json); "
                                        "run the export again to complete it")
            raise BundleError(manifest_path, "file is missing; this is not an mlflow-exim bundle")
        _regular_file(manifest_path)
        manifest = read_json(manifest_path)
        _check_manifest(manifest, manifest_path)
        return cls(root, manifest)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    @property
    def checksums_cover_all(self) -> bool:
        """Whether the manifest has the checksum of every file (format 3), not only of the
        artifacts (formats 1 and 2)."""
        return self.manifest.get(CHECKSUMS_SCOPE) == CHECKSUMS_ALL

    def entries(self, section: str) -> list[dict]:
        """The inventory entries of ``section`` (none when the bundle predates it)."""
        entries = self.manifest["inventory"].get(section, [])
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("path"), str)
            for e in entries
        ):
            raise BundleError(self.manifest_path, f"inventory.{section} must be a list of "
                                                  "objects with string 'id' and 'path'")
        ids = Counter(e["id"] for e in entries)
        twice = next((i for i, n in ids.items() if n > 1), None)
        if twice is not None:
            raise BundleError(self.manifest_path, f"inventory.{section} lists id {twice!r} "
                                                  f"{ids[twice]} times")
        return entries

    def scan(self) -> None:
        """Refuse symbolic links (to files or directories) and special files (FIFOs,
        devices, sockets) anywhere in the bundle: a link can point anywhere, and a FIFO
        would hang the reader. Only directory listings are read, no file."""
        pending = [self.root]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(directory) as listing:
                    for entry in listing:
                        path = Path(entry.path)
                        if entry.is_symlink():
                            raise BundleError(path, "is a symbolic link; a bundle holds none "
                                                    "(a link can point outside it)")
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(path)
                        elif not entry.is_file(follow_symlinks=False):
                            raise BundleError(path, "is not a regular file or directory")
            except OSError as exc:
                raise BundleError(directory, f"cannot be listed: {exc.strerror}") from None

    def load(self, section: Section) -> None:
        """Verify and validate every object of ``section``; references must name objects
        of sections already loaded."""
        documents, dirs, facts = OnDisk(), {}, {}
        self.files[section.name] = Counter()
        for index, entry in enumerate(self.entries(section.name)):
            directory = self._object_dir(section, index, entry)
            self._verify_files(section, directory)
            doc_path = directory / section.document
            doc = read_json(doc_path)
            with _malformed(doc_path):
                section.validate(doc, doc_path)
                references = section.references(doc)
                facts[entry["id"]] = section.facts(doc)
            for referenced, object_id in references:
                if object_id not in self.dirs.get(referenced, {}):
                    raise BundleError(doc_path, f"its {singular(referenced)} {object_id} is not "
                                                "in the bundle's inventory")
            with _malformed(directory):
                section.check_files(directory)
            documents.paths[entry["id"]] = doc_path
            dirs[entry["id"]] = directory
        if section.parent:
            _check_parentage(section, facts, documents.paths)
        self.sections[section.name] = section
        self.documents[section.name] = documents
        self.dirs[section.name] = dirs
        self.facts[section.name] = facts

    def _object_dir(self, section: Section, index: int, entry: dict) -> Path:
        field = f"inventory.{section.name}[{index}].path"
        relative = check_relative(entry["path"], source=self.manifest_path, field=field)
        owner = self._claimed.setdefault(relative, f"{section.name} {entry['id']}")
        if owner != f"{section.name} {entry['id']}":
            raise BundleError(self.manifest_path, f"{field} {relative!r} is also the "
                                                  f"directory of {owner}")
        directory = inside(self.root, relative, source=self.manifest_path)
        if not directory.is_dir():
            raise BundleError(directory, f"directory of {singular(section.name)} "
                                         f"{entry['id']} is missing")
        return directory

    def _verify_files(self, section: Section, directory: Path) -> None:
        """Each file of one object against its size and SHA-256 in the manifest, before any
        is parsed, so that a truncated file is named as such. Files the format recorded no
        checksum for are counted in ``unverified``."""
        expected = self.manifest["checksums"]
        counts = self.files[section.name]
        artifacts = directory / ARTIFACTS_DIR
        for dirpath, dirnames, names in os.walk(directory):
            dirnames.sort()
            in_artifacts = Path(dirpath) == artifacts or artifacts in Path(dirpath).parents
            for name in sorted(names):
                path = Path(dirpath) / name
                if not (self.checksums_cover_all or (section.artifacts and in_artifacts)):
                    self.unverified[name] += 1
                    continue
                relative = path.relative_to(self.root).as_posix()
                entry = expected.get(relative)
                if entry is None:
                    raise BundleError(path, "is not listed in manifest.json's checksums")
                size = path.stat().st_size
                if size != entry["size"] or sha256_of(path) != entry["sha256"]:
                    raise BundleError(path, f"does not match its checksum in manifest.json "
                                            f"({size} bytes, {entry['size']} recorded): the file "
                                            "is damaged or truncated")
                self._matched += 1
                counts.update(files=1, bytes=size)
                if in_artifacts:
                    counts.update(artifact_files=1, artifact_bytes=size)

    def check_all_listed(self) -> None:
        """Every file the manifest lists was found and checked in an object loaded."""
        expected = self.manifest["checksums"]
        if self._matched == len(expected):
            return
        for relative in expected:
            if not (self.root / relative).is_file():
                raise BundleError(self.root / relative, "file listed in manifest.json is missing")
        owned = set(self._claimed)
        for relative in expected:
            parts = relative.split("/")
            if not any("/".join(parts[:n]) in owned for n in range(1, len(parts))):
                raise BundleError(self.manifest_path, f"checksums lists {relative!r}, a file of "
                                                      "no object in the inventory")


@contextmanager
def _malformed(path: Path) -> Iterator[None]:
    """A document of a shape its section's checks did not foresee is a BundleError too,
    never a traceback."""
    try:
        yield
    except _MALFORMED as exc:
        raise BundleError(path, f"is malformed: {type(exc).__name__} {exc}") from None


def _regular_file(path: Path) -> None:
    if path.is_symlink():
        raise BundleError(path, "is a symbolic link; a bundle holds none (a link can point "
                                "outside it)")
    if not path.is_file():
        raise BundleError(path, "is not a regular file")


def _check_parentage(section: Section, facts: dict[str, dict], paths: dict[str, Path]) -> None:
    """No object is its own ancestor through ``section.parent``."""
    parent_of = {object_id: fact.get("parent") for object_id, fact in facts.items()}
    done: set[str] = set()
    for start in parent_of:
        chain: dict[str, None] = {}
        current = start
        while current in parent_of and current not in done:
            if current in chain:
                circle = [*list(chain)[list(chain).index(current):], current]
                raise BundleError(paths[current], f"field {section.parent} makes a circle of "
                                                  f"parents: {' -> '.join(circle)}")
            chain[current] = None
            current = parent_of[current]
        done.update(chain)


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
    scope = manifest.get(CHECKSUMS_SCOPE)
    if scope not in (None, CHECKSUMS_ALL) or (
            scope is None and manifest["format_version"] >= CHECKSUMS_ALL_SINCE):
        raise BundleError(path, f"field {CHECKSUMS_SCOPE!r} must be {CHECKSUMS_ALL!r}")
    for relative, entry in manifest["checksums"].items():
        check_relative(relative, source=path, field="checksums key")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and _SHA256.fullmatch(entry["sha256"]) and type(entry.get("size")) is int
                and entry["size"] >= 0):
            raise BundleError(path, f"checksums[{relative!r}] is not an object with 'sha256' "
                                    "and 'size' (64 lowercase hex digits, a byte count)")
