"""Compare a source and a target server field by field, and print a scorecard.

Experiments are matched by name. A target run is matched to its source run by the source
tag ``mlflow_exim.run_info.run_id`` when present, otherwise by run name and start time
(both of which an import keeps). ``mlflow_exim.*`` tags are ignored on both sides (a source
may itself be the target of an earlier migration); ``mlflow.parentRunId``
must name the target run matched to the source parent; ``MLmodel`` files may differ only
by the run id they carry.
"""

from __future__ import annotations

import filecmp
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run, ViewType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim import lineage
from mlflow_exim.bulk import PAGE_SIZE, select_experiments
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities.artifacts import MLMODEL_FILE
from mlflow_exim.entities.run import LOG_MODEL_HISTORY_TAG
from mlflow_exim.report import abbreviate

_SOURCE_RUN_ID_TAG = lineage.RUN_INFO + "run_id"
_INFO_FIELDS = ("run_name", "status", "start_time", "end_time", "user_id", "lifecycle_stage")


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
        for kind in sorted(self.totals):
            total, same = self.totals[kind], self.identical[kind]
            percent = 100.0 * same / total if total else 100.0
            lines.append(f"  {kind:<12} {same}/{total} identical ({percent:.1f}%)")
        lines.append("  result: " + ("identical" if self.ok
                                     else f"{len(self.differences)} difference(s)"))
        lines.extend(f"  - {d}" for d in self.differences)
        return "\n".join(lines)


def verify(src_uri: str, dst_uri: str, *, experiments: str = "all",
           compare_artifact_content: bool = True) -> Scorecard:
    """Compare the selected source experiments (deleted ones included) and all their runs
    with the target."""
    src, dst = Endpoint.connect(src_uri), Endpoint.connect(dst_uri)
    card = Scorecard(src.display_uri, dst.display_uri)
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
        target_runs = _runs(dst, target.experiment_id)
        matched = _match_runs(_runs(src, experiment.experiment_id), target_runs)
        pairs.extend(matched)
        claimed = {d.info.run_id for _, d in matched if d is not None}
        for extra in target_runs:
            if extra.info.run_id not in claimed:
                card.differences.append(f"{label}: run {extra.info.run_id} "
                                        f"({extra.info.run_name}) only on the target")
    run_map = {s.info.run_id: d.info.run_id for s, d in pairs if d is not None}
    for source_run, target_run in pairs:
        label = f"run {source_run.info.run_id} ({source_run.info.run_name})"
        if target_run is None:
            problems = [f"{label}: missing on the target"]
        else:
            problems = _diff_run(src, dst, source_run, target_run, run_map, label,
                                 compare_artifact_content)
        card.count("runs", not problems)
        card.differences.extend(problems)
    return card


def _runs(endpoint: Endpoint, experiment_id: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = endpoint.client.search_runs([experiment_id], run_view_type=ViewType.ALL,
                                           max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _match_runs(sources: list[Run], targets: list[Run]) -> list[tuple[Run, Run | None]]:
    by_source_id = {t.data.tags[_SOURCE_RUN_ID_TAG]: t for t in targets
                    if _SOURCE_RUN_ID_TAG in t.data.tags}
    by_identity: dict[tuple, list[Run]] = {}
    for t in targets:
        by_identity.setdefault((t.info.run_name, t.info.start_time), []).append(t)
    claimed: set[str] = set()
    pairs = []
    for s in sources:
        match = by_source_id.get(s.info.run_id)
        if match is None:
            candidates = [t for t in by_identity.get((s.info.run_name, s.info.start_time), [])
                          if t.info.run_id not in claimed]
            match = candidates[0] if candidates else None
        if match is not None:
            claimed.add(match.info.run_id)
        pairs.append((s, match))
    return pairs


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
        for relative in sorted(expected):
            a, b = left / relative, right / relative
            if a.name == MLMODEL_FILE:
                same = a.read_bytes().replace(src_run.encode(), dst_run.encode()) == b.read_bytes()
            else:
                same = filecmp.cmp(a, b, shallow=False)
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
