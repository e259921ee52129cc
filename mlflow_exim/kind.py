"""What a kind of object is, declared once in its entity module, and the contexts its hooks
are called with.

The exporter, importer, dry run, report and ``inspect`` know no kind by name: they iterate
over the kinds of :mod:`mlflow_exim.catalog`, in an order derived from ``depends_on``, and
call each kind's hooks. An import is planned whole before anything is written: every
kind's ``plan`` turns the bundle's objects into :class:`Step` values (create, skip as
present, bring up to date, write again), read-only; ``--dry-run`` reports them and stops,
otherwise ``apply`` turns them into :class:`Task` values, which the engine runs for every
kind on one scheduler, each step as soon as the objects it needs are done, and ``finish``
does what must wait for every kind (links between objects, deleting again what is deleted
at the source).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_exim.bundle import Bundle, BundleWriter
from mlflow_exim.bundle.format import Section, singular
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.errors import EximError
from mlflow_exim.idmap import IdMap
from mlflow_exim.report import FAILED, PLANNED, SKIPPED, Outcome, Report, one_line
from mlflow_exim.work import Workers, progress_bar

# What an import does with one object.
CREATE = "create"  # not on the target yet
SKIP = "skip"  # already present, nothing to change
UPDATE = "update"  # already present; brought up to date (status, tags, stage, ...)
REDO = "redo"  # left half-written by an interrupted import: deleted and written again
ACTIONS = (CREATE, SKIP, UPDATE, REDO)


@dataclass
class Step:
    """What an import will do with one object of the bundle, decided before any write.

    ``target_id`` is known for an object already present. ``present`` holds what the plan
    found on the target, ``leftovers`` the ids a half-written copy left there. ``parts``
    are the steps of objects that live inside this one (a registered model's versions).
    ``covers`` names the other source ids this step stands for (the one experiment that
    receives every source experiment's runs). ``error`` makes the object fail without
    being applied."""

    kind: str
    source_id: str
    name: str | None
    action: str
    reason: str = ""
    target_id: str | None = None
    present: Any = None
    leftovers: list[str] = field(default_factory=list)
    delete_again: bool = False
    parts: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    covers: list[str] = field(default_factory=list)

    def already_present(self, changed: list[str]) -> None:
        """Plan an object the target holds already: UPDATE what ``changed`` names (what
        differs from the bundle), or SKIP it when nothing does."""
        self.action = UPDATE if changed else SKIP
        self.reason = "already present" + (f"; {', '.join(changed)} brought up to date"
                                           if changed else "")

    def planned_outcome(self) -> Outcome:
        """The outcome a dry run reports: skipped when nothing would change, planned
        when something would be written, failed when the plan already fails."""
        status = FAILED if self.error else SKIPPED if self.action == SKIP else PLANNED
        return Outcome(self.kind, self.source_id, self.name, status=status,
                       target_id=self.target_id, reason=self.error or self.reason,
                       warnings=list(self.warnings), action=self.action)

    def line(self) -> str:
        """One line of a printed plan: action, kind, source id and name, what and where."""
        label = f"{self.source_id}" + (f" ({self.name})" if self.name else "")
        what = self.error or self.reason
        return f"{self.action:<7} {self.kind} {label}" + (f": {what}" if what else "")


@dataclass
class Task:
    """How a kind carries out one planned step: ``run()`` once the objects that ``needs``
    and ``after`` name ((kind, source id) pairs; those not in this import are not waited
    for) are done. When one of ``needs`` failed, the step fails with that reason (see
    :meth:`ImportContext.unmet`) and ``run`` is not called; ``after`` is only waited for,
    and ``run`` copes with what did not arrive (a link dropped with a warning). ``done()``
    is called when the step is over either way (a progress bar's tick). ``run`` must not
    wait for another task: it holds a slot of the ``objects`` pool while it runs (its own
    many calls go on ``transfers``)."""

    step: Step
    run: Callable[[], None]
    needs: list[tuple[str, str]] = field(default_factory=list)
    after: list[tuple[str, str]] = field(default_factory=list)
    done: Callable[[], None] = lambda: None


@contextmanager
def planning(step: Step) -> Iterator[Step]:
    """Plan one object: an error marks that object failed, never the whole plan."""
    try:
        yield step
    except Exception as exc:  # noqa: BLE001 - reported on the object
        step.error = str(exc) if isinstance(exc, EximError) else one_line(exc)


@dataclass
class ExportContext:
    """What an export hook works with: the source, the bundle being written, the report.
    ``read`` holds objects the plan has read whole already, by (kind, id), so that a hook
    takes them from there rather than ask the source again."""

    src: Endpoint
    writer: BundleWriter
    report: Report
    read: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class ImportContext:
    """What the plan, apply and finish hooks of one import work with.

    ``selected`` gives, per kind, the source ids this import takes (all when a kind is not
    in it). ``names`` maps source experiment ids to target names; with ``experiment_name``
    everything goes into that one experiment. ``models`` says how registered models arrive
    (None leaves them out) and ``model_names`` their target names. ``steps`` holds every
    kind's plan once made, ``outcomes`` every applied object's outcome by kind and source
    id, so that a later hook can see what an earlier one did."""

    bundle: Bundle
    dst: Endpoint
    report: Report
    idmap: IdMap
    objects: Workers
    transfers: Workers
    dry_run: bool = False
    empty_target: bool = False
    source_tags: bool = False
    experiment_name: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    models: Any = None
    model_names: dict[str, str] = field(default_factory=dict)
    selected: dict[str, set[str]] = field(default_factory=dict)
    steps: dict[str, list[Step]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    # target run id -> its artifact URI, as its creation or the plan's search gave it
    run_artifact_uris: dict[str, str] = field(default_factory=dict)
    _step_index: dict[str, dict[str, Step]] = field(default_factory=dict, repr=False)
    _bars: list[Any] = field(default_factory=list, repr=False)

    def source_ids(self, kind: str) -> list[str]:
        """The bundle's objects of ``kind`` that this import takes, in the bundle's order."""
        ids = list(self.bundle.documents.get(kind, {}))
        chosen = self.selected.get(kind)
        return ids if chosen is None else [i for i in ids if i in chosen]

    def takes(self, kind: str, source_id: str) -> bool:
        """Whether the bundle holds this object and this import takes it."""
        chosen = self.selected.get(kind)
        return (source_id in self.bundle.documents.get(kind, {})
                and (chosen is None or source_id in chosen))

    def planned_step(self, kind: str, source_id: str) -> Step | None:
        """The step the plan of ``kind`` (made already) holds for one object, if any."""
        if kind not in self._step_index:
            self._step_index[kind] = {i: s for s in self.steps.get(kind, [])
                                      for i in (*s.covers, s.source_id)}
        return self._step_index[kind].get(source_id)

    def unmet(self, needs: list[tuple[str, str]]) -> str | None:
        """Why an object cannot be applied: the first of the objects it ``needs`` ((kind,
        source id) pairs) that this import failed to bring, with that one's reason."""
        for kind, source_id in needs:
            step = self.planned_step(kind, source_id)
            outcome = None if step is None else self.outcomes.get(step.kind, {}).get(
                step.source_id)
            if outcome is not None and outcome.status == FAILED:
                return f"its {singular(kind)} {source_id} could not be imported: {outcome.reason}"
        return None

    def progress(self, total: int, desc: str):
        """A progress bar for the apply phase (see :func:`work.progress_bar`), closed with
        :meth:`close_progress` once every kind's steps are done."""
        bar = progress_bar(total, desc)
        self._bars.append(bar)
        return bar

    def close_progress(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars.clear()

    def require(self, capability: str) -> None:
        """Fail the object being planned when the target cannot take ``capability``, naming
        what it lacks (see :meth:`Endpoint.lacks`)."""
        missing = self.dst.lacks(capability, "target")
        if missing:
            raise EximError(f"cannot arrive: {missing}")

    def target_experiment(self, source_experiment_id: str) -> str | None:
        """The target id of a source experiment: None when it is still to be created."""
        return self.idmap.get("experiments", source_experiment_id)

    @contextmanager
    def track(self, step: Step) -> Iterator[Outcome]:
        """Carry out one step and record its outcome (see :meth:`Report.track`): an object
        found present is reported skipped, with what was brought up to date. A step whose
        plan failed is never carried out: see :meth:`fail`."""
        with self.report.track(step.kind, step.source_id, step.name) as outcome:
            outcome.action, outcome.target_id = step.action, step.target_id
            for warning in step.warnings:
                outcome.warn(warning)
            self.outcomes.setdefault(step.kind, {})[step.source_id] = outcome
            if step.action in (SKIP, UPDATE):
                outcome.status, outcome.reason = SKIPPED, step.reason
            yield outcome

    def fail(self, step: Step) -> None:
        """Report a step whose plan already failed (and its parts), without applying it."""
        for failed in (step, *step.parts):
            outcome = failed.planned_outcome()
            outcome.status, outcome.reason = FAILED, failed.error or step.error
            self.outcomes.setdefault(failed.kind, {})[failed.source_id] = outcome
            self.report.add(outcome)

    def delete_again(self, kind: str, delete: Callable[[str], None]) -> None:
        """Delete on the target the objects of ``kind`` deleted at the source, once
        nothing more is written into them."""
        for step in self.steps.get(kind, []):
            outcome = self.outcomes.get(kind, {}).get(step.source_id)
            if not step.delete_again or outcome is None or outcome.status == FAILED:
                continue
            try:
                delete(outcome.target_id)
            except Exception as exc:  # noqa: BLE001 - reported on the object
                outcome.status = FAILED
                outcome.reason = f"imported, but could not be deleted again: {one_line(exc)}"


@dataclass(frozen=True)
class Kind:
    """A kind of object, declared once at the end of its entity module.

    ``name`` (plural, e.g. ``runs``) is the one name of the kind in the bundle's inventory,
    the report, the id map and verify's scorecard; ``parts`` names kinds that live inside
    its documents (``model_versions``). ``depends_on`` lists the kinds whose objects may
    be needed by its objects (the catalog's order, and an import's planning, follow it).
    ``section`` is its place in the bundle.

    Hooks:

    * ``export(ctx, object_id, item, directory, outcome)`` writes one planned object into
      its directory (its document last); ``inventory(item)`` gives the fields its manifest
      entry carries, ``export_needs(item)`` the (kind, id) pairs that must have been written
      first, ``export_after(item)`` those only waited for (whose failure the hook reports
      itself), ``label(item)`` the name reported for it; a resumed (or refreshed) export
      keeps an object written whole before unless ``rewrite_on_resume`` (cheap objects that
      report parts) or ``unchanged(ctx, object_id, item, directory)`` says that the source
      has changed it since;
    * ``plan(ctx) -> list[Step]`` decides, reading the target only, what the import does
      with each of its objects; ``review(ctx)``, once every kind is planned, may revise
      its steps by what later kinds plan; ``apply(ctx, steps)`` gives the :class:`Task`
      that carries out each step and what it needs, and the engine runs every kind's tasks
      on ``ctx.objects`` together, each as soon as what it needs is done;
      ``finish(ctx)`` runs once every kind is applied, in the reverse order of the kinds.
    """

    name: str
    section: Section
    depends_on: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    export: Callable[[ExportContext, str, Any, Path, Outcome], None] | None = None
    inventory: Callable[[Any], dict] = lambda item: {}
    export_needs: Callable[[Any], list[tuple[str, str]]] = lambda item: []
    export_after: Callable[[Any], list[tuple[str, str]]] = lambda item: []
    label: Callable[[Any], str | None] = lambda item: None
    rewrite_on_resume: bool = False
    unchanged: Callable[[ExportContext, str, Any, Path], bool] | None = None
    plan: Callable[[ImportContext], list[Step]] | None = None
    review: Callable[[ImportContext], None] | None = None
    apply: Callable[[ImportContext, list[Step]], list[Task]] | None = None
    finish: Callable[[ImportContext], None] | None = None
