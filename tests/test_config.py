"""The migration config file, per-endpoint credentials, and both against real basic-auth
servers: two endpoints with different users in one process, from worker threads."""

from __future__ import annotations

import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest
import requests
from click.testing import CliRunner

from mlflow_exim import cli
from mlflow_exim.config import (
    MigrationConfig,
    OptionsConfig,
    RenameConfig,
    RunsConfig,
    SelectConfig,
    SideConfig,
    load_config,
    parse_datetime,
    parse_renames,
    read_rename_file,
)
from mlflow_exim.endpoint import Credentials, Endpoint
from mlflow_exim.errors import EximError
from tests.servers import BasicAuthServer

EXAMPLE = Path(__file__).parent.parent / "examples" / "migrate.yaml"
UTC = timezone.utc
SECRET = "hunter2-Secret"

BASE = """\
source:
  tracking_uri: http://dev:5000
  username_env: SRC_USER
  password_env: SRC_PASSWORD
target:
  tracking_uri: http://prod:5000
"""


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    """Credentials in named variables only; none in MLflow's own."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                 "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SRC_USER", "alice")
    monkeypatch.setenv("SRC_PASSWORD", SECRET)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "migrate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(EximError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and SECRET not in message
    return message


# A good config ------------------------------------------------------------------------------

def test_full_config_parses_to_checked_values(tmp_path, monkeypatch):
    monkeypatch.setenv("DST_TOKEN", "tok-123")
    (tmp_path / "models.txt").write_text("# dev models\n\ndev- = prod-\nexp=\n")
    path = write(tmp_path, f"""\
source:
  tracking_uri: http://dev:5000
  username_env: SRC_USER
  password_env: SRC_PASSWORD
target:
  tracking_uri: https://prod:5000/mlflow
  token_env: DST_TOKEN
bundle_dir: ./bundle
select:
  experiments: ["team-a/*", "re:^exp-[0-9]+$", "file:experiments.txt"]
  models: all
  runs:
    filter: "params.model = 'xgb'"
    started_after: 2026-01-01T00:00:00Z
    started_before: 2026-06-30
  since: 2026-11-01T12:30:00+02:00
rename:
  experiments: {{"team-a/": "prod/team-a/", "team-": "prod/"}}
  models_file: {tmp_path / "models.txt"}
options:
  workers: 8
  import_source_tags: yes
  export_deleted_runs: false
  stage_to_alias: {{Production: champion, staging: challenger}}
  dry_run: true
  report: report.json
