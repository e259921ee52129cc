"""Experiments: their bundle document, export and import side by side.

``experiment.json`` holds the experiment's fields and tags (the description is the tag
``mlflow.note.content``). Runs are separate objects in the bundle (``runs/``) that name
their experiment, so a run can be found without reading its experiment.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Experiment, LifecycleStage

from mlflow_exim import lineage
from mlflow_exim.bundle.format import Section
from mlflow_exim.bundle.jsonio import write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import limits, names
from mlflow_exim.entities.artifacts import require_client
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.kind import CREATE, SKIP, UPDATE, ImportContext, Kind, Step, Task, planning

EXPERIMENT_FILE = "experiment.json"

_FIELDS = {
    "experiment_id": str,
    "name": str,
    "lifecycle_stage": str,
    "tags": dict,
}


def to_doc(experiment: Experiment) -> dict:
    return {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": experiment.creation_time,
        "last_update_time": experiment.last_update_time,
        "tags": dict(experiment.tags),
    }


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    for key, kind in _FIELDS.items():
        if not isinstance(doc.get(key), kind):
            raise BundleError(path, f"field {key!r} is missing or not a {kind.__name__}")
    if doc["lifecycle_stage"] not in (LifecycleStage.ACTIVE, LifecycleStage.DELETED):
        raise BundleError(path, f"lifecycle_stage {doc['lifecycle_stage']!r} is not "
                                "'active' or 'deleted'")
    if not all(isinstance(v, str) for v in doc["tags"].values()):
        raise BundleError(path, "every tag value must be a string")
    limits.check_length(doc["name"], limits.EXPERIMENT_NAME, path, "name")
    limits.check_mapping(doc["tags"], path, "tags", value_limit=limits.EXPERIMENT_TAG_VALUE)


def export(experiment: Experiment, directory: Path) -> dict:
    doc = to_doc(experiment)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / EXPERIMENT_FILE, doc)
    return doc


def find(src: Endpoint, name_or_id: str) -> Experiment:
    """An experiment by name, or else by id; deleted experiments are found too."""
    experiment = src.client.get_experiment_by_name(name_or_id)
    if experiment is None and name_or_id.isdigit():
        try:
            experiment = src.client.get_experiment(name_or_id)
        except Exception:  # noqa: BLE001 - "not found" reads the same as no match
            experiment = None
    if experiment is None:
        raise EximError(f"experiment {name_or_id!r} not found on {src.display_uri}")
    return experiment


def source_id_of(tags: dict) -> str | None:
    """The source id an experiment imported with source tags keeps, else None. An import
    recognises its experiment by target name; verify, given neither an id map nor a
    matching name (a renamed import), falls back on this tag."""
    return tags.get(lineage.FIELD + "experiment_id")


# Import ---------------------------------------------------------------------------------

def _target_tags(doc: dict, source_tags: bool, warnings: list[str]) -> dict:
    tags = lineage.without_import_marks(doc["tags"])
    if source_tags:
        skipped: list[str] = []
        tags.update(lineage.experiment_source_tags(doc, skipped))
        warnings += [f"source tag for {key!r} not written: its key would be too long"
                     for key in skipped]
    return tags


RESTORED = "deleted on both sides: restored while its runs are written, then deleted again"


def _existing(ctx: ImportContext, name: str) -> Experiment | None:
    return None if ctx.empty_target else _by_name(ctx, name)


def _by_name(ctx: ImportContext, name: str) -> Experiment | None:
    return names.exactly(ctx.dst.client.get_experiment_by_name(name), name, "experiment",
                         ctx.dst.display_uri, "--experiment-name" if ctx.experiment_name
                         else "--experiment-rename")


def _plan(ctx: ImportContext) -> list[Step]:
    """One step per source experiment, under its target name; or, when everything goes
    into one named experiment, one step for that experiment."""
    if ctx.experiment_name:
        return [_plan_shared(ctx, ctx.experiment_name)]
    steps = []
    for source_id in ctx.source_ids(NAME):
        doc = ctx.bundle.documents[NAME][source_id]
        name = ctx.names.get(source_id, doc["name"])
        step = Step(NAME, source_id, name, CREATE)
        with planning(step):
            _plan_one(ctx, doc, step)
        steps.append(step)
    return steps


def _plan_shared(ctx: ImportContext, name: str) -> Step:
    step = Step(NAME, ",".join(ctx.source_ids(NAME)), name, CREATE, "would be created empty",
                covers=ctx.source_ids(NAME))
    existing = None
    with planning(step):
        existing = _existing(ctx, name)
    if existing is not None and existing.lifecycle_stage == LifecycleStage.DELETED:
        step.error = (f"experiment {name!r} exists on {ctx.dst.display_uri} but is deleted; "
                      "restore it or choose another name")
    elif existing is not None:
        step.action, step.reason, step.target_id = SKIP, "already present", existing.experiment_id
        step.present = existing
        for source_id in ctx.source_ids(NAME):
            ctx.idmap.add(NAME, source_id, existing.experiment_id)
    return step


def _plan_one(ctx: ImportContext, doc: dict, step: Step) -> None:
    """Create the experiment, or reuse the target one of that name with its tags brought
    up to date. An experiment this import owns (created, or restored because it is deleted
    on both sides) is deleted again once its runs are in; an existing active one never is."""
    deleted = doc["lifecycle_stage"] == LifecycleStage.DELETED
    tags = _target_tags(doc, ctx.source_tags, step.warnings)
    existing = _existing(ctx, step.name)
    if existing is None:
        step.reason, step.delete_again = "would be created", deleted
        return
    step.target_id, step.present = existing.experiment_id, existing
    ctx.idmap.add(NAME, doc["experiment_id"], existing.experiment_id)
    if existing.lifecycle_stage == LifecycleStage.DELETED:
        if not deleted:
            raise EximError(f"experiment {step.name!r} exists on {ctx.dst.display_uri} but is "
                            "deleted; restore it or choose another name")
        step.action, step.reason, step.delete_again = UPDATE, RESTORED, True
        return
    if deleted:
        if existing.tags.get(lineage.PENDING) == doc["experiment_id"]:
            step.delete_again = True  # created by an import that was interrupted
        else:
            step.warnings.append(f"deleted at the source, but the target experiment "
                                 f"{step.name!r} already existed and is active; it is left active")
    changed = sorted(k for k, v in tags.items() if existing.tags.get(k) != v)
    step.action = UPDATE if changed else SKIP
    step.reason = "already present" + (f"; tags {', '.join(changed)} set" if changed else "")


def _review(ctx: ImportContext) -> None:
    """An experiment deleted on both sides is restored only while something is written into
    it; when everything in it is already present, it is left alone."""
    written_into = {ctx.bundle.facts[kind][step.source_id]["experiment_id"]
                    for kind, steps in ctx.steps.items() if kind != NAME
                    for step in steps
                    if step.action != SKIP and "experiment_id" in ctx.bundle.facts[kind].get(
                        step.source_id, {})}
    for step in ctx.steps[NAME]:
        if step.reason == RESTORED and step.source_id not in written_into:
            step.action, step.reason, step.delete_again = SKIP, "already present (deleted)", False
        if step.present is not None and written_into.intersection(step.source_id.split(",")):
            _require_client(ctx, step.present)


def _require_client(ctx: ImportContext, experiment: Experiment) -> None:
    """The storage client this process needs to write into ``experiment``, checked
    before its runs and logged models are written (for one that exists: before anything
    is)."""
    require_client(experiment.artifact_location, f"experiment {experiment.experiment_id} "
                   f"({experiment.name}) on {ctx.dst.display_uri}")


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    return [Task(step, lambda step=step: _apply_one(ctx, step)) for step in steps]


def _apply_one(ctx: ImportContext, step: Step) -> None:
    """Create the experiment or bring it up to date. A created one is checked for the
    storage client its runs need (where the target put it is known only now) before they
    start: a missing client stops the import."""
    with ctx.track(step) as outcome:
        if ctx.experiment_name:
            if step.action == CREATE:
                outcome.target_id = _create(ctx, step.name, {})
            for source_id in ctx.source_ids(NAME):
                ctx.idmap.add(NAME, source_id, outcome.target_id)
        else:
            doc = ctx.bundle.documents[NAME][step.source_id]
            tags = _target_tags(doc, ctx.source_tags, [])
            if step.action == CREATE:
                if step.delete_again:  # so that a re-run after an interruption knows it
                    tags[lineage.PENDING] = doc["experiment_id"]
                outcome.target_id = _create(ctx, step.name, tags)
            elif step.present.lifecycle_stage == LifecycleStage.ACTIVE or step.delete_again:
                if step.present.lifecycle_stage == LifecycleStage.DELETED:
                    ctx.dst.client.restore_experiment(step.target_id)
                for key, value in tags.items():
                    if step.present.tags.get(key) != value:
                        ctx.dst.client.set_experiment_tag(step.target_id, key, value)
            ctx.idmap.add(NAME, step.source_id, outcome.target_id)
    if step.action == CREATE and outcome.target_id:
        _require_client(ctx, ctx.dst.client.get_experiment(outcome.target_id))


def _create(ctx: ImportContext, name: str, tags: dict[str, str]) -> str:
    """Create the experiment, or take the one another job (an import of another shard, a
    copy) created under that name since the plan, with these tags set."""
    try:
        return ctx.dst.client.create_experiment(name, tags=tags or None)
    except Exception as exc:
        existing = None
        if "RESOURCE_ALREADY_EXISTS" in str(exc):
            existing = _by_name(ctx, name)
        if existing is None or existing.lifecycle_stage != LifecycleStage.ACTIVE:
            raise
    for key, value in tags.items():
        if existing.tags.get(key) != value:
            ctx.dst.client.set_experiment_tag(existing.experiment_id, key, value)
    return existing.experiment_id


def _finish(ctx: ImportContext) -> None:
    """Delete again what is deleted at the source, once its runs are in."""
    ctx.delete_again(NAME, ctx.dst.client.delete_experiment)


NAME = "experiments"
KIND = Kind(
    name=NAME,
    section=Section(NAME, EXPERIMENT_FILE, validate),
    export=lambda ctx, object_id, experiment, directory, outcome: export(experiment, directory),
    inventory=lambda experiment: {"name": experiment.name},
    label=lambda experiment: experiment.name,
    plan=_plan,
    review=_review,
    apply=_apply,
    finish=_finish,
)
