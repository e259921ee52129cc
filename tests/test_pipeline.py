"""A pipelined migrate on the shared real servers: the selection goes in chunks of whole
parts, the import of the first chunk starts while the export still writes the last, and
the target ends verified whole, with the links from the last chunk's prompt and dataset
to runs of earlier chunks; run again, it creates nothing."""

from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient
from mlflow.entities import Metric

import mlflow_exim
from mlflow_exim.bundle.parts import PartsDir
from mlflow_exim.catalog import open_bundle
from mlflow_exim.exporter import export_all_in_parts
from tests.seed import T0, make_run, prompt_links_settled

# One trace in an experiment, through MLflow's fluent API (global state: a process of its
# own); prints its id.
TRACE = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment(experiment_id=sys.argv[2])
with mlflow.start_span("ask") as span:
    span.set_inputs({"question": "why"})
mlflow.flush_trace_async_logging()
print(span.trace_id)
"""


def _seed(uri: str, prefix: str) -> dict[str, str]:
    """Three lone experiments of one run, and a heavy part: ``<prefix>-a`` (a parent with a
    child, long histories) and ``<prefix>-b`` held together by a registered model with a
    version from a run of each, and ``<prefix>-c``, whose trace is linked to a run of a.
    A prompt of lone-1 whose version names lone-1's run, and a dataset of lone-2 with a
    record from lone-2's run."""
    client = MlflowClient(uri, uri)
    ids = {name: client.create_experiment(f"{prefix}-{name}")
           for name in ("a", "b", "c", "lone-1", "lone-2", "lone-3")}
    tracing = subprocess.Popen([sys.executable, "-c", TRACE, uri, ids["c"]],  # meanwhile
                               stdout=subprocess.PIPE, text=True)
    parent = make_run(client, ids["a"], "parent", 1)
    child = make_run(client, ids["a"], "child", 2, parent=parent)
    for run_id in (parent, child):
        for start in range(0, 800, 400):
            client.log_batch(run_id, metrics=[Metric(key, float(step), T0 + step, step)
                                              for key in ("loss", "acc")
                                              for step in range(start, start + 400)])
    other = make_run(client, ids["b"], "other", 3)
    model = f"{prefix}-model"
    client.create_registered_model(model)
    for run_id in (child, other):
        client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)
    out, _ = tracing.communicate(timeout=120)
    assert tracing.returncode == 0
    client.link_traces_to_run([out.split()[-1]], parent)
    lone = {name: make_run(client, ids[name], name, 4) for name in ("lone-1", "lone-2",
                                                                     "lone-3")}
    prompt = f"{prefix}-prompt"
    client.register_prompt(prompt, "Answer {{question}}")
    prompt_links_settled()
    client.set_prompt_tag(prompt, "_mlflow_experiment_ids", f",{ids['lone-1']},")
    client.set_prompt_version_tag(prompt, "1", "mlflow.prompt.associatedRunIds",
                                  lone["lone-1"])
    dataset = client.create_dataset(f"{prefix}-golden", experiment_id=[ids["lone-2"]])
    client._tracking_client.store.upsert_dataset_records(dataset.dataset_id, [
        {"inputs": {"question": "from code"},
         "source": {"source_type": "CODE", "source_data": {"run_id": lone["lone-2"]}}}])
    return {**ids, "parent": parent, "prompt": prompt, "dataset": dataset.dataset_id,
            **{f"{name}-run": run_id for name, run_id in lone.items()}}


