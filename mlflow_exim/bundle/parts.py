"""A directory of part bundles, written one after another by one process and read, each as
soon as it is complete, by another: how a pipelined ``migrate`` hands its export to its
import when each side may run in a process of its own (:mod:`mlflow_exim.sides`).

Files on disk are the channel. The writer first lists the parts it will write
(``parts.json``), then writes each as a bundle ``part-<k>-of-<n>`` (complete when its
``manifest.json`` exists: a bundle is renamed into place only then). Whoever runs the
writer marks the end (``export-ended``) when it returns or fails, so a reader never waits
for a part that will not come. Both sides append what they start and finish to
``events.jsonl``, one JSON line each, the order in which the phases overlapped. A reader
that stops with an error marks it (``import-stopped``), and the writer then writes no
further part.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from mlflow_exim.bundle.format import MANIFEST_FILE, PARTIAL_SUFFIX
from mlflow_exim.bundle.writer import reopen
from mlflow_exim.errors import BundleError

PARTS_FILE = "parts.json"
EVENTS_FILE = "events.jsonl"
ENDED_FILE = "export-ended"
STOPPED_FILE = "import-stopped"
POLL_SECONDS = 0.2
_append = threading.Lock()


def part_name(number: int, count: int) -> str:
    """The directory of part ``number`` (from 1) of ``count``."""
    return f"part-{number}-of-{count}"


class PartsDir:
    """The parts directory at ``root`` (see the module text)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def start(self) -> None:
        """Before a writer and a reader start: nothing an earlier run left can be taken for
        this one's. The list, the events and the end mark are removed; a complete part is
        turned back into a partial one (:func:`reopen`), which the writer resumes where it
        writes the same part again (an unchanged object is kept, not read again) and which
        is removed otherwise; a part left partial stays, for the writer to resume."""
        if (self.root / MANIFEST_FILE).exists():
            shutil.rmtree(self.root)  # a whole bundle of an earlier, unpipelined migrate
        self.root.mkdir(parents=True, exist_ok=True)
        for entry in list(self.root.iterdir()):
            if entry.is_dir() and (entry / MANIFEST_FILE).exists():
                try:
                    reopen(entry)
                except BundleError:  # no manifest a writer could resume from
                    shutil.rmtree(entry)
            elif entry.name in (PARTS_FILE, EVENTS_FILE, ENDED_FILE, STOPPED_FILE):
                entry.unlink()

    def announce(self, names: list[str], after_earlier: list[str] | tuple = ()) -> None:
        """The writer's list of the parts it will write, in order, and which of them are to
        be imported only after every part before them (``after_earlier``: their links may
        name objects of any earlier part); what another plan left beside them (partial
        parts of another split) is removed."""
        keep = {*names, *(name + PARTIAL_SUFFIX for name in names)}
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name.startswith("part-") and entry.name not in keep:
                shutil.rmtree(entry)
        scratch = self.root / (PARTS_FILE + ".new")
        waiting = [name for name in names if name in set(after_earlier)]
        scratch.write_text(json.dumps({"parts": names, "after_earlier": waiting}))
        os.replace(scratch, self.root / PARTS_FILE)

    def end(self) -> None:
        """No part comes after this (the writer returned or failed)."""
        (self.root / ENDED_FILE).touch()

    def stop(self) -> None:
        """The reader takes no further part (it failed): the writer need not write one."""
        (self.root / STOPPED_FILE).touch()

    def stopped(self) -> bool:
        return (self.root / STOPPED_FILE).exists()

    def names(self) -> list[str]:
        """The parts announced, waiting for the list; none when the writer ended without
        one."""
        return self._listing().get("parts", [])

    def after_earlier(self) -> set[str]:
        """The announced parts to import only after every part before them."""
        return set(self._listing().get("after_earlier", []))

    def _listing(self) -> dict:
        listed = self._wait(lambda: (self.root / PARTS_FILE).exists())
        return json.loads((self.root / PARTS_FILE).read_text()) if listed else {}

    def wait(self, name: str) -> Path | None:
        """Part ``name`` once complete; None when the writer ended without it."""
        path = self.root / name
        return path if self._wait(lambda: (path / MANIFEST_FILE).exists()) else None

    def _wait(self, ready) -> bool:
        """Whether ``ready()`` came true before the end mark, or before a reader's stop
        mark (a reader that stopped takes nothing more: the writer then ends too)."""
        while not ready():
            if (self.root / ENDED_FILE).exists() or self.stopped():
                return ready()  # written just before the mark
            time.sleep(POLL_SECONDS)
        return True

    def event(self, what: str, name: str) -> None:
        """Append ``what`` happened to part ``name`` now (one line, from any process)."""
        line = json.dumps({"event": what, "part": name, "at": round(time.time(), 3)}) + "\n"
        with _append, (self.root / EVENTS_FILE).open("a", encoding="utf-8") as out:
            out.write(line)

    def events(self) -> list[dict]:
        """The events in the order they were appended."""
        path = self.root / EVENTS_FILE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
