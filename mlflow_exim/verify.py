"""Compare a source and a target server field by field, and print a scorecard.

Experiments are matched by name. A target run is matched to its source run by the source
tag ``mlflow_exim.run_info.run_id`` when present, otherwise by run name and start time
(both of which an import keeps). ``mlflow_exim.*`` tags are ignored on both sides (a source
may itself be the target of an earlier migration); ``mlflow.parentRunId``
must name the target run matched to the source parent; ``MLmodel`` files may differ only
by the run id they carry.

A target logged model is matched to its source by the tag ``mlflow_exim.field.model_id``,
otherwise by name, (mapped) source run, model type and params. Registered models are matched
by name and their versions by number; every run or model id they hold must name the target
object matched to the source one.
"""

from __future__ import annotations

import filecmp
import json
import math
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import mlflow.artifacts
from mlflow.entities import Experiment, LoggedModel, Run, ViewType
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim import lineage
from mlflow_exim.bulk import PAGE_SIZE, select_experiments, select_registered_models
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities.artifacts import MLMODEL_FILE
from mlflow_exim.entities.logged_model import MODEL_VERSIONS_TAG
from mlflow_exim.entities.run import LOG_MODEL_HISTORY_TAG
from mlflow_exim.report import abbreviate

_SOURCE_RUN_ID_TAG = lineage.RUN_INFO + "run_id"
_SOURCE_MODEL_ID_TAG = lineage.FIELD + "model_id"
T = TypeVar("T")
_INFO_FIELDS = ("run_name", "status", "start_time", "end_time", "user_id", "lifecycle_stage")
_LOGGED_MODEL_FIELDS = ("name", "model_type", "status")
_VERSION_FIELDS = ("description", "current_stage", "status")
_LOGGED_MODEL_SOURCE = re.compile(r"models:/(m-[0-9a-f]+)")
# MLmodel lines naming the model's own id and location, which an import replaces.
_MLMODEL_ID_LINES = ("model_id:", "model_uuid:", "run_id:", "artifact_path:")


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


def verify(src_uri: str, dst_uri: str, *, experiments: str = "all", models: str | None = "all",
           compare_artifact_content: bool = True) -> Scorecard:
    """Compare the selected source experiments (deleted ones included) with all their runs
    and logged models, and the selected registered models (``None``: none) with all their
    versions, with the target."""
    src, dst = Endpoint.connect(src_uri), Endpoint.connect(dst_uri)
    card = Scorecard(src.display_uri, dst.display_uri)
    ids = _IdMap(src, dst)
    experiment_pairs: list[tuple[Experiment, Experiment]] = []
    pairs: list[tuple[Run, Run | None]] = []
    for experiment in select_experiments(src, experiments, include_deleted=True):
        target = dst.client.get_experiment_by_name(experiment.name)
        label = f"experiment {experiment.name!r}"
        if target is None:
            card.count("experiments", False)
            card.differences.append(f"{label}: missing on the target")
            continue
        problems = _diff_values(f"{label} lifecycle_stage", experiment.lifecycle_stage,
                                target.lifecycle_stage)
        problems += _diff_dicts(f"{label} tags", _without_lineage(experiment.tags),
                                _without_lineage(target.tags))
        card.count("experiments", not problems)
        card.differences.extend(problems)
        experiment_pairs.append((experiment, target))
        target_runs = _runs(dst, target.experiment_id)
        matched = _match_runs(_runs(src, experiment.experiment_id), target_runs)
        ids.add_runs(experiment.experiment_id, matched)
        pairs.extend(matched)
        for extra in _unpaired(target_runs, matched, _run_id):
            card.differences.append(f"{label}: run {extra.info.run_id} "
                                    f"({extra.info.run_name}) only on the target")
    run_map = {s.info.run_id: d.info.run_id for s, d in pairs if d is not None}
    _score_pairs(card, "runs", pairs, lambda r: f"run {r.info.run_id} ({r.info.run_name})",
                 lambda s, d, label: _diff_run(src, dst, s, d, run_map, label,
                                               compare_artifact_content))
    for experiment, target in experiment_pairs:
        _verify_logged_models(src, dst, experiment, target, ids, card, compare_artifact_content)
    if models is not None:
        for model in select_registered_models(src, models):
            _verify_registered_model(dst, model, ids, card)
    return card


