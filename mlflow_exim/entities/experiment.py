"""Experiments: their bundle document, export and import side by side.

``experiment.json`` holds the experiment's fields and tags (the description is the tag
``mlflow.note.content``). Runs are separate objects in the bundle (``runs/``) that name
their experiment, so a run can be found without reading its experiment.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Experiment, LifecycleStage

from mlflow_exim import lineage
from mlflow_exim.bundle.jsonio import write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.report import PLANNED, SKIPPED, Outcome

EXPERIMENT_FILE = "experiment.json"

_FIELDS = {
    "experiment_id": str,
    "name": str,
    "lifecycle_stage": str,
    "tags": dict,
}


def to_doc(experiment: Experiment) -> dict:
    return {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": experiment.creation_time,
        "last_update_time": experiment.last_update_time,
        "tags": dict(experiment.tags),
    }


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    for key, kind in _FIELDS.items():
        if not isinstance(doc.get(key), kind):
            raise BundleError(path, f"field {key!r} is missing or not a {kind.__name__}")
    if doc["lifecycle_stage"] not in (LifecycleStage.ACTIVE, LifecycleStage.DELETED):
        raise BundleError(path, f"lifecycle_stage {doc['lifecycle_stage']!r} is not "
                                "'active' or 'deleted'")
    if not all(isinstance(v, str) for v in doc["tags"].values()):
        raise BundleError(path, "every tag value must be a string")


def export(experiment: Experiment, directory: Path) -> dict:
    doc = to_doc(experiment)
    write_json(directory / EXPERIMENT_FILE, doc)
    return doc


def find(src: Endpoint, name_or_id: str) -> Experiment:
    """An experiment by name, or else by id; deleted experiments are found too."""
    experiment = src.client.get_experiment_by_name(name_or_id)
    if experiment is None and name_or_id.isdigit():
        try:
            experiment = src.client.get_experiment(name_or_id)
        except Exception:  # noqa: BLE001 - "not found" reads the same as no match
            experiment = None
    if experiment is None:
        raise EximError(f"experiment {name_or_id!r} not found on {src.display_uri}")
    return experiment


def source_id_of(tags: dict) -> str | None:
    """The source id an experiment imported with source tags keeps, else None. An import
    recognises its experiment by target name; verify, given neither an id map nor a
    matching name (a renamed import), falls back on this tag."""
    return tags.get(lineage.FIELD + "experiment_id")


def get_or_create(dst: Endpoint, name: str, outcome: Outcome, *,
                  dry_run: bool = False) -> str | None:
    """The id of the active target experiment ``name``, created empty when missing (with
    ``dry_run``: None, and the outcome says it would be created)."""
    existing = dst.client.get_experiment_by_name(name)
    if existing is None:
        if dry_run:
            outcome.status, outcome.reason = PLANNED, "would be created"
            return None
        return dst.client.create_experiment(name)
    if existing.lifecycle_stage == LifecycleStage.DELETED:
        raise EximError(f"experiment {name!r} exists on {dst.display_uri} but is deleted; "
                        "restore it or choose another name")
    outcome.status, outcome.reason = SKIPPED, "already present"
    return existing.experiment_id


def import_doc(dst: Endpoint, doc: dict, name: str, *, source_tags: bool,
               outcome: Outcome, dry_run: bool = False) -> tuple[str | None, bool]:
    """Create (or reuse, by name) the target experiment for ``doc`` and set its tags.

    Returns the target id and whether this import owns its lifecycle: True when the
    experiment was created, or restored because it is deleted on both sides. Only an owned
    experiment is deleted again once its runs are in; an existing active one never is.
    An existing experiment is reported skipped (already present), with its tags brought up
    to date. ``dry_run`` only looks.
    """
    tags = lineage.without_import_marks(doc["tags"])
    if source_tags:
        skipped: list[str] = []
        tags.update(lineage.experiment_source_tags(doc, skipped))
        for key in skipped:
            outcome.warn(f"source tag for {key!r} not written: its key would be too long")
    deleted = doc["lifecycle_stage"] == LifecycleStage.DELETED
    existing = dst.client.get_experiment_by_name(name)
    if existing is None:
        if dry_run:
            outcome.status, outcome.reason = PLANNED, "would be created"
            return None, True
        if deleted:  # so that a re-run after an interruption knows it is this import's
            tags[lineage.PENDING] = doc["experiment_id"]
        return dst.client.create_experiment(name, tags=tags), True
    outcome.status, outcome.reason = SKIPPED, "already present"
    if dry_run:
        return existing.experiment_id, False
    if (deleted and existing.lifecycle_stage == LifecycleStage.ACTIVE
            and existing.tags.get(lineage.PENDING) == doc["experiment_id"]):
        return existing.experiment_id, True  # created by an import that was interrupted
    owned = existing.lifecycle_stage == LifecycleStage.DELETED
    if owned:
        if doc["lifecycle_stage"] != LifecycleStage.DELETED:
            raise EximError(f"experiment {name!r} exists on {dst.display_uri} but is deleted; "
                            "restore it or choose another name")
        dst.client.restore_experiment(existing.experiment_id)
    elif doc["lifecycle_stage"] == LifecycleStage.DELETED:
        outcome.warn(f"deleted at the source, but the target experiment {name!r} already "
                     "existed and is active; it is left active")
    for key, value in tags.items():
        dst.client.set_experiment_tag(existing.experiment_id, key, value)
    return existing.experiment_id, owned
