"""The benchmark's workload and its CPU accounting, without servers."""

import os
import signal
import subprocess
import sys

from benchmarks import compare


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
