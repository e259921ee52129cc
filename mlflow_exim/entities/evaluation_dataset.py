"""Evaluation datasets (MLflow 3 GenAI): the bundle document, export and import.

``evaluation_dataset.json`` holds the dataset (name, tags, the experiments it belongs to)
and ``records.jsonl`` its records, one per line, read from the source page by page and
written to the target in batches, so that a large dataset is never held in memory. Each
record keeps its inputs, outputs, expectations, tags and source (type and data).

Dataset and record ids cannot be chosen on a target: an imported dataset gets a new
``d-…`` id, kept in the report's id map, and carries its source id in the tag
``mlflow_exim.field.dataset_id``, by which a re-run recognises it: a target dataset of the
same name and source id that belongs to one of the target experiments the import links it
to (or to none yet). A second copy of its experiments on the same target (renamed) gets a
dataset of its own, of the same name. A record's trace id and run id (in its source data)
are remapped through the id map where they changed (a copy's traces get new ids); trace
ids are normally kept by the traces kind, so an id it does not map is left as it is. Records
are upserted by their inputs, so sending them again (a re-run, an interrupted import)
creates none twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from mlflow.entities import EvaluationDataset

from mlflow_exim import lineage
from mlflow_exim.bundle.format import Section
from mlflow_exim.bundle.jsonio import JsonLinesWriter, iter_json_lines, write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import links
from mlflow_exim.errors import BundleError
from mlflow_exim.idmap import IdMap
from mlflow_exim.kind import (
    CREATE,
    ExportContext,
    ImportContext,
    Kind,
    Step,
    Task,
    planning,
)
from mlflow_exim.report import Outcome, log, one_line
from mlflow_exim.work import paged

DATASET_FILE = "evaluation_dataset.json"
RECORDS_FILE = "records.jsonl"
SOURCE_DATASET_ID = lineage.FIELD + "dataset_id"
RECORD_FIELDS = ("inputs", "outputs", "expectations", "tags")
PAGE = 1000  # records read per request, and sent per upsert
CAPABILITY = "evaluation_datasets"


# Reading the source ---------------------------------------------------------------------

def search(src: Endpoint, experiment_ids: list[str] | None = None) -> list[EvaluationDataset]:
    """The datasets of these experiments, or every dataset (those of no experiment too);
    none on a server without evaluation datasets. A user a server lets read only some
    experiments (basic auth) may not search across them: then, with a warning, none of no
    experiment (those of the experiments come with each experiment)."""
    if not src.supports(CAPABILITY):
        return []
    try:
        return list(paged(src.client.search_datasets, experiment_ids=experiment_ids,
                          max_results=50))
    except Exception as exc:
        if experiment_ids is None and "403" in str(exc):
            log.warning("%s: the evaluation datasets of no experiment are left out: this user "
                        "may not list them (%s)", src.display_uri, one_line(exc))
            return []
        if src.is_http or not links.store_lacks(exc):
            raise
        return []


def records(endpoint: Endpoint, dataset_id: str) -> Iterator[dict]:
    """Every record of a dataset as its document, page after page."""
    token = None
    while True:
        page, token = endpoint.store._load_dataset_records(dataset_id, max_results=PAGE,
                                                           page_token=token)
        for record in page:
            yield record_doc(record.to_dict())
        if not token:
            return


def record_doc(record: dict) -> dict:
    source = record.get("source") or {}
    return {
        **{key: record.get(key) or {} for key in RECORD_FIELDS},
        "source": {"source_type": source.get("source_type") or record.get("source_type"),
                   "source_data": source.get("source_data") or {}},
        "source_id": record.get("source_id"),
    }


def to_doc(dataset: EvaluationDataset, experiment_ids: list[str],
           experiment_names: dict[str, str]) -> dict:
    return {
        "dataset_id": dataset.dataset_id,
        "name": dataset.name,
        "tags": {k: str(v) for k, v in (dataset.tags or {}).items()},
        "experiment_ids": sorted(experiment_ids, key=lambda i: (len(i), i)),
        "experiment_names": experiment_names,
        "digest": dataset.digest,
        "schema": dataset.schema,
        "profile": dataset.profile,
        "created_by": dataset.created_by,
        "created_time": dataset.created_time,
        "last_update_time": dataset.last_update_time,
    }


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    for key, kind in (("dataset_id", str), ("name", str), ("tags", dict),
                      ("experiment_ids", list), ("records", int)):
        if not isinstance(doc.get(key), kind):
            raise BundleError(path, f"field {key!r} is missing or not a {kind.__name__}")
    if not all(isinstance(i, str) for i in doc["experiment_ids"]):
        raise BundleError(path, "every experiment id must be a string")


def check_records(directory: Path) -> None:
    path = directory / RECORDS_FILE
    for number, record in enumerate(iter_json_lines(path), start=1):
        if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict) or \
                not isinstance(record.get("source"), dict):
            raise BundleError(path, f"line {number}: a record needs 'inputs' and 'source' "
                                    "objects")


def _export(ctx: ExportContext, dataset_id: str, item: EvaluationDataset, directory: Path,
            outcome: Outcome) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with JsonLinesWriter(directory / RECORDS_FILE) as out:
        for record in records(ctx.src, dataset_id):
            out.write(record)
    experiment_ids = ctx.src.store.get_dataset_experiment_ids(dataset_id)
    doc = to_doc(item, experiment_ids, links.experiment_names(ctx.src, experiment_ids))
    write_json(directory / DATASET_FILE, {**doc, "records": out.count})


# Remapping ------------------------------------------------------------------------------

def target_record(record: dict, idmap: IdMap, warn) -> dict:
    """A record as the target's upsert takes it, its trace and run ids remapped: a trace
    id the traces kind did not map was kept as it is; a run not part of the import is
    kept with a warning."""
    data = dict(record["source"].get("source_data") or {})
    if "trace_id" in data:
        data["trace_id"] = _trace(idmap, data["trace_id"])
    if "run_id" in data:
        run_id = idmap.get("runs", data["run_id"])
        if run_id is None:
            warn(f"a record names run {data['run_id']}, which is not part of this import; "
                 "kept as it is")
        data["run_id"] = run_id or data["run_id"]
    out = {key: record[key] for key in RECORD_FIELDS if record.get(key)}
    if record["source"].get("source_type"):  # a record without a source stays without
        out["source"] = {"source_type": record["source"]["source_type"], "source_data": data}
    return out


def _trace(idmap: IdMap, trace_id: str) -> str:
    try:
        return idmap.get("traces", trace_id) or trace_id
    except KeyError:  # no traces kind in this catalog
        return trace_id


def target_tags(doc: dict) -> dict[str, str]:
    return {**lineage.without_import_marks(doc["tags"]), SOURCE_DATASET_ID: doc["dataset_id"]}


# Import ---------------------------------------------------------------------------------

class Present(NamedTuple):
    """A target dataset an earlier import made, and the target experiments it belongs to
    (read once, when it was found)."""

    dataset: EvaluationDataset
    experiment_ids: frozenset[str]


def find(dst: Endpoint, doc: dict, experiments: Collection[str],
         linked: bool) -> Present | None:
    """The target dataset an earlier import made of ``doc`` for the target experiments
    ``experiments`` (those known now; ``linked``: the dataset will belong to some): same
    name, same source id, and belonging to one of them, or else to none at all (it is
    linked then). A dataset that will belong to no experiment is any such one. So a
    second copy of the experiments (renamed, on the same target) finds none: its dataset
    is another one, of the same name (names need not be unique), whose records name the
    copy's traces."""
    name = doc["name"].replace("'", "_")
    operator = "LIKE" if "'" in doc["name"] else "="
    unlinked = None
    for found in paged(dst.client.search_datasets, filter_string=f"name {operator} '{name}'",
                       max_results=50):
        if found.name != doc["name"] or (found.tags or {}).get(SOURCE_DATASET_ID) != \
                doc["dataset_id"]:
            continue
        belongs = frozenset(dst.store.get_dataset_experiment_ids(found.dataset_id))
        if not linked or belongs & set(experiments):
            return Present(found, belongs)
        if not belongs and unlinked is None:
            unlinked = Present(found, belongs)
    return unlinked


