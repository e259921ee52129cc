"""Time mlflow-exim against the reference tool (mlflow-export-import) on the same data.

    python benchmarks/compare.py [--workload team|uniform] [--runs 100] [--points 1000]
        [--workers 4] [--workdir DIR] [--reference-venv PATH] [--json PATH] [--memory]

(``make bench`` runs it through benchmarks/suite.py.) It starts a source ``mlflow server``
(sqlite, proxied artifacts) and seeds it: ``--workload team`` is the team-shaped server of
the speed issue (82 runs, 157 metric histories of 75,000 points in all, 177 artifact files,
12 logged models, 9 registered models with 21 versions, always the same), ``uniform``
``--runs`` runs of four ``--points``-point histories. Then each tool runs its
``export-all`` against the source and its ``import-all`` into a fresh, empty target
server. Each command is a child process, timed, with its own peak RSS and CPU seconds, and
the CPU seconds that the server it talks to spent meanwhile (every process of the server's
process group, from /proc): the floor that the server's own work sets. After each import
the target's contents are counted against the source's. Then mlflow-exim's ``migrate``
(export and import pipelined) from the source into another fresh target, with both
servers' CPU seconds meanwhile: on a machine both servers share, its floor is the larger of
either server's CPU and half of all three processes' CPU. Last comes the ceiling: metric
points per second that raw parallel ``log_batch`` calls reach on a fresh server.

The reference tool is installed from PyPI into its own virtual environment, with the same
mlflow as here. Its current releases are published as ``databricks-mlflow-export-import``;
the ``mlflow-export-import`` name stops at 1.2.0 (2023, before MLflow 3, and it misses its
``tabulate`` dependency); ``--reference-package`` picks either. The reference's failures
are reported, not fatal: the exit status is non-zero only when mlflow-exim fails or its
target differs from the source. Timings are wall clock on a possibly shared machine, so the
load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mlflow_exim.work import paged  # noqa: E402
from tests.servers import MlflowServer  # noqa: E402

BIN = Path(sys.executable).parent
T0 = 1_700_000_000_000
METRICS = ("loss", "accuracy", "learning_rate", "grad_norm")
EXPERIMENTS = 4
REQUIREMENTS = ["mlflow", "scikit-learn"]
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass
class Step:
    """One timed child process: wall seconds, its own peak RSS and CPU seconds, and the
    CPU seconds of the server it worked against, over the same time."""

    seconds: float
    peak_mb: float
    returncode: int
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0


# --- seeding -------------------------------------------------------------------------------

# The team-shaped server of the speed issue: TEAM_TRAINING runs in EXPERIMENTS experiments
# with TEAM_HISTORIES histories of TEAM_POINTS points in all, and TEAM_VERSIONS model
# versions, alternately from a logged model and from a run's artifacts, each in a run of
# its own, plus one unregistered logged model: 60 + 21 + 1 = 82 runs, 11 + 1 = 12 logged
# models. The training runs hold the files that make TEAM_FILES with the models' files.
TEAM_TRAINING = 60
TEAM_HISTORIES = 157
TEAM_POINTS = 75_000
TEAM_VERSIONS = (3, 3, 3, 3, 2, 2, 2, 2, 1)
TEAM_FILES = 177


def _run_files(files: Path, index: int, points: int, count: int) -> None:
    """Up to 3 small files (one in a subdirectory) to log as a run's artifacts."""
    (files / "plots").mkdir(parents=True)
    made = [("summary.json", json.dumps({"run": index, "points": points})),
            ("notes.txt", f"run {index}\n" * 50),
            ("plots/curve.csv", "\n".join(f"{s},{1 / (s + 1)}" for s in range(200)))]
    for name, text in made[:count]:
        (files / name).write_text(text)


