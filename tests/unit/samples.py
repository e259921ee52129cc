"""Documents of a minimal valid bundle, shared by the unit tests."""

from __future__ import annotations

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
