"""Export: server → bundle. Each public function is one CLI command."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from mlflow.entities import Experiment, LifecycleStage, ViewType

from mlflow_exim.bulk import PAGE_SIZE, all_experiments, progress, select_experiments
from mlflow_exim.bundle import BundleWriter
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.errors import EximError
from mlflow_exim.report import FAILED, Report, one_line


def export_run(run_id: str, output_dir: str | Path, *, tracking_uri: str | None = None,
               export_deleted_runs: bool = False) -> Report:
    """Export one run (and its experiment's metadata) to a new bundle at ``output_dir``."""
    src = Endpoint.connect(tracking_uri)
    try:
        run = src.client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - "not found" and friends
        raise EximError(f"run {run_id!r} not found on {src.display_uri}") from exc
    if run.info.lifecycle_stage == LifecycleStage.DELETED and not export_deleted_runs:
        raise EximError(f"run {run_id} is deleted; pass --export-deleted-runs to export it")
    experiment = src.client.get_experiment(run.info.experiment_id)
    return _write_bundle(src, output_dir, "export-run", [(experiment, [run_id])],
                         {"export_deleted_runs": export_deleted_runs, "run_id": run_id})


def export_experiment(experiment: str, output_dir: str | Path, *,
                      tracking_uri: str | None = None,
                      export_deleted_runs: bool = False) -> Report:
    """Export one experiment, by name or id, with all its runs."""
    src = Endpoint.connect(tracking_uri)
    found = experiment_entity.find(src, experiment)
    if found.lifecycle_stage == LifecycleStage.DELETED and not export_deleted_runs:
        raise EximError(f"experiment {found.name!r} is deleted; pass --export-deleted-runs "
                        "to export it")
    return _export_experiments(src, output_dir, "export-experiment", [found],
                               export_deleted_runs, selection=experiment)


def export_experiments(experiments: str, output_dir: str | Path, *,
                       tracking_uri: str | None = None,
                       export_deleted_runs: bool = False) -> Report:
    """Export the experiments named by ``experiments``: ``all``, a comma list of names or
    ids, ``prefix*`` globs, or a ``.txt`` file with one of those per line."""
    src = Endpoint.connect(tracking_uri)
    selected = select_experiments(src, experiments, include_deleted=export_deleted_runs)
    return _export_experiments(src, output_dir, "export-experiments", selected,
                               export_deleted_runs, selection=experiments)


def export_all(output_dir: str | Path, *, tracking_uri: str | None = None,
               export_deleted_runs: bool = False) -> Report:
    """Export everything this version of the bundle format carries: every experiment with
    its runs."""
    src = Endpoint.connect(tracking_uri)
    selected = all_experiments(src, include_deleted=export_deleted_runs)
    return _export_experiments(src, output_dir, "export-all", selected, export_deleted_runs)


def _export_experiments(src: Endpoint, output_dir, command: str,
                        experiments: list[Experiment], export_deleted_runs: bool,
                        **options) -> Report:
    view = ViewType.ALL if export_deleted_runs else ViewType.ACTIVE_ONLY
    plan = []
    report = Report(command)
    for experiment in experiments:
        try:
            plan.append((experiment, _run_ids(src, experiment.experiment_id, view)))
        except Exception as exc:  # noqa: BLE001 - reported; the other experiments go on
            report.fail("experiment", experiment.experiment_id,
                        f"cannot list its runs: {one_line(exc)}", experiment.name)
    return _write_bundle(src, output_dir, command, plan,
                         {"export_deleted_runs": export_deleted_runs, **options}, report)


def _run_ids(src: Endpoint, experiment_id: str, view: int) -> list[str]:
    ids, token = [], None
    while True:
        page = src.client.search_runs([experiment_id], run_view_type=view,
                                      max_results=PAGE_SIZE, page_token=token)
        ids.extend(run.info.run_id for run in page)
        token = page.token
        if not token:
            return ids


def _write_bundle(src: Endpoint, output_dir, command: str,
                  plan: list[tuple[Experiment, list[str]]], options: dict,
                  report: Report | None = None) -> Report:
    """Write the experiments and runs of ``plan``. An experiment already in ``report`` as
    failed (its runs could not be listed) is not in ``plan``."""
    report = report or Report(command)
    source = {"tracking_uri": src.display_uri, **src.server_info}
    writer = BundleWriter(output_dir, command=command, source=source, options=options)
    work = []
    for experiment, run_ids in plan:
        with report.track("experiment", experiment.experiment_id, experiment.name) as outcome:
            experiment_entity.export(experiment, writer.experiment_dir(experiment.experiment_id))
            writer.add_experiment(experiment.experiment_id, experiment.name)
        if outcome.status == FAILED:  # a run is only readable with its experiment
            for run_id in run_ids:
                report.fail("run", run_id, f"its experiment {experiment.experiment_id} could "
                                           "not be exported")
        else:
            work.extend((experiment.experiment_id, run_id) for run_id in run_ids)
    for experiment_id, run_id in progress(work, total=len(work), desc="export runs"):
        with report.track("run", run_id) as outcome:
            directory = writer.run_dir(run_id)
            if not (directory / run_entity.RUN_FILE).exists():  # else: kept from a resumed export
                doc = run_entity.export(src, run_id, directory)
                outcome.name = doc["info"]["run_name"]
            writer.add_run(run_id, experiment_id)
            outcome.target_id = writer.relative(directory)
    writer.finish([asdict(o) for o in report.failures])
    report.extra["bundle"] = str(writer.final)
    return report
