"""Selection of many objects, the order they are imported in, and progress display."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Experiment, ViewType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from tqdm import tqdm

from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities.registered_model import all_models
from mlflow_exim.errors import EximError

T = TypeVar("T")

PAGE_SIZE = 1000


def parse_selection(spec: str) -> list[str] | None:
    """``all`` → None; ``file.txt`` → its non-blank, non-``#`` lines; else a comma list."""
    spec = spec.strip()
    if spec == "all":
        return None
    if spec.endswith(".txt"):
        path = Path(spec)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise EximError(f"{path}: cannot read selection file: {exc.strerror}") from None
        items = [item for item in (line.strip() for line in lines)
                 if item and not item.startswith("#")]
        if not items:
            raise EximError(f"{path}: selection file names nothing")
        return items
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise EximError(f"selection {spec!r} names nothing")
    return items


def all_experiments(src: Endpoint, *, include_deleted: bool) -> list[Experiment]:
    view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
    found, token = [], None
    while True:
        page = src.client.search_experiments(view_type=view, max_results=PAGE_SIZE,
                                             page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def select_experiments(src: Endpoint, spec: str, *, include_deleted: bool) -> list[Experiment]:
    """Experiments named by ``spec``: ``all``, names or ids, ``prefix*`` globs, or a
    ``.txt`` file of those. A name or pattern that matches nothing is an error."""
    hint = "" if include_deleted else " (deleted experiments need --export-deleted-runs)"
    return _select(spec, all_experiments(src, include_deleted=include_deleted),
                   name=lambda e: e.name, key=lambda e: e.experiment_id,
                   what="experiment", where=f"{src.display_uri}{hint}")


def select_registered_models(src: Endpoint, spec: str) -> list:
    """Registered models (never prompts) named by ``spec``: ``all``, names, ``prefix*``
    globs, or a ``.txt`` file of those. A name or pattern that matches nothing is an
    error."""
    return _select(spec, all_models(src), name=lambda m: m.name, key=lambda m: m.name,
                   what="registered model", where=src.display_uri)


def _select(spec: str, candidates: list[T], *, name, key, what: str, where: str) -> list[T]:
    """The candidates that ``spec`` names, by name, by key (an id), or by glob on the name;
    each once, in the order named."""
    items = parse_selection(spec)
    if items is None:
        return candidates
    by_name = {name(c): c for c in candidates}
    by_key = {key(c): c for c in candidates}
    selected: dict[str, T] = {}
    for item in items:
        if any(ch in item for ch in "*?["):
            matches = [c for c in candidates if fnmatch.fnmatchcase(name(c), item)]
        else:
            match = by_name.get(item) or by_key.get(item)
            matches = [match] if match else []
        if not matches:
            raise EximError(f"{what} selection {item!r} matches no {what} on {where}")
        for candidate in matches:
            selected.setdefault(key(candidate), candidate)
    return list(selected.values())


def parents_first(runs: dict[str, dict]) -> list[str]:
    """Run ids ordered so that a parent in ``runs`` comes before its children."""
    ordered: list[str] = []
    placed: set[str] = set()
    for run_id in sorted(runs):
        chain = []
        current = run_id
        while current in runs and current not in placed and current not in chain:
            chain.append(current)
            current = runs[current]["tags"].get(MLFLOW_PARENT_RUN_ID)
        for member in reversed(chain):
            placed.add(member)
            ordered.append(member)
    return ordered


def progress(items: Iterable[T], *, total: int, desc: str) -> Iterator[T]:
    """A progress bar (done / total, ETA) on stderr, shown only when stderr is a terminal."""
    return iter(tqdm(items, total=total, desc=desc, unit="obj", leave=False,
                     disable=not sys.stderr.isatty()))
