"""Many machines: two shards (``--shard I/2``) at once, as two processes, into one target
on the shared real servers, verified whole, with nothing created twice; an export with
``--shard`` takes the part an import of the whole bundle with it takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import mlflow_exim
from mlflow_exim.catalog import open_bundle
from mlflow_exim.shard import DATASETS, PROMPTS, TRACES, Shard, bucket, bundle_graph, split
from tests.seed import make_run, seed_bulk_workload
from tests.servers import CONCURRENT_JOBS

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("experiments", "runs", "logged_models", "registered_models", "model_versions",
         "prompts", "evaluation_datasets")


@pytest.fixture(scope="module")
def workload(stack, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The bulk workload, a second registered model with versions from runs of two
    experiments (so that both stay in its shard), a prompt and an evaluation dataset
    linked to experiments of their own, and lone experiments until each of two shards
    holds one at least."""
    prefix = "shard" + os.urandom(3).hex()
    seeded = seed_bulk_workload(stack.source.uri, prefix, runs=4, points=10)
    client = MlflowClient(stack.source.uri, stack.source.uri)
    prompt = f"{prefix}-prompt"
    client.register_prompt(prompt, "Answer {{question}}")
    for thread in threading.enumerate():  # MLflow's client links it to Default in a thread
        if thread.name.startswith("link_prompt_to_experiment_thread"):
            thread.join()
    client.set_prompt_tag(prompt, "_mlflow_experiment_ids",
                          f",{client.create_experiment(f'{prefix}-prompted')},")
    dataset = client.create_dataset(f"{prefix}-golden", experiment_id=[
        client.create_experiment(f"{prefix}-evaluated")])
    both = f"{prefix}-both"
    client.create_registered_model(both)
    for run in (seeded["runs"]["rich"], seeded["runs"]["bulk-3"]):
        client.create_model_version(both, f"runs:/{run}/model", run_id=run)
    traced: set[int] = set()  # experiments with traces (and their runs) in both shards
    while len(traced) < 2:
        name = f"{prefix}-traced-{os.urandom(3).hex()}"
        subprocess.run([sys.executable, "-m", "tests.seed_traces", stack.source.uri, name],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
        traced.add(bucket(f"experiments:{client.get_experiment_by_name(name).experiment_id}",
                          2))
    buckets: set[int] = set()
    while len(buckets) < 2:
        lone = client.create_experiment(f"{prefix}-lone-{os.urandom(3).hex()}")
        make_run(client, lone, "lone", 500)
        buckets.add(bucket(f"experiments:{lone}", 2))
    bundle = tmp_path_factory.mktemp("shards") / "bundle"
    exported = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri,
                                      experiments=f"{prefix}-*", models=f"{prefix}-*",
                                      export_deleted_runs=True)
    assert exported.ok, exported.summary()
    holds = open_bundle(bundle).documents
    assert (len(holds[PROMPTS]), len(holds[DATASETS])) == (1, 1)
    yield prefix, bundle
    client.delete_dataset(dataset.dataset_id)  # later whole-server exports would take them
    client.delete_prompt_version(prompt, "1")
    client.delete_prompt(prompt)


def _cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlflow_exim", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **CONCURRENT_JOBS})


def _at_once(commands: list[list]) -> None:
    """Run the commands as processes side by side; each must exit 0."""
    processes = [_cli(*command) for command in commands]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]


def _source_ids(report: dict) -> dict[str, set[str]]:
    return {kind: {o["source_id"] for o in report["objects"] if o["kind"] == kind}
            for kind in KINDS}


def _merged(reports: list[Path], out: Path) -> dict:
    process = _cli("report", "merge", *reports, "--report", out)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.read_text())


