"""A rich source: everything issue #2 says must arrive unchanged, in a few experiments."""

from __future__ import annotations

import math
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

T0 = 1_700_000_000_000  # a fixed past time, so start/end times are recognisably kept

BINARY = bytes(range(256)) * 400  # 100 KiB with every byte value
ARTIFACTS = {
    "plain.txt": b"hello\n",
    "nested/deeper/deepest/leaf.json": b'{"a": 1}\n',
    "binary/blob.bin": BINARY,
    "donn\u00e9es/r\u00e9sum\u00e9 \u2713.txt": "unicode \u2713\n".encode(),
    "with space/file name.txt": b"spaces\n",
    "empty.bin": b"",
}
MLMODEL_TEMPLATE = (
    "artifact_path: model\n"
    "flavors:\n"
    "  python_function:\n"
    "    loader_module: mlflow.sklearn\n"
    "run_id: {run_id}\n"
    "utc_time_created: '2023-11-14 22:13:20.000000'\n"
)


@dataclass
class Seeded:
    experiments: dict[str, str] = field(default_factory=dict)  # name -> id
    runs: dict[str, str] = field(default_factory=dict)  # label -> id


def prompt_links_settled() -> None:
    """Wait for MLflow's client to link the prompts it registered to the Default
    experiment: it does so in threads of its own, which would undo a link set after."""
    for thread in threading.enumerate():
        if thread.name.startswith("link_prompt_to_experiment_thread"):
            thread.join()


def make_run(client: MlflowClient, experiment_id: str, name: str, offset: int, *, user="alice",
         parent: str | None = None, status="FINISHED", tags: dict | None = None) -> str:
    all_tags = {"mlflow.user": user, **(tags or {})}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, start_time=T0 + offset, run_name=name, tags=all_tags)
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param("offset", str(offset))],
                     metrics=[Metric("score", offset / 10, T0 + offset, 0)])
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=T0 + offset + 5_000)
    return run_id


