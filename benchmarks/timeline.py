"""Where a pipelined ``migrate`` spends its time: each server's CPU, interval by interval,
beside the parts' events.

    python benchmarks/timeline.py [--workdir DIR] [--workers 4] [--interval 1.0]

It seeds the team-shaped source of compare.py (or reuses the one an earlier run left in
``--workdir``, as compare.py does), starts a fresh, empty target, and runs ``mlflow-exim
migrate`` between them with its parts directory kept, while it reads the CPU seconds of
each server's process group from /proc every ``--interval`` seconds. It prints one line
per interval: each server's share of one core (a server with ``--workers 1`` cannot use
more) and the events of the parts directory in it (a part's export or import starting or
ending). A target below 100% while the export still runs is time that the pipeline loses
on a machine the servers and the client share; after the export ends, the target alone
sets the pace.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.compare import BIN, group_cpu, seeded_source, server, timed  # noqa: E402
from mlflow_exim.bundle.parts import EVENTS_FILE  # noqa: E402


def sample(pgids: list[int], interval: float, stop: threading.Event) -> list[tuple]:
    """(Unix time, CPU seconds of each process group) every ``interval`` seconds until
    ``stop`` is set, and once more then."""
    samples: list[tuple] = []
    while True:
        samples.append((time.time(), *(group_cpu(pgid) for pgid in pgids)))
        if stop.wait(interval):
            samples.append((time.time(), *(group_cpu(pgid) for pgid in pgids)))
            return samples


def timeline(samples: list[tuple], events: list[dict], start: float) -> list[str]:
    """One line per interval: its start (seconds after ``start``), each group's share of
    one core, and the events that fell in it."""
    lines = [f"{'t s':>6} {'source %':>9} {'target %':>9}  events"]
    for before, after in pairwise(samples):
        span = after[0] - before[0]
        shares = [100 * (b - a) / span for a, b in zip(before[1:], after[1:], strict=True)]
        inside = [f"{e['event']} {e['part']}" for e in events
                  if before[0] <= e["at"] < after[0]]
        lines.append(f"{before[0] - start:6.1f} " + " ".join(f"{s:9.0f}" for s in shares)
                     + ("  " + ", ".join(inside) if inside else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-work/timeline"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    options = parser.parse_args()
    work = options.workdir.absolute()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    parts = work / "migrate-bundle"
    shutil.rmtree(parts, ignore_errors=True)
    with seeded_source(work, "team", 0, 0, options.workers) as (src, _), \
            server("target", work) as dst:
        stop = threading.Event()
        found: list[list[tuple]] = []
        sampler = threading.Thread(target=lambda: found.append(
            sample([src.proc.pid, dst.proc.pid], options.interval, stop)))
        start = time.time()
        sampler.start()
        step = timed([str(BIN / "mlflow-exim"), "migrate", "--src-uri", src.uri, "--dst-uri",
                      dst.uri, "--bundle-dir", str(parts), "--workers", str(options.workers)],
                     work / "logs" / "migrate.log", env={"MLFLOW_DISABLE_TELEMETRY": "true"})
        stop.set()
        sampler.join()
    events = [json.loads(line) for line in
              (parts / "bundle" / EVENTS_FILE).read_text().splitlines() if line.strip()]
    print("\n".join(timeline(found[0], events, start)))
    samples = found[0]
    print(f"migrate: {step.seconds} s, exit {step.returncode}; CPU s: source "
          f"{samples[-1][1] - samples[0][1]:.1f}, target {samples[-1][2] - samples[0][2]:.1f}, "
          f"client {step.cpu_s}")
    sys.exit(step.returncode)


if __name__ == "__main__":
    main()