class _IdMap:
    """Which target run and logged model each source one became. Filled experiment by
    experiment: by ``verify`` for the compared experiments, and on demand for the ids that
    registered models or model metrics hold outside them."""

    def __init__(self, src: Endpoint, dst: Endpoint):
        self.src, self.dst = src, dst
        self._experiments: set[str] = set()  # source experiment ids already matched
        self._source_runs: dict[str, Run | None] = {}
        self._target_runs: dict[str, Run | None] = {}
        self._target_models: dict[str, str | None] = {}

    def add_runs(self, experiment_id: str, pairs: list[tuple[Run, Run | None]]) -> None:
        self._experiments.add(experiment_id)
        for source, target in pairs:
            self._source_runs[source.info.run_id] = source
            self._target_runs[source.info.run_id] = target

    def add_models(self, pairs: list[tuple[LoggedModel, LoggedModel | None]]) -> None:
        for source, target in pairs:
            self._target_models[source.model_id] = target.model_id if target else None

    def source_run(self, run_id: str) -> Run | None:
        if run_id not in self._source_runs:
            self._source_runs[run_id] = _get_or_none(self.src.client.get_run, run_id)
        return self._source_runs[run_id]

    def target_run(self, source_run_id: str) -> Run | None:
        if source_run_id not in self._target_runs:
            source = self.source_run(source_run_id)
            if source is not None:
                self._match_experiment(source.info.experiment_id)
        return self._target_runs.setdefault(source_run_id, None)

    def target_run_id(self, source_run_id: str) -> str | None:
        target = self.target_run(source_run_id)
        return target.info.run_id if target else None

    def target_model_id(self, source_model_id: str) -> str | None:
        if source_model_id not in self._target_models:
            source = _get_or_none(self.src.client.get_logged_model, source_model_id)
            if source is not None:
                self._match_experiment(source.experiment_id)
        return self._target_models.setdefault(source_model_id, None)

    def _match_experiment(self, experiment_id: str) -> None:
        if experiment_id in self._experiments:
            return
        source_runs = _runs(self.src, experiment_id)
        source_models = logged_model_entity.search(self.src, experiment_id)
        name = self.src.client.get_experiment(experiment_id).name
        target = self.dst.client.get_experiment_by_name(name)
        target_id = target.experiment_id if target else None
        self.add_runs(experiment_id, _match_runs(
            source_runs, _runs(self.dst, target_id) if target_id else []))
        self.add_models(_match_models(
            source_models, logged_model_entity.search(self.dst, target_id) if target_id else [],
            self.target_run_id))


