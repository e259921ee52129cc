"""Copies from server to server of one object: a run (``copy-run``) or a model version
(``copy-model-version``, the CI promotion dev → prod). Each goes through a temporary bundle:
an export, then an import, so a copy is as faithful as a migration and leaves nothing on
disk.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow_exim import lease, lineage
from mlflow_exim.catalog import open_bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities.registered_model import VERSIONS, ImportOptions
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_model_version, export_run
from mlflow_exim.importer import import_run, import_version_as
from mlflow_exim.report import SKIPPED, Outcome, Report

# How long a copy waits for another copy of the same object to the same place (a CI retry
# beside the first) to finish, after which it finds that copy and creates nothing.
COPY_WAIT_SECONDS = 900


def copy_run(run_id: str, src_uri: str, dst_uri: str, experiment_name: str, *,
             import_source_tags: bool = False) -> Report:
    """Copy one run from server to server through a temporary bundle that is removed
    afterwards. A deleted run is copied and deleted on the target too. Two copies of the
    same run into the same experiment at once take turns (see copy_model_version)."""
    src, dst = Endpoint.connect(src_uri, must_exist=True), Endpoint.connect(dst_uri)
    key = json.dumps(["copy-run", src.display_uri, run_id, experiment_name])
    with lease.held(dst, key, f"copy-run of {run_id} into {experiment_name}",
                    wait=COPY_WAIT_SECONDS), \
            tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = export_run(run_id, bundle_dir, tracking_uri=src, export_deleted_runs=True)
        exported.command = "copy-run"
        if not exported.ok:
            return exported
        imported = import_run(bundle_dir, experiment_name, tracking_uri=dst,
                              import_source_tags=import_source_tags)
    imported.command = "copy-run"
    return imported


def copy_model_version(src_uri: str, dst_uri: str, src_model: str, src_version: str,
                       dst_model: str, *, dst_experiment_name: str | None = None,
                       copy_stages_and_aliases: bool = False, aliases: tuple[str, ...] = (),
                       copy_lineage_tags: bool = False) -> Report:
    """Deep-copy one model version to ``dst_model`` on another server (or the same one):
    its run, logged model and all artifacts travel, so the target never points at source
    storage. Its run goes into ``dst_experiment_name`` (default: the source experiment's
    name). Idempotent: if ``dst_model`` already holds a copy of the version, nothing is
    created and the report says which version it is (``extra["model_version"]``).

    A copy is recognised by the lineage tags (``copy_lineage_tags``) or else by what it
    shares with the original: description, user tags, the run's name and start time, and
    the logged model (name, type, params) or artifact path it serves. Two copies of the
    same version to the same model at once (a CI retry beside the first) take turns
    under a lease on the target (:mod:`mlflow_exim.lease`): the second finds the first's
    copy, and both report it."""
    src, dst = Endpoint.connect(src_uri, must_exist=True), Endpoint.connect(dst_uri)
    try:
        original = registered_model_entity.get_version(src, src_model, str(src_version))
    except Exception:  # noqa: BLE001 - "not found" and friends
        raise EximError(f"model version {src_model}/{src_version} not found on "
                        f"{src.display_uri}") from None
    key = json.dumps(["copy-model-version", src.display_uri, src_model, str(original.version),
                      dst_model])
    with lease.held(dst, key, f"copy-model-version of {src_model}/{original.version} to "
                              f"{dst_model}", wait=COPY_WAIT_SECONDS):
        return _copy_version(src, dst, original, dst_model, dst_experiment_name,
                             copy_stages_and_aliases, aliases, copy_lineage_tags)



def _copy_version(src: Endpoint, dst: Endpoint, original, dst_model: str,
                  dst_experiment_name: str | None, copy_stages_and_aliases: bool,
                  aliases: tuple[str, ...], copy_lineage_tags: bool) -> Report:
    src_model = original.name
    existing = _existing_copy(src, dst, original, dst_model)
    if existing is not None:
        return _already_copied(dst, original, existing, aliases)
    options = ImportOptions(
        keep_numbers=False, update_existing=False, copy_stages=copy_stages_and_aliases,
        copy_aliases=copy_stages_and_aliases, extra_aliases=tuple(aliases),
        extra_version_tags=lineage.copy_lineage_tags(
            src_model, {"version": original.version, "run_id": original.run_id},
            src.display_uri, dst.display_uri) if copy_lineage_tags else {})
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = export_model_version(src_model, str(original.version), bundle_dir,
                                        tracking_uri=src)
        exported.command = "copy-model-version"
        if not exported.ok:
            return exported
        report = import_version_as(open_bundle(bundle_dir), dst, "copy-model-version",
                                   dst_model, dst_experiment_name, options)
    created = report.extra["id_map"][VERSIONS].get(f"{src_model}/{original.version}")
    if created:
        version = dst.client.get_model_version(dst_model, created.rpartition("/")[2])
        report.extra["model_version"] = _version_summary(version, "created")
    return report


def _existing_copy(src: Endpoint, dst: Endpoint, original, dst_model: str):
    """The version of ``dst_model`` that is already a copy of ``original``, if any."""
    try:
        candidates = registered_model_entity.versions(dst, dst_model)
    except Exception:  # noqa: BLE001 - no such model on the target yet
        return None
    for candidate in candidates:
        tags = candidate.tags or {}
        if (tags.get(lineage.SRC_VERSION + "name") == original.name
                and tags.get(lineage.SRC_VERSION + "version") == str(original.version)
                and tags.get(lineage.SRC_CLIENT_URI) == src.display_uri):
            return candidate
    wanted = None
    for candidate in candidates:
        if (candidate.description or "") != (original.description or ""):
            continue  # cheap test first; the fingerprint reads runs and models
        wanted = wanted or registered_model_entity.fingerprint(src, original)
        if registered_model_entity.fingerprint(dst, candidate) == wanted:
            return candidate
    return None


def _already_copied(dst: Endpoint, original, existing, aliases: tuple[str, ...]) -> Report:
    """Nothing is created; asked-for aliases are pointed at the existing copy."""
    report = Report("copy-model-version")
    outcome = Outcome(VERSIONS, f"{original.name}/{original.version}", existing.name,
                      status=SKIPPED, target_id=f"{existing.name}/{existing.version}",
                      reason=f"already present as {existing.name} version {existing.version}")
    report.add(outcome)
    for alias in aliases:
        if alias not in (existing.aliases or []):
            dst.client.set_registered_model_alias(existing.name, alias, existing.version)
    report.extra["model_version"] = _version_summary(existing, "already_present")
    return report


def _version_summary(version, status: str) -> dict:
    return {"name": version.name, "version": str(version.version), "source": version.source,
            "run_id": version.run_id or None, "status": status}
