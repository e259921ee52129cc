"""Unit tests of the pure parts: no MLflow server, no network, no tracking store."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import sys
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag

from mlflow_exim import lineage
from mlflow_exim.bundle import BundleWriter
from mlflow_exim.bundle.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, PROGRESS_FILE
from mlflow_exim.bundle.jsonio import (
    JsonLinesWriter,
    decode_float,
    encode_float,
    iter_json_lines,
    read_json,
    write_json,
)
from mlflow_exim.bundle.paths import inside, safe_component
from mlflow_exim.catalog import KINDS, open_bundle
from mlflow_exim.endpoint import display_uri, redact
from mlflow_exim.entities.artifacts import _rewritten_mlmodel
from mlflow_exim.entities.run import _log_batches
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.report import Report
from mlflow_exim.selection import parse_selection
from mlflow_exim.work import Workers, generations, parents_first, progress_bar

# A minimal valid bundle: one experiment, one run, one artifact ----------------------------

RUN_ID = "0123456789abcdef0123456789abcdef"
RUN_DIR = f"runs/{RUN_ID}"
ARTIFACT = f"{RUN_DIR}/artifacts/model/MLmodel"
ARTIFACT_BYTES = f"artifact_path: model\nrun_id: {RUN_ID}\n".encode()

EXPERIMENT_DOC = {
    "experiment_id": "1",
    "name": "churn",
    "artifact_location": "mlflow-artifacts:/1",
    "lifecycle_stage": "active",
    "creation_time": 1700000000123,
    "last_update_time": 1700000000456,
    "tags": {"mlflow.note.content": "about churn", "team": "a"},
}
RUN_DOC = {
    "info": {
        "run_id": RUN_ID,
        "experiment_id": "1",
        "run_name": "first",
        "user_id": "ann",
        "status": "FINISHED",
        "start_time": 1700000000123,
        "end_time": None,
        "lifecycle_stage": "active",
        "artifact_uri": f"mlflow-artifacts:/1/{RUN_ID}/artifacts",
    },
    "params": {"lr": "0.1"},
    "tags": {"mlflow.user": "ann", "mlflow.parentRunId": "p" * 32, "team": "a"},
    "metrics": {"keys": ["loss"], "points": 1},
    "inputs": {"datasets": [], "models": []},
    "outputs": {"models": []},
    "artifacts": {"files": 1},
}


def make_bundle(root: Path, **manifest_changes) -> Path:
    """Write a minimal valid bundle at ``root``; keyword arguments replace manifest fields."""
    (root / "experiments/1").mkdir(parents=True, exist_ok=True)
    (root / ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
    write_json(root / "experiments/1/experiment.json", EXPERIMENT_DOC)
    write_json(root / RUN_DIR / "run.json", RUN_DOC)
    (root / RUN_DIR / "metrics.jsonl").write_text(
        '{"key":"loss","step":0,"timestamp":1700000000123,"value":"NaN"}\n')
    (root / ARTIFACT).write_bytes(ARTIFACT_BYTES)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "source": {"tracking_uri": "http://dev:5000"},
        "inventory": {
            "experiments": [{"id": "1", "name": "churn", "path": "experiments/1"}],
            "runs": [{"id": RUN_ID, "experiment_id": "1", "path": RUN_DIR}],
        },
        "checksums": {ARTIFACT: {"sha256": hashlib.sha256(ARTIFACT_BYTES).hexdigest(),
                                 "size": len(ARTIFACT_BYTES)}},
        **manifest_changes,
    }
    write_json(root / MANIFEST_FILE, manifest)
    return root


# bundle.paths -----------------------------------------------------------------------------

TRICKY = ["a", "A", "_a", "_YQ", "YQ", "a_b", "a-b", "a/b", "a\\b", "..", ".", ".hidden",
          "", " ", "a ", "with space", "ünïcödé", "名前", "a" * 100, "a" * 101, "x" * 300,
          "_", "__", "-x", "1", "01", "a\x00b"]


@pytest.mark.parametrize("value", ["0", "123", RUN_ID, "run-1_x", "a" * 100])
def test_safe_component_keeps_plain_ids(value):
    assert safe_component(value) == value


@pytest.mark.parametrize("value", ["a/b", "..", ".", ".hidden", "with space", "ünïcödé",
                                   "", " ", "_leading", "-dash", "a" * 101, "x" * 300])
def test_safe_component_encodes_everything_else(value):
    result = safe_component(value)
    assert result.startswith("_")
    body = result[1:]
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == value.encode("utf-8")


def test_safe_component_is_injective_and_never_a_special_name(tmp_path):
    results = [safe_component(v) for v in TRICKY]
    assert len(set(results)) == len(TRICKY)
    for result in results:
        assert "/" not in result and "\\" not in result and "\x00" not in result
        assert result not in (".", "..")
    for result in (r for r in results if len(r) < 200):
        (tmp_path / result).mkdir()
        assert (tmp_path / result).resolve().parent == tmp_path.resolve()


def test_safe_component_encodes_trailing_newline():
    assert safe_component("abc\n") != "abc\n"
    assert "\n" not in safe_component("abc\n")


def test_inside_accepts_paths_within_root(tmp_path):
    assert inside(tmp_path, "runs/abc", source=tmp_path / "m.json") == tmp_path / "runs/abc"
    assert inside(tmp_path, "runs/../runs/a", source=tmp_path / "m.json") == tmp_path / "runs/a"


@pytest.mark.parametrize("relative", ["../x", "runs/../../x", "/etc/passwd", "link/x"])
def test_inside_refuses_paths_leaving_root(tmp_path, relative):
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    source = root / MANIFEST_FILE
    with pytest.raises(BundleError) as info:
        inside(root, relative, source=source)
    assert info.value.path == str(source)
    assert str(info.value).startswith(f"{source}: ")
    assert "outside the bundle" in str(info.value)


# bundle.jsonio ----------------------------------------------------------------------------

def _refuse_constant(name):
    raise AssertionError(f"non-strict JSON constant {name}")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.5, -2.25,
                                   1e-300, 1.7976931348623157e308, 123456789.123456789])
def test_float_round_trip_through_strict_json(value):
    encoded = json.loads(json.dumps(encode_float(value), allow_nan=False),
                         parse_constant=_refuse_constant)
    decoded = decode_float(encoded)
    assert isinstance(decoded, float)
    if math.isnan(value):
        assert math.isnan(decoded)
    else:
        assert decoded == value and math.copysign(1, decoded) == math.copysign(1, value)


def test_encode_float_names_non_finite_values():
    assert [encode_float(v) for v in (math.nan, math.inf, -math.inf, 2.0)] == [
        "NaN", "Infinity", "-Infinity", 2.0]
    assert decode_float(3) == 3.0 and isinstance(decode_float(3), float)


def test_write_json_is_deterministic_strict_and_atomic(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    write_json(one, {"b": [encode_float(math.nan)], "a": {"y": "ü", "x": encode_float(-math.inf)}})
    write_json(two, {"a": {"x": encode_float(-math.inf), "y": "ü"}, "b": [encode_float(math.nan)]})
    text = one.read_text(encoding="utf-8")
    assert one.read_bytes() == two.read_bytes()
    assert text.index('"a"') < text.index('"b"') and text.index('"x"') < text.index('"y"')
    assert json.loads(text, parse_constant=_refuse_constant) == {
        "a": {"x": "-Infinity", "y": "ü"}, "b": ["NaN"]}
    write_json(one, {"replaced": True})
    assert read_json(one) == {"replaced": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "two.json"]


def test_write_json_refuses_raw_nan_without_leaving_a_file(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"v": math.nan})
    assert list(tmp_path.iterdir()) == []


def test_read_json_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(BundleError) as info:
        read_json(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and "missing" in message


def test_read_json_invalid_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  oops\n}\n')
    with pytest.raises(BundleError) as info:
        read_json(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "not valid JSON" in message and message.endswith("line 3")


def test_iter_json_lines_reports_bad_line_number(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\nnot json\n{"c": 3}\n')
    seen = []
    with pytest.raises(BundleError) as info:
        for item in iter_json_lines(path):
            seen.append(item)
    assert seen == [{"a": 1}, {"b": 2}]
    assert str(info.value).startswith(f"{path}: line 4 is not valid JSON")
    with pytest.raises(BundleError, match="missing"):
        list(iter_json_lines(tmp_path / "absent.jsonl"))


def test_json_lines_writer_counts_and_writes_compact_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    with JsonLinesWriter(path) as out:
        for step in range(3):
            out.write({"step": step, "key": "loss", "value": encode_float(math.inf)})
    assert out.count == 3
    lines = path.read_text().splitlines()
    assert lines[0] == '{"key":"loss","step":0,"value":"Infinity"}'
    assert list(iter_json_lines(path)) == [json.loads(line) for line in lines]
    assert len(lines) == 3


# bundle.reader ----------------------------------------------------------------------------

def test_open_valid_minimal_bundle(tmp_path):
    root = make_bundle(tmp_path / "b")
    bundle = open_bundle(root)
    assert bundle.format_version == FORMAT_VERSION
    assert bundle.documents["experiments"] == {"1": EXPERIMENT_DOC}
    assert bundle.documents["runs"] == {RUN_ID: RUN_DOC}
    assert bundle.dirs["runs"][RUN_ID] == root / RUN_DIR


def _replace_run_info(root, **info):
    write_json(root / RUN_DIR / "run.json", {**RUN_DOC, "info": {**RUN_DOC["info"], **info}})


ESCAPING_RUN = {"id": RUN_ID, "experiment_id": "1", "path": "../elsewhere"}
ABSOLUTE_RUN = {"id": RUN_ID, "experiment_id": "1", "path": "/tmp"}


@pytest.mark.parametrize("mutate, offending, fragment", [
    pytest.param(lambda r: (r / MANIFEST_FILE).unlink(), MANIFEST_FILE, "missing",
                 id="manifest-missing"),
    pytest.param(lambda r: (r / MANIFEST_FILE).write_text("{not json"), MANIFEST_FILE,
                 "not valid JSON", id="manifest-not-json"),
    pytest.param(lambda r: make_bundle(r, format="zip"), MANIFEST_FILE, "'zip'",
                 id="wrong-format"),
    pytest.param(lambda r: make_bundle(r, format_version=3), MANIFEST_FILE,
                 "format_version 3", id="unknown-version"),
    pytest.param(lambda r: make_bundle(r, format_version=True), MANIFEST_FILE,
                 "format_version", id="boolean-version"),
    pytest.param(lambda r: make_bundle(r, inventory={"runs": [ESCAPING_RUN]}), MANIFEST_FILE,
                 "'../elsewhere' points outside the bundle", id="inventory-escapes"),
    pytest.param(lambda r: make_bundle(r, inventory={"runs": [ABSOLUTE_RUN]}), MANIFEST_FILE,
                 "'/tmp' points outside the bundle", id="inventory-absolute"),
    pytest.param(lambda r: (r / RUN_DIR / "run.json").unlink(), f"{RUN_DIR}/run.json",
                 "missing", id="run-json-missing"),
    pytest.param(lambda r: _replace_run_info(r, status="DONE"), f"{RUN_DIR}/run.json",
                 "info.status 'DONE'", id="run-bad-status"),
    pytest.param(lambda r: write_json(r / "experiments/1/experiment.json",
                                      {**EXPERIMENT_DOC, "lifecycle_stage": "gone"}),
                 "experiments/1/experiment.json", "lifecycle_stage 'gone'",
                 id="experiment-bad-lifecycle"),
    pytest.param(lambda r: (r / RUN_DIR / "metrics.jsonl").unlink(), f"{RUN_DIR}/metrics.jsonl",
                 "missing", id="metrics-missing"),
    pytest.param(lambda r: (r / RUN_DIR / "artifacts/extra.txt").write_bytes(b"x"),
                 f"{RUN_DIR}/artifacts/extra.txt", "not listed", id="artifact-unlisted"),
    pytest.param(lambda r: (r / ARTIFACT).write_bytes(ARTIFACT_BYTES.upper()), ARTIFACT,
                 "does not match its checksum", id="artifact-same-size-other-bytes"),
    pytest.param(lambda r: (r / ARTIFACT).write_bytes(ARTIFACT_BYTES + b"!"), ARTIFACT,
                 "does not match its checksum", id="artifact-other-size"),
    pytest.param(lambda r: (r / ARTIFACT).unlink(), ARTIFACT,
                 "listed in manifest.json is missing", id="artifact-missing"),
    pytest.param(lambda r: make_bundle(r, checksums={ARTIFACT: "abc"}), MANIFEST_FILE,
                 "is not an object with 'sha256' and 'size'", id="checksum-not-object"),
    pytest.param(lambda r: (r / RUN_DIR / "metrics.jsonl").write_text(
                     '{"key":"loss","step":0,"timestamp":1,"value":1}\n{"key":"loss"}\n'),
                 f"{RUN_DIR}/metrics.jsonl", "is malformed", id="metric-point-incomplete"),
    pytest.param(lambda r: (r / RUN_DIR / "metrics.jsonl").write_text(
                     '{"key":"loss","step":0,"timestamp":1,"value":"Inf"}\n'),
                 f"{RUN_DIR}/metrics.jsonl", "is malformed", id="metric-value-unknown-string"),
    pytest.param(lambda r: write_json(r / RUN_DIR / "run.json", {**RUN_DOC, "inputs": {
                     "datasets": [{"dataset": {"name": "d", "digest": "1", "source_type": "local",
                                               "source": "s"}, "tags": [{"value": "x"}]}]}}),
                 f"{RUN_DIR}/run.json", "'key' is missing", id="dataset-tag-without-key"),
    pytest.param(lambda r: _replace_run_info(r, experiment_id="2"), f"{RUN_DIR}/run.json",
                 "its experiment 2 is not in the bundle", id="run-experiment-not-in-bundle"),
])
def test_open_rejects_broken_bundle_naming_the_file(tmp_path, mutate, offending, fragment):
    root = make_bundle(tmp_path / "b")
    mutate(root)
    with pytest.raises(BundleError) as info:
        open_bundle(root)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.path == str(root / offending)
    assert message.startswith(f"{root / offending}: ") and fragment in message


@pytest.mark.parametrize("name, progress", [("out.partial", False), ("out", True)])
def test_open_refuses_unfinished_export(tmp_path, name, progress):
    root = tmp_path / name
    (root / RUN_DIR).mkdir(parents=True)
    write_json(root / RUN_DIR / "run.json", RUN_DOC)
    if progress:
        write_json(root / PROGRESS_FILE, {"format": FORMAT_NAME})
    with pytest.raises(BundleError) as info:
        open_bundle(root)
    assert info.value.path == str(root)
    assert "unfinished export" in str(info.value) and "\n" not in str(info.value)


# bundle.writer ----------------------------------------------------------------------------

def _writer(out: Path, **options) -> BundleWriter:
    return BundleWriter(out, [kind.section for kind in KINDS], command="export-test",
                        source={"tracking_uri": "http://dev:5000"}, options=options)


def test_writer_refuses_existing_bundle(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MANIFEST_FILE).write_text("{}")
    with pytest.raises(EximError, match="already holds a bundle"):
        _writer(tmp_path / "out")
    assert not (tmp_path / "out.partial").exists()


def test_writer_refuses_non_empty_directory_and_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for target in ("out", "file"):
        with pytest.raises(EximError, match="not an empty directory"):
            _writer(tmp_path / target)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


@pytest.mark.parametrize("precreate_empty_dir", [False, True])
def test_writer_builds_under_partial_and_renames_on_finish(tmp_path, precreate_empty_dir):
    out = tmp_path / "out"
    if precreate_empty_dir:
        out.mkdir()
    writer = _writer(out)
    assert writer.root == tmp_path / "out.partial" and (writer.root / PROGRESS_FILE).is_file()
    experiment_dir = writer.object_dir("experiments", "1")
    experiment_dir.mkdir(parents=True)
    write_json(experiment_dir / "experiment.json", EXPERIMENT_DOC)
    writer.add("experiments", "1", name="churn")
    run_dir = writer.object_dir("runs", RUN_ID)
    (run_dir / "artifacts/model").mkdir(parents=True)
    (run_dir / "artifacts/model/MLmodel").write_bytes(ARTIFACT_BYTES)
    (run_dir / "metrics.jsonl").write_text("")
    write_json(run_dir / "run.json", RUN_DOC)
    writer.add("runs", RUN_ID, experiment_id="1")
    assert not (out / MANIFEST_FILE).exists()

    assert writer.finish([]) == out
    assert not writer.root.exists() and not (out / PROGRESS_FILE).exists()
    manifest = read_json(out / MANIFEST_FILE)
    assert (manifest["format"], manifest["format_version"]) == (FORMAT_NAME, FORMAT_VERSION)
    assert manifest["inventory"] == {
        "experiments": [{"id": "1", "name": "churn", "path": "experiments/1"}],
        "runs": [{"id": RUN_ID, "experiment_id": "1", "path": RUN_DIR}],
        "logged_models": [],
        "registered_models": [],
    }
    assert manifest["checksums"] == {ARTIFACT: {
        "sha256": hashlib.sha256(ARTIFACT_BYTES).hexdigest(), "size": len(ARTIFACT_BYTES)}}
    assert manifest["export_failures"] == []
    assert set(open_bundle(out).documents["runs"]) == {RUN_ID}


def test_writer_resumes_same_header_and_wipes_different_one(tmp_path):
    out = tmp_path / "out"
    run_json = _writer(out).object_dir("runs", RUN_ID) / "run.json"
    run_json.parent.mkdir(parents=True)
    write_json(run_json, RUN_DOC)

    _writer(out)
    assert read_json(run_json) == RUN_DOC

    writer = _writer(out, export_deleted_runs=True)
    assert not run_json.exists() and not run_json.parent.exists()
    assert read_json(writer.root / PROGRESS_FILE)["options"] == {"export_deleted_runs": True}


# lineage ----------------------------------------------------------------------------------

def test_experiment_source_tags():
    doc = {**EXPERIMENT_DOC, "artifact_location": None, "last_update_time": None}
    skipped = []
    assert lineage.experiment_source_tags(doc, skipped) == {
        "mlflow_exim.field.experiment_id": "1",
        "mlflow_exim.field.name": "churn",
        "mlflow_exim.field.lifecycle_stage": "active",
        "mlflow_exim.field.creation_time": "1700000000123",
        "mlflow_exim.field._creation_time": "2023-11-14T22:13:20.123+00:00",
        "mlflow_exim.mlflow_tag.note.content": "about churn",
    }
    assert skipped == []


def test_run_source_tags_copy_mlflow_tags_and_skip_long_keys():
    fits, too_long = "mlflow." + "k" * 227, "mlflow." + "k" * 228
    doc = {**RUN_DOC, "tags": {**RUN_DOC["tags"], fits: "1", too_long: "2"}}
    skipped = []
    assert lineage.run_source_tags(doc, skipped) == {
        "mlflow_exim.run_info.run_id": RUN_ID,
        "mlflow_exim.run_info.experiment_id": "1",
        "mlflow_exim.run_info.run_name": "first",
        "mlflow_exim.run_info.user_id": "ann",
        "mlflow_exim.run_info.status": "FINISHED",
        "mlflow_exim.run_info.start_time": "1700000000123",
        "mlflow_exim.run_info._start_time": "2023-11-14T22:13:20.123+00:00",
        "mlflow_exim.run_info.lifecycle_stage": "active",
        "mlflow_exim.run_info.artifact_uri": f"mlflow-artifacts:/1/{RUN_ID}/artifacts",
        "mlflow_exim.mlflow_tag.user": "ann",
        "mlflow_exim.mlflow_tag.parentRunId": "p" * 32,
        "mlflow_exim.mlflow_tag." + "k" * 227: "1",
    }
    assert len("mlflow_exim.mlflow_tag." + "k" * 227) == lineage.MAX_TAG_KEY
    assert skipped == [too_long]


def test_readable_time_keeps_every_millisecond():
    assert lineage.readable_time(None) is None
    assert lineage.readable_time(0) == "1970-01-01T00:00:00.000+00:00"
    base = 1700000000000
    for ms in range(1000):
        assert lineage.readable_time(base + ms).endswith(f":20.{ms:03d}+00:00")


def test_is_lineage_tag():
    assert lineage.is_lineage_tag("mlflow_exim.field.name")
    assert all(lineage.is_lineage_tag(k) for k in lineage.run_source_tags(RUN_DOC, []))
    for key in ("mlflow.user", "mlflow_eximfield", "team", "mlflow_exim"):
        assert not lineage.is_lineage_tag(key)


# bulk -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("all", None), ("  all ", None), ("churn", ["churn"]), ("a, b,,c , ", ["a", "b", "c"]),
    ("team-*,7", ["team-*", "7"]),
])
def test_parse_selection(spec, expected):
    assert parse_selection(spec) == expected


def test_parse_selection_from_file(tmp_path):
    path = tmp_path / "sel.txt"
    path.write_text("# experiments to move\n\nchurn\n  fraud  \n\n#old\nteam-*\n")
    assert parse_selection(str(path)) == ["churn", "fraud", "team-*"]


def test_parse_selection_file_indented_comment(tmp_path):
    path = tmp_path / "sel.txt"
    path.write_text("churn\n  # note\n")
    assert parse_selection(str(path)) == ["churn"]


@pytest.mark.parametrize("content", [None, "", "\n  \n# only a comment\n"])
def test_parse_selection_bad_file(tmp_path, content):
    path = tmp_path / "sel.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EximError) as info:
        parse_selection(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert ("names nothing" if content is not None else "cannot read") in str(info.value)


def test_parse_selection_empty_list():
    with pytest.raises(EximError, match="names nothing"):
        parse_selection(" , ,")


def _runs(**parents) -> dict[str, str | None]:
    return dict(parents)


def test_parents_first_chain():
    assert parents_first(_runs(z=None, y="z", x="y")) == ["z", "y", "x"]
    assert parents_first(_runs(x="y", y="z", z=None)) == ["z", "y", "x"]


@pytest.mark.parametrize("parents", [
    dict(a1=None, a2="a1", a3="a2", b2="b1", b1=None, b0="b1", c=None),  # forest
    dict(c1="missing", c2="c1", c3="elsewhere"),  # parents outside the set
    dict(d="e", e="f", f="g", g=None, h="e"),
])
def test_parents_first_orders_parents_before_children(parents):
    runs = _runs(**parents)
    order = parents_first(runs)
    assert sorted(order) == sorted(runs)
    for child, parent in parents.items():
        if parent in runs:
            assert order.index(parent) < order.index(child)


@pytest.mark.parametrize("parents", [dict(a="b", b="a"), dict(s="s"),
                                     dict(t="a", a="b", b="c", c="a", u=None)])
def test_parents_first_terminates_on_cycles(parents):
    runs = _runs(**parents)
    assert sorted(parents_first(runs)) == sorted(runs)


def test_generations_put_every_run_after_its_parent():
    runs = _runs(a1=None, a2="a1", a3="a2", b1=None, b2="b1", c="elsewhere")
    assert generations(runs) == [["a1", "b1", "c"], ["a2", "b2"], ["a3"]]
    assert generations(_runs(a="b", b="a")) in ([["b"], ["a"]], [["a"], ["b"]])


def test_workers_run_everything_bounded_and_reraise_after_draining():
    import threading
    import time

    running, peak, done, lock = [0], [0], [], threading.Lock()

    def work(item):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
            done.append(item)
        if item == 5:
            raise ValueError("five")

    with Workers(3) as workers, pytest.raises(ValueError, match="five"):
        workers.each(work, range(10))
    assert peak[0] <= 3 and 5 in done and running[0] == 0
    with Workers(1) as inline:
        inline.each(done.append, ["x"])
    assert done[-1] == "x"
    with pytest.raises(EximError, match="at least 1"):
        Workers(0)


# endpoint ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("http://user:pw@host:5000/api", "http://***@host:5000/api"),
    ("https://token@host/x", "https://***@host/x"),
    ("failed: https://a:b@h1:443/x and http://c:d@h2",
     "failed: https://***@h1:443/x and http://***@h2"),
    ("http://host:5000/api", "http://host:5000/api"),
    ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ("no url here, mail me @ home", "no url here, mail me @ home"),
])
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_password_with_at_sign():
    assert "ss" not in redact("http://user:p@ss@host:5000/x").split("@host")[0]


@pytest.mark.parametrize("uri, expected", [
    ("https://user:pw@host:8443/path?q=1#f", "https://host:8443/path?q=1#f"),
    ("http://token@host/", "http://host/"),
    ("http://user:pw@host", "http://host"),
    ("http://host:5000", "http://host:5000"),
    ("https://host/api?x=1", "https://host/api?x=1"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),
])
def test_display_uri(uri, expected):
    assert display_uri(uri) == expected


def test_display_uri_ipv6():
    assert display_uri("http://u:p@[::1]:5000/x") == "http://[::1]:5000/x"


# entities.run -----------------------------------------------------------------------------

MLMODEL = """artifact_path: model
flavors:
  python_function: {{}}
