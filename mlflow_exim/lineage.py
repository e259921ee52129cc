"""The ``mlflow_exim.*`` tags on imported objects.

With ``--import-source-tags`` they keep on the target what no MLflow API can carry: the
source ids, creation times and artifact locations, and a copy of the source's ``mlflow.*``
system tags as they were before any remapping. Every import, with or without the option,
writes the source id of runs and logged models (how a re-run recognises them) and marks
objects it is still writing as pending. README_governance.md documents every key.
"""

from __future__ import annotations

from datetime import datetime, timezone

from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

PREFIX = "mlflow_exim"
FIELD = f"{PREFIX}.field."
RUN_INFO = f"{PREFIX}.run_info."
MLFLOW_TAG = f"{PREFIX}.mlflow_tag."

MAX_TAG_KEY = 250

# Every import writes these two recognition tags, with or without --import-source-tags:
# a re-run finds what an earlier one completed by them (see README_governance.md).
SOURCE_RUN_ID = f"{RUN_INFO}run_id"
SOURCE_MODEL_ID = f"{FIELD}model_id"
# Set on an object while it is being written and removed as its last step, so that one
# left half-written by a killed import is recognised and redone. A run with a name carries
# it as its name instead (see pending_run_name).
PENDING = f"{PREFIX}.import.pending"
IMPORT_MARKS = (SOURCE_RUN_ID, SOURCE_MODEL_ID, PENDING)


def pending_run_name(source_run_id: str) -> str:
    """The name a run with a name carries while it is written: the run's last request (the
    UpdateRun that sets its status and end time anyway) gives it its own, so that no
    request of its own takes a pending tag away."""
    return f"{PENDING}:{source_run_id}"


def is_pending(tags: dict) -> bool:
    """Whether the object with these tags is still being written, or was left so: it carries
    the pending tag, or (a run) the pending name, which its ``mlflow.runName`` tag mirrors."""
    source_run_id = tags.get(SOURCE_RUN_ID)
    return PENDING in tags or (source_run_id is not None
                               and tags.get(MLFLOW_RUN_NAME) == pending_run_name(source_run_id))


# What an export says of an object a killed import left half-written in its source.
LEFT_HALF_WRITTEN = ("left half-written by an interrupted mlflow-exim import into this "
                     "server (it bears that import's pending mark): exported as it is, "
                     "and imported as a complete object; run that import again first to "
                     "complete it")


def without_import_marks(tags: dict) -> dict:
    """``tags`` without the recognition tags and pending marker a source may carry from an
    earlier import: an import writes its own, at its own time."""
    return {k: v for k, v in tags.items() if k not in IMPORT_MARKS}

EXPERIMENT_FIELDS = (
    "experiment_id",
    "name",
    "artifact_location",
    "lifecycle_stage",
    "creation_time",
    "last_update_time",
)
LOGGED_MODEL_FIELDS = (
    "model_id",
    "experiment_id",
    "name",
    "source_run_id",
    "status",
    "artifact_location",
    "creation_timestamp",
    "last_updated_timestamp",
)
REGISTERED_MODEL_FIELDS = ("name", "creation_timestamp", "last_updated_timestamp")
MODEL_VERSION_FIELDS = (
    "name",
    "version",
    "source",
    "run_id",
    "run_link",
    "current_stage",
    "status",
    "user_id",
    "creation_timestamp",
    "last_updated_timestamp",
)
_TIMESTAMPS = ("creation_timestamp", "last_updated_timestamp")
# copy-model-version --copy-lineage-tags: one hop of provenance on the copied version.
SRC_VERSION = f"{PREFIX}.src_version."
SRC_CLIENT_URI = f"{PREFIX}.src_client.tracking_uri"
DST_CLIENT_URI = f"{PREFIX}.dst_client.tracking_uri"
RUN_INFO_FIELDS = (
    "run_id",
    "experiment_id",
    "run_name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "artifact_uri",
)


def is_lineage_tag(key: str) -> bool:
    return key.startswith(PREFIX + ".")


def readable_time(millis: int | None) -> str | None:
    """An epoch-millisecond time as ISO 8601 UTC, e.g. 2026-11-22T08:11:10.123+00:00."""
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _as_tags(prefix: str, fields: dict, names: tuple[str, ...], times: tuple[str, ...]) -> dict:
    tags = {}
    for name in names:
        value = fields.get(name)
        if value is not None:
            tags[prefix + name] = str(value)
    for name in times:
        readable = readable_time(fields.get(name))
        if readable is not None:
            tags[f"{prefix}_{name}"] = readable
    return tags


def _mlflow_tag_copies(tags: dict, skipped: list[str]) -> dict:
    copies = {}
    for key, value in tags.items():
        if not key.startswith("mlflow."):
            continue
        copy_key = MLFLOW_TAG + key[len("mlflow."):]
        if len(copy_key) > MAX_TAG_KEY:
            skipped.append(key)
            continue
        copies[copy_key] = value
    return copies


def experiment_source_tags(doc: dict, skipped: list[str]) -> dict:
    """Tags for an imported experiment from its bundle document. Keys too long to copy
    are appended to ``skipped``."""
    tags = _as_tags(FIELD, doc, EXPERIMENT_FIELDS, ("creation_time", "last_update_time"))
    tags.update(_mlflow_tag_copies(doc["tags"], skipped))
    return tags


def run_source_tags(doc: dict, skipped: list[str]) -> dict:
    """Tags for an imported run from its bundle document. Keys too long to copy are
    appended to ``skipped``."""
    tags = _as_tags(RUN_INFO, doc["info"], RUN_INFO_FIELDS, ("start_time", "end_time"))
    tags.update(_mlflow_tag_copies(doc["tags"], skipped))
    return tags


def logged_model_source_tags(doc: dict) -> dict:
    """Tags for an imported logged model from its bundle document."""
    return _as_tags(FIELD, doc, LOGGED_MODEL_FIELDS, _TIMESTAMPS)


def registered_model_source_tags(doc: dict) -> dict:
    """Tags for an imported registered model from its bundle document."""
    return _as_tags(FIELD, doc, REGISTERED_MODEL_FIELDS, _TIMESTAMPS)


def model_version_source_tags(model_name: str, version: dict) -> dict:
    """Tags for an imported model version from its entry in the bundle document."""
    return _as_tags(FIELD, {**version, "name": model_name}, MODEL_VERSION_FIELDS, _TIMESTAMPS)


def copy_lineage_tags(model_name: str, version: dict, src_uri: str, dst_uri: str) -> dict:
    """The one-hop provenance tags of ``copy-model-version --copy-lineage-tags``; the URIs
    must already be free of credentials."""
    return {
        SRC_VERSION + "name": model_name,
        SRC_VERSION + "version": version["version"],
        **({SRC_VERSION + "run_id": version["run_id"]} if version.get("run_id") else {}),
        SRC_CLIENT_URI: src_uri,
        DST_CLIENT_URI: dst_uri,
    }
