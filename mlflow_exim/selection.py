"""Which objects a command takes: selections of experiments and registered models (names,
ids, globs, regexes, files), run filters and incremental windows, and renames. It sits
above the entities: it lists what a server holds in order to choose from it."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Experiment, ViewType

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities.registered_model import all_models
from mlflow_exim.errors import EximError
from mlflow_exim.work import paged

T = TypeVar("T")

Renames = Sequence[tuple[str, str]]

@dataclass(frozen=True)
class RunFilter:
    """Which runs of the selected experiments an export takes: an MLflow search filter,
    a start-time window, and ``since`` (runs started or ended since then, and runs still
    running), for repeated incremental migrations."""

    filter_string: str = ""
    started_after: datetime | None = None
    started_before: datetime | None = None
    since: datetime | None = None

    def searches(self) -> list[str]:
        """The search_runs filter strings whose results, together, are the runs wanted
        (MLflow filters have AND but no OR)."""
        base = [self.filter_string.strip()] if self.filter_string.strip() else []
        if self.started_after:
            base.append(f"attributes.start_time >= {_millis(self.started_after)}")
        if self.started_before:
            base.append(f"attributes.start_time < {_millis(self.started_before)}")
        if self.since is None:
            return [" AND ".join(base)]
        since = _millis(self.since)
        return [" AND ".join([*base, changed])
                for changed in (f"attributes.start_time >= {since}",
                                f"attributes.end_time >= {since}",
                                "attributes.status = 'RUNNING'")]

    @property
    def active(self) -> bool:
        return self != RunFilter()

def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)

def changed_since(millis: int | None, since: datetime | None) -> bool:
    """Whether an object last updated at ``millis`` falls into an incremental sync."""
    return since is None or millis is None or millis >= _millis(since)

def rename(name: str, rules: Renames) -> str:
    """``name`` with the old prefix of the first matching rule replaced by its new one."""
    for old, new in rules:
        if name.startswith(old):
            return new + name[len(old):]
    return name

Selection = str | Sequence[str]

def parse_selection(spec: Selection) -> list[str] | None:
    """The items of a selection; None for everything.

    ``spec`` is ``all``, a comma list, a ``.txt`` file, or a list of items (from a config
    file). An item is a name or id, a glob (``team-a/*``), a regex (``re:^exp-[0-9]+$``,
    searched in the name) or ``file:PATH``, a file of items, one per line (blank lines and
    ``#`` comments ignored)."""
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return None
        if spec.endswith(".txt") and not spec.startswith(("file:", "re:")):
            spec = "file:" + spec
        raw = [spec] if spec.startswith(("file:", "re:")) else spec.split(",")
    else:
        raw = list(spec)
        if raw == ["all"]:
            return None
    items: list[str] = []
    for item in (str(i).strip() for i in raw):
        if item.startswith("file:"):
            items += _read_selection_file(Path(item[len("file:"):]))
        elif item:
            items.append(item)
    if not items:
        raise EximError(f"selection {spec!r} names nothing")
    return items

def _read_selection_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EximError(f"{path}: cannot read selection file: {exc.strerror}") from None
    items = [item for item in (line.strip() for line in lines)
             if item and not item.startswith("#")]
    if not items:
        raise EximError(f"{path}: selection file names nothing")
    return items

def all_experiments(src: Endpoint, *, include_deleted: bool) -> list[Experiment]:
    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    return list(paged(src.client.search_experiments, view_type=view))

def select_experiments(src: Endpoint, spec: Selection, *,
                       include_deleted: bool) -> list[Experiment]:
    """Experiments named by ``spec`` (see :func:`parse_selection`; ids work too). A name or
    pattern that matches nothing is an error."""
    hint = "" if include_deleted else " (deleted experiments need `export_deleted_runs`)"
    return select(spec, all_experiments(src, include_deleted=include_deleted),
                   name=lambda e: e.name, key=lambda e: e.experiment_id,
                   what="experiment", where=f"{src.display_uri}{hint}")

def select_registered_models(src: Endpoint, spec: Selection) -> list:
    """Registered models (never prompts) named by ``spec`` (see :func:`parse_selection`).
    A name or pattern that matches nothing is an error."""
    return select(spec, all_models(src), name=lambda m: m.name, key=lambda m: m.name,
                   what="registered model", where=src.display_uri)

def select(spec: Selection, candidates: list[T], *, name, key, what: str,
            where: str) -> list[T]:
    """The candidates that ``spec`` names (see :func:`parse_selection`), each once, in the
    order named."""
    items = parse_selection(spec)
    if items is None:
        return candidates
    by_name = {name(c): c for c in candidates}
    by_key = {key(c): c for c in candidates}
    selected: dict[str, T] = {}
    for item in items:
        if item.startswith("re:"):
            try:
                pattern = re.compile(item[len("re:"):])
            except re.error as exc:
                raise EximError(f"{what} selection {item!r} is not a valid regex: {exc}") from None
            matches = [c for c in candidates if pattern.search(name(c))]
        elif any(ch in item for ch in "*?["):
            matches = [c for c in candidates if fnmatch.fnmatchcase(name(c), item)]
        else:
            match = by_name.get(item) or by_key.get(item)
            matches = [match] if match else []
        if not matches:
            raise EximError(f"{what} selection {item!r} matches no {what} on {where}")
        for candidate in matches:
            selected.setdefault(key(candidate), candidate)
    return list(selected.values())
