"""A migration config file (``--config migrate.yaml``), loaded and checked before any work.

The shape (every key but ``source.tracking_uri`` and ``target.tracking_uri`` is optional;
``examples/migrate.yaml`` is a commented example)::

    source:
      tracking_uri: http://dev-mlflow:5000
      username_env: DEV_MLFLOW_USER        # NAMES of environment variables, never values
      password_env: DEV_MLFLOW_PASSWORD
      # token_env: DEV_MLFLOW_TOKEN        # a bearer token, instead of username and password
      attempts: 6                          # each request sent at most 6 times (backoff)
      timeout: 60                          # seconds each try waits for its answer
      # database_uri: postgresql://mlflow@dev-db/mlflow  # the server's own database: metric
      #                                    # histories read directly (no password: PGPASSWORD)
    target:
      tracking_uri: http://prod-mlflow:5000
      username_env: PROD_MLFLOW_USER
      password_env: PROD_MLFLOW_PASSWORD
    bundle_dir: ./migration-bundle         # where the export is kept (resumable)
    select:
      experiments: ["team-a/*", "re:^exp-[0-9]+$", "file:experiments.txt"]  # default: all
      models: all                          # one string or a list of strings
      runs:
        filter: "params.model = 'xgb'"     # an MLflow search_runs filter
        started_after: 2026-01-01T00:00:00Z
        started_before: 2026-06-30
      since: 2026-11-01T00:00:00Z          # incremental: only what changed or started since
    rename:                                # OLD_PREFIX: NEW_PREFIX, first match wins
      experiments: {"team-a/": "prod/team-a/"}
      models: {"dev-": "prod-"}
      # or from files of OLD=NEW lines: experiments_file: renames.txt, models_file: ...
    options:
      workers: 8
      import_source_tags: true
      export_deleted_runs: false
      stage_to_alias: {Production: champion}
      dry_run: false
      report: report.json

Dates are ISO 8601 dates or date-times (``Z`` or an offset; none means UTC; a date means
its midnight UTC). Selection items stay text: the selection engine reads globs, ``re:`` and
``file:``. Relative paths are relative to the current directory, as on the command line.

Every problem is an :class:`~mlflow_exim.errors.EximError` of one line,
``<file>: <dotted.key>: what is wrong``: unknown keys (so that a typo is never ignored),
wrong types, bad dates or renames, and credentials written into the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import yaml
from mlflow.utils.search_utils import SearchUtils

from mlflow_exim.endpoint import Credentials, Endpoint, RetryPolicy
from mlflow_exim.errors import EximError
from mlflow_exim.selection import RunFilter

RenameRules = tuple[tuple[str, str], ...]
STAGES = ("None", "Staging", "Production", "Archived")


@dataclass(frozen=True)
class SideConfig:
    """One side of the migration: its tracking URI (never with credentials in it) and
    the credentials read from the environment variables the file names."""

    tracking_uri: str
    credentials: Credentials | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    database_uri: str | None = None

    def connect(self, *, must_exist: bool = False, retry: RetryPolicy | None = None,
                database_uri: str | None = None) -> Endpoint:
        return Endpoint.connect(self.tracking_uri, self.credentials, must_exist=must_exist,
                                retry=self.retry.merged(retry),
                                database_uri=database_uri or self.database_uri)


@dataclass(frozen=True)
class RunsConfig:
    filter: str = ""
    started_after: datetime | None = None
    started_before: datetime | None = None


@dataclass(frozen=True)
class SelectConfig:
    """What to migrate. ``experiments`` and ``models`` are a selection string (``all``,
    a comma list, ...) or a tuple of items, as the file gives them."""

    experiments: str | tuple[str, ...] = "all"
    models: str | tuple[str, ...] = "all"
    runs: RunsConfig = field(default_factory=RunsConfig)
    since: datetime | None = None


@dataclass(frozen=True)
class RenameConfig:
    """(old prefix, new prefix) pairs, in the order given."""

    experiments: RenameRules = ()
    models: RenameRules = ()


@dataclass(frozen=True)
class OptionsConfig:
    workers: int | None = None  # None: the command's default
    import_source_tags: bool = False
    export_deleted_runs: bool = False
    stage_to_alias: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    report: Path | None = None


@dataclass(frozen=True)
class MigrationConfig:
    path: Path
    source: SideConfig
    target: SideConfig
    bundle_dir: Path | None = None
    select: SelectConfig = field(default_factory=SelectConfig)
    rename: RenameConfig = field(default_factory=RenameConfig)
    options: OptionsConfig = field(default_factory=OptionsConfig)

    def arguments(self) -> dict:
        """The file's settings as keyword arguments of :func:`mlflow_exim.migrate` (the
        sides apart); None where the file leaves a setting to the default."""
        runs = self.select.runs
        return {
            "bundle_dir": self.bundle_dir,
            "experiments": self.select.experiments,
            "models": self.select.models,
            "run_filter": RunFilter(runs.filter, runs.started_after, runs.started_before,
                                    self.select.since),
            "experiment_renames": self.rename.experiments,
            "model_renames": self.rename.models,
            "workers": self.options.workers,
            "import_source_tags": self.options.import_source_tags,
            "export_deleted_runs": self.options.export_deleted_runs,
            "stage_to_alias": self.options.stage_to_alias,
            "dry_run": self.options.dry_run,
            "report": self.options.report,
        }


def connect(uri: str | Endpoint | None, configured: SideConfig | None, what: str, *,
            must_exist: bool = False, retry: RetryPolicy | None = None,
            database_uri: str | None = None) -> Endpoint:
    """The endpoint of ``uri``, else of the config's side; ``what`` names the argument in
    the error when there is neither. The config's credentials (and database) go only to
    the config's own URI, never to another host. ``must_exist`` as for
    :meth:`Endpoint.connect` (a side that is only read); ``retry`` overrides the config's
    retry policy field by field, ``database_uri`` the config's database."""
    if uri is not None:
        return Endpoint.connect(uri, must_exist=must_exist,
                                retry=None if isinstance(uri, Endpoint) else retry,
                                database_uri=database_uri)
    if configured is None:
        raise EximError(f"`{what}` is required (or a `config` that gives it)")
    return configured.connect(must_exist=must_exist, retry=retry, database_uri=database_uri)


