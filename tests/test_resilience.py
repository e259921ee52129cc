"""Outages and races on real servers: faults injected by tests/faultproxy.py in front of the
shared target and source, a small target of its own killed and restarted, and concurrent
jobs on one target (two copies of one model version, two imports of one bundle, copies
creating one experiment at once).

Each test migrates the same small source (runs sharing a dataset, metric histories,
artifacts, a model version) under its own renamed names, so the tests share no target
objects. Commands run as child processes, as a user or CI would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, ViewType

from mlflow_exim import lineage
from mlflow_exim.entities.run import source_id_of
from tests.faultproxy import FaultProxy
from tests.seed import T0, _upload, make_run
from tests.servers import CONCURRENT_JOBS, Process, free_port

RUNS = 4


@dataclass
class Source:
    uri: str
    prefix: str
    runs: list[str]
    model: str

    def migrate_args(self, new: str, dst: str) -> list[str]:
        """migrate of the experiment and model, renamed ``<new>-…``, into ``dst``."""
        return ["migrate", "--src-uri", self.uri, "--dst-uri", dst,
                "--experiments", f"{self.prefix}-exp", "--models", self.model,
                "--experiment-rename", f"{self.prefix}-={new}-",
                "--model-rename", f"{self.prefix}-={new}-"]


@pytest.fixture(scope="module")
def source(stack) -> Source:
    prefix = "res" + os.urandom(3).hex()
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{prefix}-exp")
    shared = Dataset("shared", "d1", "local", "/data/shared.csv")
    runs = []
    for i in range(RUNS):
        run_id = make_run(client, experiment, f"r{i}", i)
        client.log_batch(run_id, metrics=[Metric("loss", s / 10, T0 + s, s) for s in range(200)])
        client.log_inputs(run_id, [DatasetInput(shared, [InputTag("mlflow.data.context",
                                                                   "train")])])
        _upload(client, run_id, {"model/weights.txt": f"weights {i}\n".encode()})
        runs.append(run_id)
    model = f"{prefix}-model"
    client.create_registered_model(model)
    client.create_model_version(model, f"runs:/{runs[0]}/model", run_id=runs[0])
    return Source(stack.source.uri, prefix, runs, model)


# MLflow's backoff, 1 s doubling (default 2 s), keeps the tests short; the budgets below
# still outlast a server restart.
FAST_BACKOFF = {**os.environ, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlflow_exim", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=FAST_BACKOFF)


def run_ids_by_source(uri: str, experiment: str) -> tuple[dict[str, list[str]], list[str]]:
    """Active runs of ``experiment`` on ``uri``: the complete ones by source id, and the
    ids of those still tagged pending."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    complete: dict[str, list[str]] = {}
    pending = []
    for run in client.search_runs([found.experiment_id], max_results=1000):
        source_id = source_id_of(run.data.tags)
        if source_id:
            complete.setdefault(source_id, []).append(run.info.run_id)
        else:
            pending.append(run.info.run_id)
    return complete, pending


def assert_complete_once(source: Source, uri: str, new: str) -> None:
    complete, pending = run_ids_by_source(uri, f"{new}-exp")
    assert sorted(complete) == sorted(source.runs)
    assert all(len(ids) == 1 for ids in complete.values()), complete
    assert pending == []
    client = MlflowClient(uri)
    some = client.get_run(complete[source.runs[3]][0])
    assert len(client.get_metric_history(some.info.run_id, "loss")) == 200
    assert [d.dataset.name for d in some.inputs.dataset_inputs] == ["shared"]
    assert [a.path for a in client.list_artifacts(some.info.run_id, "model")] == [
        "model/weights.txt"]
    assert len(client.search_model_versions(f"name = '{new}-model'")) == 1


# Faults in front of the shared servers ---------------------------------------------------

