"""The split of a selection into shards: deterministic, disjoint, covering, and what must
arrive together (an experiment's runs, a registered model's versions and their runs)
in one shard."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_exim import cli
from mlflow_exim.errors import EximError
from mlflow_exim.report import FAILED, OK, PLANNED, SKIPPED, Outcome, Report, merge_reports
from mlflow_exim.shard import (
    EXPERIMENTS,
    PROMPTS,
    REGISTERED_MODELS,
    RUNS,
    Shard,
    bucket,
    narrow,
    part_key,
    split,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_shard_text_is_I_of_N_counting_from_one():
    assert Shard.of("2/4") == Shard(2, 4) and str(Shard.of(" 1 / 1 ")) == "1/1"
    assert Shard.of(None) is None
    for bad in ("0/4", "5/4", "2", "a/b", "-1/2", "1/0"):
        with pytest.raises(EximError, match="shard"):
            Shard.of(bad)


def test_the_hash_is_the_same_in_every_process_and_release():
    # Pinned: a changed hash would move parts between shards of one migration's runs.
    assert [bucket("experiments:1", n) for n in (1, 2, 3, 4, 7)] == [0, 1, 2, 3, 1]
    assert part_key([(RUNS, "r9"), (EXPERIMENTS, "12"), (EXPERIMENTS, "3"),
                     (REGISTERED_MODELS, "a")]) == "experiments:3"
    assert part_key([(PROMPTS, "p"), (REGISTERED_MODELS, "b")]) == "registered_models:b"


@st.composite
def graphs(draw):
    """Experiments with runs (some children of another experiment's run), registered
    models whose versions point at any runs, and prompts linked to any experiments."""
    experiments = [str(i) for i in range(draw(st.integers(1, 12)))]
    runs = {f"r{i}": draw(st.sampled_from(experiments)) for i in range(draw(st.integers(0, 30)))}
    run_ids = sorted(runs)
    parents = {run: draw(st.sampled_from(run_ids)) for run in run_ids
               if draw(st.booleans()) and draw(st.booleans())}
    models = {f"model-{i}": draw(st.lists(st.sampled_from(run_ids), max_size=4)) if run_ids
              else [] for i in range(draw(st.integers(0, 6)))}
    prompts = {f"prompt-{i}": draw(st.lists(st.sampled_from(experiments), max_size=2))
               for i in range(draw(st.integers(0, 4)))}
    nodes = [(EXPERIMENTS, e) for e in experiments] + [(RUNS, r) for r in runs]
    nodes += [(REGISTERED_MODELS, m) for m in models] + [(PROMPTS, p) for p in prompts]
    edges = [((RUNS, r), (EXPERIMENTS, e)) for r, e in runs.items()]
    edges += [((RUNS, r), (RUNS, p)) for r, p in parents.items()]
    edges += [((REGISTERED_MODELS, m), (RUNS, r)) for m, rs in models.items() for r in rs]
    edges += [((PROMPTS, p), (EXPERIMENTS, e)) for p, es in prompts.items() for e in es]
    edges.append(((RUNS, "not-in-the-selection"), (EXPERIMENTS, experiments[0])))
    return nodes, edges, runs, models


@settings(max_examples=150, deadline=None)
@given(graphs(), st.integers(1, 5), st.randoms(use_true_random=False))
def test_shards_are_disjoint_cover_everything_and_keep_parts_whole(graph, count, rng):
    nodes, edges, runs, models = graph
    shards = [split(nodes, edges, Shard(i, count)) for i in range(1, count + 1)]
    where = {}
    for index, taken in enumerate(shards):
        for kind, ids in taken.items():
            for object_id in ids:
                assert (kind, object_id) not in where, "an object in two shards"
                where[(kind, object_id)] = index
    assert set(where) == set(nodes)  # nothing left out, nothing invented
    for run, experiment in runs.items():
        assert where[(RUNS, run)] == where[(EXPERIMENTS, experiment)]
    for model, model_runs in models.items():
        assert {where[(RUNS, r)] for r in model_runs} <= {where[(REGISTERED_MODELS, model)]}
    # The same graph listed in another order splits the same way.
    shuffled_nodes, shuffled_edges = list(nodes), list(edges)
    rng.shuffle(shuffled_nodes)
    rng.shuffle(shuffled_edges)
    assert [split(shuffled_nodes, shuffled_edges, Shard(i, count))
            for i in range(1, count + 1)] == shards


def test_many_experiments_spread_over_the_shards():
    nodes = [(EXPERIMENTS, str(i)) for i in range(400)]
    sizes = [len(split(nodes, [], Shard(i, 4))[EXPERIMENTS]) for i in range(1, 5)]
    assert sum(sizes) == 400 and min(sizes) > 60


def test_one_shard_takes_everything():
    nodes = [(EXPERIMENTS, "1"), (RUNS, "a"), (PROMPTS, "p")]
    assert split(nodes, [], Shard(1, 1)) == {EXPERIMENTS: {"1"}, RUNS: {"a"}, PROMPTS: {"p"}}


def test_an_import_selection_is_narrowed_to_the_shard_and_lists_every_kind():
    taken = {EXPERIMENTS: {"1", "2"}, RUNS: {"a"}, PROMPTS: set()}
    assert narrow({}, taken) == taken  # a kind with nothing in this shard is empty, not all
    assert narrow({EXPERIMENTS: {"2", "3"}}, taken) == {EXPERIMENTS: {"2"}, RUNS: {"a"},
                                                         PROMPTS: set()}


def test_a_registered_model_joins_the_experiments_of_its_versions_runs():
    nodes = [(EXPERIMENTS, str(i)) for i in range(20)]
    nodes += [(RUNS, f"r{i}") for i in range(20)] + [(REGISTERED_MODELS, "m")]
    edges = [((RUNS, f"r{i}"), (EXPERIMENTS, str(i))) for i in range(20)]
    edges += [((REGISTERED_MODELS, "m"), (RUNS, "r4")), ((REGISTERED_MODELS, "m"), (RUNS, "r17"))]
    holder = [i for i in (1, 2, 3) if "m" in split(nodes, edges, Shard(i, 3))[REGISTERED_MODELS]]
    (shard,) = holder
    taken = split(nodes, edges, Shard(shard, 3))
    assert {"4", "17"} <= taken[EXPERIMENTS] and {"r4", "r17"} <= taken[RUNS]


def test_the_kubernetes_example_runs_shard_index_plus_one_of_completions():
    manifest = yaml.safe_load((EXAMPLES / "kubernetes" / "migrate-shards.yaml").read_text())
    spec = manifest["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert spec["completionMode"] == "Indexed" and int(env["SHARDS"]) == spec["completions"]
    shell, flag, script = *container["command"], container["args"][0]
    seen = []
    for index in range(spec["completions"]):
        printed = subprocess.run(  # mlflow-exim replaced by a function printing its arguments
            [shell, flag, "mlflow_exim() { printf '%s\\n' \"$@\"; }; "
             + script.replace("mlflow-exim ", "mlflow_exim ")],
            env={**env, "JOB_COMPLETION_INDEX": str(index)}, capture_output=True, text=True,
            check=True).stdout.splitlines()
        assert printed[0] == "migrate"
        params = cli.migrate_command.make_context("migrate", printed[1:]).params
        seen.append(params["shard"])
    assert seen == [Shard(i, spec["completions"]) for i in range(1, spec["completions"] + 1)]


def _shard_report(path: Path, command: str, outcomes: list[tuple[str, str, str]],
                  id_map: dict, **extra) -> Path:
    report = Report(command)
    for kind, source_id, status in outcomes:
        report.add(Outcome(kind, source_id, status=status, reason="boom" if status == FAILED
                           else None))
    report.extra.update(id_map=id_map, **extra)
    report.write(path)
    return path


def test_report_merge_sums_the_shards_and_fails_if_one_did(tmp_path):
    first = _shard_report(tmp_path / "1.json", "migrate", [("runs", "a", OK), ("runs", "b", OK)],
                          {"runs": {"a": "A", "b": "B"}}, target="http://t", bundle="b1",
                          half_written={"runs": ["x"]},
                          metric_histories={"path": "rest", "runs": 2, "points": 500})
    second = _shard_report(tmp_path / "2.json", "migrate",
                           [("runs", "c", SKIPPED), ("experiments", "1", OK)],
                           {"runs": {"c": "C"}, "experiments": {"1": "7"}}, target="http://t",
                           bundle="b2", half_written={"runs": ["y"], "logged_models": ["m"]},
                           metric_histories={"path": "rest", "runs": 1, "points": 20})
    out = tmp_path / "merged.json"
    result = CliRunner().invoke(cli.main, ["report", "merge", str(first), str(second),
                                           "--report", str(out)])
    assert result.exit_code == 0, result.output
    merged = json.loads(out.read_text())
    assert merged["command"] == "migrate" and merged["ok"]
    assert merged["counts"]["runs"] == {OK: 2, SKIPPED: 1, PLANNED: 0, FAILED: 0}
    assert merged["id_map"] == {"runs": {"a": "A", "b": "B", "c": "C"}, "experiments": {"1": "7"}}
    assert merged["half_written"] == {"runs": ["x", "y"], "logged_models": ["m"]}
    assert merged["metric_histories"] == {"path": "rest", "runs": 3, "points": 520}
    assert merged["target"] == "http://t" and "bundle" not in merged  # alike, or not kept
    assert [m["report"] for m in merged["merged"]] == [str(first), str(second)]
    assert Report.read(out).counts() == merge_reports([first, second]).counts()

    failed = _shard_report(tmp_path / "3.json", "migrate", [("runs", "d", FAILED)], {})
    result = CliRunner().invoke(cli.main, ["report", "merge", str(first), str(failed),
                                           "--output", "json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["counts"]["runs"][FAILED] == 1
    assert "FAILED run d: boom" in result.stderr


def test_report_merge_refuses_a_file_that_is_no_report(tmp_path):
    (tmp_path / "x.json").write_text('{"not": "a report"}')
    result = CliRunner().invoke(cli.main, ["report", "merge", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "x.json: not a report of mlflow-exim" in result.stderr
