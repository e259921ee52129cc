"""Server to server in one command: export into a bundle, then import it.

``migrate`` is what a config file (``--config migrate.yaml``) drives. Each side is an
:class:`~mlflow_exim.endpoint.Endpoint` with its own credentials, so two servers with
different users are copied in one process without touching its environment. Running it
again (nightly, with ``since``) moves only what is new: the export takes what changed, and
the import skips what the target already holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow_exim.bundle.format import MANIFEST_FILE
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.exporter import export_all
from mlflow_exim.importer import import_all
from mlflow_exim.report import Report
from mlflow_exim.selection import Renames, RunFilter, Selection
from mlflow_exim.work import DEFAULT_WORKERS

COMMAND = "migrate"


def migrate(source: str | Endpoint, target: str | Endpoint, *,
            bundle_dir: str | Path | None = None, experiments: Selection = "all",
            models: Selection = "all", run_filter: RunFilter | None = None,
            experiment_renames: Renames = (), model_renames: Renames = (),
            import_source_tags: bool = False, export_deleted_runs: bool = False,
            stage_to_alias: dict[str, str] | None = None, workers: int = DEFAULT_WORKERS,
            dry_run: bool = False) -> Report:
    """Copy the selected experiments (with their runs and logged models) and registered
    models from ``source`` to ``target``, renamed as asked.

    The bundle is written to ``bundle_dir/bundle`` and kept there (an interrupted export
    resumes from it; a complete bundle an earlier ``migrate`` left there is replaced), or
    else to a temporary directory that is removed. With ``dry_run`` the export still reads the
    source into a temporary bundle, and the import only reads the target and reports
    what it would create and what is already there."""
    src, dst = Endpoint.connect(source, must_exist=True), Endpoint.connect(target)
    with _bundle_location(None if dry_run else bundle_dir) as location:
        exported = export_all(location, tracking_uri=src, experiments=experiments,
                              models=models, run_filter=run_filter,
                              export_deleted_runs=export_deleted_runs, workers=workers)
        imported = import_all(location, tracking_uri=dst, import_source_tags=import_source_tags,
                              stage_to_alias=stage_to_alias,
                              experiment_renames=experiment_renames,
                              model_renames=model_renames, workers=workers, dry_run=dry_run)
    report = Report(COMMAND)
    report.started_at = exported.started_at
    for outcome in exported.failures:  # what could not be exported never reached the bundle
        report.add(outcome)
    for outcome in imported.outcomes:
        report.add(outcome)
    report.extra = {**imported.extra, "source": src.display_uri, "target": dst.display_uri,
                    "export_seconds": round((imported.started_at
                                             - exported.started_at).total_seconds(), 3)}
    if bundle_dir and not dry_run:
        report.extra["bundle"] = str(location.absolute())
    report.extra.pop("bundle_export_failures", None)  # they are in the outcomes
    return report


@contextmanager
def _bundle_location(bundle_dir: str | Path | None) -> Iterator[Path]:
    if bundle_dir is None:
        with tempfile.TemporaryDirectory(prefix="mlflow-exim-migrate-") as scratch:
            yield Path(scratch) / "bundle"
        return
    path = Path(bundle_dir) / "bundle"
    if (path / MANIFEST_FILE).exists():
        shutil.rmtree(path)  # the previous migration's; this one exports anew
    yield path