def _seed_run(client: MlflowClient, experiment_id: str, index: int,
              histories: dict[str, int], files: int, parent_id: str | None,
              scratch: Path) -> str:
    """One run: 10 params, 5 tags, a history of ``histories[key]`` points per key, and
    ``files`` files (at most 3)."""
    tags = {"team": f"team-{index % 3}", "stage": "bench", "seed": str(index),
            "mlflow.user": "bench", "note": "x" * 40}
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    start = T0 + index * 60_000
    run_id = client.create_run(experiment_id, start_time=start, tags=tags,
                               run_name=f"run-{index}").info.run_id
    params = [Param(f"param_{p}", f"{index}-{p}") for p in range(10)]
    metrics = [Metric(key, float(k + 1) / (step + 1), start + step, step)
               for k, (key, points) in enumerate(histories.items()) for step in range(points)]
    client.log_batch(run_id, metrics=metrics, params=params)
    if files:
        _run_files(scratch / run_id, index, len(metrics), files)
        client.log_artifacts(run_id, str(scratch / run_id))
    client.set_terminated(run_id, "FINISHED", end_time=start + len(metrics) + 1_000)
    return run_id


def _parent(index: int) -> int | None:
    """In each experiment every fifth run is a parent; the two runs after it are its
    children (``mlflow.parentRunId``)."""
    slot = (index // EXPERIMENTS) % 5
    return index - slot * EXPERIMENTS if slot in (1, 2) else None


def _seed_runs(client: MlflowClient, shapes: list[tuple[dict[str, int], int]], workers: int,
               scratch: Path) -> None:
    """A run per (histories, files) of ``shapes`` across EXPERIMENTS experiments, parents
    before their children."""
    experiments = [client.create_experiment(f"bench-{e}", tags={"purpose": "benchmark"})
                   for e in range(EXPERIMENTS)]
    ids: dict[int, str] = {}

    def one(index: int) -> str:
        parent = _parent(index)
        return _seed_run(client, experiments[index % EXPERIMENTS], index, *shapes[index],
                         None if parent is None else ids[parent], scratch)

    runs = len(shapes)
    with ThreadPoolExecutor(workers) as pool:
        for wave in ([i for i in range(runs) if _parent(i) is None],
                     [i for i in range(runs) if _parent(i) is not None]):
            ids.update(zip(wave, pool.map(one, wave), strict=True))


def _team_shapes(model_files: int) -> list[tuple[dict[str, int], int]]:
    """The training runs: two histories each, a third in the first runs up to
    TEAM_HISTORIES, lengths drawn once from a fixed seed to sum to TEAM_POINTS, and the
    files that the models' ``model_files`` leave to make TEAM_FILES."""
    keys = [METRICS[:2] + ((METRICS[3],) if i < TEAM_HISTORIES - 2 * TEAM_TRAINING else ())
            for i in range(TEAM_TRAINING)]
    weights = np.random.default_rng(12).uniform(0.2, 1.8, TEAM_HISTORIES)
    lengths = (weights / weights.sum() * TEAM_POINTS).astype(int)
    lengths[: TEAM_POINTS - lengths.sum()] += 1
    files = TEAM_FILES - model_files
    if not 0 <= files <= 3 * TEAM_TRAINING:
        raise SystemExit(f"the models hold {model_files} files: {TEAM_FILES} cannot be made")
    drawn = iter(int(n) for n in lengths)
    return [({key: next(drawn) for key in run_keys},
             files // TEAM_TRAINING + (i < files % TEAM_TRAINING))
            for i, run_keys in enumerate(keys)]


def _train(strength: float):
    from sklearn.linear_model import LogisticRegression

    features = np.random.default_rng(7).normal(size=(40, 4))
    return LogisticRegression(C=strength).fit(features, features[:, 0] > 0)


def _seed_models(client: MlflowClient, uri: str, scratch: Path,
                 models: list[tuple[str, str]]) -> None:
    """Registered models (name, kinds): a version per kind, registered from a runs:/ URI
    (``r``: the registry stores the run's artifact path) or from an MLflow 3 logged model
    (``l``: a models:/m-… source), each from a run of its own, the last with the alias
    ``champion``; plus one logged model that is not registered."""
    mlflow.set_tracking_uri(uri)  # log_model and register_model are fluent only
    experiment_id = client.create_experiment("bench-models")
    for name, kinds in models:
        for number, kind in enumerate(kinds, 1):
            strength = float(number)
            with mlflow.start_run(experiment_id=experiment_id,
                                  run_name=f"{name}-v{number}") as run:
                mlflow.log_param("C", strength)
                model = _train(strength)
                if kind == "l":
                    mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                             pip_requirements=REQUIREMENTS)
                else:
                    path = scratch / f"{name}-{number}"
                    mlflow.sklearn.save_model(model, str(path), pip_requirements=REQUIREMENTS)
                    client.log_artifacts(run.info.run_id, str(path), "model")
                    mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        client.set_registered_model_alias(name, "champion", str(len(kinds)))
    with mlflow.start_run(experiment_id=experiment_id, run_name="unregistered"):
        mlflow.sklearn.log_model(_train(0.5), name="candidate", pip_requirements=REQUIREMENTS)


def _team_models() -> list[tuple[str, str]]:
    kinds = iter("lr" * len(TEAM_VERSIONS) * 3)
    return [(f"team-model-{m}", "".join(next(kinds) for _ in range(versions)))
            for m, versions in enumerate(TEAM_VERSIONS)]


def seed(uri: str, workload: str, runs: int, points: int, workers: int, scratch: Path) -> None:
    """``team``: the models first, whose files the training runs' files top up to
    TEAM_FILES; ``uniform``: ``runs`` runs of len(METRICS) ``points``-point histories and
    3 files, then 3 registered models with 6 versions."""
    shutil.rmtree(scratch, ignore_errors=True)
    client = MlflowClient(uri)
    if workload == "team":
        _seed_models(client, uri, scratch, _team_models())
        _seed_runs(client, _team_shapes(_count_files(client, _experiment_ids(client))),
                   workers, scratch)
    else:
        _seed_runs(client, [({key: points for key in METRICS}, 3)] * runs, workers, scratch)
        _seed_models(client, uri, scratch, [("bench-runs", "rrr"), ("bench-logged", "ll"),
                                            ("bench-mixed", "rl")])


# --- counting ------------------------------------------------------------------------------

def _experiment_ids(client: MlflowClient) -> list[str]:
    return [e.experiment_id for e in paged(client.search_experiments)]


def _tree_files(listing, path: str | None = None) -> int:
    return sum(_tree_files(listing, f.path) if f.is_dir else 1 for f in listing(path))


def _count_files(client: MlflowClient, experiment_ids: list[str]) -> int:
    """Artifact files of every run and every logged model."""
    runs = [r.info.run_id for r in paged(client.search_runs, experiment_ids)]
    models = [m.model_id for m in paged(client.search_logged_models, experiment_ids)]
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(lambda run_id: _tree_files(
            lambda path: client.list_artifacts(run_id, path)), runs)) + sum(pool.map(
                lambda model_id: _tree_files(
                    lambda path: client.list_logged_model_artifacts(model_id, path)), models))


