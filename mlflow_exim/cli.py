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

from mlflow_exim import exporter, importer
from mlflow_exim.errors import EximError
from mlflow_exim.report import Report
from mlflow_exim.verify import verify as verify_servers

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


def import_options(func):
    """--input-dir, --tracking-uri and --import-source-tags: what every bulk import takes."""
    for option in (source_tags_option, tracking_uri_option, input_dir_option):
        func = option(func)
    return func


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
        click.echo(f"error: {exc}", err=True)
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
            if report_path:
                report.write(report_path)
        click.echo(report.summary(), err=True)
        sys.exit(report.exit_code)
    return wrapper


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
@run_command
def import_run_command(input_dir, experiment_name, tracking_uri, import_source_tags):
    """Import the run of an export-run bundle into an experiment."""
    return importer.import_run(input_dir, experiment_name, tracking_uri=tracking_uri,
                               import_source_tags=import_source_tags)


@click.command("export-experiment", epilog=EXIT_CODES)
@click.option("--experiment", required=True, help="Experiment name or id.")
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_command
def export_experiment_command(experiment, output_dir, tracking_uri, export_deleted_runs):
    """Export one experiment with all its runs and logged models."""
    return exporter.export_experiment(experiment, output_dir, tracking_uri=tracking_uri,
                                      export_deleted_runs=export_deleted_runs)


@click.command("import-experiment", epilog=EXIT_CODES)
@input_dir_option
@click.option("--experiment-name", help="Import under this name instead of the source name.")
@tracking_uri_option
@source_tags_option
@run_command
def import_experiment_command(input_dir, experiment_name, tracking_uri, import_source_tags):
    """Import the experiment of an export-experiment bundle, with its runs and logged
    models."""
    return importer.import_experiment(input_dir, experiment_name=experiment_name,
                                      tracking_uri=tracking_uri,
                                      import_source_tags=import_source_tags)


@click.command("export-experiments", epilog=EXIT_CODES)
@click.option("--experiments", required=True,
              help="'all', a comma list of names or ids, 'prefix*' globs, or a .txt file "
                   "with one of those per line.")
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_command
def export_experiments_command(experiments, output_dir, tracking_uri, export_deleted_runs):
    """Export several experiments with their runs and logged models into one bundle."""
    return exporter.export_experiments(experiments, output_dir, tracking_uri=tracking_uri,
                                       export_deleted_runs=export_deleted_runs)


@click.command("import-experiments", epilog=EXIT_CODES)
@import_options
@run_command
def import_experiments_command(input_dir, **options):
    """Import every experiment of a bundle under its own name."""
    return importer.import_experiments(input_dir, **options)


@click.command("export-all", epilog=EXIT_CODES)
@output_dir_option
@tracking_uri_option
@export_deleted_option
@run_command
def export_all_command(output_dir, tracking_uri, export_deleted_runs):
    """Export everything: every experiment with its runs and logged models, and every
    registered model with its versions (never prompts)."""
    return exporter.export_all(output_dir, tracking_uri=tracking_uri,
                               export_deleted_runs=export_deleted_runs)


@click.command("import-all", epilog=EXIT_CODES)
@import_options
@stage_to_alias_option
@run_command
def import_all_command(input_dir, **options):
    """Import everything a bundle holds."""
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
@run_command
def export_model_command(model, output_dir, tracking_uri, versions, stages, latest_versions):
    """Export a registered model with its versions (all by default), and the run and
    logged model behind each version."""
    return exporter.export_model(model, output_dir, tracking_uri=tracking_uri,
                                 versions=versions, stages=stages,
                                 latest_versions=latest_versions)


@click.command("import-model", epilog=EXIT_CODES)
@input_dir_option
@click.option("--model", help="Import under this name instead of the source name.")
@click.option("--experiment-name",
              help="Put the versions' runs and logged models into this experiment (created "
                   "when missing) instead of experiments named as at the source.")
@tracking_uri_option
@source_tags_option
@stage_to_alias_option
@run_command
def import_model_command(input_dir, model, experiment_name, tracking_uri, import_source_tags,
                         stage_to_alias):
    """Import the registered model of an export-model bundle, with the same version
    numbers, stages and aliases."""
    return importer.import_model(input_dir, model=model, experiment_name=experiment_name,
                                 tracking_uri=tracking_uri,
                                 import_source_tags=import_source_tags,
                                 stage_to_alias=stage_to_alias)


@click.command("export-models", epilog=EXIT_CODES)
@click.option("--models", required=True,
              help="'all', a comma list of names, 'prefix*' globs, or a .txt file with one "
                   "of those per line. Prompts are never included.")
@output_dir_option
@tracking_uri_option
@run_command
def export_models_command(models, output_dir, tracking_uri):
    """Export several registered models, with all their versions, into one bundle."""
    return exporter.export_models(models, output_dir, tracking_uri=tracking_uri)


@click.command("import-models", epilog=EXIT_CODES)
@import_options
@stage_to_alias_option
@run_command
def import_models_command(input_dir, **options):
    """Import every registered model of a bundle under its own name."""
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
@run_command
def import_model_version_command(input_dir, model, experiment_name, tracking_uri,
                                 import_source_tags):
    """Import the version of an export-model-version bundle as the next version of a
    model."""
    return importer.import_model_version(input_dir, model, experiment_name=experiment_name,
                                         tracking_uri=tracking_uri,
                                         import_source_tags=import_source_tags)


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
    return importer.copy_run(run_id, src_uri, dst_uri, experiment_name,
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
        report = importer.copy_model_version(**kwargs)
        if report_path:
            report.write(report_path)
    click.echo(report.summary(), err=True)
    version = report.extra.get("model_version")
    if version and output == "json":
        click.echo(json.dumps(version, sort_keys=True))
    elif version:
        click.echo(f"{version['name']} version {version['version']} ({version['status']})")
    sys.exit(report.exit_code)


@click.command("verify", epilog="Experiments and registered models are matched by name, "
               "versions by number; runs by the source-id tag mlflow_exim.run_info.run_id, or "
               "else by run name and start time; logged models by the tag "
               "mlflow_exim.field.model_id, or else by name, run, type and params. Exit codes: "
               "0 identical; 1 differences; 2 bad input or unreachable server.")
@click.option("--src-uri", required=True, help="Source tracking URI.")
@click.option("--dst-uri", required=True, help="Target tracking URI.")
@click.option("--experiments", default="all", show_default=True,
              help="Source experiments to compare, as for export-experiments.")
@click.option("--models", default="all", show_default=True,
              help="Source registered models to compare, as for export-models; 'none' to "
                   "compare no registered models.")
@click.option("--artifact-content/--no-artifact-content", default=True, show_default=True,
              help="Download artifacts on both sides and compare them byte for byte "
                   "(otherwise paths and sizes only).")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
def verify_command(src_uri, dst_uri, experiments, models, artifact_content, as_json):
    """Compare source and target field by field; print a scorecard; exit 1 on any
    difference."""
    _configure_process()
    with _errors_as_exit_2():
        card = verify_servers(src_uri, dst_uri, experiments=experiments,
                              models=None if models == "none" else models,
                              compare_artifact_content=artifact_content)
    click.echo(json.dumps(card.to_dict(), indent=2) if as_json else card.text())
    sys.exit(0 if card.ok else 1)


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
                 verify_command):
    main.add_command(_command)
