"""lineage: the source tags an import can write, and how they are recognised."""

from __future__ import annotations

from mlflow_exim import lineage
from tests.unit.samples import EXPERIMENT_DOC, RUN_DOC, RUN_ID


def test_experiment_source_tags():
    doc = {**EXPERIMENT_DOC, "artifact_location": None, "last_update_time": None}
    skipped = []
    assert lineage.experiment_source_tags(doc, skipped) == {
        "mlflow_exim.field.experiment_id": "1",
        "mlflow_exim.field.name": "churn",
        "mlflow_exim.field.lifecycle_stage": "active",
        "mlflow_exim.field.creation_time": "1700000000123",
        "mlflow_exim.field._creation_time": "2023-11-14T22:13:20.123+00:00",
        "mlflow_exim.mlflow_tag.note.content": "about churn",
    }
    assert skipped == []


def test_run_source_tags_copy_mlflow_tags_and_skip_long_keys():
    fits, too_long = "mlflow." + "k" * 227, "mlflow." + "k" * 228
    doc = {**RUN_DOC, "tags": {**RUN_DOC["tags"], fits: "1", too_long: "2"}}
    skipped = []
    assert lineage.run_source_tags(doc, skipped) == {
        "mlflow_exim.run_info.run_id": RUN_ID,
        "mlflow_exim.run_info.experiment_id": "1",
        "mlflow_exim.run_info.run_name": "first",
        "mlflow_exim.run_info.user_id": "ann",
        "mlflow_exim.run_info.status": "FINISHED",
        "mlflow_exim.run_info.start_time": "1700000000123",
        "mlflow_exim.run_info._start_time": "2023-11-14T22:13:20.123+00:00",
        "mlflow_exim.run_info.lifecycle_stage": "active",
        "mlflow_exim.run_info.artifact_uri": f"mlflow-artifacts:/1/{RUN_ID}/artifacts",
        "mlflow_exim.mlflow_tag.user": "ann",
        "mlflow_exim.mlflow_tag.parentRunId": "p" * 32,
        "mlflow_exim.mlflow_tag." + "k" * 227: "1",
    }
    assert len("mlflow_exim.mlflow_tag." + "k" * 227) == lineage.MAX_TAG_KEY
    assert skipped == [too_long]


def test_readable_time_keeps_every_millisecond():
    assert lineage.readable_time(None) is None
    assert lineage.readable_time(0) == "1970-01-01T00:00:00.000+00:00"
    base = 1700000000000
    for ms in range(1000):
        assert lineage.readable_time(base + ms).endswith(f":20.{ms:03d}+00:00")


def test_is_lineage_tag():
    assert lineage.is_lineage_tag("mlflow_exim.field.name")
    assert all(lineage.is_lineage_tag(k) for k in lineage.run_source_tags(RUN_DOC, []))
    for key in ("mlflow.user", "mlflow_eximfield", "team", "mlflow_exim"):
        assert not lineage.is_lineage_tag(key)
