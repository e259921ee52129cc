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

import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

from mlflow_exim import sides
from mlflow_exim.bundle.parts import PartsDir
from mlflow_exim.config import MigrationConfig, connect, load_config
from mlflow_exim.endpoint import Endpoint, RetryPolicy
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_all, export_all_in_parts, export_models
from mlflow_exim.importer import import_all
from mlflow_exim.report import Report, merge
from mlflow_exim.selection import Renames, RunFilter, Selection
from mlflow_exim.shard import Shard
from mlflow_exim.verify import Scorecard, verify, verify_bundle
from mlflow_exim.work import DEFAULT_WORKERS, Workers

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

    The export and the import run at once: the selection is planned once, split into
    chunks of whole connected parts (an experiment with its runs, a registered model with
    the experiments behind its versions...) and written chunk after chunk, each a bundle
    ``bundle_dir/bundle/part-<k>-of-<n>``, while the import takes each chunk as soon as it
    is complete. The chunks are kept there (an interrupted export resumes a chunk it left
    partial, and a complete one an earlier ``migrate`` of the same selection left there:
    objects that read the same at the source are kept, not read again), or else written
    to a temporary directory that is removed. The report's ``pipeline`` says how many
    chunks there were and how long the phases overlapped (none with a single part: then
    the export ends before the import starts). With ``dry_run`` the export still reads the
    source into temporary bundles, and the import only reads the target and reports
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
    chunks are in ``bundle_dir/bundle-2-of-4``."""
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
    """Export and import at once: the export writes the selection chunk after chunk (see
    :func:`export_all_in_parts`), each a bundle of its own, while the import takes each
    chunk as soon as it is complete. Each side runs in its own thread, or in a process of
    its own (:mod:`sides`); they meet in the parts directory only."""
    with _bundle_location(None if dry_run else bundle_dir, shard) as location:
        parts = PartsDir(location)
        parts.start()

        def export() -> Report:
            try:
                return sides.call(src, export_all_in_parts, location, tracking_uri=src,
                                  experiments=experiments, models=models,
                                  run_filter=run_filter,
                                  export_deleted_runs=export_deleted_runs, workers=workers,
                                  shard=shard)
            finally:
                parts.end()

        with ThreadPoolExecutor(1, thread_name_prefix="mlflow-exim-export") as pool:
            exporting = pool.submit(export)
            try:
                imported = sides.call(dst, import_parts, location, tracking_uri=dst,
                                      import_source_tags=import_source_tags,
                                      stage_to_alias=stage_to_alias,
                                      experiment_renames=experiment_renames,
                                      model_renames=model_renames, workers=workers,
                                      dry_run=dry_run)
            finally:
                exported = exporting.result()  # its error, if any, is the migration's
        events = parts.events()
    report = merge([r for _, r in imported], [name for name, _ in imported]) if imported \
        else Report(COMMAND)
    report.command, report.started_at = COMMAND, exported.started_at
    report.outcomes = [*exported.failures, *report.outcomes]  # what could not be exported
    # never reached a bundle
    report.extra.pop("bundle_export_failures", None)  # they are in the outcomes
    report.extra.setdefault("id_map", {})
    report.extra.setdefault("dry_run", dry_run)
    if exported.extra.get("not_carried"):
        report.extra["not_carried"] = exported.extra["not_carried"]
    report.extra.update({"source": src.display_uri, "target": dst.display_uri,
                         **_overlap(exported, events, report.extra.pop("merged", []))})
    if bundle_dir and not dry_run:
        report.extra["bundle"] = str(location.absolute())
    return report


def import_parts(location: Path, **options) -> list[tuple[str, Report]]:
    """:func:`import_all` of each part of the parts directory ``location`` as soon as it
    is complete (see :class:`PartsDir`), in order, ``CHUNKS_AT_ONCE`` parts at a time (one
    into an embedded store), until the export has ended; each imported part's name with
    its report, in order. Parts are independent (each a connected whole), except those
    the export lists as after earlier ones (the one of prompts and evaluation datasets,
    whose links to runs may name any earlier part's): such a part is imported once every
    part before it has been. Each part knows the ids of
    the parts imported before it started, so that such a link arrives. An error stops new
    parts, marks the stop for the export, and is raised once the parts under way end."""
    target = options.pop("tracking_uri", None)
    dst = target if isinstance(target, Endpoint) else Endpoint(target)  # one for all parts
    parts = PartsDir(location)
    names, waiting = parts.names(), parts.after_earlier()
    ended = {name: threading.Event() for name in names}
    known: dict[str, dict[str, str]] = {}
    reports: dict[str, Report] = {}
    lock = threading.Lock()

    def one(numbered: tuple[int, str]) -> None:
        number, name = numbered
        try:
            path = parts.wait(name)
            if path is None or parts.stopped():  # the export failed before it, or an
                return  # import did
            if name in waiting:
                for earlier in names[:number]:
                    ended[earlier].wait()
            with lock:
                seed = {kind: dict(ids) for kind, ids in known.items()}
            parts.event("import-start", name)
            report = import_all(path, tracking_uri=dst, known_ids=seed, **options)
            with lock:
                reports[name] = report
                for kind, ids in report.extra["id_map"].items():
                    known.setdefault(kind, {}).update(ids)
            parts.event("import-end", name)
        except BaseException:
            parts.stop()  # the export then writes no further part
            raise
        finally:
            ended[name].set()

    at_once = CHUNKS_AT_ONCE if dst.is_http else 1  # an embedded store: one writer
    with Workers(at_once, "mlflow-exim-parts") as pool:
        pool.each(one, enumerate(names))
    return [(name, reports[name]) for name in names if name in reports]


# Parts imported at once: while one waits on its slowest object, or plans and checks its
# bundle, the other keeps the target busy.
CHUNKS_AT_ONCE = 2


def _overlap(exported: Report, events: list[dict], merged: list[dict]) -> dict:
    """How long the export took, and how the phases overlapped: the parts, each with its
    counts, and the events of the parts directory in the order they happened (a single
    part is today's export, then import)."""
    ends = [e["at"] for e in events if e["event"] == "export-end"]
    export_end = max(ends, default=exported.started_at.timestamp())
    overlap = 0.0
    for start in (e for e in events if e["event"] == "import-start"):
        end = next((e["at"] for e in events if e["event"] == "import-end"
                    and e["part"] == start["part"]), start["at"])
        overlap += max(0.0, min(end, export_end) - start["at"])
    counts = {m["report"]: m["counts"] for m in merged}
    return {"export_seconds": round(export_end - exported.started_at.timestamp(), 3),
            "pipeline": {"parts": [{"part": p["part"], "exported": p["counts"],
                                    "imported": counts.get(p["part"])}
                                   for p in exported.extra.get("parts", [])],
                         "overlap_seconds": round(overlap, 3),
                         "events": [{"event": e["event"], "part": e["part"]}
                                    for e in events]}}


@contextmanager
def _bundle_location(bundle_dir: str | Path | None, shard: Shard | None) -> Iterator[Path]:
    """The parts directory: ``bundle_dir/bundle`` (``bundle-2-of-4`` for a shard), or
    a temporary one, removed after."""
    if bundle_dir is None:
        with tempfile.TemporaryDirectory(prefix="mlflow-exim-migrate-") as scratch:
            yield Path(scratch) / "bundle"
        return
    yield Path(bundle_dir) / ("bundle" if shard is None
                              else f"bundle-{shard.index}-of-{shard.count}")


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