def _assert_whole_and_once(stack, prefix: str, new: str, merged: Path) -> None:
    """The target holds the source selection under the new prefix, verified field by field,
    and each source experiment's runs and each model's versions exactly once."""
    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                              models=f"{prefix}-*", id_map=merged)
    assert card.ok, card.differences
    assert all(card.identical[kind] == card.totals[kind] for kind in card.totals)
    src, dst = MlflowClient(stack.source.uri), MlflowClient(stack.target.uri)

    def runs_by_experiment(client, start: str) -> dict[str, int]:
        experiments = client.search_experiments(view_type=ViewType.ALL,
                                                filter_string=f"name LIKE '{start}-%'")
        return {e.name.split("-", 1)[1]: len(client.search_runs(
            [e.experiment_id], run_view_type=ViewType.ALL, max_results=1000))
            for e in experiments}

    assert runs_by_experiment(dst, new) == runs_by_experiment(src, prefix)
    for model in src.search_registered_models(filter_string=f"name LIKE '{prefix}-%'"):
        copy = model.name.replace(prefix, new, 1)
        assert (sorted(v.version for v in dst.search_model_versions(f"name = '{copy}'"))
                == sorted(v.version for v in src.search_model_versions(
                    f"name = '{model.name}'")))


def test_two_shards_import_one_bundle_at_once_into_one_target(stack, workload, unique,
                                                             tmp_path):
    prefix, bundle = workload
    reports = [tmp_path / f"shard-{i}.json" for i in (1, 2)]
    _at_once([["import-all", "--input-dir", bundle, "--tracking-uri", stack.target.uri,
               "--shard", f"{i}/2", "--experiment-rename", f"{prefix}-={unique}-",
               "--model-rename", f"{prefix}-={unique}-", "--report", reports[i - 1]]
              for i in (1, 2)])
    parts = [_source_ids(json.loads(path.read_text())) for path in reports]
    whole = open_bundle(bundle)
    assert parts[0]["experiments"] and parts[1]["experiments"]
    for kind in ("experiments", "runs", "logged_models", "registered_models", PROMPTS, DATASETS):
        assert not parts[0][kind] & parts[1][kind], f"{kind} imported by both shards"
        assert parts[0][kind] | parts[1][kind] == set(whole.documents[kind]), kind

    merged = _merged(reports, tmp_path / "merged.json")
    shards = [json.loads(path.read_text()) for path in reports]
    for kind, counts in merged["counts"].items():
        for status, number in counts.items():
            assert number == sum(s["counts"].get(kind, {}).get(status, 0) for s in shards)
    assert merged["ok"] and [m["report"] for m in merged["merged"]] == list(map(str, reports))
    _assert_whole_and_once(stack, prefix, unique, tmp_path / "merged.json")

    again = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, shard="2/2",
                                   experiment_renames=((f"{prefix}-", f"{unique}-"),),
                                   model_renames=((f"{prefix}-", f"{unique}-"),))
    assert again.ok and {o.action for o in again.outcomes} == {"skip"}


def test_two_shards_migrate_at_once_into_one_target(stack, workload, unique, tmp_path):
    prefix, _ = workload
    reports = [tmp_path / f"migrate-{i}.json" for i in (1, 2)]
    _at_once([["migrate", "--src-uri", stack.source.uri, "--dst-uri", stack.target.uri,
               "--experiments", f"{prefix}-*", "--models", f"{prefix}-*",
               "--export-deleted-runs", "--experiment-rename", f"{prefix}-={unique}-",
               "--model-rename", f"{prefix}-={unique}-", "--bundle-dir", tmp_path,
               "--shard", f"{i}/2", "--report", reports[i - 1]] for i in (1, 2)])
    assert sorted(p.name for p in tmp_path.glob("bundle-*")) == ["bundle-1-of-2",
                                                                 "bundle-2-of-2"]
    _merged(reports, tmp_path / "merged.json")
    _assert_whole_and_once(stack, prefix, unique, tmp_path / "merged.json")


