"""Traces on the real servers: agent-style traces (tests/seed_traces.py) exported once for
the module, imported under renamed experiments, compared field by field, imported again,
half-written and resumed, copied a second time (new ids), exported without a change to the
source, and sent to a store that cannot take them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import mlflow_exim
from mlflow_exim import cli, lineage
from mlflow_exim.catalog import open_bundle
from mlflow_exim.entities import trace as trace_entity
from mlflow_exim.kind import CREATE, REDO, SKIP
from mlflow_exim.report import FAILED, OK, PLANNED, SKIPPED

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def seeded(stack, tmp_path_factory):
    """The seeded source experiment's ids, and a bundle of it made by export-all."""
    name = "trc" + os.urandom(3).hex()
    made = subprocess.run([sys.executable, "-m", "tests.seed_traces", stack.source.uri, name],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    ids = json.loads(made.stdout.strip().splitlines()[-1])
    bundle = tmp_path_factory.mktemp("traces") / "bundle"
    exported = mlflow_exim.export_all(bundle, tracking_uri=stack.source.uri, experiments=name,
                                      models="none")
    assert exported.ok, exported.summary()
    return name, ids, bundle


def _renamed(name: str, new: str) -> dict:
    return {"experiment_renames": ((name, new),)}


def _traces(uri: str, experiment_name: str) -> dict:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return {t.info.trace_id: t for t in client.search_traces(
        locations=[experiment.experiment_id], max_results=100)}


def _source_traces(stack, seeded_ids) -> list[str]:
    return [seeded_ids[k] for k in ("in_run", "free", "for_model", "failed")]


def test_round_trip_keeps_ids_and_every_field_and_a_second_import_creates_nothing(
        stack, seeded, unique):
    name, ids, bundle = seeded
    planned = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, dry_run=True,
                                     **_renamed(name, unique))
    [step] = [o for o in planned.outcomes if o.kind == "traces"]
    assert (step.status, step.action) == (PLANNED, CREATE)

    report = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                    **_renamed(name, unique))
    assert report.ok, report.summary()
    traced = [o for o in report.outcomes if o.kind == "traces"]
    assert sorted(o.source_id for o in traced) == sorted(_source_traces(stack, ids))
    assert all(o.target_id == o.source_id and not o.warnings for o in traced)
    assert report.extra["id_map"]["traces"] == {}  # every id kept

    source, target = _traces(stack.source.uri, name), _traces(stack.target.uri, unique)
    assert set(target) == set(source)
    runs = report.extra["id_map"]["runs"]
    kept = target[ids["in_run"]]
    assert kept.info.trace_metadata["mlflow.sourceRun"] == runs[ids["run"]]
    assert target[ids["for_model"]].info.trace_metadata["mlflow.modelId"] == (
        report.extra["id_map"]["logged_models"][ids["model"]])
    assert kept.info.trace_metadata["mlflow.trace.user"] == "alice"
    assert kept.info.tags["reviewed"] == "later \u2713"
    assert target[ids["failed"]].info.state.value == "ERROR"
    for trace_id, original in source.items():
        copy = target[trace_id]
        assert (copy.info.request_time, copy.info.execution_duration) == (
            original.info.request_time, original.info.execution_duration)
        assert sorted(s.to_dict()["span_id"] for s in copy.data.spans) == sorted(
            s.to_dict()["span_id"] for s in original.data.spans)
    spans = {s.name: s for s in kept.data.spans}
    assert spans["retrieve"].get_attribute("dict") == {"k": [1, {"n": None}]}
    assert spans["retrieve"].get_attribute("int") == 7
    assert [(e.name, e.timestamp, e.attributes) for e in spans["retrieve"].events] == [
        ("cache-miss", 1_700_000_000_000_000_123, {"key": "in a run", "size": 3, "hit": False})]
    failed_tools = [s for s in kept.data.spans if s.name == "flaky_tool"
                    and s.status.status_code == "ERROR"]
    assert len(failed_tools) == 1 and failed_tools[0].events[0].name == "exception"
    assessments = {a.name: a for a in kept.info.assessments if a.valid is not False}
    overridden = [a for a in kept.info.assessments if a.valid is False]
    assert [a.assessment_id for a in overridden] == [assessments["relevance"].overrides]
    assert assessments["in_run_score"].run_id == runs[ids["run"]]
    assert assessments["safety"].feedback.error.error_code == "TIMEOUT"
    assert {a.assessment_id for a in kept.info.assessments} == {
        a.assessment_id for a in source[ids["in_run"]].info.assessments}
    linked = MlflowClient(stack.target.uri).search_traces(
        locations=[kept.info.experiment_id], run_id=runs[ids["linked_run"]])
    assert [t.info.trace_id for t in linked] == [ids["free"]]

    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name,
                              models="none", id_map=report.extra["id_map"])
    assert card.ok, card.differences
    assert card.identical["traces"] == card.totals["traces"] == 4

    again = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                   **_renamed(name, unique))
    assert again.ok and {o.status for o in again.outcomes} == {SKIPPED}, again.summary()
    assert len(_traces(stack.target.uri, unique)) == 4

    MlflowClient(stack.target.uri).set_trace_tag(ids["free"], "reviewed", "changed")
    card = mlflow_exim.verify_bundle(bundle, stack.target.uri, id_map=report.extra["id_map"])
    assert card.identical["traces"] == 3
    assert any("tags: 'reviewed'" in d for d in card.differences)


