"""Low-level helpers for talking to servers: bounded parallel work, paging through MLflow
searches, ordering and scheduling by what each item needs, and progress display. Entities
may use them; they know nothing of MLflow objects."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TextIO, TypeVar

from mlflow_exim.errors import EximError

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

_NOTHING: Any = object()  # what a source of work gives when it has nothing (more)

PAGE_SIZE = 1000

DEFAULT_WORKERS = 4

class Workers:
    """A bounded pool of threads for calls that mostly wait on a server.

    :meth:`each` never holds more than ``size`` items in flight, so feeding it a stream
    (metric batches read from disk) keeps memory flat. With ``size`` 1 everything runs in
    the calling thread. Objects are expected to report their own failures; an exception
    that escapes anyway is re-raised once every started call has finished."""

    def __init__(self, size: int = DEFAULT_WORKERS, name: str = "exim"):
        if size < 1:
            raise EximError(f"`workers` must be at least 1, not {size}")
        self.size = size
        self._executor = ThreadPoolExecutor(size, thread_name_prefix=name) if size > 1 else None

    def each(self, func: Callable[[T], object], items: Iterable[T]) -> None:
        items = iter(items)
        self._drive(func, lambda: next(items, _NOTHING), lambda item: None)

    def each_after(self, func: Callable[[K], object], needs: Mapping[K, Iterable[K]],
                   more: Iterator[Mapping[K, Iterable[K]]] | None = None) -> None:
        """Call ``func`` on every key of ``needs`` (key → the keys it needs), ``size`` at a
        time, each as soon as every key it needs among them has returned (whatever became
        of it): a key waits for what it needs only, never for the slowest of a generation
        or of a kind. A key whose needs have just returned goes before those that waited
        from the start, so that a chain (a run, its logged model, a version of it) is done
        early rather than each level in a block. Needs that loop are cut as
        :func:`needs_first` cuts them. An escaping exception stops new calls and is
        re-raised once the started ones end.

        ``more`` gives further keys the same way, batch after batch, drawn in a thread of
        its own while the calls run (a plan that streams): a key of a batch waits for the
        keys it needs among those given before it that have not returned; a need given
        later is not waited for. An exception ``more`` raises is one that escapes."""
        waiting: dict[K, int] = {}
        dependants: dict[K, list[K]] = {}
        given: set[K] = set()
        returned: set[K] = set()
        ready: deque[K] = deque()

        def add(batch: Mapping[K, Iterable[K]]) -> None:
            for key in needs_first(batch):
                kept = {need for need in batch[key] if need in given and need not in returned}
                given.add(key)
                waiting[key] = len(kept)
                for need in kept:
                    dependants.setdefault(need, []).append(key)
                if not kept:
                    ready.append(key)

        def settled(key: K) -> None:
            returned.add(key)
            unblocked = []
            for dependant in dependants.pop(key, []):
                waiting[dependant] -= 1
                if not waiting[dependant]:
                    unblocked.append(dependant)
            ready.extendleft(reversed(unblocked))

        add(needs)
        self._drive(func, lambda: ready.popleft() if ready else _NOTHING, settled,
                    None if more is None else (lambda: next(more, _NOTHING), add))

    def _drive(self, func: Callable[[T], object], take: Callable[[], T],
               settled: Callable[[T], None],
               feed: tuple[Callable[[], Any], Callable[[Any], None]] | None = None) -> None:
        """Call ``func`` on what ``take`` gives (``_NOTHING``: nothing more for now) while
        fewer than ``size`` calls are in flight, and ``settled`` on each item once its call
        has returned, in this thread (it may give ``take`` more). ``feed`` (draw, fed):
        ``draw`` is called again and again in a thread of its own, one call at a time,
        until it returns ``_NOTHING``, and ``fed`` on what each returned, in this thread."""
        draw, fed = feed if feed is not None else (None, None)
        if self._executor is None:
            while True:
                while (item := take()) is not _NOTHING:
                    func(item)
                    settled(item)
                if draw is None or (batch := draw()) is _NOTHING:
                    return
                fed(batch)
        in_flight: dict[Future, T] = {}
        errors: list[BaseException] = []
        feeder = ThreadPoolExecutor(1, thread_name_prefix="feed") if draw is not None else None
        drawing = feeder.submit(draw) if feeder is not None else None
        try:
            while True:
                while len(in_flight) < self.size and not errors:
                    item = take()
                    if item is _NOTHING:
                        break
                    in_flight[self._executor.submit(func, item)] = item
                if not in_flight and drawing is None:
                    break
                done, _ = wait([*in_flight, *([drawing] if drawing else [])],
                               return_when=FIRST_COMPLETED)
                for future in done:
                    if future is drawing:
                        drawing = None
                        if future.exception() is not None:
                            errors.append(future.exception())
                        elif (batch := future.result()) is not _NOTHING:
                            fed(batch)
                            drawing = None if errors else feeder.submit(draw)
                        continue
                    if future.exception() is not None:
                        errors.append(future.exception())
                    settled(in_flight.pop(future))
        finally:
            if feeder is not None:
                feeder.shutdown(wait=True)
        if errors:
            raise errors[0]

    def streams(self, func: Callable[[T], Iterator[Any]],
                items: list[T]) -> Iterator[tuple[T, Iterator[Any]]]:
        """(item, what ``func(item)`` yields) for each of ``items``, in their order: the
        generators run ``size`` at a time ahead of the reader, who reads each as it goes
        (an exception one raises comes out of its iterator there). With ``size`` 1 each
        runs as it is read."""
        if self._executor is None:
            yield from ((item, func(item)) for item in items)
            return
        queues = [queue.SimpleQueue() for _ in items]

        def produce(item: T, out: queue.SimpleQueue) -> None:
            try:
                for value in func(item):
                    out.put((True, value))
            except BaseException as exc:  # noqa: BLE001 - raised in the reader's thread
                out.put((False, exc))
                return
            out.put((False, None))

        def read(out: queue.SimpleQueue) -> Iterator[Any]:
            while True:
                more, value = out.get()
                if more:
                    yield value
                elif value is None:
                    return
                else:
                    raise value

        for item, out in zip(items, queues, strict=True):
            self._executor.submit(produce, item, out)
        yield from ((item, read(out)) for item, out in zip(items, queues, strict=True))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

def pages(search: Callable[..., Iterable[T]], *args, max_results: int = PAGE_SIZE,
          **kwargs) -> Iterator[Iterable[T]]:
    """Each page an MLflow search or history call returns, until the last."""
    token = None
    while True:
        page = search(*args, max_results=max_results, page_token=token, **kwargs)
        yield page
        token = getattr(page, "token", None)
        if not token:
            return


def paged(search: Callable[..., Iterable[T]], *args, max_results: int = PAGE_SIZE,
          **kwargs) -> Iterator[T]:
    """Every item an MLflow search or history call finds, page after page."""
    for page in pages(search, *args, max_results=max_results, **kwargs):
        yield from page

def needs_first(needs: Mapping[K, Iterable[K]]) -> list[K]:
    """The keys of ``needs`` (key → the keys it needs) so that each comes after the keys it
    needs among them, in their own order otherwise. Needs that loop are cut where a
    depth-first walk in that order meets, on the way from a key, that key again: that one
    need is dropped, so every key is placed once."""
    ordered: list[K] = []
    placed: set[K] = set()
    on_path: set[K] = set()
    for root in needs:
        if root in placed:
            continue
        path = [(root, iter(needs[root]))]
        on_path.add(root)
        while path:
            key, rest = path[-1]
            for need in rest:
                if need in needs and need not in placed and need not in on_path:
                    path.append((need, iter(needs[need])))
                    on_path.add(need)
                    break
            else:
                path.pop()
                on_path.discard(key)
                placed.add(key)
                ordered.append(key)
    return ordered


def parents_first(parents: dict[str, str | None]) -> list[str]:
    """Run ids (keys of ``parents``, run id → parent run id) ordered so that a parent in
    ``parents`` comes before its children."""
    return needs_first({run_id: [parents[run_id]] for run_id in sorted(parents)})


PROGRESS_SECONDS = 5.0

def progress_bar(total: int, desc: str):
    """Progress on stderr, safe to update from worker threads: a tqdm bar (done / total,
    ETA) when stderr is a terminal, else (a nightly job, nohup, CI) a line every few
    seconds and one at the end. ``update(n=1)`` and ``close()``."""
    if sys.stderr.isatty():
        from tqdm import tqdm  # only a terminal needs it

        return tqdm(total=total, desc=desc, unit="obj", leave=False)
    return ProgressLines(total, desc)

class ProgressLines:
    """``desc: done/total (percent), rate, elapsed`` on ``stream`` at most every
    ``interval`` seconds, and a last line on :meth:`close` if anything was done, so that a
    log shows each phase and what it took without a terminal's bar."""

    def __init__(self, total: int, desc: str, *, interval: float = PROGRESS_SECONDS,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.done = total, desc, 0
        self._interval, self._stream, self._clock = interval, stream, clock
        self._lock = threading.Lock()
        self._started = self._shown = clock()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = self._clock()
            if now - self._shown >= self._interval:
                self._shown = now
                self._print(now, "")

    def close(self) -> None:
        with self._lock:
            if self.done:
                self._print(self._clock(), " done")

    def _print(self, now: float, suffix: str) -> None:
        elapsed = now - self._started
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        rate = f", {self.done / elapsed:.1f}/s" if elapsed >= 1 else ""  # else it means little
        print(f"{self.desc}: {self.done}/{self.total}{share}{suffix} in {elapsed:.1f} s{rate}",
              file=self._stream or sys.stderr, flush=True)
