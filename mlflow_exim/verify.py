"""Compare a target server with its source field by field, and print a scorecard.

The source is a server (:func:`verify`) or a bundle (:func:`verify_bundle`). Both sides are
read as the documents a bundle holds (``to_doc`` in ``entities/``), so one set of
comparisons serves both modes. What is compared is what was migrated: the experiments and
registered models of the bundle, or of the selection.

Matching follows the import's id map when one is given (``id_map``: the ``id_map`` of an
import's JSON report), which is how an import that renamed experiments or models is
verified. Otherwise each kind is recognised as the importer recognises it on a re-run (one
function per kind, in its entity module): a run or logged model by the source-id tag every
import writes (``run.source_id_of``, ``logged_model.source_id_of``), an experiment or
registered model by name. Where that finds nothing, a run is matched by run name and start
time, a logged model by name, (mapped) source run, model type and params, and an
experiment or model imported under another name by the source tags that
``--import-source-tags`` writes (``experiment.source_id_of``,
``registered_model.source_name_of``). Versions are matched by number within their model
(an id map gives the number each one got); every run or model id they hold must name the
target object matched to the source one.

``mlflow_exim.*`` tags are ignored on both sides (a source may itself be the target of an
earlier migration); ``mlflow.parentRunId`` must name the target run matched to the source
parent; ``MLmodel`` files may differ only by the ids they carry. The logged-model tag
``mlflow.modelVersions`` is not compared: MLflow maintains it itself, differently per store
(a server appends each version registered against the model, an embedded store never
writes it), and what it means, which versions point at the model, is compared where it is
defined: each compared version's source must name the matched logged model.

Runs, logged models and model versions still marked pending (tagged
``mlflow_exim.import.pending``, or a run named ``mlflow_exim.import.pending:<source id>``)
on the target are leftovers of an interrupted import, not yet arrived: they are never matched
nor counted there. On the source they are counted, as an export carries them (and warns).
"""

from __future__ import annotations

import filecmp
import json
import math
import re
import sys
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

import mlflow.artifacts
from mlflow.entities import LifecycleStage, ViewType
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim import lineage
from mlflow_exim.bundle import Bundle
from mlflow_exim.bundle.format import ARTIFACTS_DIR
from mlflow_exim.bundle.jsonio import decode_float, iter_json_lines
from mlflow_exim.catalog import open_bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import evaluation_dataset as dataset_entity
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import links
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import prompt as prompt_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.entities import scorer as scorer_entity
from mlflow_exim.entities import trace as trace_entity
from mlflow_exim.entities.artifacts import MLMODEL_FILE
from mlflow_exim.entities.logged_model import MODEL_VERSIONS_TAG
from mlflow_exim.entities.names import same
from mlflow_exim.entities.run import LOG_MODEL_HISTORY_TAG
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.report import abbreviate
from mlflow_exim.selection import Selection, select_experiments, select_registered_models
from mlflow_exim.work import paged

T = TypeVar("T")
_Pairs = list[tuple[dict, dict | None]]
_INFO_FIELDS = ("run_name", "status", "start_time", "end_time", "user_id", "lifecycle_stage")
_LOGGED_MODEL_FIELDS = ("name", "model_type", "status")
_VERSION_FIELDS = ("description", "current_stage", "status")
_TRACE_FIELDS = ("state", "request_time", "execution_duration", "request_preview",
                 "response_preview", "client_request_id")
_LOGGED_MODEL_SOURCE = re.compile(r"models:/(m-[0-9a-f]+)")
# MLmodel lines naming the model's own id and location, which an import replaces.
_MLMODEL_ID_LINES = ("model_id:", "model_uuid:", "run_id:", "artifact_path:")
# Exports that write every run and logged model of their experiments, and those that write
# every version of their registered models.
_WHOLE_EXPERIMENTS = ("export-experiment", "export-experiments", "export-all")
_WHOLE_MODELS = ("export-all", "export-models", "export-model")
_VERSION_SELECTIONS = ("versions", "stages", "latest_versions")
# Manifest options of an export that took only some runs (see exporter._filter_options).
_RUN_FILTERS = ("filter_string", "started_after", "started_before", "since")


@dataclass
class Scorecard:
    src: str
    dst: str
    totals: dict[str, int] = field(default_factory=dict)
    identical: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def count(self, kind: str, same: bool) -> None:
        self.totals[kind] = self.totals.get(kind, 0) + 1
        self.identical[kind] = self.identical.get(kind, 0) + int(same)

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "ok": self.ok, "totals": self.totals,
                "identical": self.identical, "differences": self.differences}

    def text(self) -> str:
        lines = [f"verify {self.src} -> {self.dst}"]
        width = max([12, *(len(kind) + 1 for kind in self.totals)])
        for kind in sorted(self.totals):
            total, same = self.totals[kind], self.identical[kind]
            percent = 100.0 * same / total if total else 100.0
            lines.append(f"  {kind:<{width}} {same}/{total} identical ({percent:.1f}%)")
        lines.append("  result: " + ("identical" if self.ok
                                     else f"{len(self.differences)} difference(s)"))
        lines.extend(f"  - {d}" for d in self.differences)
        return "\n".join(lines)


IdMapLike = dict | str | Path


def verify(src_uri: str | Endpoint, dst_uri: str | Endpoint, *,
           experiments: Selection | None = None, models: Selection | None = None,
           id_map: IdMapLike | None = None, compare_artifact_content: bool = True) -> Scorecard:
    """Compare the selected source experiments (deleted ones included) with all their runs
    and logged models, and the selected registered models with all their versions, with
    the target. A selection is as for the exports, or ``"none"``; one that is not given
    (None) is none when the other is given, and all when neither is: after an import of
    experiments alone no registered model is compared, and the other way round.
    ``id_map`` says which target object each source one became (see :func:`read_id_map`).
    A side given as an :class:`Endpoint` with a ``database_uri`` (an embedded store is its
    own) has runs' metric histories read from its database. Both sides are only read: an
    embedded store that does not exist is an error."""
    src = _ServerSide(Endpoint.connect(src_uri, must_exist=True), target=False)
    dst = _ServerSide(Endpoint.connect(dst_uri, must_exist=True), target=True)
    if experiments is None and models is None:
        experiments = models = "all"
    selected = [] if experiments in (None, "none") else [
        experiment_entity.to_doc(e)
        for e in select_experiments(src.endpoint, experiments, include_deleted=True)]
    model_docs = [] if models in (None, "none") else [
        src.model_doc(m) for m in select_registered_models(src.endpoint, models)]
    comparison = _Comparison(src, dst, compare_artifact_content, read_id_map(id_map))
    comparison.run(selected, model_docs)
    return comparison.run_genai(src.genai(
        None if experiments == "all" else {e["experiment_id"] for e in selected}))


