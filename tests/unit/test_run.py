"""entities.run: LogBatch requests within the API's limits."""

from __future__ import annotations

from mlflow.entities import Metric, Param, RunTag

from mlflow_exim.entities.run import _log_batches


def test_log_batches_fill_requests_within_the_api_limits():
    params = [Param(f"p{i}", "v") for i in range(250)]
    tags = [RunTag(f"t{i}", "v") for i in range(30)]
    metrics = (Metric("m", float(i), i, i) for i in range(2000))
    batches = list(_log_batches(params, tags, metrics))
    assert [(len(p), len(t), len(m)) for p, t, m in batches] == [
        (100, 30, 870), (100, 0, 900), (50, 0, 230)]
    assert [x.key for p, _, _ in batches for x in p] == [p.key for p in params]
    assert [x.value for _, _, m in batches for x in m] == [float(i) for i in range(2000)]


def test_log_batches_of_an_empty_run_and_of_a_small_one():
    assert list(_log_batches([], [], iter([]))) == []
    (only,) = _log_batches([Param("a", "1")], [RunTag("b", "2")], [Metric("m", 1.0, 0, 0)])
    assert [len(part) for part in only] == [1, 1, 1]