model_uri: runs:/{old}/model
run_id: {quoted}
source_run_id: {old}
"""


@pytest.mark.parametrize("quote", ["", "'", '"'])
def test_rewritten_mlmodel_changes_only_the_run_id_line(tmp_path, quote):
    original = tmp_path / "MLmodel"
    text = MLMODEL.format(old="old1", quoted=f"{quote}old1{quote}")
    original.write_text(text)
    result = _rewritten_mlmodel(original, {"run_id": ("old1", "new2")}, tmp_path)
    assert result != original and result.name == "MLmodel"
    assert result.read_text() == MLMODEL.format(old="old1", quoted=f"{quote}new2{quote}")
    assert original.read_text() == text


def test_rewritten_mlmodel_changes_the_model_id_and_the_run_id_of_a_logged_model(tmp_path):
    original = tmp_path / "MLmodel"
    original.write_text("model_id: m-old\nrun_id: r-old\nmodel_uuid: m-old-uuid\n")
    result = _rewritten_mlmodel(original, {"model_id": ("m-old", "m-new"),
                                           "run_id": ("r-old", "r-new")}, tmp_path)
    assert result.read_text() == "model_id: m-new\nrun_id: r-new\nmodel_uuid: m-old-uuid\n"


@pytest.mark.parametrize("run_id_value", ["other", "old1extra", "xold1"])
def test_rewritten_mlmodel_returns_original_when_nothing_changes(tmp_path, run_id_value):
    original = tmp_path / "MLmodel"
    original.write_text(MLMODEL.format(old="old1", quoted=run_id_value))
    assert _rewritten_mlmodel(original, {"run_id": ("old1", "new2")}, tmp_path) == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MLmodel"]


def test_log_batches_fill_requests_within_the_api_limits():
    params = [Param(f"p{i}", "v") for i in range(250)]
    tags = [RunTag(f"t{i}", "v") for i in range(30)]
    metrics = (Metric("m", float(i), i, i) for i in range(2000))
    batches = list(_log_batches(params, tags, metrics))
    assert [(len(p), len(t), len(m)) for p, t, m in batches] == [
        (100, 30, 870), (100, 0, 900), (50, 0, 230)]
    assert [x.key for p, _, _ in batches for x in p] == [p.key for p in params]
    assert [x.value for _, _, m in batches for x in m] == [float(i) for i in range(2000)]


def test_log_batches_of_an_empty_run_and_of_a_small_one():
    assert list(_log_batches([], [], iter([]))) == []
    (only,) = _log_batches([Param("a", "1")], [RunTag("b", "2")], [Metric("m", 1.0, 0, 0)])
    assert [len(part) for part in only] == [1, 1, 1]


# report -----------------------------------------------------------------------------------

def _sample_report() -> Report:
    report = Report("import-test")
    with report.track("run", "r1", "first") as outcome:
        outcome.target_id = "t1"
    with report.track("run", "r2"):
        raise RuntimeError("cannot reach http://ann:secret@host:5000/api\n  after retries")
    with report.track("experiment", "1"):
        pass
    return report


def test_report_track_records_outcomes_without_reraising():
    ok, failed, _ = _sample_report().outcomes
    assert (ok.status, ok.target_id, ok.name, ok.reason) == ("ok", "t1", "first", None)
    assert failed.status == "failed"
    assert failed.reason == ("RuntimeError: cannot reach http://***@host:5000/api "
                             "after retries")


def test_report_track_lets_keyboard_interrupt_through():
    with pytest.raises(KeyboardInterrupt), Report("x").track("run", "r1"):
        raise KeyboardInterrupt


def test_report_exit_code_counts_and_summary():
    empty = Report("import-test")
    assert (empty.ok, empty.exit_code, empty.counts()) == (True, 0, {})
    report = _sample_report()
    assert (report.ok, report.exit_code) == (False, 1)
    assert report.counts() == {"run": {"ok": 1, "skipped": 0, "planned": 0, "failed": 1},
                               "experiment": {"ok": 1, "skipped": 0, "planned": 0, "failed": 0}}
    summary = report.summary().splitlines()
    assert re.fullmatch(r"import-test: 1 failed in \d+\.\d s", summary[0])
    assert summary[1].split() == ["ok", "skipped", "planned", "failed"]
    assert summary[2].split() == ["experiment", "1", "0", "0", "0"]
    assert summary[3].split() == ["run", "1", "0", "0", "1"]
    assert "FAILED run r2: RuntimeError: cannot reach http://***@host" in summary[4]
    assert "secret" not in "\n".join(summary)
    assert re.fullmatch(r"import-test: ok in \d+\.\d s", empty.summary())


def test_report_fail_and_warn_redact():
    report = Report("x")
    report.fail("run", "r9", "lost https://u:pw@h/x")
    with report.track("run", "r10") as outcome:
        outcome.warn("slow http://u:pw@h")
    assert report.failures[0].reason == "lost https://***@h/x"
    assert report.outcomes[1].warnings == ["slow http://***@h"]


def test_report_write(tmp_path):
    report = _sample_report()
    report.extra["id_map"] = {"run": {"r1": "t1"}}
    path = tmp_path / "report.json"
    report.write(path)
    data = json.loads(path.read_text())
    assert data["command"] == "import-test" and data["ok"] is False
    assert [(o["kind"], o["source_id"], o["status"]) for o in data["objects"]] == [
        ("run", "r1", "ok"), ("run", "r2", "failed"), ("experiment", "1", "ok")]
    assert data["id_map"] == {"run": {"r1": "t1"}}
    assert "secret" not in path.read_text()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_quiet_off_a_terminal_and_counts_on_one(monkeypatch, capsys):
    bar = progress_bar(3, "runs")
    bar.update()
    bar.close()
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar(2, "runs")
    bar.update()
    bar.close()
    assert "runs:" in terminal.getvalue() and "0/2" in terminal.getvalue()  # done / total
