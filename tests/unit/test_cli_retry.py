"""cli: a command with one side takes its retry settings as --attempts and --timeout."""

from __future__ import annotations

import os

from click.testing import CliRunner

from mlflow_exim import cli


def test_attempts_and_timeout_reach_mlflows_environment_of_the_process(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")  # restored after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "70")
    result = CliRunner().invoke(cli.export_run_command, [
        "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--run-id", "x",
        "--output-dir", str(tmp_path / "out"), "--attempts", "3", "--timeout", "5"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert (os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"],
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) == ("2", "5")
    refused = CliRunner().invoke(cli.import_all_command, [
        "--input-dir", str(tmp_path), "--attempts", "0"])
    assert refused.exit_code == 2 and "--attempts" in refused.output
