"""A bearer token per side, and secrets that never leak: real servers behind
authenticating proxies (tests/faultproxy.py with a token), one token for the source and
another for the target, in one ``migrate``. Every file and stream the migration writes is
searched for each secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.faultproxy import FaultProxy
from tests.seed import _upload, make_run

SRC_TOKEN = "src-T0ken-" + os.urandom(6).hex()
DST_TOKEN = "dst-T0ken-" + os.urandom(6).hex()
PASSWORD = "pw-" + os.urandom(6).hex()
QUERY_SECRET = "q-" + os.urandom(6).hex()
SECRETS = (SRC_TOKEN, DST_TOKEN, PASSWORD, QUERY_SECRET)


@pytest.fixture(scope="module")
def proxies(stack):
    src, dst = FaultProxy(stack.source.uri, token=SRC_TOKEN), FaultProxy(stack.target.uri,
                                                                         token=DST_TOKEN)
    try:
        yield src, dst
    finally:
        src.close()
        dst.close()


def _migrate(config: Path, *flags, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SRC_T": SRC_TOKEN, "DST_T": DST_TOKEN, **(env or {})}
    environment.pop("MLFLOW_TRACKING_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "mlflow_exim", "migrate", "-v", "--config",
                           str(config), *map(str, flags)], env=environment,
                          capture_output=True, text=True, timeout=600)


def _leaks(tree: Path, *results: subprocess.CompletedProcess) -> list[str]:
    """Where a secret appears: files below ``tree`` and the commands' output."""
    places = [(str(p), p.read_bytes().decode("utf-8", "replace"))
              for p in tree.rglob("*") if p.is_file()]
    places += [(f"stdout of {r.args[5:]}", r.stdout) for r in results]
    places += [(f"stderr of {r.args[5:]}", r.stderr) for r in results]
    return [f"{secret[:3]}… in {where}" for where, text in places for secret in SECRETS
            if secret in text]


def test_a_token_per_side_and_no_secret_in_anything_written(stack, proxies, unique, tmp_path):
    src, dst = proxies
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-exp")
    runs = [make_run(client, experiment, f"r{i}", i) for i in range(2)]
    _upload(client, runs[0], {"model/weights.txt": b"weights\n"})
    client.create_registered_model(f"{unique}-model")
    client.create_model_version(f"{unique}-model", f"runs:/{runs[0]}/model", run_id=runs[0])
    config = tmp_path / "migrate.yaml"
    config.write_text(
        f"source: {{tracking_uri: '{src.uri}', token_env: SRC_T, attempts: 3}}\n"
        f"target: {{tracking_uri: '{dst.uri}', token_env: DST_T, timeout: 30}}\n"
        f"bundle_dir: {tmp_path / 'kept'}\n"
        f"select: {{experiments: '{unique}-exp', models: '{unique}-model'}}\n"
        f"options: {{report: {tmp_path / 'report.json'}}}\n")

    moved = _migrate(config)
    assert moved.returncode == 0, moved.stderr
    target = MlflowClient(stack.target.uri)
    copied = target.get_experiment_by_name(f"{unique}-exp")
    found = target.search_runs([copied.experiment_id])
    assert len(found) == 2
    with_file = next(r for r in found if r.info.run_name == "r0")
    assert [a.path for a in target.list_artifacts(with_file.info.run_id, "model")] == [
        "model/weights.txt"]  # the artifact upload carried the target's token too
    assert len(target.search_model_versions(f"name = '{unique}-model'")) == 1
    # Each server saw its own token on every request, never the other's.
    assert src.authorizations and set(src.authorizations) == {f"Bearer {SRC_TOKEN}"}
    assert dst.authorizations and set(dst.authorizations) == {f"Bearer {DST_TOKEN}"}

    # A password in the source URI's userinfo (the unauthenticated source ignores it).
    with_password = stack.source.uri.replace("://", f"://alice:{PASSWORD}@")
    again = _migrate(config, "--src-uri", with_password)
    assert again.returncode == 0, again.stderr
    # A secret in a query string, on a server that is not there.
    unreachable = _migrate(config, "--dst-uri", f"http://127.0.0.1:9/?api_key={QUERY_SECRET}")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
    # A wrong token: refused in one line, which does not repeat it.
    refused = _migrate(config, env={"DST_T": "wrong-" + DST_TOKEN})
    assert refused.returncode == 2 and "wrong or missing credentials" in refused.stderr
    assert DST_TOKEN not in refused.stderr
    assert _leaks(tmp_path, moved, again, unreachable) == []


def _command(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SRC_T": SRC_TOKEN, "DST_T": DST_TOKEN, **(env or {})}
    environment.pop("MLFLOW_TRACKING_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "mlflow_exim", *map(str, args)],
                          env=environment, capture_output=True, text=True, timeout=600)


def test_copies_and_verify_take_a_token_per_side(stack, proxies, unique, tmp_path):
    """The CI promotion between two token-protected servers: copy-model-version and
    copy-run with each side's token (and retry settings) from a config, verify of the
    result; each server sees its own token only, and no token reaches any output."""
    src, dst = proxies
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(f"{unique}-exp")
    run_id = make_run(client, experiment, "r0", 0)
    _upload(client, run_id, {"model/weights.txt": b"weights\n"})
    client.create_registered_model(f"{unique}-model")
    client.create_model_version(f"{unique}-model", f"runs:/{run_id}/model", run_id=run_id)
    config = tmp_path / "sides.yaml"
    config.write_text(f"source: {{tracking_uri: '{src.uri}', token_env: SRC_T, attempts: 3}}\n"
                      f"target: {{tracking_uri: '{dst.uri}', token_env: DST_T}}\n")
    src.authorizations.clear()
    dst.authorizations.clear()

    copy = ["copy-model-version", "--config", config, "--src-model", f"{unique}-model",
            "--src-version", 1, "--dst-model", f"{unique}-prod", "--dst-experiment-name",
            f"{unique}-prod-exp", "--dst-timeout", 30, "--output", "json"]
    first = _command(*copy, "--report", tmp_path / "copy.json")
    assert first.returncode == 0, first.stderr
    again = _command(*copy)
    assert again.returncode == 0, again.stderr
    assert [json.loads(r.stdout)["status"] for r in (first, again)] == [
        "created", "already_present"]
    target = MlflowClient(stack.target.uri)
    (version,) = target.search_model_versions(f"name = '{unique}-prod'")
    assert [a.path for a in target.list_artifacts(version.run_id, "model")] == [
        "model/weights.txt"]

    run = _command("copy-run", "--config", config, "--run-id", run_id,
                   "--dst-experiment-name", f"{unique}-runs", "--report", tmp_path / "run.json")
    assert run.returncode == 0, run.stderr
    copied = target.get_experiment_by_name(f"{unique}-runs")
    assert len(target.search_runs([copied.experiment_id])) == 1

    # Two tokens cannot share a process: the source's side is exported first, then compared.
    verified = _command("verify", "--config", config, "--models", f"{unique}-model",
                        "--id-map", tmp_path / "copy.json", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    card = json.loads(verified.stdout)
    assert card["src"] == src.uri and card["totals"]["model_versions"] == 1
    assert set(src.authorizations) == {f"Bearer {SRC_TOKEN}"}
    assert set(dst.authorizations) == {f"Bearer {DST_TOKEN}"}
    assert _leaks(tmp_path, first, again, run, verified) == []
