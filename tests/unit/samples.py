"""Documents of a minimal valid bundle, and the bundle itself, shared by the unit tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow_exim.bundle.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE
from mlflow_exim.bundle.jsonio import read_json, write_json

RUN_ID = "0123456789abcdef0123456789abcdef"
RUN_DIR = f"runs/{RUN_ID}"
ARTIFACT = f"{RUN_DIR}/artifacts/model/MLmodel"
ARTIFACT_BYTES = f"artifact_path: model\nrun_id: {RUN_ID}\n".encode()

EXPERIMENT_DOC = {
    "experiment_id": "1",
    "name": "churn",
    "artifact_location": "mlflow-artifacts:/1",
    "lifecycle_stage": "active",
    "creation_time": 1700000000123,
    "last_update_time": 1700000000456,
    "tags": {"mlflow.note.content": "about churn", "team": "a"},
}
RUN_DOC = {
    "info": {
        "run_id": RUN_ID,
        "experiment_id": "1",
        "run_name": "first",
        "user_id": "ann",
        "status": "FINISHED",
        "start_time": 1700000000123,
        "end_time": None,
        "lifecycle_stage": "active",
        "artifact_uri": f"mlflow-artifacts:/1/{RUN_ID}/artifacts",
    },
    "params": {"lr": "0.1"},
    "tags": {"mlflow.user": "ann", "mlflow.parentRunId": "p" * 32, "team": "a"},
    "metrics": {"keys": ["loss"], "points": 1},
    "inputs": {"datasets": [], "models": []},
    "outputs": {"models": []},
    "artifacts": {"files": 1},
}


def make_bundle(root: Path, **manifest_changes) -> Path:
    """Write a minimal valid bundle at ``root``; keyword arguments replace manifest fields.
    It is a format 2 bundle (checksums of artifacts only), so that a test can change a
    document and reach the reader's checks of what it holds; :func:`rehash` makes it one
    of format 3, whose checksums cover every file."""
    (root / "experiments/1").mkdir(parents=True, exist_ok=True)
    (root / ARTIFACT).parent.mkdir(parents=True, exist_ok=True)
    write_json(root / "experiments/1/experiment.json", EXPERIMENT_DOC)
    write_json(root / RUN_DIR / "run.json", RUN_DOC)
    (root / RUN_DIR / "metrics.jsonl").write_text(
        '{"key":"loss","step":0,"timestamp":1700000000123,"value":"NaN"}\n')
    (root / ARTIFACT).write_bytes(ARTIFACT_BYTES)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": 2,
        "source": {"tracking_uri": "http://dev:5000"},
        "inventory": {
            "experiments": [{"id": "1", "name": "churn", "path": "experiments/1"}],
            "runs": [{"id": RUN_ID, "experiment_id": "1", "path": RUN_DIR}],
        },
        "checksums": {ARTIFACT: {"sha256": hashlib.sha256(ARTIFACT_BYTES).hexdigest(),
                                 "size": len(ARTIFACT_BYTES)}},
        **manifest_changes,
    }
    write_json(root / MANIFEST_FILE, manifest)
    return root


def rehash(root: Path) -> Path:
    """Record the size and SHA-256 of every file but the manifest, as a format 3 writer
    does, so that the reader goes on to read what the files hold."""
    manifest = read_json(root / MANIFEST_FILE)
    manifest["checksums"] = {
        path.relative_to(root).as_posix(): {"sha256": hashlib.sha256(path.read_bytes())
                                            .hexdigest(), "size": path.stat().st_size}
        for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()
        and path.name != MANIFEST_FILE}
    manifest["checksums_scope"] = "all"
    manifest["format_version"] = FORMAT_VERSION
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))  # NaN too: it may be mutated
    return root