def inventory(uri: str) -> dict:
    """What a server holds: experiments, runs, metric histories and points, artifact files
    (of runs and logged models), logged and registered models, model versions."""
    client = MlflowClient(uri)
    experiment_ids = _experiment_ids(client)
    runs = list(paged(client.search_runs, experiment_ids))
    histories = [(r.info.run_id, key) for r in runs for key in r.data.metrics]
    with ThreadPoolExecutor(4) as pool:
        points = sum(pool.map(lambda rk: len(client.get_metric_history(*rk)), histories))
    return {
        "experiments": len(experiment_ids),
        "runs": len(runs),
        "metric_histories": len(histories),
        "metric_points": points,
        "artifact_files": _count_files(client, experiment_ids),
        "logged_models": sum(1 for _ in paged(client.search_logged_models, experiment_ids)),
        "registered_models": sum(1 for _ in paged(client.search_registered_models)),
        "model_versions": sum(1 for _ in paged(client.search_model_versions)),
    }


# --- running the tools ---------------------------------------------------------------------

# Runs a command, sends its output to stderr and prints its peak RSS (KB) and CPU seconds
# (user + system, its reaped children's included) on stdout. The command is forked from
# this small process on purpose: a child forked straight from the benchmark process would
# report the benchmark's own, larger RSS as its peak (Linux keeps the pre-exec high-water
# mark in ru_maxrss).
LAUNCH = ("import os, subprocess, sys; child = subprocess.Popen(sys.argv[1:], stdout=2); "
          "_, status, usage = os.wait4(child.pid, 0); "
          "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime); "
          "sys.exit(os.waitstatus_to_exitcode(status))")
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in process group ``pgid``, with
    those of the children they have reaped (a process that ended and was not reaped is
    missed: a server's workers are reaped by its master)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ...
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def timed(argv: list[str], log: Path, env: dict | None = None,
          server_pgid: int | None = None) -> Step:
    """Run ``argv`` to completion: its wall time, its own peak RSS and CPU seconds, and the
    CPU seconds that process group ``server_pgid`` spent meanwhile."""
    before = group_cpu(server_pgid) if server_pgid else 0.0
    with log.open("w") as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-S", "-c", LAUNCH, *argv], stdout=subprocess.PIPE,
                              stderr=out, text=True, env={**os.environ, **(env or {})})
        seconds = time.perf_counter() - start
    server_cpu = group_cpu(server_pgid) - before if server_pgid else 0.0
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"  ! exited {done.returncode}, log {log}:\n{tail}", flush=True)
    peak_kb, cpu = done.stdout.split()[-2:] if done.stdout.strip() else (0, 0)
    return Step(round(seconds, 2), round(int(peak_kb) / 1024, 1), done.returncode,
                round(float(cpu), 1), round(server_cpu, 1))


