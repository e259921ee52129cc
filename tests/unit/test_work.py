"""work: parents-first ordering, the worker pool, and the progress bar."""

from __future__ import annotations

import io
import sys

import pytest

from mlflow_exim.errors import EximError
from mlflow_exim.work import Workers, generations, parents_first, progress_bar


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