def _upload(client: MlflowClient, run_id: str, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for relative, content in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        client.log_artifacts(run_id, str(root))


def _rich_run(client: MlflowClient, experiment_id: str) -> str:
    run = client.create_run(experiment_id, start_time=T0 + 50_000, run_name="rich \u2713",
                            tags={"mlflow.user": "b\u00e9atrice"})
    run_id = run.info.run_id
    params = [Param(f"p{i:03d}", str(i)) for i in range(150)]
    params += [Param("long", "x" * 6000), Param("\u00fcn\u00efk\u00e9y", "v\u00e4lue \u2713")]
    tags = [RunTag(f"tag{i:03d}", f"value {i}") for i in range(120)]
    tags += [
        RunTag("empty", ""),
        RunTag("cl\u00e9 \u00fc", "v\u00e4lue \u2713"),
        RunTag("mlflow.note.content", "# Notes\nwith **markdown** and \u00fcnicode"),
        RunTag("mlflow.source.name", "train.py"),
        RunTag("mlflow.source.type", "LOCAL"),
        RunTag("mlflow.source.git.commit", "0123456789abcdef0123456789abcdef01234567"),
        RunTag("mlflow.source.git.branch", "main"),
    ]
    metrics = [Metric("loss", 1.0 / (i + 1), T0 + i, i) for i in range(2500)]
    metrics += [Metric("odd", math.nan, T0, 0), Metric("odd", math.inf, T0 + 1, 1),
                Metric("odd", -math.inf, T0 + 2, 2), Metric("odd", 0.5, T0 + 3, 3)]
    metrics += [Metric("same_step", float(v), T0 + v, 7) for v in range(5)]
    metrics += [Metric("val/loss", 0.25, T0, 0), Metric("val/loss", 0.125, T0 + 1, 1)]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    client.log_inputs(run_id, [
        DatasetInput(
            Dataset("train", "abc123", "local", '{"uri": "/data/train.csv"}',
                    schema='{"mlflow_colspec": [{"name": "x", "type": "double"}]}',
                    profile='{"num_rows": 100}'),
            tags=[InputTag("mlflow.data.context", "training")]),
        DatasetInput(Dataset("eval", "def456", "http", '{"url": "https://example.com/e"}'),
                     tags=[InputTag("mlflow.data.context", "evaluation")]),
    ])
    files = dict(ARTIFACTS)
    files["model/MLmodel"] = MLMODEL_TEMPLATE.format(run_id=run_id).encode()
    files["model/model.pkl"] = BINARY[:1000]
    _upload(client, run_id, files)
    client.set_terminated(run_id, "FINISHED", end_time=T0 + 90_000)
    return run_id


def seed_rich_source(uri: str, prefix: str, *, s3_artifact_root: str | None = None) -> Seeded:
    """Populate ``uri`` with experiments named ``<prefix>-…`` and return their ids."""
    client = MlflowClient(uri)
    seeded = Seeded()

    def experiment(suffix: str, **kwargs) -> str:
        name = f"{prefix}-{suffix}"
        seeded.experiments[name] = client.create_experiment(name, **kwargs)
        return seeded.experiments[name]

    main = experiment("main", tags={"mlflow.note.content": "The main experiment \u2713",
                                    "team": "forecasting", "empty": ""})
    runs = seeded.runs
    runs["parent"] = make_run(client, main, "parent", 1_000)
    runs["child"] = make_run(client, main, "child", 2_000, parent=runs["parent"], status="FAILED")
    runs["grandchild"] = make_run(client, main, "grandchild", 3_000, parent=runs["child"],
                              status="KILLED", user="bob")
    runs["running"] = make_run(client, main, "running", 4_000, status="RUNNING")
    runs["rich"] = _rich_run(client, main)
    runs["deleted"] = make_run(client, main, "deleted", 6_000)
    client.delete_run(runs["deleted"])

    runs["in_default"] = make_run(client, "0", f"{prefix}-in-default", 10_000)

    other = experiment("other")
    runs["cross_child"] = make_run(client, other, "cross-child", 7_000, parent=runs["parent"])

    gone = experiment("gone")
    runs["in_deleted_experiment"] = make_run(client, gone, "in-deleted-experiment", 8_000)
    client.delete_experiment(gone)

    if s3_artifact_root:
        s3 = experiment("s3", artifact_location=f"{s3_artifact_root}/{prefix}")
        runs["s3"] = make_run(client, s3, "s3-run", 9_000)
        _upload(client, runs["s3"], ARTIFACTS)
    return seeded


def seed_bulk_workload(uri: str, prefix: str, *, runs: int = 12, points: int = 300) -> dict:
    """What a whole-server migration meets: the rich experiments of
    :func:`seed_rich_source`, plus ``<prefix>-bulk`` with ``runs`` runs (every fourth a
    child of the one before) of four ``points``-point metric histories and an artifact, a
    logged model, and a registered model ``<prefix>-model`` whose versions come from a run
    (``runs:/``) and from the logged model (``models:/m-…``), with a gap (v3 deleted),
    a stage, an alias and tags. Returns the names and ids."""
    client = MlflowClient(uri, uri)
    rich = seed_rich_source(uri, prefix)
    bulk = client.create_experiment(f"{prefix}-bulk", tags={"kind": "bulk"})
    run_ids: list[str] = []
    for i in range(runs):
        parent = run_ids[-1] if i % 4 == 3 else None
        run_id = make_run(client, bulk, f"bulk-{i}", 20_000 + i, parent=parent)
        metrics = [Metric(key, float(step * (k + 1)), T0 + step, step)
                   for k, key in enumerate(("loss", "acc", "lr", "f1"))
                   for step in range(points)]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start:start + 1000],
                             params=[Param(f"p{j}", str(i * j)) for j in range(5)]
                             if start == 0 else [],
                             tags=[RunTag("index", str(i))] if start == 0 else [])
        _upload(client, run_id, {"model/weights.txt": f"weights {i}\n".encode(),
                                 "notes.txt": b"note\n"})
        run_ids.append(run_id)
    logged = client.create_logged_model(bulk, name="bulk-model", source_run_id=run_ids[0],
                                        model_type="demo", params={"depth": "3"},
                                        tags={"owner": "bulk"})
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "weights.txt"
        weights.write_text("logged weights\n")
        client.log_model_artifact(logged.model_id, str(weights))
    client.finalize_logged_model(logged.model_id, "READY")
    model = f"{prefix}-model"
    client.create_registered_model(model, tags={"team": "bulk"}, description="bulk model")
    client.create_model_version(model, f"runs:/{run_ids[1]}/model", run_id=run_ids[1],
                                tags={"from": "run"}, description="v1")
    client.create_model_version(model, f"models:/{logged.model_id}", run_id=run_ids[0],
                                model_id=logged.model_id, description="v2")
    client.create_model_version(model, f"runs:/{run_ids[2]}/model", run_id=run_ids[2])
    client.create_model_version(model, f"runs:/{run_ids[2]}/model", run_id=run_ids[2],
                                description="v4")
    client.delete_model_version(model, "3")
    client.transition_model_version_stage(model, "4", "Production")
    client.set_registered_model_alias(model, "champion", "4")
    return {"experiments": {**rich.experiments, f"{prefix}-bulk": bulk},
            "runs": {**rich.runs, **{f"bulk-{i}": r for i, r in enumerate(run_ids)}},
            "logged_model": logged.model_id, "model": model}