def reference_venv(path: Path, package: str, mlflow_version: str, log: Path) -> str:
    """Install ``package`` and ``mlflow==mlflow_version`` into a venv at ``path`` (kept and
    reused when it already holds exactly that), and return the package's version."""
    spec = f"{package} mlflow=={mlflow_version}"
    marker = path / "bench-installed.txt"
    if not (marker.exists() and marker.read_text() == spec):
        print(f"installing {spec} into {path} …", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        with log.open("w") as out:
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True,
                           stdout=out, stderr=subprocess.STDOUT)
            subprocess.run([str(path / "bin" / "pip"), "install", "--quiet",
                            "--disable-pip-version-check", *spec.split()], check=True,
                           stdout=out, stderr=subprocess.STDOUT)
        marker.write_text(spec)
    name = package.split("==")[0]
    return subprocess.run([str(path / "bin" / "python"), "-c",
                           f"import importlib.metadata as m; print(m.version({name!r}))"],
                          check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def server(name: str, work: Path, fresh: bool = True):
    """An ``mlflow server`` with its own sqlite db and artifacts directory (its process, in
    a session of its own, leads its process group). ``fresh``: what an earlier run left
    under that name is removed first."""
    if fresh:
        (work / f"{name}.db").unlink(missing_ok=True)
        shutil.rmtree(work / f"{name}-artifacts", ignore_errors=True)
    srv = MlflowServer(name, work, str(work / f"{name}-artifacts"), env=SERVER_ENV)
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


@contextmanager
def seeded_source(work: Path, workload: str, runs: int, points: int, workers: int):
    """The source server of ``workload`` (see :func:`seed`) and its inventory. A source
    seeded by an earlier run in ``work`` with the same workload is kept (the exports only
    read it); the marker is written once seeding has finished."""
    marker = work / "source-seeded.json"
    shape = {"workload": workload, "mlflow": mlflow.__version__,
             **({} if workload == "team" else {"runs": runs, "points": points})}
    seeded = json.loads(marker.read_text()) if marker.exists() else {}
    reuse = seeded.get("workload") == shape
    with server("source", work, fresh=not reuse) as src:
        if reuse:
            source = seeded["inventory"]
            print(f"source seeded by an earlier run: {source}", flush=True)
        else:
            marker.unlink(missing_ok=True)
            start = time.perf_counter()
            (work / "logs").mkdir(exist_ok=True)
            with (work / "logs" / "seed.log").open("w") as out, redirect_stdout(out), \
                    redirect_stderr(out):
                seed(src.uri, workload, runs, points, workers, work / "seed-files")
            source = inventory(src.uri)
            marker.write_text(json.dumps({"workload": shape, "inventory": source}))
            print(f"seeded in {time.perf_counter() - start:.1f} s: {source}", flush=True)
        yield src, source


def revision() -> str | None:
    """This checkout's commit, with "-dirty" when it has uncommitted changes."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                              check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _load() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def dir_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


# --- the ceiling ---------------------------------------------------------------------------

def ceiling(uri: str, workers: int, total: int) -> float:
    """Metric points per second of ``total`` points sent as log_batch calls of 1,000
    metrics from ``workers`` threads (each its own client) to one fresh run."""
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("ceiling")).info.run_id
    batches: list[list[list[Metric]]] = [[] for _ in range(workers)]
    for call in range(total // 1000):
        key = f"m{call % workers}"
        batches[call % workers].append([Metric(key, float(s), T0 + s, s)
                                        for s in range(call * 1000, call * 1000 + 1000)])

    def send(mine: list[list[Metric]]) -> None:
        store = MlflowClient(uri)._tracking_client.store
        for batch in mine:
            store.log_batch(run_id, metrics=batch, params=[], tags=[])

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, batches))
    return (total // 1000) * 1000 / (time.perf_counter() - start)


# --- main ----------------------------------------------------------------------------------

def commands(options: argparse.Namespace, venv: Path, ref_name: str) -> dict:
    """Each tool's label and its export-all and import-all argv, given (server URI, dir)."""
    workers = [] if options.no_workers_flag else ["--workers", str(options.workers)]
    exim = str(BIN / "mlflow-exim")
    ref = venv / "bin"
    return {
        "mlflow-exim": {
            "label": "mlflow-exim " + (" ".join(workers) or "(no --workers)"),
            "export": lambda uri, out: [exim, "export-all", "--output-dir", out,
                                        "--tracking-uri", uri, *workers],
            "import": lambda uri, out: [exim, "import-all", "--input-dir", out,
                                        "--tracking-uri", uri, *workers],
            "migrate": lambda src, dst: [exim, "migrate", "--src-uri", src, "--dst-uri", dst,
                                         *workers],
        },
        # The reference reads its server from MLFLOW_TRACKING_URI only; its thread pool has
        # os.cpu_count() threads, and it has no option to choose the number.
        "reference": {
            "label": f"{ref_name} (--use-threads True)",
            "export": lambda uri, out: [str(ref / "export-all"), "--output-dir", out,
                                        "--use-threads", "True"],
            "import": lambda uri, out: [str(ref / "import-all"), "--input-dir", out,
                                        "--use-threads", "True"],
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("team", "uniform"), default="team",
                        help="the team-shaped server of the speed issue, or --runs runs of "
                             "--points points per history (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=100,
                        help="uniform: runs to seed (default 100)")
    parser.add_argument("--points", type=int, default=1000,
                        help=f"uniform: points per metric history, {len(METRICS)} per run "
                             "(default 1000)")
    parser.add_argument("--workers", type=int, default=4,
                        help="mlflow-exim --workers and ceiling threads (default 4)")
    parser.add_argument("--no-workers-flag", action="store_true",
                        help="do not pass --workers to mlflow-exim (for builds without it)")
    parser.add_argument("--workdir", type=Path,
                        help="where servers, bundles and logs go (default: a temp dir, "
                             "removed after a clean run)")
    parser.add_argument("--reference-venv", type=Path,
                        help="virtual environment for the reference tool, created if "
                             "missing and reused (default: WORKDIR/reference-venv)")
    parser.add_argument("--reference-package", default="databricks-mlflow-export-import",
                        help="pip requirement of the reference tool (default: %(default)s)")
    parser.add_argument("--reference-mlflow", default=mlflow.__version__,
                        help="mlflow pinned in the reference venv (default: %(default)s)")
    parser.add_argument("--ceiling-points", type=int, default=400_000,
                        help="metric points for the log_batch ceiling (default 400000)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--memory", action="store_true",
                        help="also run benchmarks/metric_memory.py (peak RSS against "
                             "history length)")
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> dict:
    """The whole comparison; prints the report and returns the results (with the derived
    figures). The work dir is kept unless it was a temporary one and all went well."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    work = (options.workdir or Path(tempfile.mkdtemp(prefix="mlflow-exim-bench-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    print(f"work dir {work}", flush=True)
    venv = (options.reference_venv or work / "reference-venv").absolute()
    ref_version = reference_venv(venv, options.reference_package, options.reference_mlflow,
                                 logs / "reference-install.log")
    ref_name = f"{options.reference_package.split('==')[0]} {ref_version}"
    tools = commands(options, venv, ref_name)
    results: dict = {"workload": options.workload, "runs": options.runs,
                     "points": options.points,
                     "workers": options.workers, "revision": revision(),
                     "mlflow": mlflow.__version__, "reference": ref_name, "tools": {},
                     "load_average_start": _load()}
    for name in tools:
        shutil.rmtree(work / f"bundle-{name}", ignore_errors=True)

    with seeded_source(work, options.workload, options.runs, options.points,
                       options.workers) as (src, source):
        for name, tool in tools.items():
            bundle = str(work / f"bundle-{name}")
            print(f"{name}: export-all …", flush=True)
            step = timed(tool["export"](src.uri, bundle), logs / f"{name}-export.log",
                         {"MLFLOW_TRACKING_URI": src.uri}, src.proc.pid)
            results["tools"][name] = {"label": tool["label"], "export": asdict(step),
                                      "bundle_mb": dir_mb(Path(bundle))}
    results["source"] = source

    for name, tool in tools.items():
        with server(f"target-{name}", work) as dst:
            print(f"{name}: import-all …", flush=True)
            step = timed(tool["import"](dst.uri, str(work / f"bundle-{name}")),
                         logs / f"{name}-import.log", {"MLFLOW_TRACKING_URI": dst.uri},
                         dst.proc.pid)
            results["tools"][name].update({"import": asdict(step),
                                           "target": inventory(dst.uri)})

    with server("source", work, fresh=False) as src, server("target-migrate", work) as dst:
        print("mlflow-exim: migrate (pipelined) …", flush=True)
        target_before = group_cpu(dst.proc.pid)
        step = timed(tools["mlflow-exim"]["migrate"](src.uri, dst.uri),
                     logs / "mlflow-exim-migrate.log", server_pgid=src.proc.pid)
        results["migrate"] = {**asdict(step), "source_cpu_s": step.server_cpu_s,
                              "target_cpu_s": round(group_cpu(dst.proc.pid) - target_before, 1),
                              "target": inventory(dst.uri)}

    with server("target-ceiling", work) as dst:
        print("ceiling: parallel log_batch …", flush=True)
        results["ceiling"] = {"points": options.ceiling_points, "threads": options.workers,
                              "points_per_s": round(ceiling(dst.uri, options.workers,
                                                            options.ceiling_points))}

    results["load_average_end"] = _load()
    report(results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    if options.memory:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "metric_memory.py"),
                        "--workdir", str(work / "metric-memory")], check=True)
    results["clean"] = _clean(results["tools"]["mlflow-exim"], source) and \
        results["migrate"]["returncode"] == 0 and results["migrate"]["target"] == source
    if not results["clean"]:
        print(f"mlflow-exim did not finish cleanly; logs kept in {logs}", flush=True)
    elif options.workdir is None:
        shutil.rmtree(work)
    return results


def main() -> None:
    if not run(parse_args())["clean"]:
        sys.exit(1)


def _clean(tool: dict, source: dict) -> bool:
    """Both commands exited 0 and the target holds what the source holds."""
    return tool["export"]["returncode"] == tool["import"]["returncode"] == 0 \
        and tool["target"] == source


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def report(results: dict) -> None:
    """Print the table, the counts and the ceiling; add the derived figures to ``results``."""
    source = results["source"]
    print(f"\nworkload {results['workload']}: {source['runs']} runs, "
          f"{source['metric_histories']} metric histories with {source['metric_points']:,} "
          f"points, {source['artifact_files']} artifact files, {source['logged_models']} "
          f"logged models, {source['registered_models']} registered models with "
          f"{source['model_versions']} versions")
    print("each phase: wall s, the server's CPU s meanwhile (export: the source's, import: "
          "the target's), the client's own CPU s, wall / server CPU")
    print(f"{'tool':<52} {'export':>24} {'import':>24} {'total s':>8} "
          f"{'peak MB':>9} {'bundle MB':>9}  exit")
    for tool in results["tools"].values():
        export, imp = tool["export"], tool["import"]
        tool["total_s"] = round(export["seconds"] + imp["seconds"], 2)
        tool["server_cpu_s"] = round(export["server_cpu_s"] + imp["server_cpu_s"], 1)
        cells = []
        for phase in (export, imp):
            phase["wall_over_server_cpu"] = _ratio(phase["seconds"], phase["server_cpu_s"])
            cells.append(f"{phase['seconds']:.1f} {phase['server_cpu_s']:.1f} "
                         f"{phase['cpu_s']:.1f} {phase['wall_over_server_cpu']:.2f}x")
        print(f"{tool['label']:<52} {cells[0]:>24} {cells[1]:>24} {tool['total_s']:>8.1f} "
              f"{export['peak_mb']:>4.0f}/{imp['peak_mb']:<4.0f} {tool['bundle_mb']:>9.1f}"
              f"  {export['returncode']}/{imp['returncode']}")
    exim, ref = results["tools"]["mlflow-exim"], results["tools"]["reference"]
    ratio = _ratio(ref["total_s"], exim["total_s"])
    results["ratio_total_reference_over_exim"] = ratio
    results["ratio_total_exim_over_server_cpu"] = _ratio(exim["total_s"], exim["server_cpu_s"])
    caveat = "" if _clean(ref, source) and _clean(exim, source) else \
        " (not like for like: a tool failed or its target differs, see below)"
    print(f"reference / mlflow-exim, total time: {ratio:.2f}x (export "
          f"{_ratio(ref['export']['seconds'], exim['export']['seconds']):.2f}x, import "
          f"{_ratio(ref['import']['seconds'], exim['import']['seconds']):.2f}x){caveat}")
    print(f"mlflow-exim / server-CPU floor, total time: "
          f"{results['ratio_total_exim_over_server_cpu']:.2f}x (the floor: the CPU seconds "
          "its export and import made the servers spend)")
    print(f"mlflow-exim at {results['revision']}, mlflow {results['mlflow']}; "
          f"load average (1, 5, 15 min) at start {results['load_average_start']}, "
          f"at end {results['load_average_end']}")
    migrate = results["migrate"]
    floor = max(migrate["source_cpu_s"], migrate["target_cpu_s"],
                (migrate["source_cpu_s"] + migrate["target_cpu_s"] + migrate["cpu_s"]) / 2)
    results["migrate_floor_s"] = round(floor, 1)
    print(f"mlflow-exim migrate (pipelined): {migrate['seconds']:.1f} s against "
          f"{exim['total_s']:.1f} s for its export-all + import-all "
          f"({_ratio(exim['total_s'], migrate['seconds']):.2f}x); the servers' CPU meanwhile "
          f"{migrate['source_cpu_s']:.1f} s (source) and {migrate['target_cpu_s']:.1f} s "
          f"(target), the client's {migrate['cpu_s']:.1f} s: on these 2 cores its floor is "
          f"{floor:.1f} s ({_ratio(migrate['seconds'], floor):.2f}x); exit "
          f"{migrate['returncode']}")
    print("\ncounts on each target (source first):")
    keys = list(source)
    print(f"  {'':<14}" + "".join(f"{k:>18} " for k in keys))
    print(f"  {'source':<14}" + "".join(f"{source[k]:>18,} " for k in keys))
    for name, tool in results["tools"].items():
        target = tool["target"]
        cells = "".join(f"{target[k]:>18,}{' ' if target[k] == source[k] else '!'}"
                        for k in keys)
        verdict = "same as source" if tool["target"] == source else "DIFFERS (marked !)"
        print(f"  {name:<14}{cells}   {verdict}")
    target = results["migrate"]["target"]
    cells = "".join(f"{target[k]:>18,}{' ' if target[k] == source[k] else '!'}" for k in keys)
    print(f"  {'migrate':<14}{cells}   "
          f"{'same as source' if target == source else 'DIFFERS (marked !)'}")

    ceiling_pps = results["ceiling"]["points_per_s"]
    import_s = exim["import"]["seconds"]
    pps = round(source["metric_points"] / import_s)
    results["exim_import_points_per_s"] = pps
    results["exim_import_pct_of_ceiling"] = round(100 * pps / ceiling_pps, 1)
    print(f"\nceiling: {ceiling_pps:,} metric points/s (log_batch of 1,000 from "
          f"{results['ceiling']['threads']} threads, {results['ceiling']['points']:,} points)")
    print(f"mlflow-exim import: {source['metric_points']:,} points in {import_s:.1f} s = "
          f"{pps:,} points/s = {results['exim_import_pct_of_ceiling']}% of the ceiling "
          "(the import also carries params, tags, artifacts and models)")


if __name__ == "__main__":
    main()
