"""The chunks of a pipelined migrate: whole parts packed into chunks of about equal weight,
the same every time, each object once; and the parts directory through which the export
hands each chunk to the import."""

from __future__ import annotations

import json
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_exim.bundle.format import MANIFEST_FILE, PROGRESS_FILE
from mlflow_exim.bundle.parts import PartsDir, part_name
from mlflow_exim.shard import EXPERIMENTS, RUNS, chunks, parts
from tests.unit.test_shard import graphs


def _weight(node) -> int:
    """Runs weigh by a digit of their id, everything else 1 (any deterministic weight)."""
    return 1 + (int(node[1][-1]) if node[0] == RUNS else 0)


@settings(max_examples=150, deadline=None)
@given(graphs(), st.integers(1, 8), st.randoms(use_true_random=False))
def test_chunks_hold_whole_parts_once_balanced_and_the_same_every_time(graph, count, rng):
    nodes, edges, _, _ = graph
    groups = parts(nodes, edges)
    packed = chunks(groups, _weight, count)
    assert 1 <= len(packed) <= min(count, len(groups))
    placed = [node for chunk in packed for node in chunk]
    assert sorted(placed) == sorted(nodes)  # every object, and each once
    where = {node: index for index, chunk in enumerate(packed) for node in chunk}
    for group in groups:
        assert len({where[node] for node in group}) == 1, "a part cut between chunks"
    loads = [sum(map(_weight, chunk)) for chunk in packed]
    assert loads == sorted(loads)  # the lightest first
    if len(packed) == count:  # no chunk outweighs another by more than the heaviest part
        assert max(loads) - min(loads) <= max(sum(map(_weight, g)) for g in groups)
    else:  # fewer parts than chunks: one part a chunk
        assert len(packed) == len(groups)
    shuffled_nodes, shuffled_edges = list(nodes), list(edges)
    rng.shuffle(shuffled_nodes)
    rng.shuffle(shuffled_edges)
    assert chunks(parts(shuffled_nodes, shuffled_edges), _weight, count) == packed


def test_one_part_is_one_chunk_and_equal_parts_spread_evenly():
    nodes = [(EXPERIMENTS, "1"), (RUNS, "a1"), (RUNS, "b2")]
    edges = [((RUNS, "a1"), (EXPERIMENTS, "1")), ((RUNS, "b2"), (RUNS, "a1"))]
    assert chunks(parts(nodes, edges), _weight, 4) == [sorted(nodes)]
    six = [[(EXPERIMENTS, str(i))] for i in range(6)]
    assert [len(chunk) for chunk in chunks(six, _weight, 3)] == [2, 2, 2]


def _complete(directory: PartsDir, name: str) -> None:
    (directory.root / name).mkdir()
    (directory.root / name / MANIFEST_FILE).write_text(json.dumps({
        "format": "mlflow-exim", "format_version": 1, "tool_version": "t",
        "command": "export-all", "source": {"tracking_uri": "http://source"},
        "options": {"part": name.split("-")[1] + "/" + name.split("-")[3]},
        "inventory": {}}))


def test_the_reader_takes_each_part_once_complete_and_stops_when_the_writer_ends(tmp_path):
    directory = PartsDir(tmp_path / "bundle")
    directory.start()
    names = [part_name(k, 3) for k in (1, 2, 3)]
    taken = []

    def read() -> None:
        for name in directory.names():
            if directory.wait(name) is None:
                break
            taken.append(name)
            directory.event("import-start", name)

    reader = threading.Thread(target=read)
    reader.start()
    directory.announce(names)
    for name in names[:2]:  # the third never comes: the writer failed
        _complete(directory, name)
        directory.event("export-end", name)
    directory.end()
    reader.join(timeout=30)
    assert not reader.is_alive() and taken == names[:2]
    assert {e["event"] for e in directory.events()} == {"export-end", "import-start"}


def test_the_list_names_the_parts_to_import_after_every_earlier_one(tmp_path):
    directory = PartsDir(tmp_path / "bundle")
    directory.start()
    names = [part_name(k, 3) for k in (1, 2, 3)]
    directory.announce(names, after_earlier=[names[2], "part-9-of-9"])  # one not listed
    assert directory.names() == names and directory.after_earlier() == {names[2]}


def test_a_writer_that_ends_before_announcing_leaves_nothing_to_wait_for(tmp_path):
    directory = PartsDir(tmp_path / "bundle")
    directory.start()
    directory.end()
    assert directory.names() == [] and directory.wait(part_name(1, 1)) is None


def test_a_new_start_reopens_complete_parts_keeps_partial_ones_and_drops_the_rest(tmp_path):
    """Nothing a new reader could take for this run's: a complete part becomes the partial
    one the writer resumes (its header kept as the progress file), the marks go; another
    split then drops them all."""
    directory = PartsDir(tmp_path / "bundle")
    directory.start()
    directory.announce([part_name(1, 2), part_name(2, 2)])
    _complete(directory, part_name(1, 2))
    (directory.root / (part_name(2, 2) + ".partial")).mkdir()
    directory.event("export-end", part_name(1, 2))
    directory.end()
    directory.start()  # the next migrate
    assert sorted(p.name for p in directory.root.iterdir()) == [
        part_name(1, 2) + ".partial", part_name(2, 2) + ".partial"]
    reopened = directory.root / (part_name(1, 2) + ".partial")
    assert not (reopened / MANIFEST_FILE).exists()
    assert json.loads((reopened / PROGRESS_FILE).read_text()) == {
        "format": "mlflow-exim", "format_version": 1, "tool_version": "t",
        "command": "export-all", "source": {"tracking_uri": "http://source"},
        "options": {"part": "1/2"}}
    directory.announce([part_name(1, 3), part_name(2, 3), part_name(3, 3)])  # another split
    assert not any(directory.root.glob("part-*"))
