"""report: outcomes, exit codes, summaries, and the report file, with credentials redacted."""

from __future__ import annotations

import json
import re

import pytest

from mlflow_exim.report import Report


def _sample_report() -> Report:
    report = Report("import-test")
    with report.track("runs", "r1", "first") as outcome:
        outcome.target_id = "t1"
    with report.track("runs", "r2"):
        raise RuntimeError("cannot reach http://ann:secret@host:5000/api\n  after retries")
    with report.track("experiments", "1"):
        pass
    return report


def test_report_track_records_outcomes_without_reraising():
    ok, failed, _ = _sample_report().outcomes
    assert (ok.status, ok.target_id, ok.name, ok.reason) == ("ok", "t1", "first", None)
    assert failed.status == "failed"
    assert failed.reason == ("RuntimeError: cannot reach http://***@host:5000/api "
                             "after retries")


def test_report_track_lets_keyboard_interrupt_through():
    with pytest.raises(KeyboardInterrupt), Report("x").track("runs", "r1"):
        raise KeyboardInterrupt


def test_report_exit_code_counts_and_summary():
    empty = Report("import-test")
    assert (empty.ok, empty.exit_code, empty.counts()) == (True, 0, {})
    report = _sample_report()
    assert (report.ok, report.exit_code) == (False, 1)
    assert report.counts() == {"runs": {"ok": 1, "skipped": 0, "planned": 0, "failed": 1},
                               "experiments": {"ok": 1, "skipped": 0, "planned": 0, "failed": 0}}
    summary = report.summary().splitlines()
    assert re.fullmatch(r"import-test: 1 failed in \d+\.\d s", summary[0])
    assert summary[1].split() == ["ok", "skipped", "planned", "failed"]
    assert summary[2].split() == ["experiments", "1", "0", "0", "0"]
    assert summary[3].split() == ["runs", "1", "0", "0", "1"]
    assert "FAILED run r2: RuntimeError: cannot reach http://***@host" in summary[4]
    assert "secret" not in "\n".join(summary)
    assert re.fullmatch(r"import-test: ok in \d+\.\d s", empty.summary())


def test_report_fail_and_warn_redact():
    report = Report("x")
    report.fail("runs", "r9", "lost https://u:pw@h/x")
    with report.track("runs", "r10") as outcome:
        outcome.warn("slow http://u:pw@h")
    assert report.failures[0].reason == "lost https://***@h/x"
    assert report.outcomes[1].warnings == ["slow http://***@h"]


def test_report_write(tmp_path):
    report = _sample_report()
    report.extra["id_map"] = {"runs": {"r1": "t1"}}
    path = tmp_path / "report.json"
    report.write(path)
    data = json.loads(path.read_text())
    assert data["command"] == "import-test" and data["ok"] is False
    assert [(o["kind"], o["source_id"], o["status"]) for o in data["objects"]] == [
        ("runs", "r1", "ok"), ("runs", "r2", "failed"), ("experiments", "1", "ok")]
    assert data["id_map"] == {"runs": {"r1": "t1"}}
    assert "secret" not in path.read_text()
