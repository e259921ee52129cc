"""What an export asks of its source, counted on the HTTP requests this process sends to
the real source server: each run read once (the run behind a model version too), each
metric history in one request when it fits a page, each artifact directory listed once.
And the import through a real server: a run is created with its tags, nothing is read
back to upload a file or tag a model, and a child run starts as soon as its parent is
done, not after its parent's slowest sibling."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag

import mlflow_exim
from mlflow_exim import exporter, lineage
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import run as run_entity
from tests.seed import T0, _upload, make_run

BIN = Path(sys.executable).parent


class _Requests:
    """Every request sent through ``requests`` while it is installed, as (method, path,
    query or body fields)."""

    def __init__(self, monkeypatch):
        self.sent: list[tuple[str, str, dict]] = []
        self.bodies: list[tuple[str, dict]] = []  # (path, JSON body) of each that had one
        self._lock = threading.Lock()
        original = requests.Session.request

        def counting(session, method, url, *args, **kwargs):
            parsed = urllib.parse.urlparse(url)
            fields = dict(urllib.parse.parse_qsl(parsed.query))
            fields.update(kwargs.get("params") or {})
            with self._lock:
                self.sent.append((method, parsed.path, fields))
                if isinstance(kwargs.get("json"), dict):
                    self.bodies.append((parsed.path, kwargs["json"]))
            return original(session, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", counting)

    def count(self, path_end: str, **fields) -> int:
        return sum(1 for _, path, sent in self.sent if path.endswith(path_end)
                   and all(sent.get(k) == v for k, v in fields.items()))


@pytest.fixture
def seeded(stack, unique):
    """A parent run (two metric histories; files at the root and two directories down),
    its child, and a registered model with two versions of the parent."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-req")
    parent = make_run(client, experiment, "parent", 1)
    client.log_batch(parent, metrics=[Metric("loss", 1 / (s + 1), T0 + s, s) for s in range(30)])
    _upload(client, parent, {"top.txt": b"top\n", "model/inner/weights.txt": b"w\n"})
    child = make_run(client, experiment, "child", 2, parent=parent)
    model = f"{unique}-req-model"
    client.create_registered_model(model)
    for _ in range(2):
        client.create_model_version(model, f"runs:/{parent}/model", run_id=parent)
    return unique, experiment, parent, child, model


def test_an_export_reads_each_run_history_and_directory_once(stack, seeded, tmp_path,
                                                             monkeypatch):
    unique, _, parent, child, model = seeded
    sent = _Requests(monkeypatch)
    report = mlflow_exim.export_all(tmp_path / "bundle", tracking_uri=stack.source.uri,
                                    experiments=f"{unique}-req", models=model)
    assert report.ok, report.summary()
    for run_id in (parent, child):
        assert sent.count("/runs/get", run_id=run_id) <= 1
    for key in ("score", "loss"):
        assert sent.count("/metrics/get-history", run_id=parent, metric_key=key) == 1
    listings = Counter(fields.get("path") for _, path, fields in sent.sent
                       if path.endswith("/mlflow-artifacts/artifacts"))
    parent_root = next(p for p in listings if parent in p)
    assert {p.removeprefix(parent_root) for p in listings if parent in p} == {
        "", "/model", "/model/inner"}
    assert set(listings.values()) == {1}, listings
    files = sorted(p.relative_to(tmp_path / "bundle").as_posix()
                   for p in (tmp_path / "bundle").rglob("*.txt") if parent in str(p))
    assert [f.split("/artifacts/", 1)[1] for f in files] == ["model/inner/weights.txt",
                                                             "top.txt"]


