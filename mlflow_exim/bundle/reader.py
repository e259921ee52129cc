"""Opens a bundle and validates all of it before an importer writes anything to a target."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim.bundle.format import (
    ARTIFACTS_DIR,
    FORMAT_NAME,
    MANIFEST_FILE,
    PARTIAL_SUFFIX,
    PROGRESS_FILE,
    READABLE_VERSIONS,
    WITH_ARTIFACTS,
)
from mlflow_exim.bundle.jsonio import read_json
from mlflow_exim.bundle.paths import inside
from mlflow_exim.bundle.writer import sha256_of
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
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

    def __len__(self) -> int:
        return len(self.paths)


class Bundle:
    """A validated bundle. ``experiments``, ``runs``, ``logged_models`` and
    ``registered_models`` give the JSON documents by source id (a registered model's id is
    its name; runs are read from disk when asked for); ``dirs`` gives each object's
    directory by section and id, and ``run_parents`` each run's parent run id, if any."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self.experiments: dict[str, dict] = {}
        self.runs = OnDisk()
        self.run_parents: dict[str, str | None] = {}
        self.logged_models: dict[str, dict] = {}
        self.registered_models: dict[str, dict] = {}
        self.dirs: dict[str, dict[str, Path]] = {"runs": {}, "logged_models": {}}

    @property
    def run_dirs(self) -> dict[str, Path]:
        return self.dirs["runs"]

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
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
        bundle = cls(root, manifest)
        bundle._load_objects(manifest_path)
        bundle._check_artifacts(manifest_path)
        return bundle

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    def _entries(self, kind: str, manifest_path: Path) -> list[dict]:
        entries = self.manifest["inventory"].get(kind, [])
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("path"), str)
            for e in entries
        ):
            raise BundleError(manifest_path, f"inventory.{kind} must be a list of "
                                             "objects with string 'id' and 'path'")
        return entries

    def _documents(self, kind: str, file_name: str, validate, manifest_path: Path):
        """(id, directory, document) of each object of an inventory section, its JSON file
        read and validated."""
        for entry in self._entries(kind, manifest_path):
            directory = inside(self.root, entry["path"], source=manifest_path)
            doc_path = directory / file_name
            doc = read_json(doc_path)
            validate(doc, doc_path)
            yield entry["id"], directory, doc

    def _require_experiment(self, experiment_id: str, directory: Path, file_name: str) -> None:
        if experiment_id not in self.experiments:
            raise BundleError(directory / file_name, f"its experiment {experiment_id} is not "
                                                     "in the bundle's inventory")

    def _load_objects(self, manifest_path: Path) -> None:
        for object_id, _, doc in self._documents(
                "experiments", experiment_entity.EXPERIMENT_FILE, experiment_entity.validate,
                manifest_path):
            self.experiments[object_id] = doc
        for object_id, directory, doc in self._documents(
                "runs", run_entity.RUN_FILE, run_entity.validate, manifest_path):
            self._require_experiment(doc["info"]["experiment_id"], directory, run_entity.RUN_FILE)
            run_entity.validate_metric_history(directory / run_entity.METRICS_FILE)
            self.runs.paths[object_id] = directory / run_entity.RUN_FILE
            self.run_parents[object_id] = doc["tags"].get(MLFLOW_PARENT_RUN_ID)
            self.dirs["runs"][object_id] = directory
        for object_id, directory, doc in self._documents(
                "logged_models", logged_model_entity.LOGGED_MODEL_FILE,
                logged_model_entity.validate, manifest_path):
            self._require_experiment(doc["experiment_id"], directory,
                                     logged_model_entity.LOGGED_MODEL_FILE)
            self.logged_models[object_id] = doc
            self.dirs["logged_models"][object_id] = directory
        for object_id, _, doc in self._documents(
                "registered_models", registered_model_entity.REGISTERED_MODEL_FILE,
                registered_model_entity.validate, manifest_path):
            self.registered_models[object_id] = doc

    def _check_artifacts(self, manifest_path: Path) -> None:
        """Every artifact file is listed in the manifest with its size and checksum, and
        every listed file is present and intact."""
        expected = self.manifest["checksums"]
        seen = set()
        object_dirs = [d for kind in WITH_ARTIFACTS for d in self.dirs[kind].values()]
        for object_dir in object_dirs:
            for dirpath, _dirs, files in os.walk(object_dir / ARTIFACTS_DIR):
                for name in files:
                    path = Path(dirpath) / name
                    relative = path.relative_to(self.root).as_posix()
                    entry = expected.get(relative)
                    if entry is None:
                        raise BundleError(path, "artifact is not listed in manifest.json")
                    if not isinstance(entry, dict):
                        raise BundleError(manifest_path, f"checksums[{relative!r}] is not an "
                                                         "object with 'sha256' and 'size'")
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
