"""A pipelined migrate on the shared real servers: the selection goes in chunks of whole
parts, the import of the first chunk starts while the export still writes the last, and
the target ends verified whole; run again, it creates nothing."""

from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient
from mlflow.entities import Metric

import mlflow_exim
from mlflow_exim.catalog import open_bundle
from tests.seed import T0, make_run

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
    version from a run of each, and ``<prefix>-c``, whose trace is linked to a run of a."""
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
    for name in ("lone-1", "lone-2", "lone-3"):
        make_run(client, ids[name], name, 4)
    return {**ids, "parent": parent}


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
    assert names == [f"part-{k}-of-4" for k in (1, 2, 3, 4)]
    holds = {name: open_bundle(tmp_path / "bundle" / name).documents for name in names}
    heavy = holds[names[-1]]  # the heaviest chunk comes last, whole: the model with a, b and
    # c, whose trace is linked to a run of a
    assert set(heavy["experiments"]) == {ids["a"], ids["b"], ids["c"]}
    assert list(heavy["registered_models"]) == [f"{prefix}-model"]
    assert all(len(holds[name]["experiments"]) == 1 for name in names[:-1])
    events = [(e["event"], e["part"]) for e in pipeline["events"]]
    assert events.index(("import-start", names[0])) < events.index(("export-end", names[-1]))
    assert [part for event, part in events if event == "import-end"] == names

    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                              models=f"{prefix}-*", id_map=tmp_path / "report.json")
    assert card.ok, card.differences
    assert all(card.identical[kind] == card.totals[kind] for kind in card.totals)
    target = MlflowClient(stack.target.uri)
    copies = [e.experiment_id for e in target.search_experiments(
        filter_string=f"name LIKE '{unique}-%'")]
    parent = report.extra["id_map"]["runs"][ids["parent"]]
    assert len(target.search_traces(locations=copies, run_id=parent)) == 1

    again = mlflow_exim.migrate(stack.source.uri, stack.target.uri, experiments=f"{prefix}-*",
                                models=f"{prefix}-*", bundle_dir=tmp_path, workers=2, **renames)
    assert again.ok and {o.action for o in again.outcomes} == {"skip"}, again.summary()
    assert len(target.search_runs(copies)) == 6
    assert len(target.search_model_versions(f"name = '{unique}-model'")) == 2
