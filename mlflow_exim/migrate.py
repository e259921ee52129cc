"""Server to server in one command: export into a bundle, then import it.

``migrate`` is what a config file (``migrate(config="migrate.yaml")``, or ``mlflow-exim
migrate --config migrate.yaml``) drives; an argument given beside the config overrides the
file's value, as a flag does on the command line. Each side is an
:class:`~mlflow_exim.endpoint.Endpoint` with its own credentials, so two servers with
different users are copied in one process without touching its environment. Running it
again (nightly, with ``since``) moves only what is new: the export takes what changed, and
the import skips what the target already holds. :func:`verify_sides` compares two such
sides.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

from mlflow_exim import sides
from mlflow_exim.bundle.format import MANIFEST_FILE
from mlflow_exim.config import MigrationConfig, connect, load_config
from mlflow_exim.endpoint import Endpoint, RetryPolicy
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_all, export_models
from mlflow_exim.importer import import_all
from mlflow_exim.report import Report
from mlflow_exim.selection import Renames, RunFilter, Selection
from mlflow_exim.shard import Shard
from mlflow_exim.verify import Scorecard, verify, verify_bundle
from mlflow_exim.work import DEFAULT_WORKERS

COMMAND = "migrate"


def migrate(source: str | Endpoint | None = None, target: str | Endpoint | None = None, *,
            config: str | Path | MigrationConfig | None = None,
            bundle_dir: str | Path | None = None, experiments: Selection | None = None,
            models: Selection | None = None, run_filter: RunFilter | None = None,
            experiment_renames: Renames | None = None, model_renames: Renames | None = None,
            import_source_tags: bool | None = None, export_deleted_runs: bool | None = None,
            stage_to_alias: dict[str, str] | None = None, workers: int | None = None,
            dry_run: bool | None = None, report: str | Path | None = None,
            source_retry: RetryPolicy | None = None,
            target_retry: RetryPolicy | None = None, shard: Shard | str | None = None,
            source_database_uri: str | None = None,
            target_database_uri: str | None = None) -> Report:
    """Copy the selected experiments (with their runs and logged models) and registered
    models from ``source`` to ``target``, renamed as asked.

    ``config`` is a migration config file (see :mod:`mlflow_exim.config`) or a loaded
    one. Every argument left as None takes the config's value, else the default (all
    experiments and models, 4 workers, no renames, off); a ``run_filter``'s fields override
    the config's one by one. ``source`` or ``target`` replaces that side of the config, and
    the config's credentials are then not used. ``report`` (default: the config's
    ``options.report``) is a file the JSON report is also written to.

    The bundle is written to ``bundle_dir/bundle`` and kept there (an interrupted export
    resumes from it; a complete bundle an earlier ``migrate`` left there is replaced), or
    else to a temporary directory that is removed. With ``dry_run`` the export still reads the
    source into a temporary bundle, and the import only reads the target and reports
    what it would create and what is already there.

    ``source_retry`` and ``target_retry`` override, field by field, how each side's
    requests are retried (:class:`~mlflow_exim.endpoint.RetryPolicy`; config:
    ``source.attempts``, ``source.timeout``). A side whose token or retry policy this
    process's environment lacks has its phase run in a child process with it
    (:mod:`mlflow_exim.sides`): the export reads the source only, the import writes the
    target only.

    ``source_database_uri`` and ``target_database_uri`` name the database each side's
    server uses (config: ``source.database_uri``): runs' metric histories are then read
    and written there directly (:mod:`mlflow_exim.database`).

    ``shard`` (``"2/4"``) migrates only that shard's part (see :mod:`mlflow_exim.shard`):
    N migrations, one per shard, at once or not, take everything and nothing twice. Its
    bundle is ``bundle_dir/bundle-2-of-4``."""
    loaded = load_config(config) if isinstance(config, (str, Path)) else config
    given = {"bundle_dir": bundle_dir, "experiments": experiments, "models": models,
             "experiment_renames": experiment_renames, "model_renames": model_renames,
             "import_source_tags": import_source_tags,
             "export_deleted_runs": export_deleted_runs, "stage_to_alias": stage_to_alias,
             "workers": workers, "dry_run": dry_run, "report": report, "shard": Shard.of(shard)}
    settings = dict(_DEFAULTS)
    for layer in (loaded.arguments() if loaded else {}, given):
        settings.update({key: value for key, value in layer.items() if value is not None})
    if run_filter:
        settings["run_filter"] = replace(settings["run_filter"], **{
            f.name: getattr(run_filter, f.name) for f in fields(RunFilter)
            if getattr(run_filter, f.name)})
    report_path = settings.pop("report")
    result = _migrate(connect(source, loaded and loaded.source, "source", must_exist=True,
                              retry=source_retry, database_uri=source_database_uri),
                      connect(target, loaded and loaded.target, "target", retry=target_retry,
                              database_uri=target_database_uri),
                      **settings)
    if report_path:
        result.write(report_path)
    return result


_DEFAULTS = {"bundle_dir": None, "experiments": "all", "models": "all", "run_filter": RunFilter(),
             "experiment_renames": (), "model_renames": (), "import_source_tags": False,
             "export_deleted_runs": False, "stage_to_alias": {}, "workers": DEFAULT_WORKERS,
             "dry_run": False, "report": None, "shard": None}


def _migrate(src: Endpoint, dst: Endpoint, *, bundle_dir, experiments, models, run_filter,
             experiment_renames, model_renames, import_source_tags, export_deleted_runs,
             stage_to_alias, workers, dry_run, shard) -> Report:
    with _bundle_location(None if dry_run else bundle_dir, shard) as location:
        exported = sides.call(src, export_all, location, tracking_uri=src,
                              experiments=experiments,
                              models=models, run_filter=run_filter,
                              export_deleted_runs=export_deleted_runs, workers=workers,
                              shard=shard)
        imported = sides.call(dst, import_all, location, tracking_uri=dst,
                              import_source_tags=import_source_tags,
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
def _bundle_location(bundle_dir: str | Path | None, shard: Shard | None) -> Iterator[Path]:
    if bundle_dir is None:
        with tempfile.TemporaryDirectory(prefix="mlflow-exim-migrate-") as scratch:
            yield Path(scratch) / "bundle"
        return
    path = Path(bundle_dir) / ("bundle" if shard is None
                               else f"bundle-{shard.index}-of-{shard.count}")
    if (path / MANIFEST_FILE).exists():
        shutil.rmtree(path)  # the previous migration's; this one exports anew
    yield path



def verify_sides(src: Endpoint, dst: Endpoint, *, experiments: Selection | None = None,
                 models: Selection | None = None, id_map=None,
                 compare_artifact_content: bool = True) -> Scorecard:
    """:func:`mlflow_exim.verify` of two sides whose clients may each need a process of
    their own (a bearer token, a retry policy: see :mod:`mlflow_exim.sides`). Sides that
    need the same environment are compared in one process (this one, or a child that has
    it). Otherwise no process can hold both, so the selection is first exported from the
    source into a temporary bundle (in the source's process; deleted experiments and runs
    included, as verify compares them) and that bundle compared with the target (in the
    target's process); the scorecard names the source server."""
    if src.environment == dst.environment:
        return sides.call(src, verify, src, dst, experiments=experiments, models=models,
                          id_map=id_map, compare_artifact_content=compare_artifact_content)
    if experiments is None and models is None:
        experiments = models = "all"
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-verify-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        if experiments in (None, "none"):
            exported = sides.call(src, export_models, models, bundle_dir, tracking_uri=src)
        else:
            exported = sides.call(src, export_all, bundle_dir, tracking_uri=src,
                                  experiments=experiments, models=models or "none",
                                  export_deleted_runs=True)
        if not exported.ok:
            failed = ", ".join(f"{o.kind} {o.source_id}" for o in exported.failures[:5])
            raise EximError(f"verify: {len(exported.failures)} object(s) of "
                            f"{src.display_uri} could not be read to be compared ({failed})")
        card = sides.call(dst, verify_bundle, bundle_dir, dst, id_map=id_map,
                          compare_artifact_content=compare_artifact_content)
    card.src = src.display_uri
    return card
