"""work: ordering by needs, the worker pool and its scheduler, and the progress bar."""

from __future__ import annotations

import io
import re
import sys
import threading
import time
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_exim.errors import EximError
from mlflow_exim.work import Workers, needs_first, parents_first, progress_bar


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


graphs = st.dictionaries(st.integers(0, 12), st.lists(st.integers(-2, 14), max_size=4),
                         max_size=13)  # needs outside the keys, on themselves, in circles


def _kept(needs: dict) -> list[tuple]:
    """(need, key) pairs that survive the cutting of circles: the need comes first."""
    order = needs_first(needs)
    return [(need, key) for key, wanted in needs.items() for need in wanted
            if need in needs and order.index(need) < order.index(key)]


def _recorded():
    """A call that records when each key starts and ends, the events, and how many calls
    ran at once (now, most)."""
    lock = threading.Lock()
    events: list[tuple[str, int]] = []
    running = [0, 0]

    def call(key: int) -> None:
        with lock:
            events.append(("start", key))
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.001)  # so that calls overlap
        with lock:
            running[0] -= 1
            events.append(("end", key))

    return call, events, running


@settings(max_examples=60, deadline=None)
@given(needs=graphs, size=st.sampled_from([1, 2, 3]))
def test_each_after_calls_every_key_once_after_what_it_needs_and_size_at_a_time(needs, size):
    call, events, running = _recorded()
    with Workers(size) as pool:
        pool.each_after(call, needs)
    assert sorted(key for what, key in events if what == "start") == sorted(needs)
    assert running[1] <= size
    for need, key in _kept(needs):
        assert events.index(("end", need)) < events.index(("start", key))


@settings(max_examples=60, deadline=None)
@given(needs=graphs, size=st.sampled_from([1, 2, 3]),
       cuts=st.lists(st.integers(0, 13), max_size=3))
def test_each_after_takes_further_keys_batch_after_batch_while_calls_run(needs, size, cuts):
    """A plan that streams: keys arrive in batches (``more``) while the calls run, and
    each still waits for what it needs among the keys given before it."""
    acyclic = {key: [n for n in wanted if n < key or n not in needs]
               for key, wanted in needs.items()}
    keys = needs_first(acyclic)
    bounds = sorted({0, len(keys), *(c for c in cuts if c <= len(keys))})
    batches = [{k: acyclic[k] for k in keys[a:b]} for a, b in pairwise(bounds)]
    call, events, running = _recorded()
    with Workers(size) as pool:
        pool.each_after(call, batches[0] if batches else {}, more=iter(batches[1:]))
    assert sorted(key for what, key in events if what == "start") == sorted(needs)
    assert running[1] <= size
    for key, wanted in acyclic.items():
        for need in wanted:
            if need in acyclic:
                assert events.index(("end", need)) < events.index(("start", key))


@pytest.mark.parametrize("size", [1, 3])
def test_an_error_of_the_further_keys_stops_new_calls_and_is_reraised(size):
    called: list[str] = []

    def more():
        yield {"b": ["a"]}
        raise EximError("cannot list experiment 2")

    with Workers(size) as pool, pytest.raises(EximError, match="cannot list experiment 2"):
        pool.each_after(called.append, {"a": []}, more=more())
    assert "a" in called


@pytest.mark.parametrize("size", [1, 3])
def test_streams_give_each_items_values_in_order_and_its_error_where_it_was_raised(size):
    def values(item: int):
        yield from range(item)
        if item == 2:
            raise EximError("listing 2 failed")

    read: list = []
    with Workers(size) as pool:
        for item, stream in pool.streams(values, [3, 2, 1]):
            try:
                read.extend((item, value) for value in stream)
            except EximError as exc:
                read.append((item, str(exc)))
    assert read == [(3, 0), (3, 1), (3, 2), (2, 0), (2, 1), (2, "listing 2 failed"), (1, 0)]


@given(needs=graphs)
def test_needs_first_places_every_key_once_and_cuts_only_circles(needs):
    order = needs_first(needs)
    assert sorted(order) == sorted(needs)
    acyclic = {key: [n for n in wanted if n in needs and n < key]  # no circle possible
               for key, wanted in needs.items()}
    order = needs_first(acyclic)
    for key, wanted in acyclic.items():
        assert all(order.index(n) < order.index(key) for n in wanted)