def test_503s_dropped_connections_and_slow_answers_are_retried(stack, source, unique):
    """Every fault is met by a request that is sent again; the one whose answer was lost
    after the server created the run leaves a pending duplicate, which the re-run deletes."""
    proxy = FaultProxy(stack.target.uri)
    try:
        proxy.arm("/runs/log-batch", "503", 3)
        proxy.arm("/runs/create", "drop-before", 2)
        proxy.arm("/runs/create", "drop-after", 1)
        proxy.arm("/runs/log-batch", "delay", 1, seconds=6)
        proxy.arm("/mlflow-artifacts/artifacts/", "503", 2)
        args = [*source.migrate_args(unique, proxy.uri), "--dst-attempts", 5,
                "--dst-timeout", 3]
        first = cli(*args)
        assert first.returncode == 0, first.stderr
        assert proxy.fired() == 5
        complete, pending = run_ids_by_source(stack.target.uri, f"{unique}-exp")
        assert sorted(complete) == sorted(source.runs) and len(pending) == 1
        again = cli(*args)
        assert again.returncode == 0, again.stderr
    finally:
        proxy.close()
    assert_complete_once(source, stack.target.uri, unique)


def test_source_outage_mid_export_is_waited_out(stack, source, unique):
    proxy = FaultProxy(stack.source.uri)
    try:
        proxy.arm("/metrics/get-history", "outage", 1, seconds=3)
        args = source.migrate_args(unique, stack.target.uri)
        args[2] = proxy.uri
        result = cli(*args, "--src-attempts", 6)
        assert result.returncode == 0, result.stderr
        assert proxy.fired() == 1
    finally:
        proxy.close()
    assert_complete_once(source, stack.target.uri, unique)


# A target of its own, killed and restarted ------------------------------------------------