def verify_bundle(bundle_dir: str | Path, dst_uri: str | Endpoint, *,
                  id_map: IdMapLike | None = None,
                  compare_artifact_content: bool = True) -> Scorecard:
    """Compare every experiment, run, logged model, registered model and version of the
    bundle at ``bundle_dir`` with the target. Target objects that the bundle lacks are
    reported only where its export wrote whole experiments (or whole models). ``id_map``
    is as for :func:`verify`."""
    bundle = open_bundle(bundle_dir)
    dst = _ServerSide(Endpoint.connect(dst_uri, must_exist=True), target=True)
    side = _BundleSide(bundle)
    comparison = _Comparison(side, dst, compare_artifact_content, read_id_map(id_map))
    comparison.run(list(bundle.documents["experiments"].values()),
                   list(bundle.documents["registered_models"].values()))
    return comparison.run_genai(side.genai())


def read_id_map(id_map: IdMapLike | None) -> dict[str, dict[str, str]]:
    """Source id -> target id per kind, from the ``id_map`` of an import's report: the
    dict itself, or the path of the JSON report (``--report``) or of a file holding just
    the id map. Kinds are ``experiments``, ``runs``, ``logged_models``, ``model_versions``
    (``"model/3"`` -> ``"new-model/3"``) and ``registered_models`` (derived from the
    versions where the map does not list it; older reports' singular names are read too);
    other kinds are kept, unused. Objects a dry run only planned (no target id) are left
    out: they are matched as without a map."""
    if id_map is None:
        return {}
    where = "id_map"
    if not isinstance(id_map, dict):
        where = str(id_map)
        try:
            loaded = json.loads(Path(id_map).read_text(encoding="utf-8"))
        except OSError as exc:
            raise EximError(f"{where}: cannot read the id map: {exc.strerror}") from None
        except ValueError as exc:
            raise EximError(f"{where}: not JSON ({exc})") from None
        id_map = loaded.get("id_map", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(id_map, dict) or not all(
            isinstance(ids, dict) and all(isinstance(s, str) and isinstance(t, (str, type(None)))
                                          for s, t in ids.items())
            for ids in id_map.values()):
        raise EximError(f"{where}: not an id map (kinds mapping source ids to target ids)")
    # Reports written before the kinds had one plural name say "run", "experiment", ...
    maps = {kind.removesuffix("s") + "s": {s: t for s, t in ids.items() if t is not None}
            for kind, ids in id_map.items()}
    models = maps.setdefault("registered_models", {})
    for source, target in maps.get("model_versions", {}).items():
        models.setdefault(source.rpartition("/")[0], target.rpartition("/")[0])
    return maps


# The two kinds of side, read as bundle documents ------------------------------------------

class _ServerSide:
    """A tracking server (source or target), read as bundle documents. Of a ``target``,
    runs and logged models an import left pending are not counted (they have not arrived);
    of a source, they are, as its export carries them."""

    def __init__(self, endpoint: Endpoint, *, target: bool):
        self.endpoint = endpoint
        self._settled = _settled if target else list
        self.client = endpoint.client
        self.label = endpoint.display_uri
        self._by_source_id: dict[str, dict] | None = None  # experiments, built when needed
        self._by_source_name: dict[str, RegisteredModel] | None = None  # registered models

    def experiment(self, experiment_id: str) -> dict | None:
        found = _get_or_none(self.client.get_experiment, experiment_id)
        return experiment_entity.to_doc(found) if found else None

    def experiment_by_name(self, name: str) -> dict | None:
        found = same(self.client.get_experiment_by_name(name), name)
        return experiment_entity.to_doc(found) if found else None

    def experiment_by_source_id(self, source_id: str) -> dict | None:
        """The experiment an import with source tags made of source experiment
        ``source_id`` (see :func:`experiment_entity.source_id_of`)."""
        if self._by_source_id is None:
            self._by_source_id = {}
            for e in paged(self.client.search_experiments, view_type=ViewType.ALL):
                tagged = experiment_entity.source_id_of(e.tags)
                if tagged is not None:
                    self._by_source_id.setdefault(tagged, experiment_entity.to_doc(e))
        return self._by_source_id.get(source_id)

    def runs(self, experiment_id: str) -> list[dict]:
        return self._settled(run_entity.to_doc(run, 0, 0) for run in paged(
            self.client.search_runs, [experiment_id], run_view_type=ViewType.ALL))

    def run(self, run_id: str) -> dict | None:
        found = _get_or_none(self.client.get_run, run_id)
        return run_entity.to_doc(found, 0, 0) if found else None

    def logged_models(self, experiment_id: str) -> list[dict]:
        return self._settled(logged_model_entity.to_doc(m, 0)
                             for m in logged_model_entity.search(self.endpoint, experiment_id))

    def genai(self, experiment_ids: set[str] | None) -> dict[str, list[dict]]:
        """The prompts, evaluation datasets (with their records) and scorers of these
        experiments (all, those of no experiment too, for None), as bundle documents."""
        def linked(ids) -> bool:
            return experiment_ids is None or bool(set(ids) & experiment_ids)

        prompts = [self.prompt(p.name) for p in prompt_entity.all_prompts(self.endpoint)
                   if linked(prompt_entity.linked_experiments(p))]
        listed = dataset_entity.search(self.endpoint) if experiment_ids is None else (
            dataset_entity.search(self.endpoint, sorted(experiment_ids)) if experiment_ids
            else [])
        belongs = {d.dataset_id: self.endpoint.store.get_dataset_experiment_ids(d.dataset_id)
                   for d in listed}
        datasets = [self.dataset(d.dataset_id, belongs[d.dataset_id]) for d in listed
                    if linked(belongs[d.dataset_id])]
        # A server lists no scorers of a deleted experiment (and the export takes none)
        active = {x.experiment_id for x in paged(self.client.search_experiments)}
        scorers = [scorer_entity.to_doc(self.endpoint, s.experiment_id, s.name)
                   for e in sorted(active if experiment_ids is None
                                   else active & experiment_ids)
                   for s in scorer_entity.search(self.endpoint, e)]
        return {"prompts": prompts, "evaluation_datasets": datasets, "scorers": scorers}

    def prompt(self, name: str) -> dict | None:
        try:
            found = prompt_entity.get(self.endpoint, name)
        except EximError:  # a registered model of that name: no prompt
            return None
        return None if found is None else prompt_entity.to_doc(
            found, prompt_entity.versions(self.endpoint, name), links.experiment_names(
                self.endpoint, prompt_entity.linked_experiments(found)))

    def dataset(self, dataset_id: str, experiment_ids: Collection[str]) -> dict | None:
        """The dataset as a bundle document, with the experiments it belongs to (known)."""
        found = _get_or_none(self.client.get_dataset, dataset_id)
        if found is None:
            return None
        return {**dataset_entity.to_doc(found, list(experiment_ids), {}),
                "records": list(dataset_entity.records(self.endpoint, dataset_id))}

    def dataset_imported_from(self, doc: dict, experiments: list[str]) -> dict | None:
        """The dataset an import made of ``doc`` for these target experiments, by the rule
        the import follows (see :func:`dataset_entity.find`)."""
        if not self.endpoint.supports(dataset_entity.CAPABILITY):
            return None
        found = dataset_entity.find(self.endpoint, doc, experiments, bool(experiments))
        return None if found is None else self.dataset(found.dataset.dataset_id,
                                                       sorted(found.experiment_ids))

    def scorer(self, experiment_id: str, name: str) -> dict | None:
        if not self.endpoint.supports(scorer_entity.CAPABILITY):
            return None
        doc = scorer_entity.to_doc(self.endpoint, experiment_id, name)
        return doc if doc["versions"] else None

    def logged_model(self, model_id: str) -> dict | None:
        found = _get_or_none(self.client.get_logged_model, model_id)
        return logged_model_entity.to_doc(found, 0) if found else None

    def registered_model(self, name: str) -> dict | None:
        found = same(_get_or_none(self.client.get_registered_model, name), name)
        return self.model_doc(found) if found else None

    def registered_model_by_source_name(self, source_name: str) -> dict | None:
        """The model an import with source tags made of source model ``source_name``
        (see :func:`registered_model_entity.source_name_of`)."""
        if self._by_source_name is None:
            self._by_source_name = {}
            for m in registered_model_entity.all_models(self.endpoint):
                tagged = registered_model_entity.source_name_of(m.tags or {})
                if tagged is not None:
                    self._by_source_name.setdefault(tagged, m)
        found = self._by_source_name.get(source_name)
        return self.model_doc(found) if found else None

    def model_doc(self, model: RegisteredModel) -> dict:
        """The model's document with all its versions (``source_ref`` is not compared)."""
        versions = registered_model_entity.versions(self.endpoint, model.name)
        return registered_model_entity.to_doc(
            model, [registered_model_entity.version_doc(v, {}) for v in versions])

    def histories(self, run: dict) -> Iterator[tuple[str, list[tuple]]]:
        for key in run["metrics"]["keys"]:
            yield key, self.history(run["info"]["run_id"], key)

    def history(self, run_id: str, key: str) -> list[tuple]:
        """One metric's points: from the side's database where it has one (one SELECT,
        see :mod:`mlflow_exim.database`), else through the tracking server."""
        database = self.endpoint.database
        if database is not None:
            return _points((p.step, p.timestamp, p.value)
                           for p in database.metric_history(run_id, key))
        return _points((m.step, m.timestamp, m.value)
                       for m in self.client.get_metric_history(run_id, key))

    def artifact_sizes(self, kind: str, doc: dict) -> dict[str, int]:
        """Paths and sizes; a run's are read from its own artifact store, as the export
        reads them (MLflow 3's ``runs:/`` view also asks for logged models, which an
        MLflow 2 server does not have)."""
        if kind == "runs":
            repo = self.endpoint.artifact_repository(doc["info"]["artifact_uri"])
            return _listed_sizes(lambda _id, path: repo.list_artifacts(path), "")
        return _listed_sizes(self.client.list_logged_model_artifacts, _own_id(kind, doc))

    def artifact_dir(self, kind: str, doc: dict, scratch: Path) -> Path:
        """The object's artifacts, downloaded below ``scratch``."""
        if kind == "runs":
            run_entity.download_artifacts(self.endpoint, _own_id(kind, doc),
                                          doc["info"]["artifact_uri"], scratch)
            return scratch
        scratch.mkdir()
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=doc["artifact_location"], tracking_uri=self.endpoint.uri,
            dst_path=str(scratch)))

    def traces(self, experiment_id: str, links: trace_entity.RunLinks) -> Iterator[dict]:
        return trace_entity.read_lines(self.endpoint, experiment_id, links)

    def run_links(self, experiment_ids: list[str]) -> trace_entity.RunLinks:
        """The run links of the traces of these experiments to the runs of any of them
        (as an export reads them: see :class:`trace_entity.RunLinks`)."""
        return trace_entity.RunLinks(self.endpoint, experiment_ids, experiment_ids)

    def is_extra(self, kind: str, target: dict) -> bool:
        """Whether a target object that matches nothing here is a difference: always."""
        return True


