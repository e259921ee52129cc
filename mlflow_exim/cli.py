"""Thin click layer: options → one library call → report → exit code.

Exit codes: 0 every object ok; 1 at least one object failed (see the report);
2 bad input or an unreachable server (one line on stderr, nothing written).

As a program (not as a library) it turns off MLflow's per-download progress bars, which
would interleave with its own progress bar.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from contextlib import contextmanager

import click

from mlflow_exim import config, copying, exporter, importer
from mlflow_exim.endpoint import Endpoint, redact
from mlflow_exim.errors import EximError
from mlflow_exim.migrate import migrate
from mlflow_exim.report import Report
from mlflow_exim.selection import RunFilter
from mlflow_exim.verify import verify as verify_servers
from mlflow_exim.verify import verify_bundle
from mlflow_exim.work import DEFAULT_WORKERS

EXIT_CODES = ("Exit codes: 0 every object ok; 1 at least one object failed (the others were "
              "still done; see --report); 2 bad input or unreachable server, nothing written.")

# Options shared by several commands are defined once, so a name means one thing everywhere.

tracking_uri_option = click.option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
    help="Tracking server (http[s]://host:port) or embedded store (sqlite:///file.db; a "
         "legacy file:///.../mlruns store with MLFLOW_ALLOW_FILE_STORE=true).")
output_dir_option = click.option(
    "--output-dir", required=True, type=click.Path(file_okay=False),
    help="New (or empty) directory for the bundle. It is built as DIR.partial and renamed "
         "when complete; an interrupted export resumes from DIR.partial.")
input_dir_option = click.option(
    "--input-dir", required=True, type=click.Path(exists=True, file_okay=False),
    help="Bundle directory written by an export command.")
export_deleted_option = click.option(
    "--export-deleted-runs/--no-export-deleted-runs", default=False, show_default=True,
    help="Also export deleted runs, and deleted experiments with their runs. Import "
         "recreates them and deletes them again.")
source_tags_option = click.option(
    "--import-source-tags/--no-import-source-tags", default=False, show_default=True,
    help="Write mlflow_exim.* tags with the source ids, times and system tags "
         "(see README_governance.md).")
stage_to_alias_option = click.option(
    "--stage-to-alias", "stage_to_alias", metavar="STAGE=ALIAS[,STAGE=ALIAS]",
    callback=lambda _ctx, _param, value: _parse_stage_to_alias(value),
    help="Also point ALIAS at the version in STAGE, for users moving off stages, e.g. "
         "Production=champion,Staging=challenger (the stage is kept too).")


workers_option = click.option(
    "--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True,
    help="How many objects (runs, logged models, registered models), and inside each how "
         "many metric batches and artifact files, are worked on at once. An embedded "
         "sqlite target takes one at a time.")
dry_run_option = click.option(
    "--dry-run", is_flag=True,
    help="Read the target and print the plan: what would be created, what is already "
         "there (skipped), and under which names. Writes nothing.")


def _renames(option: str):
    """A click callback: OLD=NEW values (repeatable) as (old, new) prefix rules."""
    def parse(_ctx, _param, values):
        try:
            return config.parse_renames(values, option)
        except EximError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


def _rename_files(_ctx, param, values):
    try:
        return tuple(rule for path in values for rule in config.read_rename_file(path))
    except EximError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def rename_options(*kinds: str):
    """--KIND-rename OLD=NEW (repeatable) and --KIND-rename-file for each of ``kinds``
    (experiment, model); the command gets ``KIND_renames``: the flags' rules first, then
    the files'."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(**kwargs):
            for kind in kinds:
                kwargs[f"{kind}_renames"] = (kwargs.pop(f"{kind}_rename")
                                             + kwargs.pop(f"{kind}_rename_file"))
            return func(**kwargs)
        for kind in reversed(kinds):
            wrapper = _rename_option_pair(kind)(wrapper)
        return wrapper
    return decorate