class Restartable:
    """An mlflow server on a fixed port and database, which can be killed and started
    again as it was."""

    def __init__(self, work: Path):
        self.work, self.port = work, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                f"sqlite:///{self.work / 'own.db'}", "--artifacts-destination",
                str(self.work / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1"]
        self.process = Process(f"own-{self.starts}", argv, self.work,
                               env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        self.process.wait_http(f"{self.uri}/health")

    def kill(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def own_target(tmp_path_factory):
    server = Restartable(tmp_path_factory.mktemp("own-target"))
    try:
        yield server
    finally:
        server.kill()


def test_target_killed_for_longer_than_the_budget_then_a_rerun_completes(
        source, own_target, unique, tmp_path):
    """Killed at its first metric batch and not restarted: the import stops at once with
    every object it could not write reported failed, exit 1. Restarted, the same command
    completes the job, writing again what was half-written, duplicating nothing."""
    proxy = FaultProxy(own_target.uri)
    report = tmp_path / "report.json"
    try:
        proxy.arm("/runs/log-batch", "call", 1, action=own_target.kill)
        args = [*source.migrate_args(unique, proxy.uri), "--dst-attempts", 2]
        failed = cli(*args, "--report", report)
        assert failed.returncode == 1, failed.stderr
        outcomes = json.loads(report.read_text())["objects"]
        failures = [o for o in outcomes if o["status"] == "failed"]
        assert {o["source_id"] for o in failures if o["kind"] == "runs"} == set(source.runs)
        assert any("unreachable after its retries" in o["reason"] for o in failures)
        own_target.start()
        again = cli(*args)
        assert again.returncode == 0, again.stderr
    finally:
        proxy.close()
    assert_complete_once(source, own_target.uri, unique)


def test_target_killed_mid_import_and_restarted_within_the_budget(source, own_target, unique):
    def bounce():
        own_target.kill()
        threading.Thread(target=own_target.start, daemon=True).start()

    proxy = FaultProxy(own_target.uri)
    try:
        proxy.arm("/runs/log-batch", "call", 1, action=bounce)
        result = cli(*source.migrate_args(unique, proxy.uri), "--dst-attempts", 8)
        assert result.returncode == 0, result.stderr
    finally:
        proxy.close()
    assert_complete_once(source, own_target.uri, unique)


# Concurrent jobs on one target -------------------------------------------------------------

def _at_once(*commands: list) -> list[subprocess.CompletedProcess]:
    children = [subprocess.Popen([sys.executable, "-m", "mlflow_exim", *map(str, c)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, **CONCURRENT_JOBS})
                for c in commands]
    results = []
    for child, command in zip(children, commands, strict=True):
        out, err = child.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(command, child.returncode, out, err))
    return results


def _failures(results: list[subprocess.CompletedProcess]) -> str:
    """What the failed jobs printed, without their progress lines, whole (a list of
    streams would be cut short in the assertion's message)."""
    return "\n---\n".join(
        "\n".join(line for line in r.stderr.splitlines()
                  if not line.lstrip().startswith(("export ", "import ")))
        for r in results if r.returncode)


def test_two_copies_of_one_version_at_once_make_one_version(stack, source, unique):
    command = ["copy-model-version", "--src-uri", source.uri, "--dst-uri", stack.target.uri,
               "--src-model", source.model, "--src-version", 1, "--dst-model",
               f"{unique}-prod", "--dst-experiment-name", f"{unique}-exp", "--output", "json"]
    results = _at_once(command, command)
    assert [r.returncode for r in results] == [0, 0], _failures(results)
    printed = [json.loads(r.stdout) for r in results]
    assert sorted(p["status"] for p in printed) == ["already_present", "created"]
    assert {p["version"] for p in printed} == {"1"}
    client = MlflowClient(stack.target.uri)
    assert len(client.search_model_versions(f"name = '{unique}-prod'")) == 1
    experiment = client.get_experiment_by_name(f"{unique}-exp").experiment_id
    assert len(client.search_runs([experiment], run_view_type=ViewType.ALL)) == 1
    assert not client.search_registered_models("name LIKE 'mlflow-exim.lease.%'")


def test_two_imports_of_one_bundle_at_once_duplicate_and_delete_nothing(
        stack, source, unique, tmp_path):
    bundle = tmp_path / "bundle"
    exported = cli("export-experiment", "--tracking-uri", source.uri, "--experiment",
                   f"{source.prefix}-exp", "--output-dir", bundle)
    assert exported.returncode == 0, exported.stderr
    command = ["import-experiment", "--tracking-uri", stack.target.uri, "--input-dir", bundle,
               "--experiment-name", f"{unique}-exp"]
    results = _at_once(command, command)
    for result in results:  # the second is refused while the first holds the lease
        assert result.returncode == 0 or (result.returncode == 2
                                          and "holds its lease" in result.stderr), result.stderr
    assert 0 in [r.returncode for r in results]
    complete, pending = run_ids_by_source(stack.target.uri, f"{unique}-exp")
    assert sorted(complete) == sorted(source.runs) and pending == []
    assert all(len(ids) == 1 for ids in complete.values())
    client = MlflowClient(stack.target.uri)
    experiment = client.get_experiment_by_name(f"{unique}-exp").experiment_id
    assert client.search_runs([experiment], run_view_type=ViewType.DELETED_ONLY) == []


def test_copies_creating_one_experiment_at_once_all_succeed(stack, source, unique):
    """Each copy plans to create the experiment; all but one find it created meanwhile."""
    results = _at_once(*(["copy-run", "--src-uri", source.uri, "--dst-uri", stack.target.uri,
                          "--run-id", run_id, "--dst-experiment-name", f"{unique}-shared"]
                         for run_id in source.runs[:3]))
    assert [r.returncode for r in results] == [0, 0, 0], _failures(results)
    client = MlflowClient(stack.target.uri)
    experiment = client.get_experiment_by_name(f"{unique}-shared").experiment_id
    runs = client.search_runs([experiment])
    assert sorted(r.data.tags[lineage.SOURCE_RUN_ID] for r in runs) == sorted(source.runs[:3])


# The settings ----------------------------------------------------------------------------

def test_retry_settings_per_side_from_the_config_and_flags(tmp_path):
    from mlflow_exim.config import connect, load_config
    from mlflow_exim.endpoint import RetryPolicy
    from mlflow_exim.errors import EximError

    config = tmp_path / "m.yaml"
    config.write_text("source: {tracking_uri: 'sqlite:///s.db', attempts: 3, timeout: 9}\n"
                      "target: {tracking_uri: 'sqlite:///t.db', attempts: 12}\n")
    loaded = load_config(config)
    assert loaded.source.retry == RetryPolicy(3, 9)
    assert loaded.target.retry == RetryPolicy(12, None)
    target = connect(None, loaded.target, "target", retry=RetryPolicy(None, 4))
    assert target.retry == RetryPolicy(12, 4) and target.environment == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "11", "MLFLOW_HTTP_REQUEST_TIMEOUT": "4"}
    for bad, problem in (("attempts: 0", "must be at least 1"),
                         ("timeout: fast", "expected a whole number")):
        config.write_text(f"source: {{tracking_uri: 'sqlite:///s.db', {bad}}}\n"
                          "target: {tracking_uri: 'sqlite:///t.db'}\n")
        with pytest.raises(EximError, match=f"source.{bad.split(':')[0]}: {problem}"):
            load_config(config)


def test_a_lease_is_refused_while_held_and_taken_over_once_expired(tmp_path, monkeypatch):
    from mlflow_exim import lease
    from mlflow_exim.endpoint import Endpoint
    from mlflow_exim.errors import EximError

    store = Endpoint.connect(f"sqlite:///{tmp_path / 'leases.db'}")
    with lease.held(store, "job", "the job"):
        with pytest.raises(EximError, match="^the job: another job .* holds its lease until"), \
                lease.held(store, "job", "the job"):
            pass
        with lease.held(store, "other job", "another job"):
            pass  # another key is another lease
    with lease.held(store, "job", "the job"):
        pass  # released
    monkeypatch.setattr(lease, "TTL_SECONDS", -1)  # a holder that was killed
    store.client.create_registered_model(lease.name_of("job"), tags={
        lease.OWNER: "killed", lease.EXPIRES: lease._expiry()})
    with lease.held(store, "job", "the job"):
        tags = store.client.get_registered_model(lease.name_of("job")).tags
        assert tags[lease.OWNER] != "killed"
    assert store.client.search_registered_models() == []


def test_a_lease_released_while_its_create_clashed_is_taken_on_the_next_try(tmp_path,
                                                                           monkeypatch):
    """MLflow's server words a name clash by reading the model it clashed with; when the
    holder released it in between, the create answers RESOURCE_DOES_NOT_EXIST (seen with
    two copy-model-version of one version at once). The lease is free then: the next try
    takes it. The answer is made up here, as no store can be made to race on cue."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from mlflow_exim import lease
    from mlflow_exim.endpoint import Endpoint

    store = Endpoint.connect(f"sqlite:///{tmp_path / 'leases.db'}")
    create = store.client.create_registered_model
    answered: list[str] = []

    def released_meanwhile(name, **fields):
        if not answered:
            answered.append(name)
            raise MlflowException(f"Registered Model with name={name} not found",
                                  RESOURCE_DOES_NOT_EXIST)
        return create(name, **fields)

    monkeypatch.setattr(store.client, "create_registered_model", released_meanwhile)
    with lease.held(store, "job", "the job"):
        assert lease.OWNER in store.client.get_registered_model(lease.name_of("job")).tags
    assert answered == [lease.name_of("job")]
    assert store.client.search_registered_models() == []


def test_a_lease_that_changes_hands_on_every_try_is_given_up_with_one_line(tmp_path,
                                                                         monkeypatch):
    """Each create clashes and each look at the holder finds none (other jobs keep taking
    and freeing it, made up here as in the test above): after the wait and a few tries the
    job stops with one line, where it used to try for ever."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

    from mlflow_exim import lease
    from mlflow_exim.endpoint import Endpoint
    from mlflow_exim.errors import EximError

    store = Endpoint.connect(f"sqlite:///{tmp_path / 'leases.db'}")
    tries: list[str] = []

    def clash(name, **fields):
        tries.append(name)
        if len(tries) > 50:  # the old endless loop: stop it, and fail below
            raise RuntimeError("still trying")
        raise MlflowException(f"Registered Model (name={name}) already exists.",
                              RESOURCE_ALREADY_EXISTS)

    monkeypatch.setattr(store.client, "create_registered_model", clash)
    given_up = r"^the job: the lease mlflow-exim\.lease\.\w+ on .* was taken by other jobs " \
               r"on each of 6 tries; run again$"
    with pytest.raises(EximError, match=given_up), lease.held(store, "job", "the job"):
        pass
    assert len(tries) == 6
    assert store.client.search_registered_models() == []


# Creates sent again after a lost answer ------------------------------------------------------

def test_a_create_sent_again_after_a_lost_answer_makes_one_version_and_one_model(
        stack, unique):
    """The server creates a model version (or a logged model), then the connection drops
    before its answer; MLflow sends the create again and the server creates another. The
    import keeps one, with the source's number, and deletes the other in the same run, in
    a migrate (numbers kept) and in a copy-model-version (next number). (A resend of a
    version whose number is kept uses that number up: a later version arrives under the
    next one, with a warning, as for any number already taken.)"""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-src")
    run_id = make_run(client, experiment, "r0", 0)
    logged = client.create_logged_model(experiment, name="net", source_run_id=run_id,
                                        model_type="demo", params={"depth": "3"})
    client.finalize_logged_model(logged.model_id, "READY")
    model = f"{unique}-model"
    client.create_registered_model(model)
    client.create_model_version(model, f"models:/{logged.model_id}", run_id=run_id,
                                model_id=logged.model_id)
    client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    proxy = FaultProxy(stack.target.uri)
    try:
        # The first version's create goes through; the second's is sent three times.
        proxy.arm("/model-versions/create", "delay", 1, seconds=0)
        proxy.arm("/model-versions/create", "drop-after", 2)
        proxy.arm("/mlflow/logged-models$", "drop-after", 1)
        moved = cli("migrate", "--src-uri", stack.source.uri, "--dst-uri", proxy.uri,
                    "--experiments", f"{unique}-src", "--models", model,
                    "--experiment-rename", f"{unique}-src={unique}-dst", "--dst-attempts", 4)
        assert moved.returncode == 0, moved.stderr
        assert "arrived as version" not in moved.stderr
        assert proxy.fired() == 3
        proxy.arm("/model-versions/create", "drop-after", 1)
        copied = cli("copy-model-version", "--src-uri", stack.source.uri, "--dst-uri",
                     proxy.uri, "--src-model", model, "--src-version", 2, "--dst-model",
                     f"{unique}-prod", "--dst-experiment-name", f"{unique}-prod",
                     "--dst-attempts", 4, "--output", "json")
        assert copied.returncode == 0, copied.stderr
        assert proxy.fired() == 4
    finally:
        proxy.close()
    target = MlflowClient(stack.target.uri)
    versions = target.search_model_versions(f"name = '{model}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert all(lineage.PENDING not in v.tags for v in versions)
    (only,) = target.search_model_versions(f"name = '{unique}-prod'")
    assert json.loads(copied.stdout)["version"] == only.version == "1"
    moved_to = target.get_experiment_by_name(f"{unique}-dst").experiment_id
    (net,) = target.search_logged_models([moved_to])
    assert lineage.PENDING not in net.tags
    assert {v.source for v in versions} >= {f"models:/{net.model_id}"}