def test_a_pipelined_migrate_overlaps_its_phases_and_loses_nothing(stack, unique, tmp_path):
    prefix = unique + "src"
    ids = _seed(stack.source.uri, prefix)
    renames = {"experiment_renames": ((f"{prefix}-", f"{unique}-"),),
               "model_renames": ((f"{prefix}-", f"{unique}-"),)}
    report = mlflow_exim.migrate(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                                 models=f"{prefix}-*", bundle_dir=tmp_path, workers=2,
                                 report=tmp_path / "report.json", **renames)
    assert report.ok, report.summary()

    pipeline = report.extra["pipeline"]
    names = [p["part"] for p in pipeline["parts"]]
    assert names == [f"part-{k}-of-5" for k in range(1, 6)]
    holds = {name: open_bundle(tmp_path / "bundle" / name).documents for name in names}
    heavy = holds[names[-2]]  # the heaviest chunk of runs comes last, whole: the model with
    # a, b and c, whose trace is linked to a run of a
    assert set(heavy["experiments"]) == {ids["a"], ids["b"], ids["c"]}
    assert list(heavy["registered_models"]) == [f"{prefix}-model"]
    assert all(len(holds[name]["experiments"]) == 1 for name in names[:-2])
    # the prompt and the dataset are a chunk of their own, away from the runs they name,
    # which the list marks to import once every other chunk has been
    assert PartsDir(tmp_path / "bundle").after_earlier() == {names[-1]}
    genai = holds[names[-1]]
    assert not genai["experiments"] and not genai["runs"]
    assert list(genai["prompts"]) == [ids["prompt"]]
    assert list(genai["evaluation_datasets"]) == [ids["dataset"]]
    events = [(e["event"], e["part"]) for e in pipeline["events"]]
    assert events.index(("import-start", names[0])) < events.index(("export-end", names[-1]))
    assert sorted(part for event, part in events if event == "import-end") == names
    assert all(events.index(("import-end", name)) < events.index(("import-start", names[-1]))
               for name in names[:-1])

    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                              models=f"{prefix}-*", id_map=tmp_path / "report.json")
    assert card.ok, card.differences
    assert all(card.identical[kind] == card.totals[kind] for kind in card.totals)
    target = MlflowClient(stack.target.uri)
    copies = [e.experiment_id for e in target.search_experiments(
        filter_string=f"name LIKE '{unique}-%'")]
    runs = report.extra["id_map"]["runs"]
    assert len(target.search_traces(locations=copies, run_id=runs[ids["parent"]])) == 1
    version = target.get_prompt_version(ids["prompt"], 1)
    assert version.tags["mlflow.prompt.associatedRunIds"] == runs[ids["lone-1-run"]]
    dataset = report.extra["id_map"]["evaluation_datasets"][ids["dataset"]]
    (record,) = target._tracking_client.store._load_dataset_records(dataset)[0]
    assert record.to_dict()["source"]["source_data"] == {"run_id": runs[ids["lone-2-run"]]}

    again = mlflow_exim.migrate(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                                models=f"{prefix}-*", bundle_dir=tmp_path, workers=2, **renames)
    assert again.ok and {o.action for o in again.outcomes} == {"skip"}, again.summary()
    assert len(target.search_runs(copies)) == 6
    assert len(target.search_model_versions(f"name = '{unique}-model'")) == 2


def test_the_export_writes_no_chunk_after_the_import_stopped(stack, unique, tmp_path,
                                                              monkeypatch):
    """An import that fails marks it (see test_parts.py); the export, which checks the mark
    before each chunk, then writes no further one: here the mark is made as the first
    chunk's export ends."""
    prefix = unique + "stop"
    client = MlflowClient(stack.source.uri)
    for number in range(3):
        make_run(client, client.create_experiment(f"{prefix}-{number}"), "lone", number)
    announced = PartsDir.event

    def import_fails_meanwhile(parts, what, name):
        announced(parts, what, name)
        if what == "export-end":
            parts.stop()

    monkeypatch.setattr(PartsDir, "event", import_fails_meanwhile)
    parts = PartsDir(tmp_path / "bundle")
    parts.start()
    report = export_all_in_parts(parts.root, tracking_uri=stack.source.uri,
                                 experiments=f"{prefix}-*", models="none")
    assert parts.names() == [f"part-{k}-of-3" for k in (1, 2, 3)]
    assert [p["part"] for p in report.extra["parts"]] == ["part-1-of-3"]
    assert sorted(p.name for p in parts.root.glob("part-*")) == ["part-1-of-3"]
    assert report.counts()["experiments"]["ok"] == 1
