"""bundle/: safe paths, strict JSON, and the reader's and writer's checks."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path

import pytest

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
from mlflow_exim.errors import BundleError, EximError
from tests.unit.samples import (
    ARTIFACT,
    ARTIFACT_BYTES,
    EXPERIMENT_DOC,
    RUN_DIR,
    RUN_DOC,
    RUN_ID,
    make_bundle,
    rehash,
)

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
    assert bundle.format_version == 2
    assert open_bundle(rehash(root)).format_version == FORMAT_VERSION
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
    pytest.param(lambda r: make_bundle(r, format_version=4), MANIFEST_FILE,
                 "format_version 4", id="unknown-version"),
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

def _writer(out: Path, overwrite: bool = False, **options) -> BundleWriter:
    return BundleWriter(out, [kind.section for kind in KINDS], command="export-test",
                        source={"tracking_uri": "http://dev:5000"}, options=options,
                        overwrite=overwrite)


def test_writer_refuses_a_manifest_of_no_bundle_even_with_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MANIFEST_FILE).write_text("{}")
    for overwrite in (False, True):
        with pytest.raises(EximError, match="is not the manifest of an mlflow-exim bundle"):
            BundleWriter(tmp_path / "out", [], command="export-test", source={},
                         options={}, overwrite=overwrite)
    assert not (tmp_path / "out.partial").exists()
    assert (tmp_path / "out" / MANIFEST_FILE).read_text() == "{}"


def _finished(out: Path, **options) -> Path:
    writer = _writer(out, **options)
    directory = writer.object_dir("experiments", "1")
    directory.mkdir(parents=True)
    write_json(directory / "experiment.json", EXPERIMENT_DOC)
    writer.add("experiments", "1", name="churn")
    return writer.finish([])


def test_writer_refreshes_a_bundle_of_the_same_export_and_refuses_another(tmp_path):
    out = _finished(tmp_path / "out")
    with pytest.raises(EximError, match=r"another export \(its options differ\).*`overwrite`"):
        _writer(out, export_deleted_runs=True)
    assert (out / MANIFEST_FILE).is_file()

    writer = _writer(out)  # the same export again: the bundle is taken up to be refreshed
    assert writer.refreshes and not out.exists()
    assert (writer.root / "experiments/1/experiment.json").is_file()
    assert writer.is_written("experiments", "1") and not (writer.root / MANIFEST_FILE).exists()
    gone = writer.object_dir("experiments", "2")  # an object that left the source
    gone.mkdir()
    writer.add("experiments", "1", name="churn")
    writer.finish([])
    assert not (out / "experiments/2").exists()
    assert list(open_bundle(out).documents["experiments"]) == ["1"]


def test_writer_overwrite_replaces_any_bundle_once_the_new_one_is_complete(tmp_path):
    out = _finished(tmp_path / "out", export_deleted_runs=True)
    writer = _writer(out, overwrite=True)
    assert writer.replaces and (out / MANIFEST_FILE).is_file()  # the old one stays meanwhile
    writer.finish([])
    assert read_json(out / MANIFEST_FILE)["options"] == {}
    assert read_json(out / MANIFEST_FILE)["inventory"]["experiments"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


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
        "prompts": [],
        "traces": [],
        "evaluation_datasets": [],
        "scorers": [],
    }
    assert manifest["not_carried"] == {}
    every_file = [p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILE]
    assert manifest["checksums"] == {p.relative_to(out).as_posix(): {
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
        for p in every_file}
    assert len(every_file) == 4 and manifest["checksums"][ARTIFACT]["size"] == len(ARTIFACT_BYTES)
    assert manifest["checksums_scope"] == "all"
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