def test_half_written_traces_are_redone_and_missing_ones_written_never_twice(
        stack, seeded, unique):
    """What a killed import leaves, made deterministic: a trace still marked pending (killed
    before its links), a trace with spans but no info (killed between the OTLP request and
    StartTraceV3), and a trace never written."""
    name, ids, bundle = seeded
    first = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                   **_renamed(name, unique))
    assert first.ok, first.summary()
    client = MlflowClient(stack.target.uri)
    experiment_id = client.get_experiment_by_name(unique).experiment_id
    store = client._tracking_client.store
    on_target = {key: first.extra["id_map"]["traces"].get(ids[key], ids[key])
                 for key in ("in_run", "for_model", "failed")}  # moved, if imported before
    client.set_trace_tag(on_target["in_run"], lineage.PENDING, ids["in_run"])
    spans_only = client.get_trace(on_target["for_model"]).data.spans
    store.delete_traces(experiment_id, trace_ids=[on_target["for_model"], on_target["failed"]])
    store.log_spans(experiment_id, spans_only)

    resumed = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                     **_renamed(name, unique))
    assert resumed.ok, resumed.summary()
    actions = {o.source_id: o.action for o in resumed.outcomes if o.kind == "traces"}
    assert actions == {ids["in_run"]: REDO, ids["for_model"]: REDO, ids["failed"]: CREATE,
                       ids["free"]: SKIP}
    assert len(_traces(stack.target.uri, unique)) == 4
    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name,
                              models="none", id_map=resumed.extra["id_map"])
    assert card.ok, card.differences


def test_an_import_interrupted_inside_a_trace_resumes(stack, seeded, unique, monkeypatch):
    """Stopped for real in the middle of a trace (its info written with the pending mark,
    its run link not yet), the import is run again: that trace is redone, none doubled."""
    from mlflow.store.tracking.rest_store import RestStore

    name, ids, bundle = seeded

    def interrupted(self, trace_ids, run_id):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(RestStore, "link_traces_to_run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri, workers=1,
                                   **_renamed(name, unique))
    resumed = mlflow_exim.import_all(bundle, tracking_uri=stack.target.uri,
                                     **_renamed(name, unique))
    assert resumed.ok, resumed.summary()
    assert REDO in {o.action for o in resumed.outcomes if o.kind == "traces"}
    assert len(_traces(stack.target.uri, unique)) == 4
    card = mlflow_exim.verify(stack.source.uri, stack.target.uri, experiments=name,
                              models="none", id_map=resumed.extra["id_map"])
    assert card.ok, card.differences


def test_a_second_copy_on_the_same_server_gets_new_ids_said_per_trace(stack, seeded, unique):
    name, ids, bundle = seeded
    copy = mlflow_exim.import_all(bundle, tracking_uri=stack.source.uri,
                                  **_renamed(name, f"{unique}-copy"))
    assert copy.ok, copy.summary()
    moved = copy.extra["id_map"]["traces"]
    assert set(moved) == set(_source_traces(stack, ids))
    experiment_id = copy.extra["id_map"]["experiments"][ids["experiment_id"]]
    for old, new in moved.items():
        assert new == trace_entity.derived_trace_id(old, experiment_id)
    assert all(any("imported as" in w for w in o.warnings)
               for o in copy.outcomes if o.kind == "traces")
    target = _traces(stack.source.uri, f"{unique}-copy")
    assert set(target) == set(moved.values())
    linked = MlflowClient(stack.source.uri).search_traces(
        locations=[experiment_id], run_id=copy.extra["id_map"]["runs"][ids["linked_run"]])
    assert [t.info.trace_id for t in linked] == [moved[ids["free"]]]
    card = mlflow_exim.verify_bundle(bundle, stack.source.uri, id_map=copy.extra["id_map"])
    assert card.ok, card.differences

    again = mlflow_exim.import_all(bundle, tracking_uri=stack.source.uri,
                                   **_renamed(name, f"{unique}-copy"))
    assert {o.status for o in again.outcomes if o.kind == "traces"} == {SKIPPED}
    assert again.extra["id_map"]["traces"] == moved