@settings(max_examples=40, deadline=None)
@given(needs=graphs, size=st.sampled_from([1, 2, 3]), data=st.data())
def test_each_after_stops_starting_calls_after_an_error_and_reraises_it(needs, size, data):
    if not needs:
        return
    failing = data.draw(st.sampled_from(sorted(needs)))
    calls: list[int] = []
    lock = threading.Lock()

    def call(key: int) -> None:
        with lock:
            calls.append(key)
        if key == failing:
            raise ValueError("boom")

    with Workers(size) as pool, pytest.raises(ValueError, match="boom"):
        pool.each_after(call, needs)
    waits_on_it = {key for need, key in _kept(needs) if need == failing}
    assert failing in calls and not waits_on_it & set(calls)


def test_each_after_takes_what_was_just_unblocked_before_what_waited_from_the_start():
    """A model version whose run is done goes before the runs of other experiments that
    were ready all along: chains finish early, kinds are not done in blocks."""
    order: list[str] = []
    with Workers(1) as inline:
        inline.each_after(order.append, {"run-1": [], "run-2": [], "run-3": [],
                                         "model-1": ["run-1"], "version-1": ["model-1"]})
    assert order == ["run-1", "model-1", "version-1", "run-2", "run-3"]


def test_each_after_starts_a_child_while_its_parents_slow_sibling_still_runs():
    """``slow`` returns only once ``child`` (whose parent ``quick`` is ``slow``'s sibling)
    has started: with a barrier between generations the child would wait for ``slow`` and
    the wait would time out (the test fails rather than hangs)."""
    child_started = threading.Event()
    seen: list[str] = []

    def call(item: str) -> None:
        if item == "slow":
            seen.append("slow saw the child" if child_started.wait(30) else "slow timed out")
        if item == "child":
            child_started.set()

    with Workers(2) as pool:
        pool.each_after(call, {"slow": [], "quick": [], "child": ["quick"]})
    assert seen == ["slow saw the child"]


@pytest.mark.parametrize("size", [2, 4])
def test_workers_run_size_calls_at_once_and_hold_no_more_in_flight(size):
    """Every call waits on a barrier of ``size`` parties, so the calls return only if
    ``size`` of them run at once; otherwise the barrier breaks after its timeout and the
    error surfaces (the test fails rather than hangs). Each time the pool draws an item, at
    most ``size`` of those drawn before it may be unfinished."""
    barrier = threading.Barrier(size, timeout=30)
    lock = threading.Lock()
    finished: list[int] = []
    unfinished_at_draw: list[int] = []

    def items():
        for item in range(3 * size):
            with lock:
                unfinished_at_draw.append(item - len(finished))
            yield item

    def work(item):
        barrier.wait()
        with lock:
            finished.append(item)

    with Workers(size) as workers:
        workers.each(work, items())
    assert sorted(finished) == list(range(3 * size))
    assert max(unfinished_at_draw) <= size


def test_workers_reraise_after_draining_and_run_inline_with_one():
    running, done, lock = [0], [], threading.Lock()

    def work(item):
        with lock:
            running[0] += 1
        time.sleep(0.01)  # so that other calls are still running when item 5 fails
        with lock:
            running[0] -= 1
            done.append(item)
        if item == 5:
            raise ValueError("five")

    with Workers(3) as workers, pytest.raises(ValueError, match="five"):
        workers.each(work, range(10))
    assert 5 in done and running[0] == 0
    with Workers(1) as inline:
        inline.each(done.append, ["x"])
    assert done[-1] == "x"
    with pytest.raises(EximError, match="at least 1"):
        Workers(0)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_closing_line_off_a_terminal_and_a_bar_on_one(monkeypatch, capsys):
    bar = progress_bar(3, "runs")
    bar.update()
    bar.close()
    assert re.fullmatch(r"runs: 1/3 \(33%\) done in \d+\.\d s\n", capsys.readouterr().err)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar(2, "runs")
    bar.update()
    bar.close()
    assert "runs:" in terminal.getvalue() and "0/2" in terminal.getvalue()  # done / total
