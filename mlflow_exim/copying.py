"""Copies from server to server of one object: a run (``copy-run``) or a model version
(``copy-model-version``, the CI promotion dev → prod). Each goes through a temporary bundle:
an export, then an import, so a copy is as faithful as a migration and leaves nothing on
disk.

Each side is read or written by its own phase (:func:`mlflow_exim.sides.call`): the
source's reads (the version, its export) and the target's work (the lease, finding an
earlier copy, the import), so that a side whose bearer token or retry policy this process's
environment lacks does its phase in a child process that has it, as in ``migrate``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion

from mlflow_exim import lease, lineage, sides
from mlflow_exim.catalog import open_bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities.registered_model import VERSIONS, ImportOptions
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_model_version, export_run
from mlflow_exim.importer import import_run, import_version_as
from mlflow_exim.report import SKIPPED, Outcome, Report

Uri = str | Endpoint

# How long a copy waits for another copy of the same object to the same place (a CI retry
# beside the first) to finish, after which it finds that copy and creates nothing.
COPY_WAIT_SECONDS = 900


def copy_run(run_id: str, src_uri: Uri, dst_uri: Uri, experiment_name: str, *,
             import_source_tags: bool = False) -> Report:
    """Copy one run from server to server through a temporary bundle that is removed
    afterwards. A deleted run is copied and deleted on the target too. Two copies of the
    same run into the same experiment at once take turns (see copy_model_version). Either
    side may be an :class:`Endpoint` with its own credentials and retry policy."""
    src, dst = Endpoint.connect(src_uri, must_exist=True), Endpoint.connect(dst_uri)
    key = json.dumps(["copy-run", src.display_uri, run_id, experiment_name])
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = sides.call(src, export_run, run_id, bundle_dir, tracking_uri=src,
                              export_deleted_runs=True)
        exported.command = "copy-run"
        if not exported.ok:
            return exported
        imported = sides.call(dst, _import_run, dst, key, bundle_dir, run_id, experiment_name,
                              import_source_tags)
    imported.command = "copy-run"
    return imported


def _import_run(dst: Endpoint, key: str, bundle_dir: Path, run_id: str, experiment_name: str,
                import_source_tags: bool) -> Report:
    """The target's phase of copy-run: the import, under the copy's lease."""
    with lease.held(dst, key, f"copy-run of {run_id} into {experiment_name}",
                    wait=COPY_WAIT_SECONDS):
        return import_run(bundle_dir, experiment_name, tracking_uri=dst,
                          import_source_tags=import_source_tags)


def copy_model_version(src_uri: Uri, dst_uri: Uri, src_model: str, src_version: str,
                       dst_model: str, *, dst_experiment_name: str | None = None,
                       copy_stages_and_aliases: bool = False, aliases: tuple[str, ...] = (),
                       copy_lineage_tags: bool = False) -> Report:
    """Deep-copy one model version to ``dst_model`` on another server (or the same one):
    its run, logged model and all artifacts travel, so the target never points at source
    storage. Its run goes into ``dst_experiment_name`` (default: the source experiment's
    name). Idempotent: if ``dst_model`` already holds a copy of the version, nothing is
    created (nor exported) and the report says which version it is
    (``extra["model_version"]``). Either side may be an :class:`Endpoint` with its own
    credentials and retry policy.

    A copy is recognised by the lineage tags (``copy_lineage_tags``) or else by what it
    shares with the original: description, user tags, the run's name and start time, and
    the logged model (name, type, params) or artifact path it serves. Two copies of the
    same version to the same model at once (a CI retry beside the first) take turns
    under a lease on the target (:mod:`mlflow_exim.lease`): the second finds the first's
    copy, and both report it."""
    src, dst = Endpoint.connect(src_uri, must_exist=True), Endpoint.connect(dst_uri)
    original, wanted = sides.call(src, _original, src, src_model, str(src_version))
    options = ImportOptions(
        keep_numbers=False, update_existing=False, copy_stages=copy_stages_and_aliases,
        copy_aliases=copy_stages_and_aliases, extra_aliases=tuple(aliases),
        extra_version_tags=lineage.copy_lineage_tags(
            src_model, {"version": original.version, "run_id": original.run_id},
            src.display_uri, dst.display_uri) if copy_lineage_tags else {})
    copy = _Copy(dst, src.display_uri, original, wanted, dst_model, dst_experiment_name,
                 options)
    done = sides.call(dst, copy.into_target, None)  # copied already: nothing to export
    if done is not None:
        return done
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = sides.call(src, export_model_version, src_model, str(original.version),
                              bundle_dir, tracking_uri=src)
        exported.command = "copy-model-version"
        if not exported.ok:
            return exported
        return sides.call(dst, copy.into_target, bundle_dir)


def _original(src: Endpoint, name: str, number: str) -> tuple:
    """The source's phase of copy-model-version: the version, and what a copy of it shares
    with it (see :func:`registered_model_entity.fingerprint`)."""
    try:
        original = registered_model_entity.get_version(src, name, number)
    except Exception:  # noqa: BLE001 - "not found" and friends
        raise EximError(f"model version {name}/{number} not found on "
                        f"{src.display_uri}") from None
    return original, registered_model_entity.fingerprint(src, original)


@dataclass(frozen=True)
class _Copy:
    """One copy-model-version, as the target's phase needs it."""

    dst: Endpoint
    src_display: str
    original: ModelVersion
    wanted: tuple
    dst_model: str
    dst_experiment_name: str | None
    options: ImportOptions

    def into_target(self, bundle_dir: Path | None) -> Report | None:
        """Under the copy's lease: the report of the copy already on the target, else
        the import of ``bundle_dir`` (None: only look for a copy)."""
        original = self.original
        key = json.dumps(["copy-model-version", self.src_display, original.name,
                          str(original.version), self.dst_model])
        with lease.held(self.dst, key, f"copy-model-version of {original.name}/"
                                       f"{original.version} to {self.dst_model}",
                        wait=COPY_WAIT_SECONDS):
            existing = self.existing()
            if existing is not None:
                return self.already_copied(existing)
            if bundle_dir is None:
                return None
            report = import_version_as(open_bundle(bundle_dir), self.dst,
                                       "copy-model-version", self.dst_model,
                                       self.dst_experiment_name, self.options)
        created = report.extra["id_map"][VERSIONS].get(f"{original.name}/{original.version}")
        if created:
            version = self.dst.client.get_model_version(self.dst_model,
                                                        created.rpartition("/")[2])
            report.extra["model_version"] = _version_summary(version, "created")
        return report

    def existing(self):
        """The version of ``dst_model`` that is already a copy of the original, if any."""
        original = self.original
        try:
            candidates = registered_model_entity.versions(self.dst, self.dst_model)
        except Exception:  # noqa: BLE001 - no such model on the target yet
            return None
        for candidate in candidates:
            tags = candidate.tags or {}
            if (tags.get(lineage.SRC_VERSION + "name") == original.name
                    and tags.get(lineage.SRC_VERSION + "version") == str(original.version)
                    and tags.get(lineage.SRC_CLIENT_URI) == self.src_display):
                return candidate
        for candidate in candidates:
            if ((candidate.description or "") == (original.description or "")
                    and registered_model_entity.fingerprint(self.dst, candidate)
                    == self.wanted):  # the description first: the fingerprint reads more
                return candidate
        return None

    def already_copied(self, existing) -> Report:
        """Nothing is created; asked-for aliases are pointed at the existing copy."""
        original = self.original
        report = Report("copy-model-version")
        report.add(Outcome(VERSIONS, f"{original.name}/{original.version}", existing.name,
                           status=SKIPPED, target_id=f"{existing.name}/{existing.version}",
                           reason=f"already present as {existing.name} version "
                                  f"{existing.version}"))
        for alias in self.options.extra_aliases:
            if alias not in (existing.aliases or []):
                self.dst.registry.set_registered_model_alias(existing.name, alias,
                                                             existing.version)
        report.extra["model_version"] = _version_summary(existing, "already_present")
        return report


def _version_summary(version, status: str) -> dict:
    return {"name": version.name, "version": str(version.version), "source": version.source,
            "run_id": version.run_id or None, "status": status}