def test_an_export_shard_is_the_part_an_import_of_the_whole_bundle_takes(stack, workload,
                                                                        tmp_path):
    prefix, bundle = workload
    whole = open_bundle(bundle)
    for index in (1, 2):
        part = tmp_path / f"part-{index}"
        exported = mlflow_exim.export_all(part, tracking_uri=stack.source.uri,
                                          experiments=f"{prefix}-*", models=f"{prefix}-*",
                                          export_deleted_runs=True, shard=f"{index}/2")
        assert exported.ok, exported.summary()
        sharded = open_bundle(part)
        assert sharded.manifest["options"]["shard"] == f"{index}/2"
        expected = split(*bundle_graph(whole), Shard(index, 2))
        for kind in whole.documents:
            assert set(sharded.documents[kind]) == expected.get(kind, set()), kind


def _in_two_shards(make, kind: str) -> list[set[str]]:
    """The ``kind`` source ids each of the reports ``make("1/2")`` and ``make("2/2")``
    names: both succeed, and no id is in both."""
    parts = []
    for shard in ("1/2", "2/2"):
        report = make(shard)
        assert report.ok, report.summary()
        parts.append({o.source_id for o in report.outcomes if o.kind == kind})
    assert not parts[0] & parts[1], f"{kind} taken by both shards"
    return parts


def test_traces_and_models_commands_take_a_shard(stack, workload, unique, tmp_path):
    """export-traces and export-models with --shard take disjoint parts that make the whole
    selection; import-traces and import-models with --shard take the shard's part of a
    bundle, and the target ends with each trace and registered model once."""
    prefix, bundle = workload
    whole = open_bundle(bundle)
    def traced(bundle_dir: Path) -> dict[str, int]:
        """The number of traces of each experiment of a bundle that has some."""
        return {experiment_id: doc["traces"] for experiment_id, doc
                in open_bundle(bundle_dir).documents[TRACES].items() if doc["traces"]}

    _in_two_shards(lambda shard: mlflow_exim.export_traces(
        f"{prefix}-*", tmp_path / f"traces-{shard[0]}", tracking_uri=stack.source.uri,
        shard=shard), TRACES)
    parts = [traced(tmp_path / f"traces-{i}") for i in (1, 2)]
    assert all(parts) and {**parts[0], **parts[1]} == traced(bundle)
    assert open_bundle(tmp_path / "traces-2").manifest["options"]["shard"] == "2/2"
    models = _in_two_shards(lambda shard: mlflow_exim.export_models(
        f"{prefix}-*", tmp_path / f"models-{shard[0]}", tracking_uri=stack.source.uri,
        shard=shard), "registered_models")
    assert models[0] | models[1] == set(whole.documents["registered_models"])

    renames = {"experiment_renames": ((f"{prefix}-", f"{unique}-"),)}
    imported = _in_two_shards(lambda shard: mlflow_exim.import_traces(
        bundle, tracking_uri=stack.target.uri, shard=shard, **renames), TRACES)
    counts = traced(bundle)  # each shard imports the traces of the experiments it takes
    assert [len(ids) for ids in imported] == [
        sum(counts.get(e, 0) for e in split(*bundle_graph(whole), Shard(i, 2))[TRACES])
        for i in (1, 2)]
    assert all(imported)
    target = MlflowClient(stack.target.uri)
    copies = [e.experiment_id for e in target.search_experiments(
        filter_string=f"name LIKE '{unique}-traced-%'")]
    assert len(target.search_traces(locations=copies, max_results=500)) == \
        sum(counts.values())

    registered = _in_two_shards(lambda shard: mlflow_exim.import_models(
        bundle, tracking_uri=stack.target.uri, shard=shard,
        model_renames=((f"{prefix}-", f"{unique}-"),), **renames), "registered_models")
    assert registered[0] | registered[1] == set(whole.documents["registered_models"])
    assert len(target.search_registered_models(filter_string=f"name LIKE '{unique}-%'")) == \
        len(whole.documents["registered_models"])