def _rename_option_pair(kind: str):
    def decorate(wrapper):
        wrapper = click.option(
            f"--{kind}-rename-file", multiple=True, type=click.Path(dir_okay=False),
            callback=_rename_files,
            help=f"A file of {kind} rename rules, one OLD=NEW per line (# comments).")(wrapper)
        wrapper = click.option(
            f"--{kind}-rename", multiple=True, metavar="OLD=NEW",
            callback=_renames(f"--{kind}-rename"),
            help=f"Import {kind}s whose name starts with OLD under a name starting with NEW "
                 "instead (repeatable; the first matching rule applies).")(wrapper)
        return wrapper
    return decorate


def _datetime(option: str):
    def parse(_ctx, _param, value):
        if value is None:
            return None
        try:
            return config.parse_datetime(value, option)
        except EximError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


def run_filter_options(func):
    """--run-filter, --started-after, --started-before and --since; the command gets one
    ``run_filter``."""
    @functools.wraps(func)
    def wrapper(run_filter, started_after, started_before, since, **kwargs):
        return func(run_filter=RunFilter(run_filter or "", started_after, started_before,
                                         since), **kwargs)
    for name, help_text in (
            ("--since", "Incremental: only runs started or ended at or after this time (and "
                        "runs still running), and logged models and model versions changed "
                        "since. ISO 8601, e.g. 2026-11-01 or 2026-11-01T02:00:00Z (UTC if no "
                        "zone)."),
            ("--started-before", "Only runs started before this time (ISO 8601)."),
            ("--started-after", "Only runs started at or after this time (ISO 8601).")):
        wrapper = click.option(name, callback=_datetime(name), help=help_text)(wrapper)
    return click.option(
        "--run-filter", metavar="FILTER",
        help="Only runs this MLflow search filter finds, e.g. \"params.model = 'xgb' and "
             "metrics.auc > 0.9\".")(wrapper)


def import_options(func):
    """--input-dir, --tracking-uri, --import-source-tags, --workers and --dry-run: what
    every bulk import takes."""
    for option in (dry_run_option, workers_option, source_tags_option, tracking_uri_option,
                   input_dir_option):
        func = option(func)
    return func


SELECTION_HELP = (
    "'all', or a comma list of names or ids, globs ('team-a/*'), regexes ('re:^exp-[0-9]+$', "
    "searched in the name) and files ('file:list.txt' or 'list.txt', one item per line).")

report_option = click.option(
    "--report", "report_path", type=click.Path(dir_okay=False),
    help="Write the JSON report (every object's outcome, the id map) to this file.")


