"""Embedded stores (sqlite, and a legacy mlruns file store) as source and target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

import mlflow_exim
from tests.seed import make_run, seed_rich_source

BIN = Path(sys.executable).parent


def run(*argv, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *map(str, argv[1:])], cwd=cwd,
                          capture_output=True, text=True)


def test_sqlite_to_sqlite_round_trip_is_identical(tmp_path, monkeypatch):
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src, dst = f"sqlite:///{src_dir / 'mlflow.db'}", f"sqlite:///{dst_dir / 'mlflow.db'}"
    monkeypatch.chdir(src_dir)  # the embedded source keeps its artifacts in ./mlruns
    seed_rich_source(src, "emb")
    selection = tmp_path / "experiments.txt"
    selection.write_text("emb-*\nDefault\n")
    bundle = tmp_path / "bundle"

    exported = run("export-experiments", "--tracking-uri", src, "--experiments", selection,
                   "--output-dir", bundle, "--export-deleted-runs", cwd=src_dir)
    assert exported.returncode == 0, exported.stderr
    imported = run("import-experiments", "--tracking-uri", dst, "--input-dir", bundle,
                   cwd=dst_dir)
    assert imported.returncode == 0, imported.stderr
    assert (dst_dir / "mlruns").is_dir()

    card = mlflow_exim.verify(src, dst)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 4, "runs": 9}
    verified = run("mlflow-exim", "verify", "--src-uri", src, "--dst-uri", dst, cwd=tmp_path)
    assert verified.returncode == 0 and "result: identical" in verified.stdout


def test_a_run_that_cannot_be_exported_is_reported_and_the_bundle_still_imports(workdir):
    src, dst = f"sqlite:///{workdir / 'src.db'}", f"sqlite:///{workdir / 'dst.db'}"
    client = MlflowClient(src)
    good = client.create_experiment("good")
    good_runs = [make_run(client, good, f"ok-{i}", i) for i in range(2)]
    broken = client.create_experiment("broken", artifact_location="nosuchscheme://bucket/x")
    broken_run = make_run(client, broken, "unreadable-artifacts", 10)

    exported = mlflow_exim.export_all(workdir / "bundle", tracking_uri=src)
    assert exported.exit_code == 1
    (failure,) = exported.failures
    assert (failure.kind, failure.source_id) == ("runs", broken_run)
    assert "nosuchscheme" in failure.reason
    assert not (workdir / "bundle" / "runs" / broken_run).exists()

    imported = mlflow_exim.import_all(workdir / "bundle", tracking_uri=dst)
    assert imported.ok, imported.summary()
    assert [f["source_id"] for f in imported.extra["bundle_export_failures"]] == [broken_run]
    assert sorted(imported.extra["id_map"]["runs"]) == sorted(good_runs)


def test_a_legacy_mlruns_file_store_migrates_to_sqlite(workdir, monkeypatch):
    src, dst = (workdir / "mlruns").as_uri(), f"sqlite:///{workdir / 'dst.db'}"
    refused = run("export-all", "--tracking-uri", src, "--output-dir", workdir / "b0",
                  cwd=workdir)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: cannot open tracking store {src}: ")
    assert "MLFLOW_ALLOW_FILE_STORE" in refused.stderr and len(refused.stderr.splitlines()) == 1

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's opt-in for file stores
    seed_rich_source(src, "fs")
    exported = mlflow_exim.export_all(workdir / "bundle", tracking_uri=src,
                                      export_deleted_runs=True)
    assert exported.ok, exported.summary()
    imported = mlflow_exim.import_all(workdir / "bundle", tracking_uri=dst)
    assert imported.ok, imported.summary()
    card = mlflow_exim.verify(src, dst)
    assert card.ok, card.text()
    assert card.totals == {"experiments": 4, "runs": 9}
