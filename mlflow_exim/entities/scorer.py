"""Scorers registered in experiments (MLflow 3 GenAI): the bundle document, export and
import.

One ``scorer.json`` per scorer (an experiment and a name) holds every version in order,
each as the ``serialized_scorer`` JSON the server stores, and the scorer's online scoring
configuration (sample rate and trace filter), if it has one. Every registration creates
the next version, so versions are registered again in order; a target that numbers them
otherwise (it already holds versions, or the source's numbers have gaps, which are not
reproduced) gets them under its numbers, with a warning naming each. A
version already on the target under its number with the same serialized form is skipped.
A target refuses some scorers (custom-code ``@scorer`` ones unless it allows them): that
is the scorer's failure, with the server's reason. The scorers of a deleted experiment are
not exported: a server refuses to list them, and the export says so on the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from mlflow_exim.bundle.format import Section
from mlflow_exim.bundle.jsonio import write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import links
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.kind import (
    CREATE,
    SKIP,
    ExportContext,
    ImportContext,
    Kind,
    Step,
    Task,
    planning,
)
from mlflow_exim.report import Outcome

SCORER_FILE = "scorer.json"
CAPABILITY = "scorers"
# Said of each deleted experiment an export takes: a server refuses to list its scorers.
NOT_LISTED = ("deleted at the source: its scorers, if it has any, are not exported (a "
              "server refuses to list the scorers of a deleted experiment)")


@dataclass(frozen=True)
class ExportItem:
    """A scorer as an export plans it: its experiment and name."""

    experiment_id: str
    name: str


# Reading the source ---------------------------------------------------------------------

def search(src: Endpoint, experiment_id: str) -> list[ExportItem]:
    """The scorers registered in an experiment; none on a server without scorers."""
    if not src.supports(CAPABILITY):
        return []
    try:
        found = src.store.list_scorers(experiment_id)
    except Exception as exc:
        if src.is_http or not links.store_lacks(exc):
            raise
        return []
    return [ExportItem(experiment_id, s.scorer_name) for s in found]


def key(experiment_id: str, name: str) -> str:
    return f"{experiment_id}/{name}"


def _versions(endpoint: Endpoint, experiment_id: str, name: str) -> list:
    """The scorer's versions, oldest first; none when the experiment has no such scorer
    (the server says so with an error, as on a re-run after an import killed before)."""
    try:
        found = endpoint.store.list_scorer_versions(experiment_id, name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return []
    return sorted(found, key=lambda s: int(s.scorer_version))


def _online_config(endpoint: Endpoint, scorer_id: str | None) -> dict | None:
    configs = endpoint.store.get_online_scoring_configs([scorer_id]) if scorer_id else []
    for config in configs:
        return {"sample_rate": config.sample_rate, "filter_string": config.filter_string}
    return None


def to_doc(endpoint: Endpoint, experiment_id: str, name: str) -> dict:
    versions = _versions(endpoint, experiment_id, name)
    return {
        "experiment_id": experiment_id,
        "name": name,
        "versions": [{"version": str(s.scorer_version),
                      "serialized_scorer": s._serialized_scorer,
                      "creation_time": s.creation_time} for s in versions],
        "online_config": _online_config(endpoint, versions[-1].scorer_id if versions
                                        else None),
    }


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    for field, kind in (("experiment_id", str), ("name", str), ("versions", list)):
        if not isinstance(doc.get(field), kind):
            raise BundleError(path, f"field {field!r} is missing or not a {kind.__name__}")
    for v in doc["versions"]:
        if not isinstance(v, dict) or not str(v.get("version", "")).isdigit() or \
                not isinstance(v.get("serialized_scorer"), str):
            raise BundleError(path, "every version needs a number and a serialized_scorer")
    config = doc.get("online_config")
    if config is not None and not isinstance(config, dict):
        raise BundleError(path, "field 'online_config' must be an object or null")


def _export(ctx: ExportContext, object_id: str, item: ExportItem, directory: Path,
            outcome: Outcome) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / SCORER_FILE, to_doc(ctx.src, item.experiment_id, item.name))


# Import ---------------------------------------------------------------------------------

def _plan(ctx: ImportContext) -> list[Step]:
    """A step per scorer: skipped when every version is on the target under its number,
    in its target experiment, with the same online configuration."""
    steps = []
    for source_id in ctx.source_ids(NAME):
        doc = ctx.bundle.documents[NAME][source_id]
        step = Step(NAME, source_id, doc["name"], CREATE, "would be created")
        with planning(step):
            ctx.require(CAPABILITY)
            if not ctx.takes("experiments", doc["experiment_id"]):
                raise EximError(f"its experiment {doc['experiment_id']} is not part of this "
                                "import")
            experiment = ctx.planned_step("experiments", doc["experiment_id"])
            if experiment is not None and experiment.error:
                raise EximError(f"its experiment cannot arrive: {experiment.error}")
            target_experiment = ctx.target_experiment(doc["experiment_id"])
            if target_experiment is not None and not ctx.empty_target:
                _plan_present(ctx, doc, step, target_experiment)
        steps.append(step)
    return steps


def _plan_present(ctx: ImportContext, doc: dict, step: Step, experiment_id: str) -> None:
    present = {str(s.scorer_version): s for s in _versions(ctx.dst, experiment_id, doc["name"])}
    if not present:
        return
    step.present = present
    step.target_id = key(experiment_id, doc["name"])
    missing = [v["version"] for v in doc["versions"] if v["version"] not in present]
    differ = [v["version"] for v in doc["versions"] if v["version"] in present
              and present[v["version"]]._serialized_scorer != v["serialized_scorer"]]
    if differ:
        step.warnings.append(f"version(s) {', '.join(differ)} on the target differ from the "
                             "source's; they are left as they are")
    latest = present[max(present, key=int)]
    config_differs = doc.get("online_config") != _online_config(ctx.dst, latest.scorer_id)
    changed = ([f"version(s) {', '.join(missing)}"] if missing else []) + (
        ["online configuration"] if config_differs and doc.get("online_config") else [])
    step.already_present(changed)


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each scorer once its experiment is done; it fails with the experiment's reason when
    the experiment failed."""
    return [Task(step, lambda step=step: _apply_one(ctx, step),
                 needs=[("experiments", ctx.bundle.documents[NAME][step.source_id]
                         ["experiment_id"])])
            for step in steps]