def _rows(database: Path) -> dict[str, list]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}


def test_exports_read_the_source_without_changing_a_row(stack, seeded, tmp_path):
    name, ids, _bundle = seeded
    database = stack.source.log_path.parent / "source.db"
    before = _rows(database)
    result = CliRunner().invoke(cli.main, [
        "export-traces", "--experiments", name, "--filter", "trace.status = 'ERROR'",
        "--since", "2020-01-01", "--output-dir", str(tmp_path / "errors"),
        "--tracking-uri", stack.source.uri])
    assert result.exit_code == 0, result.output
    # models="none": the shared source holds other modules' deliberately broken versions
    everything = mlflow_exim.export_all(tmp_path / "all", tracking_uri=stack.source.uri,
                                        experiments=name, models="none")
    assert everything.ok, everything.summary()
    assert _rows(database) == before

    doc = json.loads((tmp_path / "errors" / "traces" / ids["experiment_id"]
                      / trace_entity.TRACES_FILE).read_text())
    assert doc["traces"] == 1 and doc["attachments"] == 0
    manifest = json.loads((tmp_path / "errors" / "manifest.json").read_text())
    assert manifest["inventory"]["runs"] == []
    imported = CliRunner().invoke(cli.main, [
        "import-traces", "--input-dir", str(tmp_path / "errors"),
        "--experiment-rename", f"{name}={name}-errors", "--tracking-uri", stack.target.uri,
        "--report", str(tmp_path / "report.json")])
    assert imported.exit_code == 0, imported.output
    report = json.loads((tmp_path / "report.json").read_text())
    [outcome] = [o for o in report["objects"] if o["kind"] == "traces"]
    assert outcome["source_id"] == ids["failed"] and outcome["status"] == OK


def test_a_store_that_cannot_take_spans_fails_each_trace_and_takes_the_rest(
        stack, seeded, tmp_path, monkeypatch):
    name, ids, bundle = seeded
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = f"file://{tmp_path / 'mlruns'}"
    report = mlflow_exim.import_all(bundle, tracking_uri=store)
    traced = [o for o in report.outcomes if o.kind == "traces"]
    assert sorted(o.source_id for o in traced) == sorted(_source_traces(stack, ids))
    assert {o.status for o in traced} == {FAILED}
    assert all("cannot store spans" in o.reason for o in traced), traced[0].reason
    assert {o.status for o in report.outcomes if o.kind == "runs"} == {OK}


def test_a_link_to_a_run_of_another_experiment_arrives(tmp_path):
    """On embedded stores: a trace of one experiment linked to a run of another
    (``link_traces_to_run``) is linked to the migrated run, and verify sees it."""
    from mlflow.entities import Span
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    client = MlflowClient(src, src)
    store = client._tracking_client.store
    runs = client.create_experiment("runs-here")
    run_id = client.create_run(runs).info.run_id
    traced = client.create_experiment("traces-here")
    trace_id = "tr-" + os.urandom(16).hex()
    store.log_spans(traced, [Span(ReadableSpan(
        "agent", SpanContext(int(trace_id[3:], 16), 1, False, TraceFlags(1)),
        attributes={"mlflow.traceRequestId": json.dumps(trace_id)},
        start_time=1_700_000_000_000_000_000, end_time=1_700_000_001_000_000_000))])
    store.start_trace(store.get_trace_info(trace_id))
    store.link_traces_to_run([trace_id], run_id)
    bundle = tmp_path / "bundle"
    exported = mlflow_exim.export_experiments("runs-here,traces-here", bundle,
                                              tracking_uri=src)
    assert exported.ok, exported.summary()
    opened = open_bundle(bundle)
    (line,) = trace_entity.lines_of(opened.dirs["traces"][traced],
                                    opened.documents["traces"][traced])
    assert line["run_links"] == [run_id]
    report = mlflow_exim.import_experiments(bundle, tracking_uri=dst)
    assert report.ok, report.summary()
    ids = report.extra["id_map"]
    found = MlflowClient(dst).search_traces(
        locations=[ids["experiments"][traced]],
        filter_string=f"attribute.run_id = '{ids['runs'][run_id]}'")
    assert [t.info.trace_id for t in found] == [trace_id]
    for card in (mlflow_exim.verify(src, dst, experiments="runs-here,traces-here"),
                 mlflow_exim.verify_bundle(bundle, dst, id_map=ids)):
        assert card.ok and card.totals["traces"] == 1, card.text()
