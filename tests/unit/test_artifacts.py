"""entities.artifacts: the ids in an MLmodel file, rewritten."""

from __future__ import annotations

import pytest

from mlflow_exim.entities.artifacts import _rewritten_mlmodel

MLMODEL = """artifact_path: model
flavors:
  python_function: {{}}
model_uri: runs:/{old}/model
run_id: {quoted}
source_run_id: {old}
"""


@pytest.mark.parametrize("quote", ["", "'", '"'])
def test_rewritten_mlmodel_changes_only_the_run_id_line(tmp_path, quote):
    original = tmp_path / "MLmodel"
    text = MLMODEL.format(old="old1", quoted=f"{quote}old1{quote}")
    original.write_text(text)
    result = _rewritten_mlmodel(original, {"run_id": ("old1", "new2")}, tmp_path)
    assert result != original and result.name == "MLmodel"
    assert result.read_text() == MLMODEL.format(old="old1", quoted=f"{quote}new2{quote}")
    assert original.read_text() == text


def test_rewritten_mlmodel_changes_the_model_id_and_the_run_id_of_a_logged_model(tmp_path):
    original = tmp_path / "MLmodel"
    original.write_text("model_id: m-old\nrun_id: r-old\nmodel_uuid: m-old-uuid\n")
    result = _rewritten_mlmodel(original, {"model_id": ("m-old", "m-new"),
                                           "run_id": ("r-old", "r-new")}, tmp_path)
    assert result.read_text() == "model_id: m-new\nrun_id: r-new\nmodel_uuid: m-old-uuid\n"


@pytest.mark.parametrize("run_id_value", ["other", "old1extra", "xold1"])
def test_rewritten_mlmodel_returns_original_when_nothing_changes(tmp_path, run_id_value):
    original = tmp_path / "MLmodel"
    original.write_text(MLMODEL.format(old="old1", quoted=run_id_value))
    assert _rewritten_mlmodel(original, {"run_id": ("old1", "new2")}, tmp_path) == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MLmodel"]
