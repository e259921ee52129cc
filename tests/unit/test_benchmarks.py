"""The benchmark's workload and its CPU accounting, without servers."""

import os
import signal
import subprocess
import sys

from benchmarks import compare, timeline


def test_team_workload_has_the_issues_shape():
    shapes = compare._team_shapes(model_files=110)
    assert len(shapes) == compare.TEAM_TRAINING
    assert sum(len(histories) for histories, _ in shapes) == compare.TEAM_HISTORIES
    assert sum(sum(histories.values()) for histories, _ in shapes) == compare.TEAM_POINTS
    assert sum(files for _, files in shapes) + 110 == compare.TEAM_FILES
    assert shapes == compare._team_shapes(model_files=110)  # the same every time
    kinds = "".join(k for _, k in compare._team_models())
    assert (len(compare._team_models()), len(kinds), kinds.count("l")) == (9, 21, 11)


# A group leader whose child burns half a CPU second, is reaped, and then the leader waits
# for its line to be read: the child's time is in the leader's cutime.
BUSY = ("import subprocess, sys, time; subprocess.run([sys.executable, '-c', "
        "'import time\\nwhile time.process_time() < 0.5: pass']); print('done', flush=True); "
        "time.sleep(600)")


def test_group_cpu_counts_reaped_children_of_the_group():
    leader = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert leader.stdout.readline() == "done\n"
        assert compare.group_cpu(leader.pid) >= 0.45  # whole clock ticks, rounded down
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_the_timeline_gives_each_interval_its_servers_shares_and_events():
    samples = [(100.0, 5.0, 1.0), (101.0, 5.5, 2.0), (103.0, 5.5, 3.0)]
    events = [{"event": "export-start", "part": "part-1-of-2", "at": 100.2},
              {"event": "import-start", "part": "part-1-of-2", "at": 101.0},
              {"event": "export-end", "part": "part-2-of-2", "at": 102.9}]
    lines = timeline.timeline(samples, events, start=99.5)
    assert [line.split() for line in lines[1:]] == [
        ["0.5", "50", "100", "export-start", "part-1-of-2"],
        ["1.5", "0", "50", "import-start", "part-1-of-2,", "export-end", "part-2-of-2"]]
