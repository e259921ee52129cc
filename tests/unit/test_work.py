"""work: parents-first ordering, the worker pool, and the progress bar."""

from __future__ import annotations

import io
import re
import sys
import threading
import time

import pytest

from mlflow_exim.errors import EximError
from mlflow_exim.work import Workers, parents_first, progress_bar


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


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("parents", [
    dict(a1=None, a2="a1", a3="a2", b1=None, b2="b1", c="elsewhere"),
    dict(a="b", b="a"), dict(s="s"), dict(t="a", a="b", b="c", c="a", u=None),
])
def test_each_after_calls_every_item_once_after_its_parent_returned(size, parents):
    lock = threading.Lock()
    events: list[tuple[str, str]] = []

    def call(item: str) -> None:
        with lock:
            events.append(("start", item))
        with lock:
            events.append(("end", item))

    with Workers(size) as pool:
        pool.each_after(call, parents)
    started = [item for what, item in events if what == "start"]
    assert sorted(started) == sorted(parents)
    order = parents_first(parents)
    for child, parent in parents.items():
        if parent in parents and order.index(parent) < order.index(child):
            assert events.index(("end", parent)) < events.index(("start", child))


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
        pool.each_after(call, _runs(slow=None, quick=None, child="quick"))
    assert seen == ["slow saw the child"]


def test_each_after_stops_starting_calls_after_an_error():
    calls: list[str] = []

    def call(item: str) -> None:
        calls.append(item)
        if item == "a":
            raise ValueError("boom")

    with Workers(2) as pool, pytest.raises(ValueError, match="boom"):
        pool.each_after(call, _runs(a=None, b="a", c="b"))
    assert calls == ["a"]


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
