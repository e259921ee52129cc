"""Low-level helpers for talking to servers: bounded parallel work, paging through MLflow
searches, parents-before-children ordering and scheduling, and progress display. Entities
may use them; they know nothing of MLflow objects."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TextIO, TypeVar

from mlflow_exim.errors import EximError

T = TypeVar("T")

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
        if self._executor is None:
            for item in items:
                func(item)
            return
        in_flight: deque[Future] = deque()
        errors: list[BaseException] = []

        def settle_oldest() -> None:
            error = in_flight.popleft().exception()
            if error is not None:
                errors.append(error)

        for item in items:
            if errors:
                break
            if len(in_flight) >= self.size:
                settle_oldest()
            in_flight.append(self._executor.submit(func, item))
        while in_flight:
            settle_oldest()
        if errors:
            raise errors[0]

    def each_after(self, func: Callable[[str], object], parents: dict[str, str | None]) -> None:
        """Call ``func`` on every key of ``parents`` (id → parent id), ``size`` at a time,
        each as soon as its parent among them has returned (whatever became of it), so that
        a child waits for its parent only, never for the slowest of its parent's
        generation. A parent chain that loops is cut as :func:`parents_first` cuts it. An
        escaping exception stops new calls and is re-raised once the started ones end."""
        order = parents_first(parents)
        if self._executor is None:
            for item in order:
                func(item)
            return
        position = {item: i for i, item in enumerate(order)}
        ready: deque[str] = deque()
        children: dict[str, list[str]] = {}
        for item in order:
            parent = parents[item]
            if parent in position and position[parent] < position[item]:
                children.setdefault(parent, []).append(item)
            else:
                ready.append(item)
        in_flight: dict[Future, str] = {}
        errors: list[BaseException] = []
        while True:
            while ready and len(in_flight) < self.size and not errors:
                item = ready.popleft()
                in_flight[self._executor.submit(func, item)] = item
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    errors.append(future.exception())
                ready.extend(children.pop(in_flight.pop(future), []))
        if errors:
            raise errors[0]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

def paged(search: Callable[..., Iterable[T]], *args, max_results: int = PAGE_SIZE,
          **kwargs) -> Iterator[T]:
    """Every item an MLflow search or history call finds, page after page."""
    token = None
    while True:
        page = search(*args, max_results=max_results, page_token=token, **kwargs)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return

def parents_first(parents: dict[str, str | None]) -> list[str]:
    """Run ids (keys of ``parents``, run id → parent run id) ordered so that a parent in
    ``parents`` comes before its children."""
    ordered: list[str] = []
    placed: set[str] = set()
    for run_id in sorted(parents):
        chain = []
        current = run_id
        while current in parents and current not in placed and current not in chain:
            chain.append(current)
            current = parents[current]
        for member in reversed(chain):
            placed.add(member)
            ordered.append(member)
    return ordered

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
