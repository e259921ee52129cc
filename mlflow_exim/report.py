"""The machine-readable result of a command, and the exit code derived from it.

Failures are values: :meth:`Report.track` records an object's outcome and swallows its
exception, so one bad object never stops or hides the others.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlflow_exim.bundle.format import singular
from mlflow_exim.endpoint import redact
from mlflow_exim.errors import EximError

log = logging.getLogger("mlflow_exim")

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"  # already present on the target
PLANNED = "planned"  # --dry-run: would be created
STATUSES = (OK, SKIPPED, PLANNED, FAILED)


@dataclass
class Outcome:
    kind: str
    source_id: str
    name: str | None = None
    status: str = OK
    target_id: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    action: str | None = None  # imports: create, skip, update or redo (see kind.py)

    def warn(self, message: str) -> None:
        self.warnings.append(redact(message))
        log.warning("%s %s: %s", self.kind, self.source_id, message)


def abbreviate(value, limit: int) -> str:
    """``repr(value)``, cut to ``limit`` characters for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")


def not_carried(found: dict[str, int]) -> str:
    """Counts of what a source holds that no bundle carries: ``label_schemas 1, webhooks
    2`` (``present`` where the number could not be read)."""
    return ", ".join(f"{kind} {count if count >= 0 else 'present'}"
                     for kind, count in sorted(found.items()))


class Report:
    def __init__(self, command: str):
        self.command = command
        self.started_at = datetime.now(timezone.utc)
        self.outcomes: list[Outcome] = []
        self.extra: dict = {}  # command-specific results, e.g. the bundle path or the id map
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # a side's report comes back from its process pickled
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @contextmanager
    def track(self, kind: str, source_id: str, name: str | None = None):
        """Record the outcome of the ``with`` block for one object.

        An exception marks the object failed with its one-line reason and is not re-raised.
        """
        outcome = Outcome(kind=kind, source_id=source_id, name=name)
        start = time.perf_counter()
        try:
            yield outcome
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reported value
            outcome.status = FAILED
            outcome.reason = one_line(exc)
            log.error("%s %s failed: %s", kind, source_id, outcome.reason)
        finally:
            outcome.seconds = round(time.perf_counter() - start, 3)
            self.add(outcome)

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def fail(self, kind: str, source_id: str, reason: str, name: str | None = None) -> None:
        self.add(Outcome(kind=kind, source_id=source_id, name=name, status=FAILED,
                         reason=redact(reason)))
        log.error("%s %s failed: %s", kind, source_id, reason)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for o in self.outcomes:
            per_kind = counts.setdefault(o.kind, dict.fromkeys(STATUSES, 0))
            per_kind[o.status] += 1
        return counts

    def to_dict(self) -> dict:
        return {
            "command": self.command,
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "ok": self.ok,
            "counts": self.counts(),
            "objects": [asdict(o) for o in self.outcomes],
            **self.extra,
        }

    @classmethod
    def read(cls, path: str | Path) -> Report:
        """A report written by :meth:`write` (``--report``) or printed by ``--output json``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            report = cls(data["command"])
            report.started_at = datetime.fromisoformat(data["started_at"])
            report.outcomes = [Outcome(**o) for o in data["objects"]]
        except OSError as exc:
            raise EximError(f"{path}: cannot read report: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EximError(f"{path}: not a report of mlflow-exim ({one_line(exc)})") from None
        report.extra = {key: value for key, value in data.items() if key not in _COMPUTED}
        return report

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def plan_lines(self) -> list[str]:
        """A dry run's plan, one line per object in the order it would be done: what would
        happen to it (create, skip, update, redo), its kind, source id and name, and why."""
        lines = []
        for o in self.outcomes:
            label = f"{o.source_id}" + (f" ({o.name})" if o.name else "")
            action = "fail" if o.status == FAILED else (o.action or o.status)
            lines.append(f"  {action:<7} {o.kind} {label}" + (f": {o.reason}" if o.reason else ""))
        return lines

    def summary(self) -> str:
        """A table of outcomes per kind of object, then every failure with its reason; for
        a dry run, the plan first."""
        seconds = (datetime.now(timezone.utc) - self.started_at).total_seconds()
        lines = ["plan:", *self.plan_lines()] if self.extra.get("dry_run") else []
        lines += [f"{self.command}: " + ("ok" if self.ok else f"{len(self.failures)} failed")
                 + f" in {seconds:.1f} s" + (" (dry run: nothing written)"
                                              if self.extra.get("dry_run") else "")]
        counts = self.counts()
        if counts:
            width = max(len(kind) for kind in counts) + 2
            lines.append("  " + "".ljust(width) + "".join(f"{s:>9}" for s in STATUSES))
            for kind, c in sorted(counts.items()):
                lines.append("  " + kind.ljust(width) + "".join(f"{c[s]:>9}" for s in STATUSES))
        for o in self.failures:
            label = f"{singular(o.kind)} {o.source_id}" + (f" ({o.name})" if o.name else "")
            lines.append(f"  FAILED {label}: {o.reason}")
        left = self.extra.get("not_carried")
        if left:
            lines.append(f"  NOT CARRIED (left behind at the source): {not_carried(left)}")
        warned = sum(len(o.warnings) for o in self.outcomes)
        if warned:
            lines.append(f"  {warned} warning(s); see the report for details")
        return "\n".join(lines)


_COMPUTED = ("command", "started_at", "finished_at", "ok", "counts", "objects")


def merge_reports(paths: Sequence[str | Path]) -> Report:
    """One report of the reports at ``paths`` (the shards of one migration, say): every
    object's outcome, so that the counts add up and one failure fails it; the id maps
    joined, so are what interrupted imports left half-written, and the runs and points
    per metric-history path added up; any other result kept where every report says the
    same; and under ``merged`` each report's file, command, result and counts."""
    if not paths:
        raise EximError("no report to merge")
    return merge([Report.read(path) for path in paths], [str(path) for path in paths])


