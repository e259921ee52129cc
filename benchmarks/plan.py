"""How long an export plans before it can write, by the number of runs on the source.

    python benchmarks/plan.py [--runs 1000,5000,10000] [--workdir DIR]

An export's plan lists the experiments, every page of their runs, the logged models, the
registered models with their versions. ``export-all`` and ``export-experiments`` stream
it: writing starts with the first page of runs, and the rest is planned while objects are
written; a sharded export and ``migrate`` (whose chunks are cut from the
whole plan) plan it all first. This seeds one source ``mlflow server`` (sqlite, kept in
``--workdir`` and topped up between sizes) with small runs (8 tags, 8 params, 4 one-point
metrics) in 5 experiments, and times, in this process, the plan of an ``export-all`` of
all of it at each size: until its first step is planned (when a streaming export starts
writing) and until all of it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.compare import server  # noqa: E402
from mlflow_exim import exporter  # noqa: E402
from mlflow_exim.work import paged  # noqa: E402

EXPERIMENTS = 5


def _top_up(uri: str, runs: int) -> None:
    """Add small runs until the source holds ``runs``."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in paged(client.search_experiments)
                   if e.name.startswith("plan-")]
    while len(experiments) < EXPERIMENTS:
        experiments.append(client.create_experiment(f"plan-{len(experiments)}"))
    have = sum(1 for _ in paged(client.search_runs, experiments))
    store = client._tracking_client.store

    def one(index: int) -> None:
        run = store.create_run(experiments[index % EXPERIMENTS], "bench", 1,
                               [RunTag(f"tag{k}", "value") for k in range(8)], f"run-{index}")
        store.log_batch(run.info.run_id, [Metric(f"metric{k}", 1.0, 1, 0) for k in range(4)],
                        [Param(f"param{k}", "1") for k in range(8)], [])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(have, runs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1000,5000,10000",
                        help="comma list of source sizes, in runs (ascending)")
    parser.add_argument("--workdir", type=Path, default=Path("bench-work/plan"))
    options = parser.parse_args()
    options.workdir.mkdir(parents=True, exist_ok=True)
    with server("source", options.workdir, fresh=False) as src:
        for runs in sorted(int(n) for n in options.runs.split(",")):
            _top_up(src.uri, runs)
            start = time.perf_counter()
            plan, _, (planning, _) = exporter._plan_all(src.uri, False, "all", "all", None,
                                                        exporter.DEFAULT_WORKERS, None, None,
                                                        stream=True)
            next(planning)
            first = time.perf_counter() - start
            for _ in planning:
                pass
            seconds = time.perf_counter() - start
            print(json.dumps({"runs": runs, "planned_runs": len(plan.items["runs"]),
                              "first_step_s": round(first, 2), "plan_s": round(seconds, 2),
                              "ms_per_run": round(1000 * seconds / runs, 2),
                              "load_average": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