def test_an_import_creates_runs_with_their_tags_and_reads_nothing_back_to_fill_them(
        stack, seeded, tmp_path, monkeypatch):
    """Each run's tags travel in its creation, not in a LogBatch (where the server writes
    them in a transaction of their own, and a ``mlflow.runName`` once more), and so do a
    logged model's; model files are uploaded and versions tagged and aliased without
    reading the logged model or the registered model first."""
    unique, _, parent, child, model = seeded
    source = MlflowClient(stack.source.uri)
    logged = source.create_logged_model(source.get_run(parent).info.experiment_id,
                                        name="net", source_run_id=parent)
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("MLmodel", "weights.bin", "conf/extra.txt"):
            (Path(scratch) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / name).write_text(name)
        source.log_model_artifacts(logged.model_id, scratch)
    source.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    version = source.create_model_version(model, f"models:/{logged.model_id}",
                                          run_id=parent, model_id=logged.model_id)
    source.set_registered_model_alias(model, "champion", version.version)
    stored = source.create_model_version(  # a source in the run's own store, not runs:/
        model, f"{source.get_run(parent).info.artifact_uri}/model", run_id=parent)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                  experiments=f"{unique}-req", models=model).ok
    target = MlflowClient(stack.target.uri)
    sent = _Requests(monkeypatch)
    report = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri)
    assert report.ok, report.summary()

    created = [body for path, body in sent.bodies if path.endswith("/runs/create")]
    source_ids = {lineage.pending_run_name(i): i for i in (parent, child)}
    assert {run["run_name"] for run in created} == set(source_ids)  # the pending mark
    for run in created:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["mlflow.user"] == "alice" and "mlflow.runName" not in tags
        assert tags[lineage.SOURCE_RUN_ID] == source_ids[run["run_name"]]
        assert lineage.PENDING not in tags
    # the last request of each run sets its status, end time and own name; none deletes a tag
    updates = [body for path, body in sent.bodies if path.endswith("/runs/update")]
    assert sorted(u["run_name"] for u in updates) == ["child", "parent"]
    assert all(u["status"] == "FINISHED" and u["end_time"] for u in updates)
    assert sent.count("/runs/delete-tag") == 0
    batches = [body for path, body in sent.bodies if path.endswith("/runs/log-batch")]
    assert batches and not any(body.get("tags") for body in batches)
    model_id = report.extra["id_map"]["logged_models"][logged.model_id]
    assert [m for m, path, _ in sent.sent if path.endswith(f"/logged-models/{model_id}")
            ] == ["PATCH"]  # its finalizing: no GET
    assert sent.count(f"/logged-models/{model_id}/tags") == 0  # its tags came with it
    assert sent.count("/registered-models/get", name=model) <= 1  # the plan's own lookup
    # A version in the run's store learns the run's location from its creation, and no
    # version of a model the import created looks below itself for a resent copy.
    assert sent.count("/runs/get") == 0
    assert sent.count("/model-versions/get") == 0
    runs = {r.info.run_name: r for r in target.search_runs(
        [target.get_experiment_by_name(f"{unique}-req").experiment_id])}
    assert runs["parent"].data.tags["mlflow.user"] == "alice"
    assert runs["parent"].data.tags["mlflow.runName"] == "parent"
    assert target.get_model_version_by_alias(model, "champion").version == "3"
    assert target.get_model_version(model, stored.version).source == (
        f"{runs['parent'].info.artifact_uri}/model")
    assert sorted(a.path for a in target.list_logged_model_artifacts(model_id)) == [
        "MLmodel", "conf", "weights.bin"]