def _comma_list(_ctx, _param, value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def _parse_stage_to_alias(value: str | None) -> dict[str, str]:
    mapping = {}
    for item in _comma_list(None, None, value) or []:
        stage, _, alias = item.partition("=")
        if not stage.strip() or not alias.strip():
            raise click.BadParameter(f"{item!r} is not STAGE=ALIAS", param_hint="--stage-to-alias")
        mapping[stage.strip()] = alias.strip()
    return mapping


def _configure_process() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def _errors_as_exit_2():
    """Bad input and file-system errors outside any one object: one line, exit 2."""
    try:
        yield
    except (EximError, OSError) as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(2)


def run_command(func):
    """Turn a function returning a Report into a command: write the report, print the
    summary on stderr, exit 1 on any failed object and 2 on bad input."""
    @report_option
    @functools.wraps(func)
    def wrapper(report_path, **kwargs):
        _configure_process()
        with _errors_as_exit_2():
            report: Report = func(**kwargs)
        _finish(report, report_path)
    return wrapper


def _finish(report: Report, report_path, *, stdout: str | None = None) -> None:
    """Write the report, print the summary on stderr (and ``stdout``), and exit."""
    with _errors_as_exit_2():
        if report_path:
            report.write(report_path)
    click.echo(report.summary(), err=True)
    if stdout:
        click.echo(stdout)
    sys.exit(report.exit_code)


@click.command("export-run", epilog=EXIT_CODES)
@click.option("--run-id", required=True, help="Id of the run to export.")
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_command
def export_run_command(run_id, output_dir, tracking_uri, export_deleted_runs):
    """Export one run: info, params, tags, metric histories, inputs and artifacts."""
    return exporter.export_run(run_id, output_dir, tracking_uri=tracking_uri,
                               export_deleted_runs=export_deleted_runs)


@click.command("import-run", epilog=EXIT_CODES)
@input_dir_option
@click.option("--experiment-name", required=True,
              help="Target experiment; created when missing.")
@tracking_uri_option
@source_tags_option
@workers_option
@dry_run_option
@run_command
def import_run_command(input_dir, experiment_name, **options):
    """Import the run of an export-run bundle into an experiment. Run again, it finds the
    run it imported and creates nothing."""
    return importer.import_run(input_dir, experiment_name, **options)


@click.command("export-experiment", epilog=EXIT_CODES)
@click.option("--experiment", required=True, help="Experiment name or id.")
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_filter_options
@workers_option
@run_command
def export_experiment_command(experiment, output_dir, **options):
    """Export one experiment with its runs (all, or those the run filters take) and
    logged models."""
    return exporter.export_experiment(experiment, output_dir, **options)


@click.command("import-experiment", epilog=EXIT_CODES)
@input_dir_option
@click.option("--experiment-name", help="Import under this name instead of the source name.")
@tracking_uri_option
@source_tags_option
@workers_option
@dry_run_option
@run_command
def import_experiment_command(input_dir, **options):
    """Import the experiment of an export-experiment bundle, with its runs and logged
    models. Run again, it adds only what the target lacks."""
    return importer.import_experiment(input_dir, **options)


@click.command("export-experiments", epilog=EXIT_CODES)
@click.option("--experiments", required=True, help=SELECTION_HELP)
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_filter_options
@workers_option
@run_command
def export_experiments_command(experiments, output_dir, **options):
    """Export several experiments with their runs and logged models into one bundle."""
    return exporter.export_experiments(experiments, output_dir, **options)


@click.command("import-experiments", epilog=EXIT_CODES)
@import_options
@rename_options("experiment")
@run_command
def import_experiments_command(input_dir, **options):
    """Import every experiment of a bundle under its own name (or renamed)."""
    return importer.import_experiments(input_dir, **options)


@click.command("export-all", epilog=EXIT_CODES)
@output_dir_option
@tracking_uri_option
@export_deleted_option
@click.option("--experiments", default="all", show_default=True, help=SELECTION_HELP)
@click.option("--models", default="all", show_default=True,
              help="Registered models, selected like --experiments; 'none' for none. "
                   "Prompts are never included.")
@run_filter_options
@workers_option
@run_command
def export_all_command(output_dir, **options):
    """Export everything: every experiment with its runs and logged models, and every
    registered model with its versions (never prompts); or the selected ones."""
    return exporter.export_all(output_dir, **options)


@click.command("import-all", epilog=EXIT_CODES)
@import_options
@stage_to_alias_option
@rename_options("experiment", "model")
@run_command
def import_all_command(input_dir, **options):
    """Import everything a bundle holds. Run again (after an interruption, or with a newer
    bundle), it completes what is missing and duplicates nothing."""
    return importer.import_all(input_dir, **options)


@click.command("export-model", epilog=EXIT_CODES)
@click.option("--model", required=True, help="Registered model name.")
@output_dir_option
@tracking_uri_option
@click.option("--versions", callback=_comma_list, metavar="N[,N]",
              help="Only these versions, e.g. 1,3.")
@click.option("--stages", callback=_comma_list, metavar="STAGE[,STAGE]",
              help="Only versions in these stages, e.g. Production,Staging.")
@click.option("--latest-versions", is_flag=True,
              help="Only the newest version of each stage (of --stages, if given).")
@workers_option
@run_command
def export_model_command(model, output_dir, **options):
    """Export a registered model with its versions (all by default), and the run and
    logged model behind each version."""
    return exporter.export_model(model, output_dir, **options)


@click.command("import-model", epilog=EXIT_CODES)
@input_dir_option
@click.option("--model", help="Import under this name instead of the source name.")
@click.option("--experiment-name",
              help="Put the versions' runs and logged models into this experiment (created "
                   "when missing) instead of experiments named as at the source.")
@tracking_uri_option
@source_tags_option
@stage_to_alias_option
@workers_option
@dry_run_option
@run_command
def import_model_command(input_dir, **options):
    """Import the registered model of an export-model bundle, with the same version
    numbers, stages and aliases."""
    return importer.import_model(input_dir, **options)


@click.command("export-models", epilog=EXIT_CODES)
@click.option("--models", required=True,
              help="Registered models, selected like export-experiments' --experiments. "
                   "Prompts are never included.")
@output_dir_option
@tracking_uri_option
@click.option("--since", callback=_datetime("--since"),
              help="Incremental: only model versions changed since this time (ISO 8601).")
@workers_option
@run_command
def export_models_command(models, output_dir, **options):
    """Export several registered models, with all their versions, into one bundle."""
    return exporter.export_models(models, output_dir, **options)


@click.command("import-models", epilog=EXIT_CODES)
@import_options
@stage_to_alias_option
@rename_options("experiment", "model")
@run_command
def import_models_command(input_dir, **options):
    """Import every registered model of a bundle under its own name (or renamed)."""
    return importer.import_models(input_dir, **options)


@click.command("export-model-version", epilog=EXIT_CODES)
@click.option("--model", required=True, help="Registered model name.")
@click.option("--version", required=True, help="Version number.")
@output_dir_option
@tracking_uri_option
@run_command
def export_model_version_command(model, version, output_dir, tracking_uri):
    """Export one model version with its run and logged model."""
    return exporter.export_model_version(model, version, output_dir, tracking_uri=tracking_uri)


@click.command("import-model-version", epilog=EXIT_CODES)
@input_dir_option
@click.option("--model", required=True,
              help="Target registered model (created when missing); the version is added as "
                   "its next version.")
@click.option("--experiment-name",
              help="Put the run and logged model into this experiment instead of one named "
                   "as at the source.")
@tracking_uri_option
@source_tags_option
@workers_option
@dry_run_option
@run_command
def import_model_version_command(input_dir, model, **options):
    """Import the version of an export-model-version bundle as the next version of a
    model. Run again, it finds the version it added and adds nothing."""
    return importer.import_model_version(input_dir, model, **options)


@click.command("copy-run", epilog=EXIT_CODES)
@click.option("--run-id", required=True, help="Id of the source run.")
@click.option("--src-uri", required=True, help="Source tracking URI.")
@click.option("--dst-uri", required=True, help="Target tracking URI.")
@click.option("--experiment-name", required=True,
              help="Target experiment; created when missing.")
@source_tags_option
@run_command
def copy_run_command(run_id, src_uri, dst_uri, experiment_name, import_source_tags):
    """Copy one run from server to server; nothing is left on disk."""
    return copying.copy_run(run_id, src_uri, dst_uri, experiment_name,
                             import_source_tags=import_source_tags)


@click.command("copy-model-version", epilog=EXIT_CODES)
@click.option("--src-uri", required=True, help="Source tracking and registry URI.")
@click.option("--dst-uri", required=True, help="Target tracking and registry URI.")
@click.option("--src-model", required=True, help="Source registered model.")
@click.option("--src-version", required=True, help="Source version number.")
@click.option("--dst-model", required=True, help="Target registered model (created when "
                                                   "missing).")
@click.option("--dst-experiment-name",
              help="Experiment for the copied run and logged model (default: the source "
                   "experiment's name).")
@click.option("--copy-stages-and-aliases", is_flag=True,
              help="Give the copy the source version's stage and aliases.")
@click.option("--alias", "aliases", multiple=True, metavar="NAME",
              help="Point this alias at the copy (repeatable).")
@click.option("--copy-lineage-tags", is_flag=True,
              help="Tag the copy with mlflow_exim.src_version.* and the two URIs.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="How to print the target version on stdout.")
@report_option
def copy_model_version_command(report_path, output, **kwargs):
    """Deep-copy a model version to another model or server (its run, logged model and
    artifacts travel). Running the same copy again creates nothing and exits 0."""
    _configure_process()
    with _errors_as_exit_2():
        report = copying.copy_model_version(**kwargs)
    version = report.extra.get("model_version")
    if version and output == "json":
        printed = json.dumps(version, sort_keys=True)
    elif version:
        printed = f"{version['name']} version {version['version']} ({version['status']})"
    else:
        printed = None
    _finish(report, report_path, stdout=printed)


@click.command("migrate", epilog=EXIT_CODES)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A YAML migration config (see examples/migrate.yaml): source and target "
                   "with their credentials (as names of environment variables), selection, "
                   "renames and options. A flag given here overrides it.")
@click.option("--src-uri", help="Source tracking URI.")
@click.option("--dst-uri", help="Target tracking URI.")
@click.option("--bundle-dir", type=click.Path(file_okay=False),
              help="Keep the bundle in DIR/bundle (an interrupted export resumes from it); "
                   "default: a temporary directory, removed afterwards.")
@click.option("--experiments", help=SELECTION_HELP + " Default: all.")
@click.option("--models", help="Registered models, selected like --experiments; 'none' for "
                               "none. Default: all.")
@run_filter_options
@rename_options("experiment", "model")
@click.option("--workers", type=click.IntRange(min=1),
              help=f"Objects worked on at once (default {DEFAULT_WORKERS}).")
@click.option("--import-source-tags/--no-import-source-tags", default=None,
              help="Write mlflow_exim.* source tags (see README_governance.md).")
@click.option("--export-deleted-runs/--no-export-deleted-runs", default=None,
              help="Also migrate deleted runs and experiments (deleted again on the target).")
@click.option("--stage-to-alias", metavar="STAGE=ALIAS[,STAGE=ALIAS]",
              help="Also point ALIAS at the version in STAGE.")
@click.option("--dry-run", is_flag=True, default=None,
              help="Read both sides and print the plan; write nothing to the target.")
@report_option
def migrate_command(config_path, report_path, **flags):
    """Copy experiments, runs, logged models and registered models from one server to
    another in one process: export, then import. Run again, it moves only what the
    target lacks (with --since, only what changed)."""
    _configure_process()
    with _errors_as_exit_2():
        loaded = config.load_config(config_path) if config_path else None
        settings = _migration_settings(loaded, flags)
        report = migrate(**settings)
    _finish(report, report_path or (loaded and loaded.options.report))


def _migration_settings(loaded: config.MigrationConfig | None, flags: dict) -> dict:
    """The arguments of :func:`migrate`: each flag given on the command line, else the
    config file's value, else the default."""
    select = loaded.select if loaded else config.SelectConfig()
    rename = loaded.rename if loaded else config.RenameConfig()
    options = loaded.options if loaded else config.OptionsConfig()
    given: RunFilter = flags["run_filter"]
    run_filter = RunFilter(
        given.filter_string or select.runs.filter,
        given.started_after or select.runs.started_after,
        given.started_before or select.runs.started_before,
        given.since or select.since)

    def pick(flag: str, configured):
        return configured if flags[flag] is None else flags[flag]

    stage_to_alias = (_parse_stage_to_alias(flags["stage_to_alias"])
                      if flags["stage_to_alias"] else options.stage_to_alias)
    return {
        "source": _side(flags["src_uri"], loaded and loaded.source, "--src-uri"),
        "target": _side(flags["dst_uri"], loaded and loaded.target, "--dst-uri"),
        "bundle_dir": pick("bundle_dir", loaded.bundle_dir if loaded else None),
        "experiments": pick("experiments", select.experiments),
        "models": pick("models", select.models),
        "run_filter": run_filter,
        "experiment_renames": flags["experiment_renames"] or rename.experiments,
        "model_renames": flags["model_renames"] or rename.models,
        "workers": pick("workers", options.workers) or DEFAULT_WORKERS,
        "import_source_tags": pick("import_source_tags", options.import_source_tags),
        "export_deleted_runs": pick("export_deleted_runs", options.export_deleted_runs),
        "stage_to_alias": stage_to_alias,
        "dry_run": pick("dry_run", options.dry_run),
    }


@click.command("verify", epilog="Experiments and registered models are matched by name, "
               "versions by number; runs by the source-id tag mlflow_exim.run_info.run_id, or "
               "else by run name and start time; logged models by the tag "
               "mlflow_exim.field.model_id, or else by name, run, type and params. Leftovers "
               "of an interrupted import (tagged mlflow_exim.import.pending) are ignored. "
               "Exit codes: 0 identical; 1 differences; 2 bad input or unreachable server.")
@click.option("--src-uri", help="Source tracking URI (or --input-dir, or --config).")
@click.option("--input-dir", type=click.Path(exists=True, file_okay=False),
              help="Compare this bundle, instead of a source server, with the target.")
@click.option("--dst-uri", help="Target tracking URI (or --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Take source and target, with their credentials, from a migrate config; "
                   "--src-uri or --dst-uri replaces a side (its credentials are then not used).")
@click.option("--experiments", default="all", show_default=True,
              help="Source experiments to compare, as for export-experiments.")
@click.option("--models", default="all", show_default=True,
              help="Source registered models to compare, as for export-models; 'none' to "
                   "compare no registered models.")
@click.option("--artifact-content/--no-artifact-content", default=True, show_default=True,
              help="Compare artifacts byte for byte (otherwise paths and sizes only).")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
def verify_command(src_uri, input_dir, dst_uri, config_path, experiments, models,
                   artifact_content, as_json):
    """Compare a source server (or a bundle) with the target field by field; print a
    scorecard per kind of object; exit 1 on any difference."""
    _configure_process()
    with _errors_as_exit_2():
        loaded = config.load_config(config_path) if config_path else None
        target = _side(dst_uri, loaded and loaded.target, "--dst-uri")
        if input_dir:
            card = verify_bundle(input_dir, target, compare_artifact_content=artifact_content)
        else:
            card = verify_servers(_side(src_uri, loaded and loaded.source, "--src-uri"),
                                  target, experiments=experiments,
                                  models=None if models == "none" else models,
                                  compare_artifact_content=artifact_content)
    click.echo(json.dumps(card.to_dict(), indent=2) if as_json else card.text())
    sys.exit(0 if card.ok else 1)


def _side(uri: str | None, configured: config.SideConfig | None, flag: str) -> Endpoint:
    """An endpoint from a flag's URI or else from the config's side. The config's
    credentials go only to the config's own URI, never to another host."""
    if uri is not None:
        return Endpoint.connect(uri)
    if configured is None:
        raise EximError(f"{flag} is required (or --config)")
    return configured.connect()


@click.group("mlflow-exim")
@click.version_option(package_name="mlflow-exim")
def main():
    """Migrate MLflow experiments, runs, logged models and registered models between
    tracking servers, faithfully.

    Each command is also installed on its own (export-run, import-run, ...).
    """


for _command in (export_run_command, import_run_command, export_experiment_command,
                 import_experiment_command, export_experiments_command,
                 import_experiments_command, export_all_command, import_all_command,
                 export_model_command, import_model_command, export_models_command,
                 import_models_command, export_model_version_command,
                 import_model_version_command, copy_run_command, copy_model_version_command,
                 migrate_command, verify_command):
    main.add_command(_command)
