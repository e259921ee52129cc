"""Thin click layer: options → one library call → report → exit code.

Exit codes: 0 every object ok; 1 at least one object failed (see the report);
2 bad input or an unreachable server (one line on stderr, nothing written).

Options that several commands take are made by the ``*_option`` factories below, so that
a name means one thing, with one help text, everywhere. The naming scheme (README,
Commands): a command that talks to one server takes ``--tracking-uri`` and names objects
plainly (``--experiment``, ``--model``, ``--run-id``; ``--experiment-name`` and
``--model-name`` for names on the target of an import); a command with two sides takes
``--src-uri`` and ``--dst-uri`` and prefixes what belongs to one side (``--src-model``,
``--dst-experiment-name``). Older spellings stay as aliases.

The library is imported when a command runs, not when the CLI loads: importing MLflow
takes seconds, and ``--help`` should not wait for it. As a program (not as a library) it
keeps MLflow's own INFO logging quiet unless ``-v`` is given, and turns off MLflow's
per-download progress bars, which would interleave with its own progress.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from contextlib import contextmanager

import click

import mlflow_exim
from mlflow_exim.errors import EximError
from mlflow_exim.work import DEFAULT_WORKERS

EXIT_CODES = ("Exit codes: 0 every object ok; 1 at least one object failed (the others were "
              "still done; see --report); 2 bad input or unreachable server, nothing written.")

SELECTION_HELP = (
    "'all', or a comma list of names or ids, globs ('team-a/*'), regexes ('re:^exp-[0-9]+$', "
    "searched in the name) and files ('file:list.txt' or 'list.txt', one item per line).")

URI_HELP = ("http[s]://host:port, or an embedded store (sqlite:///file.db; a legacy "
            "file:///.../mlruns store with MLFLOW_ALLOW_FILE_STORE=true)")


def _configurable(help_text: str, default: str) -> str:
    """The help of a migrate option that, left out, keeps the config file's value."""
    return f"{help_text} [default: the config's, else {default}]"


def _defaulted(*decls: str, default, shown: str, configurable: bool, help_text: str, **kwargs):
    """An option with a default; in migrate (``configurable``) it is None when left out,
    so that the config file's value stands, and the help says which default applies."""
    if configurable:
        return click.option(*decls, default=None, help=_configurable(help_text, shown),
                            **kwargs)
    return click.option(*decls, default=default, show_default=True, help=help_text, **kwargs)


# --- servers and bundles -------------------------------------------------------------------