class _BundleSide:
    """A bundle as the source: its documents, ``metrics.jsonl`` files and artifact trees."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.label = str(bundle.root)
        command = bundle.manifest.get("command")
        options = bundle.manifest.get("options") or {}
        filtered = any(options.get(name) for name in _RUN_FILTERS)
        self._whole_experiments = command in _WHOLE_EXPERIMENTS and not filtered
        self._whole_traces = (self._whole_experiments or command == "export-traces") and not (
            options.get("filter_string") or options.get("since"))
        self._deleted_runs = bool(options.get("export_deleted_runs"))
        self._whole_models = command in _WHOLE_MODELS and not any(
            options.get(name) for name in (*_VERSION_SELECTIONS, "since"))

    def experiment(self, experiment_id: str) -> dict | None:
        return self.bundle.documents["experiments"].get(experiment_id)

    def runs(self, experiment_id: str) -> list[dict]:
        return [doc for doc in self.bundle.documents["runs"].values()
                if doc["info"]["experiment_id"] == experiment_id]

    def run(self, run_id: str) -> dict | None:
        return self.bundle.documents["runs"].get(run_id)

    def logged_models(self, experiment_id: str) -> list[dict]:
        return [doc for doc in self.bundle.documents["logged_models"].values()
                if doc["experiment_id"] == experiment_id]

    def logged_model(self, model_id: str) -> dict | None:
        return self.bundle.documents["logged_models"].get(model_id)

    def genai(self) -> dict[str, list[dict]]:
        """The bundle's prompts, evaluation datasets (with their records) and scorers."""
        docs = self.bundle.documents
        datasets = [{**doc, "records": list(iter_json_lines(
            self.bundle.dirs["evaluation_datasets"][i] / dataset_entity.RECORDS_FILE))}
            for i, doc in docs["evaluation_datasets"].items()]
        return {"prompts": list(docs["prompts"].values()), "evaluation_datasets": datasets,
                "scorers": list(docs["scorers"].values())}

    def histories(self, run: dict) -> Iterator[tuple[str, list[tuple]]]:
        """Each metric's history, one at a time: ``metrics.jsonl`` keeps a metric's points
        together (docs/FORMAT.md), so memory holds one history."""
        path = self.bundle.dirs["runs"][_own_id("runs", run)] / run_entity.METRICS_FILE
        seen = set()
        for key, points in groupby(iter_json_lines(path), key=itemgetter("key")):
            if key in seen:
                raise BundleError(path, f"the points of metric {key!r} are not together")
            seen.add(key)
            yield key, _points((p["step"], p["timestamp"], decode_float(p["value"]))
                               for p in points)

    def run_links(self, experiment_ids: list[str]) -> None:
        """None: a bundle's trace lines hold their run links as exported."""

    def traces(self, experiment_id: str, links=None) -> Iterator[dict]:
        doc = self.bundle.documents.get(trace_entity.NAME, {}).get(experiment_id)
        if doc is None:
            return iter(())
        return trace_entity.lines_of(self.bundle.dirs[trace_entity.NAME][experiment_id], doc)

    def artifact_sizes(self, kind: str, doc: dict) -> dict[str, int]:
        root = self.artifact_dir(kind, doc)
        return {p.relative_to(root).as_posix(): p.stat().st_size
                for p in root.rglob("*") if p.is_file()}

    def artifact_dir(self, kind: str, doc: dict, scratch: Path | None = None) -> Path:
        """The object's ``artifacts/`` directory in the bundle (nothing is copied)."""
        return self.bundle.dirs[kind][_own_id(kind, doc)] / ARTIFACTS_DIR

    def is_extra(self, kind: str, target: dict) -> bool:
        """Whether a target object that matches nothing in the bundle is a difference: only
        where the export wrote all there was of its kind."""
        if kind == "model_versions":
            return self._whole_models
        if kind == trace_entity.NAME:
            return self._whole_traces
        if kind == "runs" and target["info"]["lifecycle_stage"] == LifecycleStage.DELETED:
            return self._whole_experiments and self._deleted_runs
        return self._whole_experiments


