"""entities.run: LogBatch requests within the API's limits, and which tags a run is
created with."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from mlflow_exim.entities.run import LOG_MODEL_HISTORY_TAG, _log_batches, _sent_after_creation


def test_log_batches_fill_requests_within_the_api_limits():
    params = [Param(f"p{i}", "v") for i in range(250)]
    tags = [RunTag(f"t{i}", "v") for i in range(30)]
    metrics = (("m", float(i), i, i) for i in range(2000))
    batches = list(_log_batches(params, tags, metrics))
    assert [(len(p), len(t), len(m)) for p, t, m in batches] == [
        (100, 30, 870), (100, 0, 900), (50, 0, 230)]
    assert [x.key for p, _, _ in batches for x in p] == [p.key for p in params]
    assert [point[1] for _, _, m in batches for point in m] == [float(i) for i in range(2000)]


def test_log_batches_of_an_empty_run_and_of_a_small_one():
    assert list(_log_batches([], [], iter([]))) == []
    (only,) = _log_batches([Param("a", "1")], [RunTag("b", "2")], [("m", 1.0, 0, 0)])
    assert [len(part) for part in only] == [1, 1, 1]


def test_a_run_is_created_with_its_tags_but_those_a_log_batch_must_send():
    tags = {"mlflow.runName": "fit", LOG_MODEL_HISTORY_TAG: "[]",
            **{f"t{i:03d}": "v" for i in range(120)}}
    later = _sent_after_creation(tags, "fit")
    assert list(tags) == ["mlflow.runName", *(f"t{i:03d}" for i in range(99))]
    assert list(later) == [LOG_MODEL_HISTORY_TAG, *(f"t{i:03d}" for i in range(99, 120))]
    for name_tag, run_name in (("other", "fit"), ("", None), ("fit", None)):
        tags = {"mlflow.runName": name_tag, "a": "1"}
        assert _sent_after_creation(tags, run_name) == {"mlflow.runName": name_tag}
        assert tags == {"a": "1"}


def test_the_model_history_names_the_new_run_and_the_run_its_name(tmp_path):
    """On embedded stores: the tags sent after creation arrive, the model history naming
    the target run instead of the source run."""
    from mlflow import MlflowClient

    import mlflow_exim

    source_uri, target_uri = (f"sqlite:///{tmp_path / name}" for name in ("s.db", "t.db"))
    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    run_id = source.create_run(source.create_experiment("history"), run_name="fit",
                               tags={"team": "a"}).info.run_id
    history = f'[{{"run_id": "{run_id}", "artifact_path": "model"}}]'
    source.set_tag(run_id, LOG_MODEL_HISTORY_TAG, history)
    source.set_terminated(run_id)
    bundle = tmp_path / "bundle"
    assert mlflow_exim.export_experiment("history", bundle, tracking_uri=source_uri).ok
    report = mlflow_exim.import_experiment(bundle, tracking_uri=target_uri)
    assert report.ok, report.summary()
    new_id = report.extra["id_map"]["runs"][run_id]
    arrived = target.get_run(new_id)
    assert arrived.data.tags[LOG_MODEL_HISTORY_TAG] == history.replace(run_id, new_id)
    assert (arrived.info.run_name, arrived.data.tags["mlflow.runName"]) == ("fit", "fit")
    assert arrived.data.tags["team"] == "a" and arrived.info.status == "FINISHED"


def test_a_refresh_sees_points_logged_to_a_run_that_had_ended(tmp_path):
    """On an embedded store: an export into its own complete bundle keeps an ended run
    that is unchanged, and writes again one that got a metric point after it ended."""
    from mlflow import MlflowClient

    import mlflow_exim
    from mlflow_exim.bundle.jsonio import read_json

    uri = f"sqlite:///{tmp_path / 'src.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("refresh")
    runs = []
    for name in ("still", "grows"):
        run = client.create_run(experiment, run_name=name).info.run_id
        client.log_batch(run, metrics=[Metric("loss", 1.0 / s, 1000 + s, s) for s in (1, 2)])
        client.set_terminated(run)
        runs.append(run)
    bundle = tmp_path / "bundle"

    def export() -> dict[str, Path]:
        assert mlflow_exim.export_experiment("refresh", bundle, tracking_uri=uri).ok
        return {run: next(bundle.rglob(f"{run}/run.json")) for run in runs}

    first = export()
    kept = {run: path.stat().st_ino for run, path in first.items()}
    client.log_metric(runs[1], "loss", 0.1, timestamp=1003, step=3)
    again = export()
    assert again[runs[0]].stat().st_ino == kept[runs[0]]  # unchanged: kept
    assert read_json(again[runs[1]])["metrics"]["points"] == 3  # written again