def parse_datetime(text: str, what: str) -> datetime:
    """``text``, an ISO 8601 date or date-time, as an aware UTC datetime. ``what`` starts
    the error message (``--since``, or ``file: select.since``)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EximError(f"{what}: {text!r} is not an ISO 8601 date or date-time "
                        "(like 2026-01-01 or 2026-01-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_renames(items: Iterable[str], what: str) -> RenameRules:
    """``OLD=NEW`` items (``--experiment-rename``, repeatable) as ordered (old, new) prefix
    pairs. Spaces around ``=`` are dropped; NEW may be empty (the prefix is removed)."""
    pairs = []
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip():
            raise EximError(f"{what}: {item!r} is not OLD=NEW with a non-empty OLD")
        pairs.append((old.strip(), new.strip()))
    return _checked_renames(pairs, what)


def read_rename_file(path: str | Path) -> RenameRules:
    """The rename rules of a file of ``OLD=NEW`` lines; blank lines and ``#`` lines are
    ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EximError(f"{path}: cannot read rename file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EximError(f"{path}: rename file is not UTF-8 text") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            pairs += parse_renames([line], f"{path}: line {number}")
    return _checked_renames(pairs, str(path))


def _checked_renames(pairs: list[tuple[str, str]], what: str) -> RenameRules:
    seen = set()
    for old, _ in pairs:
        if old in seen:
            raise EximError(f"{what}: {old!r} is renamed twice")
        seen.add(old)
    return tuple(pairs)


def load_config(path: str | Path) -> MigrationConfig:
    """The checked config in ``path``; an :class:`EximError` of one line if anything is
    wrong with it."""
    return _Checker(path).config()


class _Loader(yaml.SafeLoader):
    """A SafeLoader that leaves dates as text (read by :func:`parse_datetime`, as on the
    command line) and refuses a key given twice (which YAML would silently overwrite)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_SIDE_KEYS = ("tracking_uri", "username_env", "password_env", "token_env", "attempts",
              "timeout", "database_uri")
_CREDENTIAL_KEYS = ("username_env", "password_env", "token_env")


class _Checker:
    """Reads one file; every check knows the file and the dotted key it is at."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def fail(self, key: str, problem: str) -> NoReturn:
        raise EximError(f"{self.path}: {key}: {problem}")

    def config(self) -> MigrationConfig:
        top = self.mapping("", self.read(), ("source", "target", "bundle_dir", "select",
                                              "rename", "options"))
        for side in ("source", "target"):
            if side not in top:
                self.fail(side, "missing (it needs at least a tracking_uri)")
        return MigrationConfig(
            path=self.path,
            source=self.side("source", top["source"]),
            target=self.side("target", top["target"]),
            bundle_dir=self.optional_path("bundle_dir", top.get("bundle_dir")),
            select=self.select(_section(top.get("select"))),
            rename=self.rename(_section(top.get("rename"))),
            options=self.options(_section(top.get("options"))),
        )

    def read(self) -> dict:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EximError(f"{self.path}: cannot read config: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise EximError(f"{self.path}: config is not UTF-8 text") from None
        try:
            document = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise EximError(f"{self.path}: invalid YAML{where}: "
                            f"{' '.join(problem.split())}") from None
        if document is None:
            raise EximError(f"{self.path}: the config is empty; it needs source and target")
        if not isinstance(document, dict):
            raise EximError(f"{self.path}: the top level must be a mapping (key: value), "
                            f"not {_kind(document)}")
        return document

    def mapping(self, key: str, value, known: tuple[str, ...]) -> dict:
        """``value`` checked to be a mapping whose keys are all in ``known``."""
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping (key: value), got {_kind(value)}")
        for name in value:
            dotted = f"{key}.{name}" if key else str(name)
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                self.fail(dotted, f"unknown key ({hint})")
        return value

    def typed(self, key: str, value, kind: type, description: str):
        # bool is an int in Python; "workers: true" must not pass as 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {description}, got {_kind(value)}")
        return value

    def text(self, key: str, value) -> str:
        value = self.typed(key, value, str, "text")
        if not value.strip():
            self.fail(key, "is empty")
        return value

    def optional_path(self, key: str, value) -> Path | None:
        return None if value is None else Path(self.text(key, value)).expanduser()

    def side(self, key: str, value) -> SideConfig:
        if isinstance(value, dict):
            for secret in ("username", "password", "token"):
                if secret in value:
                    self.fail(f"{key}.{secret}", "credentials do not belong in the file: put "
                              f"the value in an environment variable and name it with "
                              f"{secret}_env")
        side = self.mapping(key, value, _SIDE_KEYS)
        if "tracking_uri" not in side:
            self.fail(f"{key}.tracking_uri", "missing")
        uri = self.text(f"{key}.tracking_uri", side["tracking_uri"])
        if "@" in urlsplit(uri).netloc:
            self.fail(f"{key}.tracking_uri", "holds credentials (user:password@); name "
                      "environment variables with username_env and password_env instead")
        names = {name: self.text(f"{key}.{name}", side[name])
                 for name in _CREDENTIAL_KEYS if name in side}
        try:
            credentials = Credentials.from_env(**names)
        except EximError as exc:
            raise EximError(f"{self.path}: {key}.{exc}") from None
        retry = {}
        for name in ("attempts", "timeout"):
            if name in side:
                retry[name] = self.typed(f"{key}.{name}", side[name], int, "a whole number")
                if retry[name] < 1:
                    self.fail(f"{key}.{name}", f"must be at least 1, not {retry[name]}")
        database = None
        if "database_uri" in side:
            database = self.text(f"{key}.database_uri", side["database_uri"])
            if ":" in urlsplit(database).netloc.rpartition("@")[0]:
                self.fail(f"{key}.database_uri", "holds a password: leave it out of the file "
                          "(PostgreSQL's client reads PGPASSWORD or ~/.pgpass)")
        return SideConfig(uri, credentials, RetryPolicy(**retry), database)

    def selection(self, key: str, value) -> str | tuple[str, ...]:
        if isinstance(value, str):
            return self.text(key, value)
        items = self.typed(key, value, list, "text or a list of text")
        if not items:
            self.fail(key, "is an empty list (leave it out to select all)")
        return tuple(self.text(f"{key}[{i}]", item) for i, item in enumerate(items))

    def moment(self, key: str, value) -> datetime | None:
        if value is None:
            return None
        return parse_datetime(self.typed(key, value, str, "a date or date-time"),
                              f"{self.path}: {key}")

    def select(self, value) -> SelectConfig:
        select = self.mapping("select", value, ("experiments", "models", "runs", "since"))
        runs = self.mapping("select.runs", _section(select.get("runs")),
                            ("filter", "started_after", "started_before"))
        run_filter = ""
        if "filter" in runs:
            run_filter = self.text("select.runs.filter", runs["filter"])
            try:
                SearchUtils.parse_search_filter(run_filter)
            except Exception as exc:  # noqa: BLE001 - MLflow's parser says what is wrong
                self.fail("select.runs.filter", " ".join(str(exc).split()))
        after = self.moment("select.runs.started_after", runs.get("started_after"))
        before = self.moment("select.runs.started_before", runs.get("started_before"))
        if after and before and after >= before:
            self.fail("select.runs", "started_after must be earlier than started_before")
        return SelectConfig(
            experiments=self.selection("select.experiments", select.get("experiments", "all")),
            models=self.selection("select.models", select.get("models", "all")),
            runs=RunsConfig(run_filter, after, before),
            since=self.moment("select.since", select.get("since")),
        )

    def rename(self, value) -> RenameConfig:
        kinds = ("experiments", "models")
        rename = self.mapping("rename", value, (*kinds, *(f"{k}_file" for k in kinds)))
        rules = {}
        for kind in kinds:
            if kind in rename and f"{kind}_file" in rename:
                self.fail(f"rename.{kind}_file", f"give rename.{kind} or rename.{kind}_file, "
                          "not both")
            if f"{kind}_file" in rename:
                key = f"rename.{kind}_file"
                try:
                    rules[kind] = read_rename_file(self.text(key, rename[f"{kind}_file"]))
                except EximError as exc:
                    self.fail(key, str(exc))
            elif kind in rename:
                rules[kind] = self.rename_mapping(f"rename.{kind}", rename[kind])
        return RenameConfig(**rules)

    def rename_mapping(self, key: str, value) -> RenameRules:
        rules = self.typed(key, value, dict, "a mapping of OLD_PREFIX: NEW_PREFIX")
        for old, new in rules.items():
            if not isinstance(old, str) or not old:
                self.fail(key, f"{old!r} is not a non-empty OLD_PREFIX text")
            self.typed(f"{key}.{old}", new, str, "text (the NEW_PREFIX)")
        return tuple(rules.items())

    def options(self, value) -> OptionsConfig:
        known = ("workers", "import_source_tags", "export_deleted_runs", "stage_to_alias",
                 "dry_run", "report")
        options = self.mapping("options", value, known)
        flags = {name: self.typed(f"options.{name}", options[name], bool, "true or false")
                 for name in ("import_source_tags", "export_deleted_runs", "dry_run")
                 if name in options}
        workers = None
        if "workers" in options:
            workers = self.typed("options.workers", options["workers"], int, "a whole number")
            if workers < 1:
                self.fail("options.workers", f"must be at least 1, not {workers}")
        return OptionsConfig(
            workers=workers,
            stage_to_alias=self.stage_to_alias(options.get("stage_to_alias", {})),
            report=self.optional_path("options.report", options.get("report")),
            **flags,
        )

    def stage_to_alias(self, value) -> dict[str, str]:
        key = "options.stage_to_alias"
        mapping = self.typed(key, value, dict, "a mapping of STAGE: ALIAS")
        for stage, alias in mapping.items():
            if str(stage).lower() not in {s.lower() for s in STAGES}:
                self.fail(f"{key}.{stage}", f"not a stage (one of {', '.join(STAGES)})")
            self.text(f"{key}.{stage}", alias)
        return dict(mapping)


def _section(value):
    """A section left with all its keys commented out reads as null: take it as empty."""
    return {} if value is None else value


def _kind(value) -> str:
    """What a YAML value is, in words (never the value: it might be a secret)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    for kind, words in ((int, "a number"), (float, "a number"), (str, "text"),
                        (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return words
    return type(value).__name__