""")
    assert load_config(path) == MigrationConfig(
        path=path,
        source=SideConfig("http://dev:5000", Credentials("alice", SECRET)),
        target=SideConfig("https://prod:5000/mlflow", Credentials(token="tok-123")),
        bundle_dir=Path("bundle"),
        select=SelectConfig(
            experiments=("team-a/*", "re:^exp-[0-9]+$", "file:experiments.txt"),
            models="all",
            runs=RunsConfig("params.model = 'xgb'", datetime(2026, 1, 1, tzinfo=UTC),
                              datetime(2026, 6, 30, tzinfo=UTC)),
            since=datetime(2026, 11, 1, 10, 30, tzinfo=UTC)),
        rename=RenameConfig(experiments=(("team-a/", "prod/team-a/"), ("team-", "prod/")),
                           models=(("dev-", "prod-"), ("exp", ""))),
        options=OptionsConfig(workers=8, import_source_tags=True, export_deleted_runs=False,
                        stage_to_alias={"Production": "champion", "staging": "challenger"},
                        dry_run=True, report=Path("report.json")),
    )


def test_minimal_config_takes_the_defaults(tmp_path):
    config = load_config(write(tmp_path, "source: {tracking_uri: sqlite:///src.db}\n"
                                         "target: {tracking_uri: http://prod:5000}\n"
                                         "select:\n  # experiments: a\noptions:\n"))
    assert config.source == SideConfig("sqlite:///src.db", None)
    assert (config.bundle_dir, config.select, config.rename, config.options) == (
        None, SelectConfig(), RenameConfig(), OptionsConfig())
    assert config.select.experiments == "all" and config.options.workers is None


def test_the_example_config_is_valid(monkeypatch):
    for name in ("DEV_MLFLOW_USER", "DEV_MLFLOW_PASSWORD", "PROD_MLFLOW_USER",
                 "PROD_MLFLOW_PASSWORD"):
        monkeypatch.setenv(name, f"{name.lower()}-value")
    config = load_config(EXAMPLE)
    assert config.target.credentials == Credentials("prod_mlflow_user-value",
                                                    "prod_mlflow_password-value")
    assert config.options.workers == 8 and config.rename.models == (("dev-", "prod-"),)


def test_repr_of_a_config_shows_no_secret(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert SECRET not in repr(config) and "alice" in repr(config)


# Bad configs: one line, naming the file and the key --------------------------------------

@pytest.mark.parametrize("extra, key, fragment", [
    ("option:\n  workers: 2\n", "option", "unknown key (did you mean 'options'?)"),
    ("options:\n  worker: 2\n", "options.worker", "did you mean 'workers'?"),
    ("select:\n  runs:\n    filtre: x\n", "select.runs.filtre", "did you mean 'filter'?"),
    ("options:\n  colour: red\n", "options.colour", "unknown key (known: workers, "),
    ("options:\n  workers: '8'\n", "options.workers", "expected a whole number, got text"),
    ("options:\n  workers: true\n", "options.workers", "got true/false"),
    ("options:\n  workers: 0\n", "options.workers", "must be at least 1"),
    ("options:\n  dry_run: maybe\n", "options.dry_run", "expected true or false, got text"),
    ("options: [workers]\n", "options", "expected a mapping (key: value), got a list"),
    ("options:\n  stage_to_alias: {Prod: champion}\n", "options.stage_to_alias.Prod",
     "not a stage"),
    ("options:\n  report: 3\n", "options.report", "expected text, got a number"),
    ("bundle_dir: ''\n", "bundle_dir", "is empty"),
    ("select:\n  experiments: 5\n", "select.experiments", "expected text or a list"),
    ("select:\n  experiments: []\n", "select.experiments", "empty list"),
    ("select:\n  models: [a, '']\n", "select.models[1]", "is empty"),
    ("select:\n  since: yesterday\n", "select.since",
     "'yesterday' is not an ISO 8601 date or date-time"),
    ("select:\n  since: 2026\n", "select.since", "expected a date or date-time, got a number"),
    ("select:\n  runs: {started_after: 2026-13-01}\n", "select.runs.started_after",
     "'2026-13-01' is not an ISO 8601"),
    ("select:\n  runs: {started_after: 2026-06-01, started_before: 2026-01-01}\n",
     "select.runs", "started_after must be earlier than started_before"),
    ("select:\n  runs: {filter: 'params.model = '}\n", "select.runs.filter", "Invalid"),
    ("rename:\n  experiments: ['a=b']\n", "rename.experiments", "expected a mapping of OLD"),
    ("rename:\n  experiments: {'': x}\n", "rename.experiments", "'' is not a non-empty"),
    ("rename:\n  models: {a: 3}\n", "rename.models.a", "expected text (the NEW_PREFIX)"),
    ("rename:\n  models: {a: b}\n  models_file: r.txt\n", "rename.models_file",
     "give rename.models or rename.models_file, not both"),
    ("rename:\n  experiments_file: no-such.txt\n", "rename.experiments_file",
     "no-such.txt: cannot read rename file: No such file or directory"),
])
def test_bad_value(tmp_path, extra, key, fragment):
    path = write(tmp_path, BASE + extra)
    message = error_of(path)
    assert message.startswith(f"{path}: {key}: ") and fragment in message, message


@pytest.mark.parametrize("side, key, fragment", [
    ("  tracking_uri: http://x\n  password: " + SECRET, "target.password",
     "credentials do not belong in the file: put the value in an environment variable "
     "and name it with password_env"),
    ("  tracking_uri: http://x\n  token: " + SECRET, "target.token", "with token_env"),
    (f"  tracking_uri: http://bob:{SECRET}@x:5000", "target.tracking_uri",
     "holds credentials (user:password@)"),
    ("  username_env: U\n  password_env: P", "target.tracking_uri", "missing"),
    ("  tracking_uri: ''", "target.tracking_uri", "is empty"),
    ("  tracking_uri: http://x\n  username_env: SRC_USER\n  password_env: NOT_SET_ANYWHERE",
     "target.password_env", "environment variable NOT_SET_ANYWHERE is not set"),
    ("  tracking_uri: http://x\n  username_env: SRC_USER", "target.password_env",
     "missing (username_env and password_env go together)"),
    (f"  tracking_uri: http://x\n  username_env: SRC_USER\n  password_env: '{SECRET}!'",
     "target.password_env", "expected the name of an environment variable"),
    ("  tracking_uri: http://x\n  token_env: T\n  username_env: SRC_USER\n"
     "  password_env: SRC_PASSWORD", "target.token_env", "not both"),
    ("  tracking_uri: http://x\n  token_env: [T]", "target.token_env", "expected text"),
])
def test_bad_side(tmp_path, side, key, fragment):
    path = write(tmp_path, BASE.split("target:")[0] + "target:\n" + side + "\n")
    message = error_of(path)
    assert message.startswith(f"{path}: {key}: ") and fragment in message, message


def test_empty_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SRC_PASSWORD", "")
    path = write(tmp_path, BASE)
    assert error_of(path) == (f"{path}: source.password_env: environment variable "
                              "SRC_PASSWORD is empty")


@pytest.mark.parametrize("text, fragment", [
    ("source:\n  tracking_uri: [unclosed\n", "invalid YAML at line 3, column 1: "),
    ("source: {tracking_uri: a}\ntarget: {tracking_uri: b}\nsource: {}\n",
     "invalid YAML at line 3, column 1: key 'source' given twice"),
    ("- source\n- target\n", "the top level must be a mapping (key: value), not a list"),
    ("just text\n", "the top level must be a mapping (key: value), not text"),
    ("# nothing yet\n", "the config is empty; it needs source and target"),
    ("source: {tracking_uri: a}\n", "target: missing (it needs at least a tracking_uri)"),
    ("source: {tracking_uri: a}\ntarget: http://prod\n",
     "target: expected a mapping (key: value), got text"),
])
def test_bad_file(tmp_path, text, fragment):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: ") and fragment in message, message


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing}: cannot read config: No such file or directory"
    assert error_of(tmp_path) == f"{tmp_path}: cannot read config: Is a directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert error_of(binary) == f"{binary}: config is not UTF-8 text"


# The helpers the command line shares ------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02T03:04:05.250z", datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
    ("2026-01-02 03:04", datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),
    ("2026-01-02T03:04:05+02:00", datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)),
    (" 2026-01-02T00:00:00-05:30 ", datetime(2026, 1, 2, 5, 30, tzinfo=UTC)),
])
def test_parse_datetime(text, expected):
    moment = parse_datetime(text, "--since")
    assert moment == expected and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "Z", "yesterday", "2026-02-30", "01/02/2026",
                                  "2026-01-02T25:00"])
def test_parse_datetime_refuses(text):
    with pytest.raises(EximError, match=r"^--since: .* is not an ISO 8601 date or date-time"):
        parse_datetime(text, "--since")


def test_parse_renames_keeps_order():
    assert parse_renames(["team-a/=prod/team-a/", "team- = prod/", "x==y", "old="],
                         "--experiment-rename") == (
        ("team-a/", "prod/team-a/"), ("team-", "prod/"), ("x", "=y"), ("old", ""))


@pytest.mark.parametrize("items, fragment", [
    (["no-equals"], "'no-equals' is not OLD=NEW with a non-empty OLD"),
    (["=new"], "'=new' is not OLD=NEW with a non-empty OLD"),
    (["a=b", "a=c"], "'a' is renamed twice"),
])
def test_parse_renames_refuses(items, fragment):
    with pytest.raises(EximError) as info:
        parse_renames(items, "--model-rename")
    assert str(info.value) == f"--model-rename: {fragment}"


def test_read_rename_file(tmp_path):
    path = tmp_path / "renames.txt"
    where = re.escape(str(path))
    path.write_text("# team renames\n\n  team-a/=prod/team-a/\nb = c\n")
    assert read_rename_file(path) == (("team-a/", "prod/team-a/"), ("b", "c"))
    path.write_text("a=b\n\nbroken\n")
    with pytest.raises(EximError, match=rf"^{where}: line 3: .broken. is not OLD=NEW"):
        read_rename_file(path)
    path.write_text("a=b\na=c\n")
    with pytest.raises(EximError, match=rf"^{where}: .a. is renamed twice$"):
        read_rename_file(path)


# Credentials and the endpoint, without a server -------------------------------------------

def test_credentials_hide_their_secrets():
    assert repr(Credentials("alice", SECRET)) == "Credentials(username='alice')"
    assert SECRET not in repr(Credentials(token=SECRET))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"username": "alice"}, "give a username and a password, or a token"),
    ({"password": SECRET}, "give a username and a password, or a token"),
    ({}, "give a username and a password, or a token"),
    ({"username": "alice", "password": SECRET, "token": "t"}, "not both"),
    ({"username": "a:b", "password": SECRET}, "cannot contain ':'"),
])
def test_credentials_refuse(kwargs, fragment):
    with pytest.raises(EximError, match=fragment):
        Credentials(**kwargs)


def test_credentials_from_env(monkeypatch):
    monkeypatch.setenv("TOKEN_VAR", "tok")
    assert Credentials.from_env() is None
    assert Credentials.from_env(token_env="TOKEN_VAR") == Credentials(token="tok")
    assert (Credentials.from_env(username_env="SRC_USER", password_env="SRC_PASSWORD")
            == Credentials("alice", SECRET))
    with pytest.raises(EximError, match="^token_env: environment variable NOPE is not set$"):
        Credentials.from_env(token_env="NOPE")
    monkeypatch.setenv("SRC_USER", "a:b")
    with pytest.raises(EximError, match="^username_env: the user name in SRC_USER contains"):
        Credentials.from_env(username_env="SRC_USER", password_env="SRC_PASSWORD")


def test_credentials_travel_as_utf8_basic_auth():
    """requests encodes URL credentials as Latin-1; the server must get UTF-8, as from
    MLFLOW_TRACKING_PASSWORD."""
    password = "p@ss:w/rd%?# é€"
    endpoint = Endpoint("http://127.0.0.1:9/mlflow", Credentials("zoë", password))
    prepared = requests.Request("GET", f"{endpoint.uri}/version").prepare()
    expected = base64.b64encode(f"zoë:{password}".encode()).decode()
    assert prepared.headers["Authorization"] == f"Basic {expected}"
    assert prepared.url.endswith("@127.0.0.1:9/mlflow/version")
    assert endpoint.display_uri == "http://127.0.0.1:9/mlflow"
    assert repr(endpoint) == "Endpoint('http://127.0.0.1:9/mlflow')"


@pytest.mark.parametrize("uri, credentials, fragment", [
    ("sqlite:///x.db", Credentials("alice", SECRET), "credentials apply only to an http(s)"),
    ("http://bob:pw@127.0.0.1:9", Credentials("alice", SECRET), "credentials given twice"),
])
def test_endpoint_refuses_credentials_it_cannot_use(uri, credentials, fragment):
    with pytest.raises(EximError) as info:
        Endpoint(uri, credentials)
    assert fragment in str(info.value) and SECRET not in str(info.value)
    assert ":pw@" not in str(info.value)


# Real basic-auth servers: a source with user alice, a target with user bob -----------------

ALICE = ("alice", "al1ce-p@ss:w/rd%?# +")
BOB = ("bob", "b0b/Secret@with:signs")


@pytest.fixture(scope="module")
def auth_servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth-servers")
    servers: list[BasicAuthServer] = []
    try:
        for name in ("auth-source", "auth-target"):
            servers.append(BasicAuthServer(name, work, str(work / f"{name}-artifacts")))
        for server in servers:
            server.wait()
        source, target = servers
        source.add_user(*ALICE)
        target.add_user(*BOB)
        yield source, target
    finally:
        for server in servers:
            server.stop()


def exercise(endpoint: Endpoint, name: str, scratch: Path) -> None:
    """What a migration does on one side: experiments, runs, metrics, run and logged-model
    artifacts both ways through mlflow-artifacts, registered models."""
    client = endpoint.client
    run = client.create_run(client.create_experiment(name))
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    client.log_metric(run_id, "loss", 0.25)
    local = scratch / name
    local.mkdir()
    (local / "model.txt").write_text(name)
    client.log_artifact(run_id, str(local / "model.txt"), "model")
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.txt"]
    down = client.download_artifacts(run_id, "", str(local))
    assert (Path(down) / "model" / "model.txt").read_text() == name
    model = client.create_logged_model(run.info.experiment_id, source_run_id=run_id)
    client.log_model_artifact(model.model_id, str(local / "model.txt"))
    down = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                               tracking_uri=endpoint.uri,
                                               dst_path=str(local / "logged"))
    assert (Path(down) / "model.txt").read_text() == name
    client.create_registered_model(name)
    assert client.get_metric_history(run_id, "loss")[0].value == 0.25
    assert client.get_registered_model(name).name == name


def test_two_endpoints_with_their_own_credentials_from_worker_threads(
        auth_servers, tmp_path, monkeypatch, unique):
    source, target = auth_servers
    monkeypatch.setenv("SRC_USER", ALICE[0])
    monkeypatch.setenv("SRC_PASSWORD", ALICE[1])
    monkeypatch.setenv("DST_USER", BOB[0])
    monkeypatch.setenv("DST_PASSWORD", BOB[1])
    config = load_config(write(tmp_path, f"""\
