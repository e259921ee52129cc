"""The export's plan: what it keeps of an experiment whose listing fails part way."""

from __future__ import annotations

from mlflow.entities import Experiment, Run, RunData, RunInfo
from mlflow.exceptions import MlflowException

from mlflow_exim import exporter
from mlflow_exim.report import FAILED


def _run(run_id: str) -> Run:
    return Run(RunInfo(run_id=run_id, experiment_id="1", user_id="u", status="FINISHED",
                       start_time=1, end_time=2, lifecycle_stage="active",
                       artifact_uri=f"file:///store/1/{run_id}/artifacts", run_name=run_id),
               RunData(metrics=[], params=[], tags=[]))


def _plan_of(*pages, fail: bool) -> exporter._Plan:
    plan = exporter._Plan(src=None)
    plan._any_logged_models = True  # as a server with logged models answers

    def listing():
        yield from pages
        if fail:
            raise MlflowException("the search of runs failed")
        yield [], False  # no logged models, no traces

    steps = list(plan._add_listing(Experiment("1", "exp", "file:///store/1", "active"),
                                   listing()))
    assert len(steps) == len(pages) + (not fail)  # one step per page, and the rest
    return plan


def test_a_listing_that_fails_after_a_page_keeps_its_runs_and_fails_the_experiment():
    plan = _plan_of({"r1": _run("r1"), "r2": _run("r2")}, fail=True)
    assert plan.items["runs"] == {"r1": "1", "r2": "1"} and "1" in plan.items["experiments"]
    [failed] = plan.report.outcomes
    assert (failed.kind, failed.source_id, failed.status) == ("experiments", "1", FAILED)
    assert failed.reason == ("its listing stopped after 2 runs, which are exported: "
                             "MlflowException: the search of runs failed")


def test_a_listing_that_fails_at_once_drops_the_experiment():
    plan = _plan_of(fail=True)
    assert not plan.items["experiments"] and not plan.items["runs"]
    assert plan.report.outcomes[0].reason.startswith("cannot list its runs and logged models")


def test_a_listing_that_ends_fails_nothing():
    plan = _plan_of({"r1": _run("r1")}, {"r2": _run("r2")}, fail=False)
    assert list(plan.items["runs"]) == ["r1", "r2"] and not plan.report.outcomes
    assert plan.facts["r2"].artifact_uri == "file:///store/1/r2/artifacts"