def _apply_one(ctx: ImportContext, step: Step) -> None:
    doc = ctx.bundle.documents[NAME][step.source_id]
    with ctx.track(step) as outcome:
        experiment_id = ctx.target_experiment(doc["experiment_id"])
        if experiment_id is None:
            raise EximError(f"its experiment {doc['experiment_id']} did not arrive")
        present = step.present or {}
        renumbered = []
        for v in doc["versions"]:
            if v["version"] in present:
                continue
            created = ctx.dst.store.register_scorer(experiment_id, doc["name"],
                                                    v["serialized_scorer"])
            if str(created.scorer_version) != v["version"]:
                renumbered.append(f"{v['version']} as {created.scorer_version}")
        if renumbered:
            outcome.warn(f"version(s) arrived under other numbers: {', '.join(renumbered)} "
                         "(a target numbers a scorer's versions one after another, after "
                         "those it holds: gaps at the source are not reproduced)")
        config = doc.get("online_config")
        if config and step.action != SKIP:
            ctx.dst.store.upsert_online_scoring_config(
                experiment_id, doc["name"], config["sample_rate"], config.get("filter_string"))
        outcome.target_id = key(experiment_id, doc["name"])
        ctx.idmap.add(NAME, step.source_id, outcome.target_id)


NAME = "scorers"
KIND = Kind(
    name=NAME,
    section=Section(NAME, SCORER_FILE, validate,
                    references=lambda doc: [("experiments", doc["experiment_id"])]),
    depends_on=("experiments",),
    export=_export,
    export_needs=lambda item: [("experiments", item.experiment_id)],
    inventory=lambda item: {"name": item.name, "experiment_id": item.experiment_id},
    label=lambda item: item.name,
    plan=_plan,
    apply=_apply,
)