def merge(reports: Sequence[Report], labels: Sequence[str]) -> Report:
    """One report of ``reports`` (see :func:`merge_reports`), each named by its label."""
    commands = sorted({r.command for r in reports})
    merged = Report(commands[0] if len(commands) == 1 else "+".join(commands))
    merged.started_at = min(r.started_at for r in reports)
    for report in reports:
        merged.outcomes += report.outcomes
    extras = [r.extra for r in reports]
    for key in {key for extra in extras for key in extra} - {"merged"}:
        values = [extra[key] for extra in extras if key in extra]
        if key in _JOINED_PER_KIND:  # {kind: ids} or {kind: [ids]}
            joined: dict = {}
            for value in values:
                for kind, ids in value.items():
                    if isinstance(ids, dict):
                        joined.setdefault(kind, {}).update(ids)
                    else:
                        joined[kind] = joined.get(kind, []) + list(ids)
            merged.extra[key] = joined
        elif key in _ADDED_UP:  # counts added, the rest (a path's name) as the first says
            merged.extra[key] = {
                inner: (sum(v.get(inner, 0) for v in values)
                        if isinstance(first, int) and not isinstance(first, bool) else first)
                for inner, first in values[0].items()}
        elif len(values) == len(extras) and all(v == values[0] for v in values):
            merged.extra[key] = values[0]
    merged.extra["merged"] = [
        {"report": label, "command": r.command, "ok": r.ok, "counts": r.counts()}
        for label, r in zip(labels, reports, strict=True)]
    return merged


# Results that each report holds for its own objects only, and that a merge joins: ids per
# kind (the id map), what an interrupted import left half-written per kind; and counts.
_JOINED_PER_KIND = ("id_map", "half_written")
_ADDED_UP = ("metric_histories",)