_Side = _ServerSide | _BundleSide


def _own_id(kind: str, doc: dict) -> str:
    return doc["info"]["run_id"] if kind == "runs" else doc["model_id"]


def _settled(docs: Iterable[dict]) -> list[dict]:
    """The target's documents (runs, logged models, versions) but those an import left
    pending."""
    return [doc for doc in docs if not lineage.is_pending(doc["tags"])]


def _get_or_none(getter: Callable, object_id: str):
    """The object, or None when the server does not have it."""
    try:
        return getter(object_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _listed_sizes(lister: Callable, object_id: str, path: str | None = None) -> dict[str, int]:
    sizes = {}
    for item in lister(object_id, path):
        if item.is_dir:
            sizes.update(_listed_sizes(lister, object_id, item.path))
        else:
            sizes[item.path] = item.file_size or 0  # proxied listings omit a zero size
    return sizes


def _points(points: Iterable[tuple]) -> list[tuple]:
    """(step, timestamp, value) points in one canonical order, values made comparable."""
    return sorted(((step, timestamp, _comparable(value)) for step, timestamp, value in points),
                  key=repr)


def _comparable(value: float) -> float | str:
    """NaN equals NaN; ±inf equals the ±1.7976931348623157e308 a SQL store keeps for it."""
    if math.isnan(value):
        return "nan"
    return max(-sys.float_info.max, min(sys.float_info.max, value))


# Matching ---------------------------------------------------------------------------------

@dataclass
class _Matched:
    """One source experiment's runs and logged models paired with the target's, and the
    target ones that nothing paired with."""

    target: dict | None = None
    runs: _Pairs = field(default_factory=list)
    models: _Pairs = field(default_factory=list)
    extra_runs: list[dict] = field(default_factory=list)
    extra_models: list[dict] = field(default_factory=list)


class _IdMap:
    """Which target object each source one became. Runs and logged models are matched
    experiment by experiment, on demand: for the compared experiments, and for the ids
    that registered models, parent tags or model metrics hold outside them. ``given`` is
    the import's id map (see :func:`read_id_map`), followed first."""

    def __init__(self, src: _Side, dst: _ServerSide, given: dict[str, dict[str, str]]):
        self.src, self.dst = src, dst
        self.given = given
        self._matched: dict[str, _Matched] = {}  # by source experiment id
        self._source_runs: dict[str, dict | None] = {}
        self._target_runs: dict[str, dict | None] = {}
        self._target_models: dict[str, str | None] = {}

    def experiment(self, experiment_id: str) -> _Matched:
        if experiment_id in self._matched:
            return self._matched[experiment_id]
        self._matched[experiment_id] = found = _Matched()
        source = self.src.experiment(experiment_id)
        found.target = self._target_experiment(source) if source else None
        if found.target is None:
            return found  # its runs and logged models have no match: left unpaired
        target_id = found.target["experiment_id"]
        target_runs = self.dst.runs(target_id)
        found.runs = _match_runs(self.src.runs(experiment_id), target_runs,
                                 self.given.get("runs", {}))
        for s, t in found.runs:
            self._source_runs[_run_id(s)] = s
            self._target_runs[_run_id(s)] = t
        target_models = self.dst.logged_models(target_id)
        found.models = _match_models(self.src.logged_models(experiment_id), target_models,
                                     self.target_run_id, self.given.get("logged_models", {}))
        for s, t in found.models:
            self._target_models[_model_id(s)] = _model_id(t) if t else None
        found.extra_runs = _unpaired(target_runs, found.runs, _run_id)
        found.extra_models = _unpaired(target_models, found.models, _model_id)
        return found

    def _target_experiment(self, source: dict) -> dict | None:
        mapped = self.given.get("experiments", {}).get(source["experiment_id"])
        if mapped is not None:
            return self.dst.experiment(mapped)
        return (self.dst.experiment_by_name(source["name"])
                or self.dst.experiment_by_source_id(source["experiment_id"]))

    def target_registered_model(self, source: dict) -> dict | None:
        mapped = self.given.get("registered_models", {}).get(source["name"])
        if mapped is not None:
            return self.dst.registered_model(mapped)
        return (self.dst.registered_model(source["name"])
                or self.dst.registered_model_by_source_name(source["name"]))

    def target_version_number(self, model: str, number: str) -> str:
        """The number the source version ``model``/``number`` has on the target."""
        mapped = self.given.get("model_versions", {}).get(f"{model}/{number}")
        return mapped.rpartition("/")[2] if mapped is not None else number

    def source_run(self, run_id: str) -> dict | None:
        if run_id not in self._source_runs:
            self._source_runs[run_id] = self.src.run(run_id)
        return self._source_runs[run_id]

    def target_run(self, source_run_id: str) -> dict | None:
        if source_run_id not in self._target_runs:
            source = self.source_run(source_run_id)
            if source is not None:
                self.experiment(source["info"]["experiment_id"])
        return self._target_runs.setdefault(source_run_id, None)

    def target_run_id(self, source_run_id: str) -> str | None:
        target = self.target_run(source_run_id)
        return _run_id(target) if target else None

    def target_model_id(self, source_model_id: str) -> str | None:
        if source_model_id not in self._target_models:
            source = self.src.logged_model(source_model_id)
            if source is not None:
                self.experiment(source["experiment_id"])
        return self._target_models.setdefault(source_model_id, None)


def _pair_up(sources: list[T], targets: list[T], *, own_id: Callable[[T], str],
             mapped: dict[str, str], tagged_source_id: Callable[[T], str | None],
             source_identity: Callable[[T], tuple], target_identity: Callable[[T], tuple],
             agreement: Callable[[T, T], int] = lambda s, t: 0) -> list[tuple[T, T | None]]:
    """Pair each source object with its copy among ``targets``: by the import's id map
    (``mapped``, source id -> target id), or by the source-id tag every import writes, or
    else by what a copy keeps (``*_identity``), the unclaimed candidate that ``agreement``
    scores highest (the first on a tie) winning."""
    source_ids = {own_id(s) for s in sources}
    mapped_to = {mapped[i]: i for i in source_ids if i in mapped}  # target id -> source id
    by_source_id: dict[str, T] = {}
    by_identity: dict[tuple, list[T]] = {}
    for t in targets:
        tagged = tagged_source_id(t)
        if own_id(t) in mapped_to:
            by_source_id[mapped_to[own_id(t)]] = t
        elif tagged in source_ids and tagged not in mapped:
            by_source_id[tagged] = t
        else:
            by_identity.setdefault(target_identity(t), []).append(t)
    claimed: set[str] = set()
    pairs = []
    for s in sources:
        match = by_source_id.get(own_id(s))
        if match is None:
            candidates = [t for t in by_identity.get(source_identity(s), [])
                          if own_id(t) not in claimed]
            match = max(candidates, key=lambda t, s=s: agreement(s, t)) if candidates else None
        if match is not None:
            claimed.add(own_id(match))
        pairs.append((s, match))
    return pairs


def _unpaired(targets: list[T], pairs: list[tuple[T, T | None]],
              own_id: Callable[[T], str]) -> list[T]:
    claimed = {own_id(match) for _, match in pairs if match is not None}
    return [t for t in targets if own_id(t) not in claimed]


def _run_id(run: dict) -> str:
    return run["info"]["run_id"]


def _model_id(model: dict) -> str:
    return model["model_id"]


def _match_runs(sources: list[dict], targets: list[dict], mapped: dict[str, str]) -> _Pairs:
    def identity(run: dict) -> tuple:
        return run["info"]["run_name"], run["info"]["start_time"]

    return _pair_up(sources, targets, own_id=_run_id, mapped=mapped,
                    tagged_source_id=lambda t: run_entity.source_id_of(t["tags"]),
                    source_identity=identity, target_identity=identity, agreement=_agreement)


def _agreement(s: dict, t: dict) -> int:
    """How many identifying fields two runs share beyond name and start time, so that runs
    that share those two still pair up with their own copies."""
    return sum(s["info"][name] == t["info"][name]
               for name in ("lifecycle_stage", "status", "end_time")) + (s["params"] == t["params"])


def _match_models(sources: list[dict], targets: list[dict],
                  target_run_id: Callable[[str], str | None], mapped: dict[str, str]) -> _Pairs:
    return _pair_up(
        sources, targets, own_id=_model_id, mapped=mapped,
        tagged_source_id=lambda t: logged_model_entity.source_id_of(t["tags"]),
        source_identity=lambda s: _model_identity(
            s, target_run_id(s["source_run_id"]) if s.get("source_run_id") else None),
        target_identity=lambda t: _model_identity(t, t.get("source_run_id") or None))


def _run_label(run: dict) -> str:
    return f"run {_run_id(run)} ({run['info']['run_name']})"


def _model_label(model: dict) -> str:
    return f"logged model {_model_id(model)} ({model['name']})"


def _model_identity(model: dict, run_id: str | None) -> tuple:
    return model["name"], run_id, model.get("model_type"), tuple(sorted(model["params"].items()))


# Comparing --------------------------------------------------------------------------------

class _Comparison:
    """One comparison of a source (server or bundle) with a target server."""

    def __init__(self, src: _Side, dst: _ServerSide, compare_artifact_content: bool,
                 id_map: dict[str, dict[str, str]]):
        self.src, self.dst = src, dst
        self.ids = _IdMap(src, dst, id_map)
        self.card = Scorecard(src.label, dst.label)
        self.compare_content = compare_artifact_content

    def run(self, experiments: list[dict], models: list[dict]) -> Scorecard:
        found = self._score("experiments", [
            (e, self.ids.experiment(e["experiment_id"]).target) for e in experiments],
            lambda e: f"experiment {e['name']!r}", self._diff_experiment)
        matched = {e["name"]: self.ids.experiment(e["experiment_id"]) for e, _ in found}
        for name, m in matched.items():
            self._extras("runs", m.extra_runs,
                         lambda t, name=name: f"experiment {name!r}: {_run_label(t)}")
            self._extras("logged_models", m.extra_models,
                         lambda t, name=name: f"experiment {name!r}: {_model_label(t)}")
        self._score("runs", [p for m in matched.values() for p in m.runs], _run_label,
                    self._diff_run)
        self._score("logged_models", [p for m in matched.values() for p in m.models],
                    _model_label, self._diff_logged_model)
        # run links are read across the compared experiments: a trace may be linked to a
        # run of another one
        sources = [s["experiment_id"] for s, _ in found]
        src_links = self.src.run_links(sources)
        dst_links = self.dst.run_links([t["experiment_id"] for _, t in found])
        for source, target in found:
            self._score_traces(source, target, src_links, dst_links)
        for model, target in self._score(
                "registered_models", [(m, self.ids.target_registered_model(m)) for m in models],
                lambda m: f"registered model {m['name']!r}", self._diff_registered_model):
            self._score_versions(model, target)
        return self.card

    def run_genai(self, sources: dict[str, list[dict]]) -> Scorecard:
        """Compare prompts (by name), evaluation datasets (by the source id an import
        tags them with, among those of their target experiments) and scorers (by
        experiment and name), field by field, each reference through the target object
        matched to the source one."""
        self._score("prompts", [(p, self.dst.prompt(p["name"]))
                                for p in sources["prompts"]],
                    lambda p: f"prompt {p['name']!r}", self._diff_prompt)
        self._score("evaluation_datasets", [(d, self._target_dataset(d))
                                            for d in sources["evaluation_datasets"]],
                    lambda d: f"evaluation dataset {d['name']!r}", self._diff_dataset)
        self._score("scorers", [(s, self._target_scorer(s)) for s in sources["scorers"]],
                    lambda s: f"scorer {s['name']!r}", self._diff_scorer)
        return self.card

    def _target_experiment_ids(self, ids: list[str], names: dict[str, str]) -> list[str]:
        """Where an import links what these source experiments are linked to."""
        found = []
        for source_id in ids:
            target = self.ids.experiment(source_id).target or (
                self.dst.experiment_by_name(names[source_id]) if source_id in names else None)
            if target is not None:
                found.append(target["experiment_id"])
            elif source_id == links.DEFAULT_EXPERIMENT:
                found.append(source_id)
        return found

    def _target_dataset(self, d: dict) -> dict | None:
        return self.dst.dataset_imported_from(d, self._target_experiment_ids(
            d["experiment_ids"], d.get("experiment_names", {})))

    def _target_scorer(self, s: dict) -> dict | None:
        target = self.ids.experiment(s["experiment_id"]).target
        return self.dst.scorer(target["experiment_id"], s["name"]) if target else None

    def _diff_prompt(self, s: dict, d: dict, label: str) -> list[str]:
        tags = dict(s["tags"])
        key = prompt_entity.EXPERIMENT_IDS_TAG
        if key in tags:
            kept = self._target_experiment_ids(prompt_entity.linked_experiments_of(s),
                                               s.get("experiment_names", {}))
            tags[key] = f",{','.join(kept)}," if kept else ""
        actual = dict(d["tags"])
        if key in actual:  # every expected link, in any order; an import adds, never removes
            expected_links = {i for i in tags.get(key, "").split(",") if i}
            actual_links = {i for i in actual[key].split(",") if i}
            tags[key] = ",".join(sorted(expected_links))
            actual[key] = ",".join(sorted(expected_links if expected_links <= actual_links
                                          else actual_links))
        problems = _diff_fields(label, s, d, ("description",))
        problems += _diff_dicts(f"{label} tags", _without_lineage(tags),
                                _without_lineage(actual))
        problems += _diff_dicts(f"{label} aliases", s["aliases"], d["aliases"])
        targets = {v["version"]: v for v in d["versions"]}
        problems += _diff_values(f"{label} versions", [v["version"] for v in s["versions"]],
                                 sorted(targets, key=int))
        for v in s["versions"]:
            t = targets.get(v["version"])
            if t is None:
                continue
            where = f"{label} version {v['version']}"
            expected, actual = dict(v["tags"]), dict(t["tags"])
            key = prompt_entity.ASSOCIATED_RUNS_TAG
            if expected.get(key):
                expected[key] = ",".join(
                    filter(None, (self.ids.target_run_id(r) for r in expected[key].split(","))))
                if set(expected[key].split(",")) <= set(actual.get(key, "").split(",")):
                    actual[key] = expected[key]  # an import adds runs, never removes one
            problems += _diff_fields(where, v, t, ("description", "source"))
            problems += _diff_dicts(f"{where} tags", _without_lineage(expected),
                                    _without_lineage(actual))
        return problems

    def _diff_dataset(self, s: dict, d: dict, label: str) -> list[str]:
        problems = _diff_fields(label, s, d, ("name",))
        problems += _diff_dicts(f"{label} tags", _without_lineage(s["tags"]),
                                _without_lineage(d["tags"]))
        linked = set(self._target_experiment_ids(s["experiment_ids"],
                                                 s.get("experiment_names", {})))
        if not linked <= set(d["experiment_ids"]):  # a dataset may belong to more
            problems.append(f"{label} experiments: source (on the target) "
                            f"{sorted(linked)}, target {sorted(d['experiment_ids'])}")
        traces = self.ids.given.get("traces", {})

        def comparable(record: dict, remap: bool) -> str:
            data = dict(record["source"].get("source_data") or {})
            if remap and "run_id" in data:
                data["run_id"] = self.ids.target_run_id(data["run_id"]) or data["run_id"]
            if remap and "trace_id" in data:
                data["trace_id"] = traces.get(data["trace_id"], data["trace_id"])
            return json.dumps({**{k: record.get(k) or {} for k in dataset_entity.RECORD_FIELDS},
                               "source_type": record["source"].get("source_type"),
                               "source_data": data}, sort_keys=True)

        expected = sorted(comparable(r, True) for r in s["records"])
        actual = sorted(comparable(r, False) for r in d["records"])
        missing = [r for r in expected if r not in actual]
        extra = [r for r in actual if r not in expected]
        problems += [f"{label}: record {abbreviate(r, 120)} missing on the target"
                     for r in missing]
        problems += [f"{label}: record {abbreviate(r, 120)} only on the target" for r in extra]
        return problems

    def _diff_scorer(self, s: dict, d: dict, label: str) -> list[str]:
        def versions(doc: dict) -> list[tuple]:
            return [(v["version"], v["serialized_scorer"]) for v in doc["versions"]]

        problems = [] if versions(s) == versions(d) else [
            f"{label} versions: source {[v for v, _ in versions(s)]}, target "
            f"{[v for v, _ in versions(d)]}" + (" (same numbers, other contents)"
                                                 if [v for v, _ in versions(s)] ==
                                                 [v for v, _ in versions(d)] else "")]
        return problems + _diff_values(f"{label} online configuration", s.get("online_config"),
                                       d.get("online_config"))

    def _score(self, kind: str, pairs: _Pairs, label_of: Callable[[dict], str],
               diff: Callable[[dict, dict, str], list[str]]) -> _Pairs:
        """Count each pair as identical or not and record its differences; returns the
        pairs that have a target."""
        for source, match in pairs:
            label = label_of(source)
            problems = [f"{label}: missing on the target"] if match is None else diff(
                source, match, label)
            self.card.count(kind, not problems)
            self.card.differences.extend(problems)
        return [(s, t) for s, t in pairs if t is not None]

    def _extras(self, kind: str, targets: list[dict], label_of: Callable[[dict], str]) -> None:
        """Record the target objects that match no source object, where they count."""
        self.card.differences.extend(f"{label_of(t)} only on the target" for t in targets
                                     if self.src.is_extra(kind, t))

    def _score_traces(self, experiment: dict, target: dict, src_links, dst_links) -> None:
        """The experiment's traces, a batch at a time, each with the target trace it became
        (see :func:`trace_entity.find_lines`); then the target's traces nothing matched."""
        target_id, name = target["experiment_id"], experiment["name"]
        mapped = self.ids.given.get(trace_entity.NAME, {})
        lines = iter(self.src.traces(experiment["experiment_id"], src_links))
        matched = 0
        while batch := list(islice(lines, trace_entity.BATCH)):
            found = trace_entity.find_lines(self.dst.endpoint, batch, target_id, mapped,
                                            dst_links)
            matched += len(found)
            self._score(trace_entity.NAME,
                        [(line, found.get(line["info"]["trace_id"])) for line in batch],
                        lambda line: f"experiment {name!r}: trace {line['info']['trace_id']}",
                        self._diff_trace)
        extra = trace_entity.count(self.dst.endpoint, target_id) - matched
        if extra > 0 and self.src.is_extra(trace_entity.NAME, target):
            self.card.differences.append(f"experiment {name!r}: {extra} trace(s) only on the "
                                         "target")

    def _diff_trace(self, s: dict, d: dict, label: str) -> list[str]:
        """Info fields, tags (but those the target server sets), metadata and assessments
        with their run and model ids mapped, every span, run links and attachments. A trace
        that moved to a new id is compared with its spans and assessments renamed so."""
        old, new = s["info"]["trace_id"], d["info"]["trace_id"]
        if old != new:
            s = json.loads(json.dumps(s).replace(old, new))
        si, di = s["info"], d["info"]
        problems = _diff_fields(label, si, di, _TRACE_FIELDS)
        problems += _diff_dicts(f"{label} tags", _trace_tags(si), _trace_tags(di))
        metadata = dict(si.get("trace_metadata", {}))
        for key, target_of in ((trace_entity.SOURCE_RUN, self.ids.target_run_id),
                               (trace_entity.MODEL_ID, self.ids.target_model_id)):
            if key in metadata:
                _set_or_drop(metadata, key, target_of(metadata[key]))
        problems += _diff_dicts(f"{label} metadata", metadata, di.get("trace_metadata", {}))
        problems += _diff_dicts(f"{label} assessments", self._assessments(si, old != new),
                                {a["assessment_id"]: a for a in di.get("assessments", [])})
        problems += _diff_dicts(f"{label} spans", _spans(s), _spans(d))
        links = sorted(filter(None, map(self.ids.target_run_id, s["run_links"])))
        problems += _diff_values(f"{label} run links", links, d["run_links"])
        return problems + _diff_values(f"{label} attachments", s["attachments"],
                                       d["attachments"])

    def _assessments(self, info: dict, moved: bool) -> dict[str, dict]:
        """The assessments the target should hold, by id, as the import writes them."""
        expected = {}
        for a in json.loads(json.dumps(info.get("assessments", []))):
            if moved:
                a["assessment_id"] = trace_entity.derived_assessment_id(a["assessment_id"],
                                                                        info["trace_id"])
                if a.get("overrides"):
                    a["overrides"] = trace_entity.derived_assessment_id(a["overrides"],
                                                                        info["trace_id"])
            if a.get("run_id"):
                _set_or_drop(a, "run_id", self.ids.target_run_id(a["run_id"]))
            source_run = a.get("metadata", {}).get(trace_entity.ASSESSMENT_SOURCE_RUN)
            if source_run:
                _set_or_drop(a["metadata"], trace_entity.ASSESSMENT_SOURCE_RUN,
                             self.ids.target_run_id(source_run))
            expected[a["assessment_id"]] = a
        return expected

    def _diff_experiment(self, s: dict, d: dict, label: str) -> list[str]:
        return (_diff_fields(label, s, d, ("lifecycle_stage",))
                + _diff_dicts(f"{label} tags", _without_lineage(s["tags"]),
                              _without_lineage(d["tags"])))

    def _diff_run(self, s: dict, d: dict, label: str) -> list[str]:
        problems = _diff_fields(label, s["info"], d["info"], _INFO_FIELDS)
        problems += _diff_dicts(f"{label} params", s["params"], d["params"])
        problems += _diff_dicts(f"{label} tags", self._expected_run_tags(s, d),
                                _without_lineage(d["tags"]))
        problems += self._diff_histories(s, d, label)
        problems += _diff_values(f"{label} dataset inputs", _datasets(s), _datasets(d))
        old, new = _run_id(s).encode(), _run_id(d).encode()
        return problems + self._diff_artifacts(
            "runs", s, d, label, lambda a, b: a.read_bytes().replace(old, new) == b.read_bytes())

    def _expected_run_tags(self, s: dict, d: dict) -> dict:
        expected = _without_lineage(s["tags"])
        parent = expected.pop(MLFLOW_PARENT_RUN_ID, None)
        target_parent = self.ids.target_run_id(parent) if parent is not None else None
        if target_parent is not None:
            expected[MLFLOW_PARENT_RUN_ID] = target_parent
        if LOG_MODEL_HISTORY_TAG in expected:
            expected[LOG_MODEL_HISTORY_TAG] = expected[LOG_MODEL_HISTORY_TAG].replace(
                _run_id(s), _run_id(d))
        return expected

    def _diff_histories(self, s: dict, d: dict, label: str) -> list[str]:
        """Every metric's history, as a sorted list of points, one metric at a time."""
        problems, seen = [], set()

        def compare(key: str, expected: list[tuple]) -> None:
            actual = self.dst.history(_run_id(d), key)
            if expected != actual:
                problems.append(f"{label} metric {key!r}: {len(expected)} source points, "
                                f"{len(actual)} target points, histories differ")

        for key, expected in self.src.histories(s):
            seen.add(key)
            compare(key, expected)
        for key in sorted(set(d["metrics"]["keys"]) - seen):
            compare(key, [])
        return problems

    def _diff_artifacts(self, kind: str, s: dict, d: dict, label: str,
                        same_mlmodel: Callable[[Path, Path], bool]) -> list[str]:
        """Paths and sizes; with ``compare_content`` the bytes too, ``MLmodel`` files by
        ``same_mlmodel``."""
        expected = self.src.artifact_sizes(kind, s)
        problems = _diff_dicts(f"{label} artifacts (path: size)", expected,
                               self.dst.artifact_sizes(kind, d))
        if problems or not self.compare_content or not expected:
            return problems
        with tempfile.TemporaryDirectory(prefix="mlflow-exim-verify-") as scratch:
            left = self.src.artifact_dir(kind, s, Path(scratch, "src"))
            right = self.dst.artifact_dir(kind, d, Path(scratch, "dst"))
            return [f"{label} artifact {relative!r}: content differs"
                    for relative in sorted(expected)
                    if not _same_file(left / relative, right / relative, same_mlmodel)]

    def _diff_logged_model(self, s: dict, d: dict, label: str) -> list[str]:
        problems = _diff_fields(label, s, d, _LOGGED_MODEL_FIELDS)
        problems += _diff_dicts(f"{label} params", s["params"], d["params"])
        problems += _diff_dicts(f"{label} tags", _logged_model_tags(s), _logged_model_tags(d))
        problems += self._diff_run_reference(f"{label} source_run_id", s.get("source_run_id"),
                                             d.get("source_run_id"))
        expected = _model_metrics(s, self.ids.target_run_id)
        actual = _model_metrics(d, lambda run_id: run_id)
        if expected != actual:
            problems.append(f"{label} metrics: {len(expected)} source points, "
                            f"{len(actual)} target points, they differ")
        return problems + self._diff_artifacts("logged_models", s, d, label,
                                               _same_model_mlmodel)

    def _diff_run_reference(self, label: str, source_run_id: str | None,
                            target_run_id: str | None) -> list[str]:
        """A target's reference to a run must name the run matched to the source's. A REST
        answer may say "" where an embedded store says None: both mean no run."""
        if not source_run_id:
            return _diff_values(label, None, target_run_id or None)
        expected = self.ids.target_run_id(source_run_id)
        if expected is None:
            return [f"{label}: source run {source_run_id} has no match on the target"]
        if expected != target_run_id:
            return [f"{label}: source {source_run_id!r} matches target run {expected!r}, "
                    f"target has {target_run_id!r}"]
        return []

    def _diff_registered_model(self, s: dict, d: dict, label: str) -> list[str]:
        problems = _diff_fields(label, s, d, ("description",))
        problems += _diff_dicts(f"{label} tags", _without_lineage(s["tags"]),
                                _without_lineage(d["tags"]))
        expected = {alias: self.ids.target_version_number(s["name"], number)
                    for alias, number in s["aliases"].items()}
        return problems + _diff_dicts(f"{label} aliases", expected, d["aliases"])

    def _score_versions(self, model: dict, target: dict) -> None:
        label = f"registered model {model['name']!r}"
        targets = {v["version"]: v for v in _settled(target["versions"])}
        pairs = [(v, targets.pop(self.ids.target_version_number(model["name"], v["version"]),
                                 None))
                 for v in model["versions"]]
        self._score("model_versions", pairs, lambda v: f"{label} version {v['version']}",
                    self._diff_version)
        self._extras("model_versions", list(targets.values()),
                     lambda t: f"{label} version {t['version']}:")

    def _diff_version(self, s: dict, d: dict, label: str) -> list[str]:
        problems = _diff_fields(label, s, d, _VERSION_FIELDS)
        problems += _diff_dicts(f"{label} tags", _without_lineage(s["tags"]),
                                _without_lineage(d["tags"]))
        problems += self._diff_run_reference(f"{label} run_id", s["run_id"], d["run_id"])
        return problems + self._diff_version_source(s, d, f"{label} source")

    def _diff_version_source(self, s: dict, d: dict, label: str) -> list[str]:
        """A ``models:/m-…`` source must name the matched logged model; a source inside a
        run's artifacts must lie at the same path inside the matched run; any other must be
        equal."""
        logged_model = _LOGGED_MODEL_SOURCE.fullmatch(s["source"])
        if logged_model:
            target_id = self.ids.target_model_id(logged_model.group(1))
            if target_id is None:
                return [f"{label}: source logged model {logged_model.group(1)} has no match "
                        f"on the target"]
            return _diff_values(label, f"models:/{target_id}", d["source"])
        in_run = self._run_relative_path(s["source"], s["run_id"])
        if in_run is None:
            return _diff_values(label, s["source"], d["source"])
        run_id, path = in_run
        target = self.ids.target_run(run_id)
        if target is None:
            return [f"{label}: {s['source']!r} lies in source run {run_id}, which has no "
                    f"match on the target"]
        accepted = {f"{target['info']['artifact_uri']}/{path}", f"runs:/{_run_id(target)}/{path}"}
        if d["source"] not in accepted:
            return [f"{label}: source {s['source']!r}, target {d['source']!r}, expected one "
                    f"of {sorted(accepted)}"]
        return []

    def _run_relative_path(self, source: str, run_id: str | None) -> tuple[str, str] | None:
        """(run id, path inside the run's artifacts) when ``source`` lies inside a run's
        artifacts, given as ``runs:/<run id>/<path>`` or under the run's artifact URI."""
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/"):].partition("/")
            return run_id, path
        run = self.ids.source_run(run_id) if run_id else None
        root = run["info"]["artifact_uri"] if run else None
        if root and source.startswith(root + "/"):
            return run_id, source[len(root) + 1:]
        return None


def _datasets(run: dict) -> list[tuple]:
    def one(item: dict) -> tuple:
        d = item["dataset"]
        return (d["name"], d["digest"], d["source_type"], d["source"], d["schema"] or "",
                d["profile"] or "", tuple(sorted((t["key"], t["value"]) for t in item["tags"])))

    return sorted(one(item) for item in run["inputs"]["datasets"])


def _same_file(a: Path, b: Path, same_mlmodel: Callable[[Path, Path], bool]) -> bool:
    return same_mlmodel(a, b) if a.name == MLMODEL_FILE else filecmp.cmp(a, b, shallow=False)


def _same_model_mlmodel(a: Path, b: Path) -> bool:
    def kept_lines(path: Path) -> list[str]:
        return [line for line in path.read_text(encoding="utf-8").splitlines()
                if not line.startswith(_MLMODEL_ID_LINES)]
    return kept_lines(a) == kept_lines(b)


def _logged_model_tags(model: dict) -> dict:
    """The tags but ``mlflow.modelVersions``, which MLflow keeps differently per store (see
    the module text)."""
    tags = _without_lineage(model["tags"])
    tags.pop(MODEL_VERSIONS_TAG, None)
    return tags


def _model_metrics(model: dict, target_run_id: Callable[[str], str | None]) -> list:
    points = [(m["key"], _comparable(decode_float(m["value"])), m["step"], m["timestamp"],
               m.get("dataset_name"), m.get("dataset_digest"),
               target_run_id(m["run_id"]) if m.get("run_id") else None)
              for m in model["metrics"]]
    return sorted(points, key=repr)


def _trace_tags(info: dict) -> dict:
    return {k: v for k, v in _without_lineage(info.get("tags", {})).items()
            if k not in trace_entity.SERVER_TAGS}


def _spans(line: dict) -> dict[str, dict]:
    """A trace's spans by id; each span's trace id is the trace's own, compared there."""
    return {span["span_id"]: {k: v for k, v in span.items() if k != "trace_id"}
            for span in line["spans"]}


def _set_or_drop(holder: dict, key: str, value: str | None) -> None:
    """A reference as the import leaves it: mapped, or dropped when it cannot be."""
    if value is None:
        holder.pop(key, None)
    else:
        holder[key] = value


def _without_lineage(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if not lineage.is_lineage_tag(k)}


def _diff_fields(label: str, expected: dict, actual: dict, names: tuple[str, ...]) -> list[str]:
    return [p for name in names
            for p in _diff_values(f"{label} {name}", expected.get(name), actual.get(name))]


def _diff_values(label: str, expected, actual) -> list[str]:
    return [] if expected == actual else [f"{label}: source {expected!r}, target {actual!r}"]


def _diff_dicts(label: str, expected: dict, actual: dict) -> list[str]:
    problems = []
    for key in sorted(set(expected) | set(actual)):
        if key not in actual:
            problems.append(f"{label}: {key!r} missing on the target")
        elif key not in expected:
            problems.append(f"{label}: {key!r} only on the target")
        elif expected[key] != actual[key]:
            problems.append(f"{label}: {key!r} source {abbreviate(expected[key], 80)}, "
                            f"target {abbreviate(actual[key], 80)}")
    return problems
