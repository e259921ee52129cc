"""Every speed and memory figure that README quotes, from one run (``make bench``).

    python benchmarks/suite.py [--quick] [--workdir DIR] [--reference-venv PATH]
        [--postgres] [--mysql] [--json PATH]

1. benchmarks/compare.py on the team-shaped workload: mlflow-exim and the reference tool,
   export-all and import-all, with the CPU seconds each phase made its server spend, the
   client's own; mlflow-exim's pipelined migrate beside them; and the log_batch ceiling.
2. benchmarks/database_path.py, where this checkout has it: one run of a million points
   over REST and through the direct-database path, and the database driver's own insert
   rate of the same rows (skipped, with a line, where the file is absent).
3. benchmarks/metric_memory.py: each command's peak RSS at 1,000 and 1,000,000 points,
   on embedded stores (the direct-database path), then through servers (REST).

``--quick`` keeps the team workload (both tools) and shrinks the rest: a ceiling of 50,000
points and 100,000 points for the database and memory runs. The load average is printed
beside each part: other work on the machine slows every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import compare, metric_memory  # noqa: E402

DATABASE_PATH = ROOT / "benchmarks" / "database_path.py"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: smaller ceiling, database and memory runs")
    parser.add_argument("--workdir", type=Path, default=Path("bench-work/suite"),
                        help="servers, bundles and logs (default: %(default)s)")
    parser.add_argument("--reference-venv", type=Path,
                        help="the reference tool's virtual environment (compare.py's option)")
    parser.add_argument("--postgres", action="store_true",
                        help="database_path.py on PostgreSQL as well as sqlite")
    parser.add_argument("--mysql", action="store_true",
                        help="database_path.py on MariaDB (MySQL's dialect) as well")
    parser.add_argument("--json", type=Path, help="also write every result here as JSON")
    return parser.parse_args()


def _part(title: str) -> float:
    print(f"\n=== {title} (load average {compare._load()}) ===", flush=True)
    return time.perf_counter()


def database_path(points: int, servers: list[str], work: Path) -> dict | None:
    """database_path.py's results (``servers``: its flags for database servers beside
    sqlite), or None where this checkout does not have it."""
    if not DATABASE_PATH.exists():
        print(f"skipped: {DATABASE_PATH.relative_to(ROOT)} is not in this checkout")
        return None
    work.mkdir(parents=True, exist_ok=True)
    out = work / "database-path.json"
    subprocess.run([sys.executable, str(DATABASE_PATH), "--points", str(points),
                    *servers, "--workdir", str(work),
                    "--json", str(out)], check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> None:
    options = parse_args()
    work = options.workdir.absolute()
    big = 100_000 if options.quick else 1_000_000
    results: dict = {"quick": options.quick, "load_average_start": compare._load()}
    started = _part("mlflow-exim and the reference tool, team-shaped workload")
    argv = ["--workload", "team", "--workdir", str(work / "compare"),
            "--ceiling-points", "50000" if options.quick else "400000"]
    if options.reference_venv:
        argv += ["--reference-venv", str(options.reference_venv)]
    results["compare"] = compare.run(compare.parse_args(argv))
    results["compare_s"] = round(time.perf_counter() - started)

    started = _part(f"REST and direct-database paths, one run of {big:,} points")
    servers = [flag for flag, wanted in (("--postgres", options.postgres),
                                         ("--mysql", options.mysql)) if wanted]
    results["database_path"] = database_path(big, servers, work / "database-path")
    results["database_path_s"] = round(time.perf_counter() - started)

    started = _part("peak memory against history length (embedded sqlite stores)")
    results["memory"] = metric_memory.sizes([1_000, big], work / "metric-memory")
    results["memory_s"] = round(time.perf_counter() - started)

    started = _part("peak memory against history length (REST, through servers)")
    results["memory_rest"] = metric_memory.sizes([1_000, big], work / "metric-memory-rest",
                                                 rest=True)
    results["memory_rest_s"] = round(time.perf_counter() - started)

    results["load_average_end"] = compare._load()
    summary(results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    if not results["compare"]["clean"]:
        sys.exit(1)


def summary(results: dict) -> None:
    """The ratios the speed issue asks for, each with what it is against."""
    exim = results["compare"]["tools"]["mlflow-exim"]
    print(f"\n=== summary (load average at start {results['load_average_start']}, "
          f"at end {results['load_average_end']}) ===")
    print(f"team workload, export + import: mlflow-exim {exim['total_s']:.1f} s; the "
          f"reference takes {results['compare']['ratio_total_reference_over_exim']:.2f}x as "
          f"long; mlflow-exim takes {results['compare']['ratio_total_exim_over_server_cpu']:.2f}x"
          f" the {exim['server_cpu_s']:.1f} CPU s it made the servers spend")
    migrate, floor = results["compare"]["migrate"], results["compare"]["migrate_floor_s"]
    print(f"team workload, migrate (pipelined): {migrate['seconds']:.1f} s, "
          f"{migrate['seconds'] / floor:.2f}x the {floor:.1f} s that the servers' CPU sets "
          f"on these 2 cores (source {migrate['source_cpu_s']:.1f}, target "
          f"{migrate['target_cpu_s']:.1f}, client {migrate['cpu_s']:.1f} CPU s)")
    for path, memory in (("database path", results["memory"]),
                         ("REST", results["memory_rest"])):
        peaks = [max(row["export_mb"], row["import_mb"]) for row in memory]
        print(f"peak RSS, {path}: {peaks[0]} MB at {memory[0]['points']:,} points, "
              f"{peaks[-1]} MB at {memory[-1]['points']:,} ({peaks[-1] - peaks[0]:+} MB)")
    print(f"took {results['compare_s']} s + {results['database_path_s']} s + "
          f"{results['memory_s']} s + {results['memory_rest_s']} s")


if __name__ == "__main__":
    main()
