"""Names and version of the bundle format, and what a section of it is.

Readers accept every version in READABLE_VERSIONS. Version 2 added logged models and
registered models; a version 1 bundle is a version 2 bundle without them, so one reader
serves both. Version 3 added the MLflow 3 GenAI sections (prompts, traces, evaluation
datasets, scorers), a checksum for every file and the manifest's ``not_carried``; a reader
of version 3 reads an older bundle as one without those sections. Which sections a bundle
holds is declared by the entity modules (each kind's ``Section``), not here: this package
knows files, not MLflow objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_NAME = "mlflow-exim-bundle"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

# The manifest's ``checksums`` cover every file of every object directory (documents,
# metric histories, streams, artifacts) when its ``checksums_scope`` is CHECKSUMS_ALL, which
# format 3 requires; formats 1 and 2 recorded the artifacts' checksums only.
CHECKSUMS_SCOPE = "checksums_scope"
CHECKSUMS_ALL = "all"
CHECKSUMS_ALL_SINCE = 3

MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "export-progress.json"
PARTIAL_SUFFIX = ".partial"
ARTIFACTS_DIR = "artifacts"


def singular(name: str) -> str:
    """A section's or kind's name as words for one object: ``logged_models`` → ``logged
    model``."""
    return name.removesuffix("s").replace("_", " ")


def _no_facts(_doc: dict) -> dict:
    return {}


def _no_references(_doc: dict) -> list[tuple[str, str]]:
    return []


def _no_files(_directory: Path) -> None:
    return None


@dataclass(frozen=True)
class Section:
    """One inventory section of a bundle: ``<name>/<safe id>/<document>`` per object.

    ``validate(doc, path)`` checks a document's shape and ``check_files(directory)`` the
    object's other files (a metric history, say); both raise ``BundleError``. ``facts(doc)``
    is the little that is kept in memory for every object (a run's parent, its experiment,
    its metric points), so that a bundle of a million runs is not held in memory.
    ``references(doc)`` names the (section, id) pairs that must be in the bundle too. With
    ``artifacts`` each object has an ``artifacts/`` tree (covered by the manifest's checksums
    in every format). ``parent`` names the document's field that ``facts(doc)["parent"]``
    comes from, an object of the same section: the reader refuses parents in a circle.
    """

    name: str
    document: str
    validate: Callable[[Any, Path], None]
    artifacts: bool = False
    check_files: Callable[[Path], None] = _no_files
    facts: Callable[[dict], dict] = _no_facts
    references: Callable[[dict], list[tuple[str, str]]] = _no_references
    parent: str = ""