def test_stages_and_a_re_run_s_updates_ask_no_prompt_question(stack, unique, tmp_path,
                                                              monkeypatch):
    """MLflow's client asks ``registered-models/get`` (is it a prompt?) before each stage,
    tag or description call. A version's stage on the first import, and a re-run that
    brings the model's and the version's tags and descriptions up to date, go through the
    registry's store: the only reads of the model are the plan's, and the re-run's one
    look at its tags."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-stages")
    run_id = make_run(client, experiment, "r", 1)
    model = f"{unique}-staged"
    client.create_registered_model(model, tags={"team": "a"}, description="first")
    client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    with pytest.warns(FutureWarning):
        client.transition_model_version_stage(model, "1", "Staging")
    dst = MlflowClient(stack.target.uri)

    def migrate(bundle: Path) -> _Requests:
        assert mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                      experiments=f"{unique}-stages", models=model).ok
        with monkeypatch.context() as patch:
            sent = _Requests(patch)
            assert mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri).ok
        return sent

    first = migrate(tmp_path / "first")
    assert dst.get_model_version(model, "1").current_stage == "Staging"
    assert first.count("/model-versions/transition-stage") == 1
    assert first.count("/registered-models/get", name=model) == 1  # the plan's lookup

    client.set_registered_model_tag(model, "team", "b")
    client.update_registered_model(model, description="second")
    client.set_model_version_tag(model, "1", "checked", "yes")
    client.update_model_version(model, "1", description="v1, checked")
    again = migrate(tmp_path / "again")
    target = dst.get_registered_model(model)
    assert (target.tags["team"], target.description) == ("b", "second")
    version = dst.get_model_version(model, "1")
    assert (version.tags["checked"], version.description) == ("yes", "v1, checked")
    assert again.count("/registered-models/set-tag") == 1
    assert again.count("/model-versions/set-tag") == 1
    assert again.count("/registered-models/get", name=model) == 2  # the plan's, the apply's


def test_an_export_keeps_its_connections_whatever_it_asks_at_once(stack, unique, tmp_path):
    """MLflow's client keeps 10 connections per server unless told more, and an export asks
    more at once (several runs, each fetching its files through its artifact store's own
    threads): past 10, each answer closes its connection, and urllib3 warns of it."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-pool")
    for index in range(8):
        run_id = make_run(client, experiment, f"run-{index}", index)
        _upload(client, run_id, {f"file-{k}.txt": b"x" * 10_000 for k in range(12)})
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_HTTP_POOL_MAXSIZE"}
    done = subprocess.run([str(BIN / "mlflow-exim"), "export-experiment", "--experiment",
                           f"{unique}-pool", "--output-dir", str(tmp_path / "bundle"),
                           "--tracking-uri", stack.source.uri, "--workers", "8"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Connection pool is full" not in done.stderr
    assert len(list((tmp_path / "bundle").rglob("file-*.txt"))) == 8 * 12


def test_points_go_and_come_as_mlflows_own_calls_send_and_read_them(stack, unique):
    """``Endpoint.points`` writes and reads metric points as JSON of its own: the same
    points (non-finite, zero, tiny, huge, negative steps) logged by it and by MLflow's
    client into two runs of a real server read back the same, by it and by the client."""
    dst = Endpoint.connect(stack.target.uri)
    client = MlflowClient(stack.target.uri)
    experiment = client.create_experiment(f"{unique}-points")
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1]
    points = [("m", value, T0 + i, i - 3) for i, value in enumerate(values)]
    ours, theirs = (client.create_run(experiment).info.run_id for _ in range(2))
    dst.points.log_batch(ours, metrics=points, params=[Param("p", "")],
                         tags=[RunTag("t", "\u2713")])
    client.log_batch(theirs, metrics=[Metric(*point) for point in points],
                     params=[Param("p", "")], tags=[RunTag("t", "\u2713")])

    def read(run_id: str) -> list[tuple]:
        return [(m.key, repr(m.value), m.timestamp, m.step)
                for m in client.get_metric_history(run_id, "m")]

    assert read(ours) == read(theirs)
    assert len(read(ours)) == len(values)
    page = dst.points.get_metric_history(theirs, "m", max_results=25_000)
    assert [(k, repr(v), t, s) for k, v, t, s in page] == read(theirs)
    assert client.get_run(ours).data.params == {"p": ""}
    assert client.get_run(ours).data.tags["t"] == "\u2713"


PROBE_COUNT = """
import importlib.abc, importlib.util, sys
from mlflow_exim.endpoint import Endpoint
RUNTIME_PROBES = ("dbruntime", "IPython", "pyspark")  # what MLflow's request headers import
absent = [name for name in RUNTIME_PROBES if importlib.util.find_spec(name) is None]
src = Endpoint.connect(sys.argv[1])
asked = []
class Count(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in RUNTIME_PROBES:
            asked.append(name)
sys.meta_path.insert(0, Count())
for _ in range(5):
    src.client.get_experiment("0")
print(len(absent), len(asked), sum(sys.modules.get(name, 0) is None for name in absent))
"""


def test_requests_do_not_search_the_import_path_for_a_runtime_that_is_not_there(stack):
    """MLflow's request headers look for Databricks' runtime modules on every request; in
    a fresh interpreter, five requests after ``Endpoint.connect`` search the import path
    for none of those that are not installed."""
    done = subprocess.run([sys.executable, "-c", PROBE_COUNT, stack.source.uri],
                          capture_output=True, text=True, timeout=120, check=True)
    absent, asked, marked = map(int, done.stdout.split())
    assert absent and absent == marked  # none installed here: each is marked absent
    assert asked == 0


def test_a_child_run_is_imported_while_its_parents_slow_sibling_still_is(
        stack, unique, tmp_path, monkeypatch):
    """The slow top-level run's metric upload waits until the target has the child run
    (whose parent, the quick run, is the slow one's sibling): under a generation barrier
    the child would wait for the slow run, and the wait would time out."""
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-order")
    make_run(client, experiment, "slow", 1)
    quick = make_run(client, experiment, "quick", 2)
    make_run(client, experiment, "child", 3, parent=quick)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_experiment(f"{unique}-order", bundle,
                                         tracking_uri=stack.source.uri).ok
    child_created = threading.Event()
    waited: list[bool] = []
    real_import_run = run_entity.import_run

    def observed(dst, doc, *args, **kwargs):
        if doc["info"]["run_name"] == "slow":
            waited.append(child_created.wait(60))
        created = real_import_run(dst, doc, *args, **kwargs)
        if doc["info"]["run_name"] == "child":
            child_created.set()
        return created

    monkeypatch.setattr(run_entity, "import_run", observed)
    report = mlflow_exim.import_experiment(bundle, tracking_uri=stack.target.uri,
                                           experiment_name=f"{unique}-order", workers=2)
    assert report.ok, report.summary()
    assert waited == [True]
    runs = MlflowClient(stack.target.uri).search_runs(
        [MlflowClient(stack.target.uri).get_experiment_by_name(f"{unique}-order")
         .experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert by_name["child"].data.tags["mlflow.parentRunId"] == by_name["quick"].info.run_id


def test_a_plan_holds_whole_runs_up_to_its_budget_and_reads_the_rest_when_written(
        tmp_path, monkeypatch):
    """Where a search returns runs whole (a source without logged models), the plan keeps
    them to write them unread, but only up to WHOLE_ENTRIES_HELD params, tags and metrics:
    a run beyond it is read once, when it is written, and the bundle is the same."""
    monkeypatch.chdir(tmp_path)  # the embedded store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("budget")
    ids = [make_run(client, experiment, f"run-{i}", i, tags={f"t{j}": "v" for j in range(i)})
           for i in range(4)]
    listed = [r.info.run_id for r in client.search_runs([experiment])]  # the plan's order
    size = {r.info.run_id: len(r.data.params) + len(r.data.tags) + len(r.data.metrics)
            for r in client.search_runs([experiment])}
    read: list[str] = []
    real_get_run = MlflowClient.get_run

    def counted(self, run_id):
        read.append(run_id)
        return real_get_run(self, run_id)

    monkeypatch.setattr(MlflowClient, "get_run", counted)
    assert mlflow_exim.export_experiment("budget", tmp_path / "all", tracking_uri=uri).ok
    assert read == []  # every run written as the plan's search returned it
    monkeypatch.setattr(exporter, "WHOLE_ENTRIES_HELD", size[listed[0]] + size[listed[1]])
    assert mlflow_exim.export_experiment("budget", tmp_path / "bounded", tracking_uri=uri).ok
    assert sorted(read) == sorted(listed[2:])  # each once, none of those held
    for run_id in ids:
        written = [next((tmp_path / bundle).rglob(f"{run_id}/run.json")).read_text()
                   for bundle in ("all", "bounded")]
        assert written[0] == written[1]


def test_a_second_migrate_into_the_same_bundle_dir_reads_only_what_changed(
        stack, seeded, tmp_path, monkeypatch):
    """``migrate --bundle-dir`` keeps its chunks; the next migrate of the same selection
    resumes them: a run that reads the same at the source is kept, its histories and files
    not read again, and one changed since is written again, and nothing is created twice."""
    unique, _, parent, child, model = seeded
    options = {"bundle_dir": tmp_path / "kept", "experiments": f"{unique}-req",
               "models": model}
    first = mlflow_exim.migrate(stack.source.uri, stack.target.uri, **options)
    assert first.ok, first.summary()
    MlflowClient(stack.source.uri).set_tag(child, "changed", "since the first migrate")
    sent = _Requests(monkeypatch)
    second = mlflow_exim.migrate(stack.source.uri, stack.target.uri, **options)
    assert second.ok, second.summary()
    read = {fields.get("run_id") for _, path, fields in sent.sent
            if path.endswith("/metrics/get-history")}
    assert read == {child}  # the parent's two histories are kept
    assert not any(path.startswith("/api/2.0/mlflow-artifacts/artifacts/") and parent in path
                   for method, path, _ in sent.sent if method == "GET")
    assert sent.count("/runs/create") == 0 and sent.count("/model-versions/create") == 0
    kept = next((tmp_path / "kept").rglob(f"{child}/run.json")).read_text()
    assert "since the first migrate" in kept
