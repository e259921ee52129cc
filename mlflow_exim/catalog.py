"""The kinds of object mlflow-exim carries, in the order their dependencies set.

Each kind is declared once, as ``KIND`` at the end of its entity module (see
:class:`mlflow_exim.kind.Kind`); registering it here, one line in :data:`KINDS`, is all the
exporter, importer, dry run, report and ``inspect`` need to carry it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlflow_exim.bundle import Bundle
from mlflow_exim.entities import (
    evaluation_dataset,
    experiment,
    logged_model,
    prompt,
    registered_model,
    run,
    scorer,
    trace,
)
from mlflow_exim.idmap import IdMap
from mlflow_exim.kind import Kind


def in_dependency_order(kinds: Iterable[Kind]) -> tuple[Kind, ...]:
    """``kinds`` so that each comes after every kind it depends on (declaration order
    otherwise). A dependency on an undeclared kind, or a circle, is a programming error."""
    declared = {kind.name: kind for kind in kinds}
    ordered: dict[str, Kind] = {}

    def place(kind: Kind, visiting: tuple[str, ...]) -> None:
        if kind.name in ordered:
            return
        if kind.name in visiting:
            raise ValueError(f"kinds depend on each other in a circle: {' -> '.join(visiting)}")
        for name in kind.depends_on:
            if name not in declared:
                raise ValueError(f"kind {kind.name} depends on undeclared kind {name}")
            place(declared[name], (*visiting, kind.name))
        ordered[kind.name] = kind

    for kind in declared.values():
        place(kind, ())
    return tuple(ordered.values())


KINDS = in_dependency_order([
    experiment.KIND,
    run.KIND,
    logged_model.KIND,
    registered_model.KIND,
    prompt.KIND,
    trace.KIND,
    evaluation_dataset.KIND,
    scorer.KIND,
])

# Every name an outcome, id map entry or scorecard line can have: kinds and their parts.
NAMES = tuple(name for kind in KINDS for name in (kind.name, *kind.parts))


def open_bundle(path: str | Path) -> Bundle:
    """The bundle at ``path``, every section of every kind read and validated."""
    return Bundle.open(path, [kind.section for kind in KINDS])


def new_idmap(known: dict[str, dict[str, str]] | None = None) -> IdMap:
    return IdMap(NAMES, known)