source: {{tracking_uri: "{source.uri}", username_env: SRC_USER, password_env: SRC_PASSWORD}}
target: {{tracking_uri: "{target.uri}", username_env: DST_USER, password_env: DST_PASSWORD}}
"""))
    src, dst = config.source.connect(), config.target.connect()
    assert src.server_info["mlflow_version"] == mlflow.__version__
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(exercise, endpoint, f"{unique}-{side}-{i}", tmp_path)
                for i in range(2) for side, endpoint in (("src", src), ("dst", dst))]
        for job in jobs:
            job.result()
    # Each side saw only its own work: they are different servers with different users.
    assert {e.name for e in src.client.search_experiments()} >= {f"{unique}-src-0",
                                                                  f"{unique}-src-1"}
    assert not [e for e in dst.client.search_experiments() if "-src-" in e.name]
    for endpoint, (user, password) in ((src, ALICE), (dst, BOB)):
        for shown in (repr(endpoint), endpoint.display_uri):
            assert user not in shown and password not in shown


@pytest.mark.parametrize("side, credentials", [
    (0, Credentials(ALICE[0], "not-her-password")),
    (1, Credentials(*ALICE)),  # alice has no account on the target
    (1, None),
])
def test_refused_credentials_fail_connect_in_one_line(auth_servers, side, credentials):
    server = auth_servers[side]
    with pytest.raises(EximError) as info:
        Endpoint.connect(server.uri, credentials)
    assert str(info.value) == (f"tracking server {server.uri} refused the request (HTTP 401): "
                               "wrong or missing credentials")


def test_endpoint_credentials_win_over_mlflow_environment(auth_servers, tmp_path, monkeypatch,
                                                          unique):
    """Process-wide MLFLOW_TRACKING_* credentials (here wrong ones) are not what an endpoint
    with its own credentials sends, for REST calls and artifacts alike."""
    _, target = auth_servers
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", BasicAuthServer.ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-admin-password")
    with pytest.raises(EximError, match="refused the request"):
        Endpoint.connect(target.uri)
    exercise(Endpoint.connect(target.uri, Credentials(*BOB)), f"{unique}-env", tmp_path)


def test_migrate_and_verify_between_two_basic_auth_servers_with_different_users(
        auth_servers, tmp_path, monkeypatch, unique):
    """alice reads the source, bob writes the target, in one process, with nothing in
    MLflow's own environment variables; then verify, and a re-run that creates nothing."""
    source, target = auth_servers
    for name, value in (("SRC_USER", ALICE[0]), ("SRC_PASSWORD", ALICE[1]),
                        ("DST_USER", BOB[0]), ("DST_PASSWORD", BOB[1])):
        monkeypatch.setenv(name, value)
    config = write(tmp_path, f"""\
source: {{tracking_uri: "{source.uri}", username_env: SRC_USER, password_env: SRC_PASSWORD}}
target: {{tracking_uri: "{target.uri}", username_env: DST_USER, password_env: DST_PASSWORD}}
select: {{experiments: "{unique}-*", models: "{unique}-*"}}
options: {{workers: 3}}
""")
    alice = Endpoint.connect(source.uri, Credentials(*ALICE)).client
    experiment_id = alice.create_experiment(f"{unique}-auth", tags={"side": "source"})
    parent = alice.create_run(experiment_id, run_name="parent").info.run_id
    child = alice.create_run(experiment_id, run_name="child",
                             tags={"mlflow.parentRunId": parent}).info.run_id
    for run_id in (parent, child):
        alice.log_metric(run_id, "loss", 0.5, step=1)
        alice.log_text(run_id, f"weights of {run_id}", "model/weights.txt")
        alice.set_terminated(run_id)
    alice.create_registered_model(f"{unique}-model")
    alice.create_model_version(f"{unique}-model", f"runs:/{child}/model", run_id=child)

    def run(*args):
        result = CliRunner().invoke(cli.main, [str(a) for a in args])
        assert ALICE[1] not in result.output and BOB[1] not in result.output
        return result

    first = run("migrate", "--config", config, "--report", tmp_path / "first.json")
    assert first.exit_code == 0, first.output
    bob = Endpoint.connect(target.uri, Credentials(*BOB)).client
    assert bob.get_registered_model(f"{unique}-model").name == f"{unique}-model"
    checked = run("verify", "--config", config, "--experiments", f"{unique}-*", "--models",
                  f"{unique}-*")
    assert checked.exit_code == 0, checked.output
    again = run("migrate", "--config", config, "--report", tmp_path / "again.json")
    assert again.exit_code == 0, again.output
    report = json.loads((tmp_path / "again.json").read_text())
    assert {o["status"] for o in report["objects"]} == {"skipped"}
    for path in (config, tmp_path / "first.json", tmp_path / "again.json"):
        assert ALICE[1] not in path.read_text() and BOB[1] not in path.read_text()
