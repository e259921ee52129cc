"""Bundles that are damaged or made to harm: each is refused with one line naming the file
(and the field), before a target is touched. Property tests generate them with hypothesis."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlflow_exim
from mlflow_exim.bundle.format import MANIFEST_FILE
from mlflow_exim.bundle.jsonio import read_json, write_json
from mlflow_exim.bundle.paths import check_relative
from mlflow_exim.catalog import open_bundle
from mlflow_exim.contents import check_bundle
from mlflow_exim.errors import BundleError
from tests.unit.samples import ARTIFACT, RUN_DIR, RUN_DOC, RUN_ID, make_bundle, rehash

CHILD_ID = "f" * 32
CHILD_DIR = f"runs/{CHILD_ID}"


def _refused(root: Path, offending: str, *fragments: str) -> BundleError:
    with pytest.raises(BundleError) as info:
        open_bundle(root)
    message = str(info.value)
    assert "\n" not in message and info.value.path == str(root / offending), message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def _with_runs(root: Path, *runs: tuple[str, dict]) -> Path:
    """The minimal bundle with these (run id, run.json) in place of its run, rehashed."""
    make_bundle(root)
    manifest = read_json(root / MANIFEST_FILE)
    manifest["inventory"]["runs"] = []
    for run_id, doc in runs:
        (root / "runs" / run_id).mkdir(parents=True, exist_ok=True)
        write_json(root / "runs" / run_id / "run.json", doc)
        (root / "runs" / run_id / "metrics.jsonl").touch()
        manifest["inventory"]["runs"].append(
            {"id": run_id, "experiment_id": "1", "path": f"runs/{run_id}"})
    write_json(root / MANIFEST_FILE, manifest)
    return rehash(root)


def _run(run_id: str, **changes) -> dict:
    doc = json.loads(json.dumps(RUN_DOC))
    doc["info"]["run_id"] = run_id
    for key, value in changes.items():
        doc[key] = {**doc[key], **value}
    return doc


# Integrity -------------------------------------------------------------------------------

def test_a_rehashed_bundle_verifies_every_file(tmp_path):
    root = rehash(make_bundle(tmp_path / "b"))
    bundle = open_bundle(root)
    assert bundle.checksums_cover_all and not bundle.unverified
    assert bundle.files["runs"]["files"] == 3 and bundle.files["experiments"]["files"] == 1


@pytest.mark.parametrize("name", ["run.json", "metrics.jsonl"])
def test_a_truncated_document_or_history_is_named_before_it_is_parsed(tmp_path, name):
    root = rehash(make_bundle(tmp_path / "b"))
    path = root / RUN_DIR / name
    path.write_bytes(path.read_bytes()[:-5])
    _refused(root, f"{RUN_DIR}/{name}", "does not match its checksum", "truncated")


def test_a_history_cut_at_a_line_end_is_caught_by_its_checksum(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / RUN_DIR / "metrics.jsonl").write_text(
        '{"key":"loss","step":0,"timestamp":1,"value":1}\n'
        '{"key":"loss","step":1,"timestamp":2,"value":2}\n')
    rehash(root)
    (root / RUN_DIR / "metrics.jsonl").write_text(
        '{"key":"loss","step":0,"timestamp":1,"value":1}\n')  # still valid JSON Lines
    _refused(root, f"{RUN_DIR}/metrics.jsonl", "does not match its checksum")


def test_an_unlisted_file_in_an_object_and_a_listed_file_of_no_object(tmp_path):
    root = rehash(make_bundle(tmp_path / "b"))
    (root / RUN_DIR / "notes.txt").write_text("added later")
    _refused(root, f"{RUN_DIR}/notes.txt", "not listed in manifest.json's checksums")
    (root / RUN_DIR / "notes.txt").unlink()
    (root / "stray").mkdir()
    (root / "stray/file").write_text("x")
    manifest = read_json(root / MANIFEST_FILE)
    manifest["checksums"]["stray/file"] = {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}
    write_json(root / MANIFEST_FILE, manifest)
    _refused(root, MANIFEST_FILE, "'stray/file', a file of no object")


def test_an_old_format_bundle_reads_and_says_what_it_could_not_verify(tmp_path):
    root = make_bundle(tmp_path / "b")  # checksums of artifacts only, as formats 1 and 2
    bundle = open_bundle(root)
    assert bundle.unverified == {"experiment.json": 1, "run.json": 1, "metrics.jsonl": 1}
    result = check_bundle(root)
    assert result.ok and result.to_dict()["unverified"] == dict(bundle.unverified)
    assert "3 files could not be verified: format" in result.text()
    assert "metrics.jsonl (1)" in result.text()


def test_check_lists_the_problem_and_fails(tmp_path):
    root = rehash(make_bundle(tmp_path / "b"))
    assert check_bundle(root).ok
    (root / ARTIFACT).write_bytes(b"other")
    result = check_bundle(root)
    (problem,) = result.to_dict()["problems"]
    assert not result.ok and problem.startswith(str(root / ARTIFACT))
    assert "DAMAGED" in result.text()


# Hostile layouts -------------------------------------------------------------------------

@pytest.mark.parametrize("place", ["artifacts/model/link", "link", "artifacts/linkdir"])
def test_a_symbolic_link_anywhere_is_refused_before_any_file_is_read(tmp_path, place):
    root = rehash(make_bundle(tmp_path / "b"))
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    (root / RUN_DIR / place).symlink_to(secret if place.endswith("dir") else secret / "key")
    _refused(root, f"{RUN_DIR}/{place}", "symbolic link")
    assert not check_bundle(root).ok


def test_a_symbolic_link_as_manifest_and_a_fifo_are_refused(tmp_path):
    root = rehash(make_bundle(tmp_path / "b"))
    os.mkfifo(root / "experiments/1/pipe")
    _refused(root, "experiments/1/pipe", "not a regular file")
    (root / "experiments/1/pipe").unlink()
    (root / "elsewhere.json").write_text((root / MANIFEST_FILE).read_text())
    (root / MANIFEST_FILE).unlink()
    (root / MANIFEST_FILE).symlink_to(root / "elsewhere.json")
    _refused(root, MANIFEST_FILE, "symbolic link")


@pytest.mark.parametrize("path", ["../x", "runs/../../x", "/etc", "runs//x", "./runs", "", "a\\b"])
def test_inventory_and_checksum_paths_must_stay_inside(tmp_path, path):
    root = make_bundle(tmp_path / "b", inventory={
        "experiments": [{"id": "1", "name": "churn", "path": path}]})
    _refused(root, MANIFEST_FILE, "inventory.experiments[0].path", "points outside")
    make_bundle(root, checksums={path: {"sha256": "0" * 64, "size": 0}})
    _refused(root, MANIFEST_FILE, "checksums key", "points outside")


def test_duplicate_ids_and_shared_directories_are_refused(tmp_path):
    entry = {"id": "1", "name": "churn", "path": "experiments/1"}
    root = make_bundle(tmp_path / "b", inventory={"experiments": [entry, entry]})
    _refused(root, MANIFEST_FILE, "inventory.experiments lists id '1' 2 times")
    make_bundle(root, inventory={"experiments": [entry, {**entry, "id": "2"}]})
    _refused(root, MANIFEST_FILE, "inventory.experiments[1].path", "also the directory of "
                                                                   "experiments 1")


@pytest.mark.parametrize("parents", [{RUN_ID: RUN_ID}, {RUN_ID: CHILD_ID, CHILD_ID: RUN_ID}])
def test_runs_whose_parents_make_a_circle_are_refused(tmp_path, parents):
    runs = [(run_id, _run(run_id, tags={"mlflow.parentRunId": parent}))
            for run_id, parent in parents.items()]
    root = _with_runs(tmp_path / "b", *runs)
    error = _refused(root, f"runs/{next(iter(parents))}/run.json",
                     "field tags['mlflow.parentRunId'] makes a circle of parents")
    assert str(error).count(RUN_ID) >= 2


def test_a_parent_outside_the_bundle_is_no_circle(tmp_path):
    root = _with_runs(tmp_path / "b", (CHILD_ID, _run(CHILD_ID, tags={
        "mlflow.parentRunId": RUN_ID})), (RUN_ID, _run(RUN_ID)))
    assert set(open_bundle(root).documents["runs"]) == {RUN_ID, CHILD_ID}


@pytest.mark.parametrize("changes, field", [
    ({"params": {"lr": "x" * 6001}}, "params['lr'] is 6001 characters; MLflow takes at most 6000"),
    ({"tags": {"note": "x" * 8001}}, "tags['note'] is 8001 characters"),
    ({"params": {"k" * 251: "1"}}, "params key 'kkkk"),
])
def test_values_over_mlflow_limits_are_refused_not_cut(tmp_path, changes, field):
    root = _with_runs(tmp_path / "b", (RUN_ID, _run(RUN_ID, **changes)))
    _refused(root, f"{RUN_DIR}/run.json", field)


def test_values_at_mlflow_limits_pass(tmp_path):
    root = _with_runs(tmp_path / "b", (RUN_ID, _run(RUN_ID, params={"p" * 250: "x" * 6000},
                                                     tags={"t": "y" * 8000})))
    assert open_bundle(root).documents["runs"][RUN_ID]["params"]["p" * 250] == "x" * 6000


@pytest.mark.parametrize("line, fragment", [
    ('{"key":"%s","step":0,"timestamp":1,"value":1}' % ("k" * 251), "longer than MLflow's 250"),
    ('{"key":"loss","step":0.5,"timestamp":1,"value":1}', "must be integers"),
    ('{"key":"loss","step":0,"timestamp":1,"value":true}', "boolean"),
    ('{"key":"loss","step":0,"timestamp":1,"value":%s}' % ("9" * 5000), "not valid JSON"),
    ("[" * 100000, "not valid JSON"),
    ('"just a string"', "malformed"),
])
def test_metric_points_of_the_wrong_type_or_size_are_refused(tmp_path, line, fragment):
    root = make_bundle(tmp_path / "b")
    (root / RUN_DIR / "metrics.jsonl").write_text(line + "\n")
    _refused(root, f"{RUN_DIR}/metrics.jsonl", fragment)


def test_a_registered_model_listing_a_version_twice_is_refused(tmp_path):
    root = make_bundle(tmp_path / "b")
    version = {"version": "1", "tags": {}, "description": "", "current_stage": "None",
               "run_id": None, "source_ref": {"kind": "external"}}
    (root / "registered_models/m").mkdir(parents=True)
    write_json(root / "registered_models/m/registered_model.json", {
        "name": "m", "description": "", "tags": {}, "aliases": {},
        "versions": [version, version]})
    manifest = read_json(root / MANIFEST_FILE)
    manifest["inventory"]["registered_models"] = [
        {"id": "m", "name": "m", "path": "registered_models/m"}]
    write_json(root / MANIFEST_FILE, manifest)
    _refused(root, "registered_models/m/registered_model.json", "lists version 1 twice")


# Property tests --------------------------------------------------------------------------

@given(st.text(alphabet=st.sampled_from("ab./\\\x00-_é"), max_size=12))
def test_a_relative_path_the_rules_accept_never_leaves_the_root(relative):
    try:
        accepted = check_relative(relative, source=Path("m"), field="f")
    except BundleError as exc:
        assert "\n" not in str(exc)
        return
    root = Path("/bundle")
    joined = os.path.normpath(root / accepted)
    assert joined.startswith("/bundle/") and ".." not in accepted.split("/")
    assert not Path(accepted).is_absolute()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
FILES = ["manifest.json", "experiments/1/experiment.json", f"{RUN_DIR}/run.json",
         f"{RUN_DIR}/metrics.jsonl"]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(doc, path, new):
    if not path:
        return new
    container = doc
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = new
    return doc


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): (os.readlink(p).encode() if p.is_symlink() else
                                             p.read_bytes() if p.is_file() else b"dir")
            for p in sorted(root.rglob("*"))}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), rehashed=st.booleans())
def test_no_generated_bundle_crashes_the_reader_or_reaches_the_target(tmp_path_factory, data,
                                                                       rehashed):
    """Any field of any document replaced by any JSON value (or a file's bytes cut or
    replaced), rehashed or not so that the damage reaches the documents' checks too: the
    reader returns a bundle or raises one BundleError line, the bundle is left as it was,
    and an import that is refused has not created its target store."""
    root = make_bundle(tmp_path_factory.mktemp("b") / "b")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        name = data.draw(st.sampled_from(FILES), label="file")
        path = root / name
        how = data.draw(st.sampled_from(["field", "bytes", "cut"]), label="how")
        doc = None
        if how == "field" and name.endswith(".json"):
            with contextlib.suppress(BundleError):
                doc = read_json(path)
        if doc is not None:
            where = data.draw(st.sampled_from(list(_paths(doc))), label="where")
            path.write_text(json.dumps(_replace(doc, where, data.draw(JSON, label="value"))))
        elif how == "cut":
            raw = path.read_bytes()
            path.write_bytes(raw[:data.draw(st.integers(0, len(raw)), label="cut")])
        else:
            path.write_bytes(data.draw(st.binary(max_size=64), label="bytes"))
        if rehashed and (root / MANIFEST_FILE).is_file():
            with contextlib.suppress(BundleError, TypeError, AttributeError):
                rehash(root)  # unless the manifest itself is broken
    before = _tree(root)
    target = root.parent / "target.db"
    try:
        open_bundle(root)
    except BundleError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(root))
        with pytest.raises(BundleError):
            mlflow_exim.import_all(root, tracking_uri=f"sqlite:///{target}")
        assert not target.exists()
    try:
        check_bundle(root).text()
    except BundleError as exc:
        assert "\n" not in str(exc)
    assert _tree(root) == before