def tracking_uri_option(*, database: bool = True):
    """The one server of an export or import, with --attempts and --timeout: how its
    requests are retried. MLflow reads those from the environment only; a command with
    one side puts them into its own process's environment (as a user would), so the
    library runs as it does for any ``MLFLOW_HTTP_REQUEST_*`` settings. A command that
    moves runs (``database``) also takes --database-uri: the endpoint then carries it."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(attempts, timeout, database_uri=None, **kwargs):
            from mlflow_exim.endpoint import Endpoint, RetryPolicy

            os.environ.update(RetryPolicy(attempts, timeout).environment())
            if database_uri:
                kwargs["tracking_uri"] = Endpoint(kwargs["tracking_uri"],
                                                  database_uri=database_uri)
            return func(**kwargs)
        if database:
            wrapper = database_uri_option("--database-uri", "database_uri",
                                          "the server")(wrapper)
        for option in reversed(_retry_pair("--attempts", "--timeout", "the server",
                                           configurable=False)):
            wrapper = option(wrapper)
        return click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                            help=f"Tracking server or store: {URI_HELP}.")(wrapper)
    return decorate


def database_uri_option(flag: str, dest: str, side: str):
    """The database a side's tracking server uses: the direct-database path of runs'
    metric histories (see mlflow_exim.database)."""
    return click.option(
        flag, dest, metavar="URI",
        help=f"The database {side} uses (sqlite:///…, postgresql://…, mysql://…): runs' "
             "metric histories are read or written there directly, with batched statements, "
             "instead of over REST; all else still goes through the tracking URI. Its schema "
             "revision must be the one this MLflow expects. An embedded store's URI is its "
             "own database.")


def src_uri_option(*, required: bool = True, dest: str = "src_uri", detail: str = ""):
    """The source of a command with two sides."""
    return click.option("--src-uri", dest, required=required,
                        help=f"Source tracking server or store: {URI_HELP}.{detail}")


def dst_uri_option(*, required: bool = True, dest: str = "dst_uri", detail: str = ""):
    """The target of a command with two sides."""
    return click.option("--dst-uri", dest, required=required,
                        help=f"Target tracking server or store, as for --src-uri.{detail}")


def output_dir_option():
    """--output-dir and --overwrite: where an export writes its bundle."""
    output_dir = click.option(
        "--output-dir", required=True, type=click.Path(file_okay=False),
        help="New (or empty) directory for the bundle. It is built as DIR.partial and renamed "
             "when complete; an interrupted export resumes from DIR.partial. Into a complete "
             "bundle of the same command, options and source (a nightly job), the export "
             "refreshes it: new and changed objects are written, unchanged ones kept, those "
             "gone from the source dropped. Any other content is refused.")
    overwrite = click.option(
        "--overwrite", is_flag=True,
        help="Replace a bundle already in --output-dir (of any export) with a new export "
             "from nothing; the old one stays until the new one is complete. A non-empty "
             "directory that holds no bundle is still refused.")
    return lambda func: output_dir(overwrite(func))


def input_dir_option(*, required: bool = True, detail: str = ""):
    return click.option("--input-dir", required=required,
                        type=click.Path(exists=True, file_okay=False),
                        help=f"Bundle directory written by an export command.{detail}")


def config_option(detail: str):
    return click.option(
        "--config", "config", type=click.Path(dir_okay=False),
        help="A YAML migration config (see examples/migrate.yaml): source and target with "
             f"their credentials (as names of environment variables), selection, renames and "
             f"options. {detail}")


SIDES_CONFIG = ("Only source and target are taken from it; --src-uri or --dst-uri replaces a "
               "side (and its credentials).")


# --- what is taken ---------------------------------------------------------------------------

def _selection_option(flag: str, help_text: str, *, required: bool, configurable: bool,
                      paired: bool = False):
    """``paired`` (verify): not given means all when the other selection is not given
    either, and none when it is."""
    if required:
        return click.option(flag, required=True, help=help_text)
    if paired:
        return click.option(flag, default=None, help=help_text + " Default: all, or none "
                            "when only the other of --experiments and --models is given.")
    return _defaulted(flag, default="all", shown="all", configurable=configurable,
                      help_text=help_text)


def experiments_option(*, required: bool = False, configurable: bool = False,
                       paired: bool = False):
    return _selection_option("--experiments", f"Which experiments: {SELECTION_HELP}",
                             required=required, configurable=configurable, paired=paired)


def models_option(*, required: bool = False, configurable: bool = False, paired: bool = False):
    return _selection_option(
        "--models", "Which registered models, selected as --experiments; 'none' for none. "
                    "Prompts are never included.", required=required, configurable=configurable,
        paired=paired)


def model_option():
    """The registered model an export takes."""
    return click.option("--model", required=True, help="Name of the registered model.")


def _datetime(option: str):
    def parse(_ctx, _param, value):
        if value is None:
            return None
        from mlflow_exim import config

        try:
            return config.parse_datetime(value, option)
        except EximError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


def since_option(detail: str):
    return click.option(
        "--since", callback=_datetime("--since"),
        help="Incremental: only what changed at or after this time (ISO 8601, e.g. 2026-11-01 "
             f"or 2026-11-01T02:00:00Z; UTC if no zone): {detail}")


def run_filter_options(func):
    """--run-filter, --started-after, --started-before and --since; the command gets one
    ``run_filter`` (a field not given is empty, so that migrate keeps the config's)."""
    @functools.wraps(func)
    def wrapper(run_filter, started_after, started_before, since, **kwargs):
        from mlflow_exim.selection import RunFilter

        return func(run_filter=RunFilter(run_filter or "", started_after, started_before,
                                         since), **kwargs)
    for name, help_text in (
            ("--started-before", "Only runs started before this time (ISO 8601)."),
            ("--started-after", "Only runs started at or after this time (ISO 8601).")):
        wrapper = click.option(name, callback=_datetime(name), help=help_text)(wrapper)
    wrapper = since_option("runs started or ended since (and runs still running), and "
                           "logged models and model versions changed since.")(wrapper)
    return click.option(
        "--run-filter", metavar="FILTER",
        help="Only runs this MLflow search filter finds, e.g. \"params.model = 'xgb' and "
             "metrics.auc > 0.9\".")(wrapper)


def export_deleted_option(*, configurable: bool = False):
    return _defaulted("--export-deleted-runs/--no-export-deleted-runs", default=False,
                      shown="off", configurable=configurable,
                      help_text="Also export deleted runs, and deleted experiments with their "
                                "runs. Import recreates them and deletes them again.")


# --- how it arrives --------------------------------------------------------------------------

def experiment_name_option(*names: str, dest: str = "experiment_name", required: bool = False,
                           detail: str = ""):
    """The name of the experiment on the target (``--experiment-name``, or in a command
    with two sides ``--dst-experiment-name``)."""
    return click.option(*(names or ("--experiment-name",)), dest, required=required,
                        help=f"Name of the experiment on the target (created when "
                             f"missing){detail}.")


def model_name_option(*, required: bool = False, detail: str = ""):
    """The name of the registered model on the target of an import; ``--model`` is the
    older spelling."""
    return click.option("--model-name", "--model", "model", required=required,
                        help=f"Name of the registered model on the target{detail}.")


def source_tags_option(*aliases: str, dest: str = "import_source_tags",
                       configurable: bool = False, detail: str = ""):
    """--import-source-tags; ``aliases`` are older names of the same switch."""
    return _defaulted("--import-source-tags/--no-import-source-tags", *aliases, dest,
                      default=False, shown="off", configurable=configurable,
                      help_text="Write mlflow_exim.* lineage tags that name the source objects "
                                f"(see README_governance.md){detail}.")


def _parse_stage_to_alias(_ctx, _param, value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    mapping = {}
    for item in _comma_list(None, None, value) or []:
        stage, _, alias = item.partition("=")
        if not stage.strip() or not alias.strip():
            raise click.BadParameter(f"{item!r} is not STAGE=ALIAS", param_hint="--stage-to-alias")
        mapping[stage.strip()] = alias.strip()
    return mapping


def stage_to_alias_option(*, configurable: bool = False):
    help_text = ("Also point ALIAS at the version in STAGE, for users moving off stages, e.g. "
                 "Production=champion,Staging=challenger (the stage is kept too).")
    return click.option("--stage-to-alias", metavar="STAGE=ALIAS[,STAGE=ALIAS]",
                        callback=_parse_stage_to_alias,
                        help=_configurable(help_text, "none") if configurable else help_text)


def rename_options(*kinds: str, configurable: bool = False):
    """--KIND-rename OLD=NEW (repeatable) and --KIND-rename-file for each of ``kinds``
    (experiment, model); the command gets ``KIND_renames``: the flags' rules first, then
    the files'. With ``configurable``, None when none is given (the config's stand)."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(**kwargs):
            for kind in kinds:
                rules = kwargs.pop(f"{kind}_rename") + kwargs.pop(f"{kind}_rename_file")
                kwargs[f"{kind}_renames"] = rules or (None if configurable else ())
            return func(**kwargs)
        for kind in reversed(kinds):
            wrapper = _rename_option_pair(kind)(wrapper)
        return wrapper
    return decorate


def _renames(option: str):
    """A click callback: OLD=NEW values (repeatable) as (old, new) prefix rules."""
    def parse(_ctx, _param, values):
        from mlflow_exim import config

        try:
            return config.parse_renames(values, option)
        except EximError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


def _rename_files(_ctx, param, values):
    from mlflow_exim import config

    try:
        return tuple(rule for path in values for rule in config.read_rename_file(path))
    except EximError as exc:
        raise click.BadParameter(str(exc), param=param) from None


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


# --- how it runs ------------------------------------------------------------------------------

def workers_option(*, configurable: bool = False):
    return _defaulted("--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS,
                      shown=str(DEFAULT_WORKERS), configurable=configurable,
                      help_text="How many objects (runs, logged models, registered models), "
                                "and inside each how many metric batches and artifact files, "
                                "are worked on at once; an export also lists that many "
                                "experiments at once while it writes. An embedded sqlite "
                                "target takes one at a time.")


def dry_run_option(*, configurable: bool = False):
    help_text = ("Read the target and print the plan: what would be created, what is already "
                 "there (skipped), and under which names. Writes nothing to the target.")
    if configurable:
        return click.option("--dry-run/--no-dry-run", default=None,
                            help=_configurable(help_text, "off"))
    return click.option("--dry-run", is_flag=True, help=help_text)


def _shard(_ctx, _param, value: str | None):
    if value is None:
        return None
    from mlflow_exim.shard import Shard

    try:
        return Shard.of(value)
    except EximError as exc:
        raise click.BadParameter(str(exc)) from None


def shard_option():
    return click.option(
        "--shard", metavar="I/N", callback=_shard,
        help="Take only part I of N of the selection (1 <= I <= N, e.g. 2/4), so that N "
             "processes, one per part, take all of it and nothing twice. An experiment stays "
             "whole with its runs, logged models, traces and scorers, a registered model with "
             "every version (and so with the experiments of their runs), a prompt or dataset "
             "with its linked experiments. The same I/N makes the same part in every command.")


def retry_options(func):
    """--src-attempts, --src-timeout, --dst-attempts, --dst-timeout: each side's
    ``RetryPolicy`` (source_retry and target_retry of the library call)."""
    @functools.wraps(func)
    def wrapper(src_attempts, src_timeout, dst_attempts, dst_timeout, **kwargs):
        from mlflow_exim.endpoint import RetryPolicy

        return func(source_retry=RetryPolicy(src_attempts, src_timeout),
                    target_retry=RetryPolicy(dst_attempts, dst_timeout), **kwargs)
    for option in reversed((*_retry_pair("--src-attempts", "--src-timeout", "the source"),
                            *_retry_pair("--dst-attempts", "--dst-timeout", "the target"))):
        wrapper = option(wrapper)
    return wrapper


def _retry_pair(attempts: str, timeout: str, side: str, *, configurable: bool = True):
    """The options that make one side's ``RetryPolicy``; ``configurable`` where a config
    file's ``attempts`` and ``timeout`` may give them instead."""
    texts = ((attempts, "N", f"Send each request to {side} at most N times, with exponential "
              "backoff while it is down, drops connections, answers 5xx or times out.",
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES + 1"),
             (timeout, "SECONDS", f"Seconds each try of a request waits for {side}'s answer.",
              "MLFLOW_HTTP_REQUEST_TIMEOUT"))
    return [click.option(flag, type=click.IntRange(min=1), default=None, metavar=metavar,
                         help=_configurable(text, default) if configurable
                         else f"{text} [default: {default}]")
            for flag, metavar, text, default in texts]


def _connect_sides(config, src, dst, source_retry, target_retry, *, names=("src_uri", "dst_uri"),
                   dst_must_exist=False, databases=(None, None)):
    """The two endpoints of a command with two sides: each flag's URI, else the config's
    side with its credentials; each with its retry settings and its database."""
    from mlflow_exim.config import connect, load_config

    loaded = load_config(config) if config else None
    return (connect(src, loaded and loaded.source, names[0], must_exist=True,
                    retry=source_retry, database_uri=databases[0]),
            connect(dst, loaded and loaded.target, names[1], must_exist=dst_must_exist,
                    retry=target_retry, database_uri=databases[1]))


def database_uri_options(dests=("src_database_uri", "dst_database_uri")):
    """--src-database-uri and --dst-database-uri: each side's database."""
    def decorate(func):
        for flag, dest, side in reversed((("--src-database-uri", dests[0], "the source"),
                                          ("--dst-database-uri", dests[1], "the target"))):
            func = database_uri_option(flag, dest, side)(func)
        return func
    return decorate


def report_option():
    return click.option(
        "--report", "report_path", type=click.Path(dir_okay=False),
        help="Write the JSON report (every object's outcome, the id map) to this file.")


def output_options(func):
    """--output text|json and its short form --json; the command gets ``as_json``."""
    @click.option("--output", type=click.Choice(["text", "json"]), default="text",
                  show_default=True,
                  help="How to print the result on stdout: text for people, JSON for scripts.")
    @click.option("--json", "json_flag", is_flag=True, help="The same as --output json.")
    @functools.wraps(func)
    def wrapper(output, json_flag, **kwargs):
        return func(as_json=json_flag or output == "json", **kwargs)
    return wrapper


def verbose_option():
    return click.option(
        "-v", "--verbose", is_flag=True,
        help="Also show MLflow's own INFO messages (database set-up, waiting for a model "
             "version) and mlflow-exim's.")


def import_options(*, database: bool = True):
    """--input-dir, --tracking-uri (with --database-uri where runs are imported),
    --import-source-tags, --workers and --dry-run: what every bulk import takes."""
    def decorate(func):
        for option in (dry_run_option(), workers_option(), source_tags_option(),
                       tracking_uri_option(database=database), input_dir_option()):
            func = option(func)
        return func
    return decorate


def _comma_list(_ctx, _param, value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


# --- running a command ------------------------------------------------------------------------

def _configure_process(verbose: bool) -> None:
    """Our warnings on stderr; MLflow's INFO messages only with --verbose. MLflow sets up
    its logger from MLFLOW_LOGGING_LEVEL when it is imported (a user's value stands unless
    -v is given); the level set here covers an MLflow that is imported already."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mlflow_exim").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose or not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO" if verbose else "WARNING"
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _as_flags(message: str) -> str:
    """Library messages name a parameter as `name`; on the command line it is the flag of
    the running command that sets it."""
    ctx = click.get_current_context(silent=True)
    flags = {param.name: param.opts[0] for param in ctx.command.params} if ctx else {}
    return re.sub(r"`(\w+)`", lambda m: flags.get(m.group(1), m.group(0)), message)


@contextmanager
def _errors_as_exit_2():
    """Bad input and file-system errors outside any one object: one line, exit 2."""
    try:
        yield
    except (EximError, OSError) as exc:
        from mlflow_exim.endpoint import redact

        click.echo(f"error: {_as_flags(redact(str(exc)))}", err=True)
        sys.exit(2)


def program(func):
    """What every command shares: -v/--verbose, the process set up as a program, and bad
    input as one line on stderr and exit 2."""
    @verbose_option()
    @functools.wraps(func)
    def wrapper(verbose, **kwargs):
        _configure_process(verbose)
        with _errors_as_exit_2():
            return func(**kwargs)
    return wrapper


def run_command(func):
    """Turn a function returning a Report into a command: write the report, print the
    summary on stderr, exit 1 on any failed object and 2 on bad input."""
    @report_option()
    @program
    @functools.wraps(func)
    def wrapper(report_path, **kwargs):
        _finish(func(**kwargs), report_path)
    return wrapper


def _finish(report, report_path, *, stdout: str | None = None) -> None:
    """Write the report, print the summary on stderr (and ``stdout``), and exit."""
    with _errors_as_exit_2():
        if report_path:
            report.write(report_path)
    click.echo(report.summary(), err=True)
    if stdout:
        click.echo(stdout)
    sys.exit(report.exit_code)


def _print(result, as_json: bool) -> None:
    """A scorecard or a table of contents on stdout, as text or JSON."""
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.text())


# --- the commands -----------------------------------------------------------------------------

@click.command("export-run", epilog=EXIT_CODES)
@click.option("--run-id", required=True, help="Id of the run to export.")
@output_dir_option()
@tracking_uri_option()
@export_deleted_option()
@run_command
def export_run_command(run_id, output_dir, tracking_uri, export_deleted_runs, overwrite):
    """Export one run: info, params, tags, metric histories, inputs and artifacts."""
    return mlflow_exim.export_run(run_id, output_dir, tracking_uri=tracking_uri,
                                  export_deleted_runs=export_deleted_runs, overwrite=overwrite)


@click.command("import-run", epilog=EXIT_CODES)
@input_dir_option()
@experiment_name_option(required=True)
@tracking_uri_option()
@source_tags_option()
@workers_option()
@dry_run_option()
@run_command
def import_run_command(input_dir, experiment_name, **options):
    """Import the run of an export-run bundle into an experiment. Run again, it finds the
    run it imported and creates nothing."""
    return mlflow_exim.import_run(input_dir, experiment_name, **options)


@click.command("export-experiment", epilog=EXIT_CODES)
@click.option("--experiment", required=True, help="Experiment name or id.")
@output_dir_option()
@tracking_uri_option()
@export_deleted_option()
@run_filter_options
@workers_option()
@run_command
def export_experiment_command(experiment, output_dir, **options):
    """Export one experiment with its runs (all, or those the run filters take) and
    logged models."""
    return mlflow_exim.export_experiment(experiment, output_dir, **options)


@click.command("import-experiment", epilog=EXIT_CODES)
@input_dir_option()
@experiment_name_option(detail="; default: the source's name")
@tracking_uri_option()
@source_tags_option()
@workers_option()
@dry_run_option()
@run_command
def import_experiment_command(input_dir, **options):
    """Import the experiment of an export-experiment bundle, with its runs and logged
    models. Run again, it adds only what the target lacks."""
    return mlflow_exim.import_experiment(input_dir, **options)


@click.command("export-experiments", epilog=EXIT_CODES)
@experiments_option(required=True)
@output_dir_option()
@tracking_uri_option()
@export_deleted_option()
@run_filter_options
@shard_option()
@workers_option()
@run_command
def export_experiments_command(experiments, output_dir, **options):
    """Export several experiments with their runs and logged models into one bundle."""
    return mlflow_exim.export_experiments(experiments, output_dir, **options)


@click.command("import-experiments", epilog=EXIT_CODES)
@import_options()
@shard_option()
@rename_options("experiment")
@run_command
def import_experiments_command(input_dir, **options):
    """Import every experiment of a bundle under its own name (or renamed)."""
    return mlflow_exim.import_experiments(input_dir, **options)


@click.command("export-all", epilog=EXIT_CODES)
@output_dir_option()
@tracking_uri_option()
@export_deleted_option()
@experiments_option()
@models_option()
@run_filter_options
@shard_option()
@workers_option()
@run_command
def export_all_command(output_dir, **options):
    """Export everything: every experiment with its runs, logged models and scorers, every
    registered model with its versions, every prompt and evaluation dataset; or the
    selected ones."""
    return mlflow_exim.export_all(output_dir, **options)


@click.command("import-all", epilog=EXIT_CODES)
@import_options()
@experiments_option()
@models_option()
@stage_to_alias_option()
@shard_option()
@rename_options("experiment", "model")
@run_command
def import_all_command(input_dir, **options):
    """Import everything a bundle holds, or the selected experiments and registered
    models (with the runs behind the selected models' versions). Run again (after an
    interruption, or with a newer bundle), it completes what is missing and duplicates
    nothing."""
    return mlflow_exim.import_all(input_dir, **options)


@click.command("export-traces", epilog=EXIT_CODES)
@experiments_option(required=True)
@output_dir_option()
@tracking_uri_option(database=False)
@since_option("traces started since.")
@click.option("--filter", "filter_string", metavar="FILTER",
              help="Only traces this MLflow trace search filter finds, e.g. "
                   "\"tag.team = 'search' AND trace.status = 'OK'\".")
@workers_option()
@shard_option()
@run_command
def export_traces_command(experiments, output_dir, **options):
    """Export the traces of experiments (spans, assessments, attachments, run links),
    whether or not they belong to a run, with the experiments but not their runs."""
    return mlflow_exim.export_traces(experiments, output_dir, **options)


@click.command("import-traces", epilog=EXIT_CODES)
@import_options(database=False)
@rename_options("experiment")
@shard_option()
@run_command
def import_traces_command(input_dir, **options):
    """Import the traces of a bundle, keeping their ids (a trace whose id is taken by
    another experiment of the target gets a new one, reported and in the id map). Run
    again, it creates nothing."""
    return mlflow_exim.import_traces(input_dir, **options)


@click.command("export-model", epilog=EXIT_CODES)
@model_option()
@output_dir_option()
@tracking_uri_option()
@click.option("--versions", callback=_comma_list, metavar="N[,N]",
              help="Only these versions, e.g. 1,3.")
@click.option("--stages", callback=_comma_list, metavar="STAGE[,STAGE]",
              help="Only versions in these stages, e.g. Production,Staging.")
@click.option("--latest-versions", is_flag=True,
              help="Only the newest version of each stage (of --stages, if given).")
@workers_option()
@run_command
def export_model_command(model, output_dir, **options):
    """Export a registered model with its versions (all by default), and the run and
    logged model behind each version."""
    return mlflow_exim.export_model(model, output_dir, **options)


@click.command("import-model", epilog=EXIT_CODES)
@input_dir_option()
@model_name_option(detail="; default: the source's name")
@experiment_name_option(detail=", for the versions' runs and logged models; default: "
                               "experiments named as at the source")
@tracking_uri_option()
@source_tags_option()
@stage_to_alias_option()
@workers_option()
@dry_run_option()
@run_command
def import_model_command(input_dir, **options):
    """Import the registered model of an export-model bundle, with the same version
    numbers, stages and aliases."""
    return mlflow_exim.import_model(input_dir, **options)


@click.command("export-models", epilog=EXIT_CODES)
@models_option(required=True)
@output_dir_option()
@tracking_uri_option()
@since_option("model versions changed since.")
@workers_option()
@shard_option()
@run_command
def export_models_command(models, output_dir, **options):
    """Export several registered models, with all their versions, into one bundle."""
    return mlflow_exim.export_models(models, output_dir, **options)


@click.command("import-models", epilog=EXIT_CODES)
@import_options()
@stage_to_alias_option()
@rename_options("experiment", "model")
@shard_option()
@run_command
def import_models_command(input_dir, **options):
    """Import every registered model of a bundle under its own name (or renamed)."""
    return mlflow_exim.import_models(input_dir, **options)


@click.command("export-prompts", epilog=EXIT_CODES)
@click.option("--prompts", required=True,
              help=f"Which prompts of the prompt registry: {SELECTION_HELP}")
@output_dir_option()
@tracking_uri_option(database=False)
@workers_option()
@run_command
def export_prompts_command(prompts, output_dir, **options):
    """Export prompts, each with every version (template, commit message, tags, response
    format, model config), its aliases and tags. Reads only: the source is not changed."""
    return mlflow_exim.export_prompts(prompts, output_dir, **options)


@click.command("import-prompts", epilog=EXIT_CODES)
@input_dir_option()
@tracking_uri_option(database=False)
@workers_option()
@dry_run_option()
@run_command
def import_prompts_command(input_dir, **options):
    """Import the prompts of a bundle, every version under its source number."""
    return mlflow_exim.import_prompts(input_dir, **options)


@click.command("export-evaluation-datasets", epilog=EXIT_CODES)
@click.option("--datasets", required=True,
              help=f"Which evaluation datasets, by name or id: {SELECTION_HELP}")
@output_dir_option()
@tracking_uri_option(database=False)
@workers_option()
@run_command
def export_evaluation_datasets_command(datasets, output_dir, **options):
    """Export evaluation datasets with every record (inputs, outputs, expectations,
    tags, source)."""
    return mlflow_exim.export_evaluation_datasets(datasets, output_dir, **options)


@click.command("import-evaluation-datasets", epilog=EXIT_CODES)
@input_dir_option()
@tracking_uri_option(database=False)
@workers_option()
@dry_run_option()
@run_command
def import_evaluation_datasets_command(input_dir, **options):
    """Import the evaluation datasets of a bundle into the target's experiments of the
    same names; a re-run adds no record twice."""
    return mlflow_exim.import_evaluation_datasets(input_dir, **options)


@click.command("export-model-version", epilog=EXIT_CODES)
@model_option()
@click.option("--version", required=True, help="Version number.")
@output_dir_option()
@tracking_uri_option()
@run_command
def export_model_version_command(model, version, output_dir, tracking_uri, overwrite):
    """Export one model version with its run and logged model."""
    return mlflow_exim.export_model_version(model, version, output_dir,
                                            tracking_uri=tracking_uri, overwrite=overwrite)


@click.command("import-model-version", epilog=EXIT_CODES)
@input_dir_option()
@model_name_option(required=True, detail=" (created when missing); the version is added as "
                                         "its next version")
@experiment_name_option(detail=", for the run and logged model; default: the source's name")
@tracking_uri_option()
@source_tags_option()
@workers_option()
@dry_run_option()
@run_command
def import_model_version_command(input_dir, model, **options):
    """Import the version of an export-model-version bundle as the next version of a
    model. Run again, it finds the version it added and adds nothing."""
    return mlflow_exim.import_model_version(input_dir, model, **options)


@click.command("copy-run", epilog=EXIT_CODES)
@click.option("--src-run-id", "--run-id", "run_id", required=True,
              help="Id of the run on the source.")
@src_uri_option(required=False, detail=" Or --config.")
@dst_uri_option(required=False, detail=" Or --config.")
@config_option(SIDES_CONFIG)
@experiment_name_option("--dst-experiment-name", "--experiment-name", required=True)
@source_tags_option()
@retry_options
@database_uri_options()
@run_command
def copy_run_command(run_id, src_uri, dst_uri, config, source_retry, target_retry,
                     experiment_name, import_source_tags, src_database_uri, dst_database_uri):
    """Copy one run from server to server; nothing is left on disk."""
    src, dst = _connect_sides(config, src_uri, dst_uri, source_retry, target_retry,
                              databases=(src_database_uri, dst_database_uri))
    return mlflow_exim.copy_run(run_id, src, dst, experiment_name,
                                import_source_tags=import_source_tags)


@click.command("copy-model-version", epilog=EXIT_CODES)
@src_uri_option(required=False, detail=" Or --config.")
@dst_uri_option(required=False, detail=" Or --config.")
@config_option(SIDES_CONFIG)
@click.option("--src-model", required=True, help="Source registered model.")
@click.option("--src-version", required=True, help="Source version number.")
@click.option("--dst-model", required=True, help="Target registered model (created when "
                                                   "missing).")
@experiment_name_option("--dst-experiment-name", dest="dst_experiment_name",
                        detail=", for the copied run and logged model; default: the "
                               "source experiment's name")
@click.option("--copy-stages-and-aliases", is_flag=True,
              help="Give the copy the source version's stage and aliases.")
@click.option("--alias", "aliases", multiple=True, metavar="NAME",
              help="Point this alias at the copy (repeatable).")
@source_tags_option("--copy-lineage-tags/--no-copy-lineage-tags", dest="copy_lineage_tags",
                    detail=": here mlflow_exim.src_version.* and the two URIs, by which a "
                           "later run finds the copy")
@retry_options
@database_uri_options()
@output_options
@report_option()
@program
def copy_model_version_command(report_path, as_json, src_uri, dst_uri, config, source_retry,
                               target_retry, src_database_uri, dst_database_uri, **kwargs):
    """Deep-copy a model version to another model or server (its run, logged model and
    artifacts travel). Running the same copy again creates nothing and exits 0."""
    src, dst = _connect_sides(config, src_uri, dst_uri, source_retry, target_retry,
                              databases=(src_database_uri, dst_database_uri))
    report = mlflow_exim.copy_model_version(src, dst, **kwargs)
    version = report.extra.get("model_version")
    if version and as_json:
        printed = json.dumps(version, sort_keys=True)
    elif version:
        printed = f"{version['name']} version {version['version']} ({version['status']})"
    else:
        printed = None
    _finish(report, report_path, stdout=printed)


@click.command("migrate", epilog=EXIT_CODES)
@config_option("A flag given beside it overrides the file's value.")
@src_uri_option(required=False, dest="source",
                detail=" Replaces the config's source (and its credentials).")
@dst_uri_option(required=False, dest="target",
                detail=" Replaces the config's target (and its credentials).")
@click.option("--bundle-dir", type=click.Path(file_okay=False),
              help="Keep the export's chunks in DIR/bundle, each a bundle part-K-of-N: "
                   "the next migrate of the same selection resumes from them, partial or "
                   "complete, and reads again only what changed; default: a temporary "
                   "directory, removed afterwards.")
@experiments_option(configurable=True)
@models_option(configurable=True)
@run_filter_options
@rename_options("experiment", "model", configurable=True)
@workers_option(configurable=True)
@source_tags_option(configurable=True)
@export_deleted_option(configurable=True)
@stage_to_alias_option(configurable=True)
@dry_run_option(configurable=True)
@shard_option()
@retry_options
@database_uri_options(("source_database_uri", "target_database_uri"))
@report_option()
@program
def migrate_command(report_path, **flags):
    """Copy experiments, runs, logged models and registered models from one server to
    another in one command: the export writes the selection in chunks, and the import takes
    each chunk as soon as it is written. Run again, it moves only what the target lacks
    (with --since, only what changed)."""
    _finish(mlflow_exim.migrate(report=report_path, **flags), None)


@click.command("verify", epilog="Experiments and registered models are matched by name "
               "(or by an import report's id map, --id-map), versions by number; runs by the "
               "source-id tag mlflow_exim.run_info.run_id, or else by run name and start time; "
               "logged models by the tag mlflow_exim.field.model_id, or else by name, run, "
               "type and params. A target's leftovers of an interrupted import (tagged "
               "mlflow_exim.import.pending, or runs named mlflow_exim.import.pending:<source "
               "id>) are ignored; a source's are compared, as its export carries them. "
               "Exit codes: 0 identical; "
               "1 differences; 2 bad input or unreachable server.")
@src_uri_option(required=False, dest="source", detail=" Or --input-dir, or --config.")
@input_dir_option(required=False,
                  detail=" Compared, instead of a source server, with the target.")
@dst_uri_option(required=False, dest="target", detail=" Or --config.")
@config_option(SIDES_CONFIG)
@experiments_option(paired=True)
@models_option(paired=True)
@click.option("--id-map", type=click.Path(exists=True, dir_okay=False), metavar="REPORT.json",
              help="An import's JSON report (--report): find renamed experiments and models "
                   "on the target through its id map instead of by name.")
@click.option("--artifact-content/--no-artifact-content", default=True, show_default=True,
              help="Compare artifacts byte for byte (otherwise paths and sizes only).")
@retry_options
@database_uri_options()
@output_options
@program
def verify_command(source, input_dir, target, config, experiments, models, id_map,
                   artifact_content, source_retry, target_retry, src_database_uri,
                   dst_database_uri, as_json):
    """Compare a source server (or a bundle) with the target field by field; print a
    scorecard per kind of object; exit 1 on any difference. Sides that need different
    bearer tokens or retry settings cannot share a process: the source's selection is
    then exported into a temporary bundle first, and the bundle compared. A side's
    database (--src-database-uri, --dst-database-uri, or the config's database_uri) has
    runs' metric histories read there, one SELECT per metric, instead of over REST."""
    from mlflow_exim import sides
    from mlflow_exim.config import connect, load_config
    from mlflow_exim.migrate import verify_sides

    if input_dir:
        loaded = load_config(config) if config else None
        dst = connect(target, loaded and loaded.target, "target", must_exist=True,
                      retry=target_retry, database_uri=dst_database_uri)
        card = sides.call(dst, mlflow_exim.verify_bundle, input_dir, dst, id_map=id_map,
                          compare_artifact_content=artifact_content)
    else:
        src, dst = _connect_sides(config, source, target, source_retry, target_retry,
                                  names=("source", "target"), dst_must_exist=True,
                                  databases=(src_database_uri, dst_database_uri))
        card = verify_sides(src, dst, experiments=experiments, models=models, id_map=id_map,
                            compare_artifact_content=artifact_content)
    _print(card, as_json)
    sys.exit(0 if card.ok else 1)


@click.command("inspect", epilog="Exit codes: 0 every section is complete; 1 a section is not "
               "(the listing says which file is damaged or missing); 2 it is not a bundle, or "
               "its manifest is broken (one line on stderr).")
@input_dir_option()
@output_options
@program
def inspect_command(input_dir, as_json):
    """A bundle's table of contents, without any server: format and tool version, source,
    command and options, objects per kind and per experiment, bytes of artifacts and
    metric points, export failures, and whether each section is complete."""
    contents = mlflow_exim.inspect_bundle(input_dir)
    _print(contents, as_json)
    sys.exit(0 if contents.complete else 1)


@click.command("check", epilog="Exit codes: 0 the bundle is whole; 1 it is not (each problem "
               "names the file, and the field); 2 it is not a bundle, or its manifest is "
               "broken (one line on stderr).")
@input_dir_option()
@output_options
@program
def check_command(input_dir, as_json):
    """Verify a bundle without importing it, and without any server: every file of every
    object against its size and SHA-256 in the manifest, every document as an import
    reads it, no symbolic link or special file anywhere, nothing failed at export. A bundle
    of format 1 or 2 has no checksum for its JSON documents and metric histories: they are
    reported as not verified."""
    result = mlflow_exim.check_bundle(input_dir)
    _print(result, as_json)
    sys.exit(0 if result.ok else 1)


@click.group("report")
def report_group():
    """Work with the JSON reports that --report writes."""


@report_group.command("merge", epilog="Exit codes: 0 every object of every report ok; 1 at "
                      "least one failed; 2 a file is not a report (one line on stderr).")
@click.argument("reports", nargs=-1, required=True, metavar="REPORT...",
                type=click.Path(exists=True, dir_okay=False))
@report_option()
@output_options
@program
def report_merge_command(reports, report_path, as_json):
    """Join the reports of several commands, such as the shards of one migration
    (--shard), into one: every object's outcome (the counts add up), the id maps and
    half-written objects joined, the metric histories' runs and points added up, and each
    report's result."""
    merged = mlflow_exim.merge_reports(reports)
    _finish(merged, report_path, stdout=json.dumps(merged.to_dict(), indent=2, sort_keys=True)
            if as_json else None)


@click.group("mlflow-exim")
@click.version_option(package_name="mlflow-exim")
def main():
    """Migrate MLflow experiments, runs, logged models and registered models between
    tracking servers, faithfully.

    Each command is also installed on its own (export-run, import-run, ...).
    """


COMMANDS = (export_run_command, import_run_command, export_experiment_command,
            import_experiment_command, export_experiments_command, import_experiments_command,
            export_all_command, import_all_command, export_traces_command, import_traces_command,
            export_model_command, import_model_command,
            export_models_command, import_models_command, export_model_version_command,
            import_model_version_command, export_prompts_command, import_prompts_command,
            export_evaluation_datasets_command, import_evaluation_datasets_command,
            copy_run_command, copy_model_version_command,
            migrate_command, verify_command, inspect_command,
            check_command, report_group)

for _command in COMMANDS:
    main.add_command(_command)