def _get_or_none(getter: Callable, object_id: str):
    """The object, or None when the server does not have it."""
    try:
        return getter(object_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _runs(endpoint: Endpoint, experiment_id: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = endpoint.client.search_runs([experiment_id], run_view_type=ViewType.ALL,
                                           max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _pair_up(sources: list[T], targets: list[T], *, own_id: Callable[[T], str],
             tagged_source_id: Callable[[T], str | None], source_identity: Callable[[T], tuple],
             target_identity: Callable[[T], tuple],
             agreement: Callable[[T, T], int] = lambda s, t: 0) -> list[tuple[T, T | None]]:
    """Pair each source object with its copy among ``targets``: by the source-id tag that an
    import with source tags writes, or else by what a copy keeps (``*_identity``), the
    unclaimed candidate that ``agreement`` scores highest (the first on a tie) winning."""
    source_ids = {own_id(s) for s in sources}
    by_source_id: dict[str, T] = {}
    by_identity: dict[tuple, list[T]] = {}
    for t in targets:
        tagged = tagged_source_id(t)
        if tagged in source_ids:
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


def _score_pairs(card: Scorecard, kind: str, pairs: list[tuple[T, T | None]],
                 label_of: Callable[[T], str],
                 diff: Callable[[T, T, str], list[str]]) -> None:
    """Count each pair as identical or not and record its differences."""
    for source, match in pairs:
        label = label_of(source)
        problems = [f"{label}: missing on the target"] if match is None else diff(
            source, match, label)
        card.count(kind, not problems)
        card.differences.extend(problems)


def _unpaired(targets: list[T], pairs: list[tuple[T, T | None]],
              own_id: Callable[[T], str]) -> list[T]:
    claimed = {own_id(match) for _, match in pairs if match is not None}
    return [t for t in targets if own_id(t) not in claimed]


def _run_id(run: Run) -> str:
    return run.info.run_id


def _match_runs(sources: list[Run], targets: list[Run]) -> list[tuple[Run, Run | None]]:
    def identity(run: Run) -> tuple:
        return run.info.run_name, run.info.start_time

    return _pair_up(sources, targets, own_id=_run_id,
                    tagged_source_id=lambda t: t.data.tags.get(_SOURCE_RUN_ID_TAG),
                    source_identity=identity, target_identity=identity, agreement=_agreement)


def _agreement(s: Run, t: Run) -> int:
    """How many identifying fields two runs share beyond name and start time, so that runs
    that share those two still pair up with their own copies."""
    return sum((s.info.lifecycle_stage == t.info.lifecycle_stage,
                s.info.status == t.info.status, s.info.end_time == t.info.end_time,
                s.data.params == t.data.params))


def _diff_run(src: Endpoint, dst: Endpoint, s: Run, d: Run, run_map: dict[str, str],
              label: str, compare_artifact_content: bool) -> list[str]:
    problems = []
    for name in _INFO_FIELDS:
        problems += _diff_values(f"{label} {name}", getattr(s.info, name), getattr(d.info, name))
    problems += _diff_dicts(f"{label} params", s.data.params, d.data.params)
    problems += _diff_dicts(f"{label} tags", _expected_tags(s, d, run_map),
                            _without_lineage(d.data.tags))
    for key in sorted(set(s.data.metrics) | set(d.data.metrics)):
        expected = _history(src, s.info.run_id, key)
        actual = _history(dst, d.info.run_id, key)
        if expected != actual:
            problems.append(f"{label} metric {key!r}: {len(expected)} source points, "
                            f"{len(actual)} target points, histories differ")
    problems += _diff_values(f"{label} dataset inputs", _datasets(s), _datasets(d))
    problems += _diff_artifacts(src, dst, s.info.run_id, d.info.run_id, label,
                                compare_artifact_content)
    return problems


def _expected_tags(s: Run, d: Run, run_map: dict[str, str]) -> dict:
    expected = _without_lineage(s.data.tags)
    parent = expected.pop(MLFLOW_PARENT_RUN_ID, None)
    if parent is not None and parent in run_map:
        expected[MLFLOW_PARENT_RUN_ID] = run_map[parent]
    if LOG_MODEL_HISTORY_TAG in expected:
        expected[LOG_MODEL_HISTORY_TAG] = expected[LOG_MODEL_HISTORY_TAG].replace(
            s.info.run_id, d.info.run_id)
    return expected


def _history(endpoint: Endpoint, run_id: str, key: str) -> list[tuple]:
    points = endpoint.client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, _comparable(m.value)) for m in points)


def _comparable(value: float) -> float | str:
    """NaN equals NaN; ±inf equals the ±1.7976931348623157e308 a SQL store keeps for it."""
    if math.isnan(value):
        return "nan"
    return max(-sys.float_info.max, min(sys.float_info.max, value))


def _datasets(run: Run) -> list[tuple]:
    inputs = run.inputs.dataset_inputs if run.inputs else []
    return sorted(
        (i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source,
         i.dataset.schema or "", i.dataset.profile or "",
         tuple(sorted((t.key, t.value) for t in i.tags)))
        for i in inputs
    )


def _diff_artifacts(src: Endpoint, dst: Endpoint, src_run: str, dst_run: str, label: str,
                    compare_content: bool) -> list[str]:
    expected = _artifact_sizes(src, src_run)
    actual = _artifact_sizes(dst, dst_run)
    problems = _diff_dicts(f"{label} artifacts (path: size)", expected, actual)
    if problems or not compare_content or not expected:
        return problems
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-verify-") as scratch:
        left, right = Path(scratch, "src"), Path(scratch, "dst")
        left.mkdir()
        right.mkdir()
        src.client.download_artifacts(src_run, "", str(left))
        dst.client.download_artifacts(dst_run, "", str(right))

        def same_mlmodel(a: Path, b: Path) -> bool:
            return a.read_bytes().replace(src_run.encode(), dst_run.encode()) == b.read_bytes()

        return _diff_files(left, right, sorted(expected), same_mlmodel, label)


def _diff_files(left: Path, right: Path, paths: list[str],
                same_mlmodel: Callable[[Path, Path], bool], label: str) -> list[str]:
    problems = []
    for relative in paths:
        a, b = left / relative, right / relative
        same = same_mlmodel(a, b) if a.name == MLMODEL_FILE else filecmp.cmp(a, b, shallow=False)
        if not same:
            problems.append(f"{label} artifact {relative!r}: content differs")
    return problems


def _artifact_sizes(endpoint: Endpoint, run_id: str, path: str | None = None) -> dict:
    sizes = {}
    for item in endpoint.client.list_artifacts(run_id, path):
        if item.is_dir:
            sizes.update(_artifact_sizes(endpoint, run_id, item.path))
        else:
            sizes[item.path] = item.file_size or 0  # proxied listings omit a zero size
    return sizes


def _model_id(model: LoggedModel) -> str:
    return model.model_id


def _match_models(sources: list[LoggedModel], targets: list[LoggedModel],
                  target_run_id: Callable[[str], str | None],
                  ) -> list[tuple[LoggedModel, LoggedModel | None]]:
    return _pair_up(
        sources, targets, own_id=_model_id,
        tagged_source_id=lambda t: t.tags.get(_SOURCE_MODEL_ID_TAG),
        source_identity=lambda s: _model_identity(
            s, target_run_id(s.source_run_id) if s.source_run_id else None),
        target_identity=lambda t: _model_identity(t, t.source_run_id or None))


def _model_identity(model: LoggedModel, run_id: str | None) -> tuple:
    return model.name, run_id, model.model_type, tuple(sorted(model.params.items()))


def _verify_logged_models(src: Endpoint, dst: Endpoint, experiment: Experiment,
                          target: Experiment, ids: _IdMap, card: Scorecard,
                          compare_artifact_content: bool) -> None:
    targets = logged_model_entity.search(dst, target.experiment_id)
    pairs = _match_models(logged_model_entity.search(src, experiment.experiment_id), targets,
                          ids.target_run_id)
    ids.add_models(pairs)
    _score_pairs(card, "logged_models", pairs, lambda m: f"logged model {m.model_id} ({m.name})",
                 lambda s, d, label: _diff_logged_model(src, dst, s, d, ids, label,
                                                        compare_artifact_content))
    for extra in _unpaired(targets, pairs, _model_id):
        card.differences.append(f"experiment {experiment.name!r}: logged model "
                                f"{extra.model_id} ({extra.name}) only on the target")


def _diff_logged_model(src: Endpoint, dst: Endpoint, s: LoggedModel, d: LoggedModel,
                       ids: _IdMap, label: str, compare_content: bool) -> list[str]:
    problems = []
    for name in _LOGGED_MODEL_FIELDS:
        problems += _diff_values(f"{label} {name}", getattr(s, name), getattr(d, name))
    problems += _diff_dicts(f"{label} params", s.params, d.params)
    problems += _diff_dicts(f"{label} tags", _logged_model_tags(s), _logged_model_tags(d))
    problems += _diff_run_reference(f"{label} source_run_id", s.source_run_id,
                                    d.source_run_id, ids)
    expected = _model_metrics(s, ids.target_run_id)
    actual = _model_metrics(d, lambda run_id: run_id)
    if expected != actual:
        problems.append(f"{label} metrics: {len(expected)} source points, "
                        f"{len(actual)} target points, they differ")
    problems += _diff_model_artifacts(src, dst, s, d, label, compare_content)
    return problems


def _logged_model_tags(model: LoggedModel) -> dict:
    """The tags, with the registrations in ``mlflow.modelVersions`` as a set: ``log_model``
    records each one twice (version as int and as str), a registry records it once."""
    tags = _without_lineage(model.tags)
    if MODEL_VERSIONS_TAG in tags:
        try:
            entries = json.loads(tags[MODEL_VERSIONS_TAG])
            tags[MODEL_VERSIONS_TAG] = sorted({(e["name"], str(e["version"])) for e in entries})
        except (ValueError, TypeError, KeyError):
            pass  # not the list MLflow writes: compare the text as it is
    return tags


def _model_metrics(model: LoggedModel, target_run_id: Callable[[str], str | None]) -> list:
    points = [(m.key, _comparable(m.value), m.step, m.timestamp, m.dataset_name,
               m.dataset_digest, target_run_id(m.run_id) if m.run_id else None)
              for m in model.metrics or []]
    return sorted(points, key=repr)


def _diff_model_artifacts(src: Endpoint, dst: Endpoint, s: LoggedModel, d: LoggedModel,
                          label: str, compare_content: bool) -> list[str]:
    expected = _model_artifact_sizes(src, s.model_id)
    problems = _diff_dicts(f"{label} artifacts (path: size)", expected,
                           _model_artifact_sizes(dst, d.model_id))
    if problems or not compare_content or not expected:
        return problems
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-verify-") as scratch:
        left = mlflow.artifacts.download_artifacts(
            artifact_uri=s.artifact_location, tracking_uri=src.uri, dst_path=f"{scratch}/src")
        right = mlflow.artifacts.download_artifacts(
            artifact_uri=d.artifact_location, tracking_uri=dst.uri, dst_path=f"{scratch}/dst")
        return _diff_files(Path(left), Path(right), sorted(expected), _same_model_mlmodel,
                           label)


def _same_model_mlmodel(a: Path, b: Path) -> bool:
    def kept_lines(path: Path) -> list[str]:
        return [line for line in path.read_text(encoding="utf-8").splitlines()
                if not line.startswith(_MLMODEL_ID_LINES)]
    return kept_lines(a) == kept_lines(b)


def _model_artifact_sizes(endpoint: Endpoint, model_id: str, path: str | None = None) -> dict:
    sizes = {}
    for item in endpoint.client.list_logged_model_artifacts(model_id, path):
        if item.is_dir:
            sizes.update(_model_artifact_sizes(endpoint, model_id, item.path))
        else:
            sizes[item.path] = item.file_size or 0
    return sizes


def _diff_run_reference(label: str, source_run_id: str | None, target_run_id: str | None,
                        ids: _IdMap) -> list[str]:
    """A target's reference to a run must name the run matched to the source's. A REST
    answer may say "" where an embedded store says None: both mean no run."""
    if not source_run_id:
        return _diff_values(label, None, target_run_id or None)
    expected = ids.target_run_id(source_run_id)
    if expected is None:
        return [f"{label}: source run {source_run_id} has no match on the target"]
    if expected != target_run_id:
        return [f"{label}: source {source_run_id!r} matches target run {expected!r}, "
                f"target has {target_run_id!r}"]
    return []


def _verify_registered_model(dst: Endpoint, model: RegisteredModel, ids: _IdMap,
                             card: Scorecard) -> None:
    label = f"registered model {model.name!r}"
    target = _get_or_none(dst.client.get_registered_model, model.name)
    if target is None:
        card.count("registered_models", False)
        card.differences.append(f"{label}: missing on the target")
        return
    problems = _diff_values(f"{label} description", model.description, target.description)
    problems += _diff_dicts(f"{label} tags", _without_lineage(model.tags),
                            _without_lineage(target.tags))
    problems += _diff_dicts(f"{label} aliases", _aliases(model), _aliases(target))
    card.count("registered_models", not problems)
    card.differences.extend(problems)
    target_versions = _model_versions(dst, model.name)
    for number, source in _model_versions(ids.src, model.name).items():
        version_label = f"{label} version {number}"
        match = target_versions.pop(number, None)
        if match is None:
            problems = [f"{version_label}: missing on the target"]
        else:
            problems = _diff_version(source, match, ids, version_label)
        card.count("model_versions", not problems)
        card.differences.extend(problems)
    for number in target_versions:
        card.differences.append(f"{label} version {number}: only on the target")


def _aliases(model: RegisteredModel) -> dict:
    return {alias: str(version) for alias, version in model.aliases.items()}


def _model_versions(endpoint: Endpoint, name: str) -> dict[str, ModelVersion]:
    return {str(v.version): v for v in registered_model_entity.versions(endpoint, name)}


def _diff_version(s: ModelVersion, d: ModelVersion, ids: _IdMap, label: str) -> list[str]:
    problems = []
    for name in _VERSION_FIELDS:
        problems += _diff_values(f"{label} {name}", getattr(s, name), getattr(d, name))
    problems += _diff_dicts(f"{label} tags", _without_lineage(s.tags), _without_lineage(d.tags))
    problems += _diff_run_reference(f"{label} run_id", s.run_id, d.run_id, ids)
    return problems + _diff_version_source(s, d, ids, f"{label} source")


def _diff_version_source(s: ModelVersion, d: ModelVersion, ids: _IdMap,
                         label: str) -> list[str]:
    """A ``models:/m-…`` source must name the matched logged model; a source inside a run's
    artifacts must lie at the same path inside the matched run; any other must be equal."""
    logged_model = _LOGGED_MODEL_SOURCE.fullmatch(s.source)
    if logged_model:
        target_id = ids.target_model_id(logged_model.group(1))
        if target_id is None:
            return [f"{label}: source logged model {logged_model.group(1)} has no match "
                    f"on the target"]
        return _diff_values(label, f"models:/{target_id}", d.source)
    in_run = _run_relative_path(s.source, s.run_id, ids)
    if in_run is None:
        return _diff_values(label, s.source, d.source)
    run_id, path = in_run
    target = ids.target_run(run_id)
    if target is None:
        return [f"{label}: {s.source!r} lies in source run {run_id}, which has no match "
                f"on the target"]
    accepted = {f"{target.info.artifact_uri}/{path}", f"runs:/{target.info.run_id}/{path}"}
    if d.source not in accepted:
        return [f"{label}: source {s.source!r}, target {d.source!r}, expected one of "
                f"{sorted(accepted)}"]
    return []


def _run_relative_path(source: str, run_id: str | None, ids: _IdMap) -> tuple[str, str] | None:
    """(run id, path inside the run's artifacts) when ``source`` lies inside a run's
    artifacts, given as ``runs:/<run id>/<path>`` or under the run's artifact URI."""
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/"):].partition("/")
        return run_id, path
    run = ids.source_run(run_id) if run_id else None
    if run is not None and source.startswith(run.info.artifact_uri + "/"):
        return run_id, source[len(run.info.artifact_uri) + 1:]
    return None

def _without_lineage(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if not lineage.is_lineage_tag(k)}


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