def target_experiments_now(ctx: ImportContext, doc: dict) -> tuple[list[str], bool]:
    """The target experiments the dataset belongs to as far as the plan knows them, and
    whether it will belong to any (one the import creates is not known yet)."""
    known = links.target_experiments(ctx, doc["experiment_ids"],
                                     doc.get("experiment_names", {}), lambda _: None)
    return known, bool(known) or links.to_be_created(ctx, doc["experiment_ids"])


def _plan(ctx: ImportContext) -> list[Step]:
    steps = []
    for source_id in ctx.source_ids(NAME):
        doc = ctx.bundle.documents[NAME][source_id]
        step = Step(NAME, source_id, doc["name"], CREATE, "would be created")
        with planning(step):
            ctx.require(CAPABILITY)
            known, linked = target_experiments_now(ctx, doc)
            found = None if ctx.empty_target else find(ctx.dst, doc, known, linked)
            if found is not None:
                _plan_present(ctx, doc, step, found, known)
        steps.append(step)
    return steps


def _plan_present(ctx: ImportContext, doc: dict, step: Step, present: Present,
                  known: list[str]) -> None:
    found = present.dataset
    step.target_id, step.present = found.dataset_id, present
    ctx.idmap.add(NAME, step.source_id, found.dataset_id)
    changed = [f"tag {k}" for k, v in target_tags(doc).items() if (found.tags or {}).get(k) != v]
    if lineage.PENDING in (found.tags or {}):
        changed.append("records (left half-written)")
    if links.to_be_created(ctx, doc["experiment_ids"]) or not set(known) <= \
            present.experiment_ids:
        changed.append("experiments")
    step.already_present(changed)


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each dataset once its experiments, and every run and every experiment's traces of
    the import, are done: its records name runs and traces (read only as they are sent)."""
    everything = [(kind, step.source_id) for kind in ("runs", "traces")
                  for step in ctx.steps.get(kind, [])]
    return [Task(step, lambda step=step: _apply_one(ctx, step),
                 after=[("experiments", i) for i in ctx.bundle.documents[NAME][
                     step.source_id]["experiment_ids"]] + everything)
            for step in steps]


def _apply_one(ctx: ImportContext, step: Step) -> None:
    """Create the dataset tagged pending, send its records in batches, then drop the
    marker; a dataset found pending gets its records again (an upsert: none twice)."""
    doc = ctx.bundle.documents[NAME][step.source_id]
    with ctx.track(step) as outcome:
        experiments = links.target_experiments(ctx, doc["experiment_ids"],
                                               doc.get("experiment_names", {}), outcome.warn)
        tags = target_tags(doc)
        present: Present | None = step.present
        if present is None:
            found = ctx.dst.client.create_dataset(
                doc["name"], experiment_id=experiments or None,
                tags={**tags, lineage.PENDING: "true"})
            outcome.target_id = found.dataset_id
            ctx.idmap.add(NAME, step.source_id, found.dataset_id)
            _send_records(ctx, step.source_id, found.dataset_id, outcome)
        else:
            found = present.dataset
            missing = [i for i in experiments if i not in present.experiment_ids]
            if missing:
                ctx.dst.client.add_dataset_to_experiments(found.dataset_id, missing)
            changed = {k: v for k, v in tags.items() if (found.tags or {}).get(k) != v}
            if changed:
                ctx.dst.client.set_dataset_tags(found.dataset_id, changed)
            if lineage.PENDING in (found.tags or {}):
                _send_records(ctx, step.source_id, found.dataset_id, outcome)
            else:
                return
        ctx.dst.client.delete_dataset_tag(found.dataset_id, lineage.PENDING)


def _send_records(ctx: ImportContext, source_id: str, dataset_id: str,
                  outcome: Outcome) -> None:
    lines = iter_json_lines(ctx.bundle.dirs[NAME][source_id] / RECORDS_FILE)
    while batch := [target_record(r, ctx.idmap, outcome.warn) for r in islice(lines, PAGE)]:
        ctx.dst.store.upsert_dataset_records(dataset_id, batch)


NAME = "evaluation_datasets"
KIND = Kind(
    name=NAME,
    section=Section(NAME, DATASET_FILE, validate, check_files=check_records),
    depends_on=("experiments", "runs", "traces"),
    export=_export,
    inventory=lambda item: {"name": item.name},
    label=lambda item: item.name,
    plan=_plan,
    apply=_apply,
)
