"""Keys a target's database takes for one (mlflow_exim.entities.names)."""

from __future__ import annotations

from mlflow_exim.endpoint import CASE, TRAILING_SPACES
from mlflow_exim.entities.names import clashing_keys

BOTH = frozenset({CASE, TRAILING_SPACES})


def test_keys_that_differ_by_case_clash_only_where_case_is_folded():
    doc = {"tags": {"Stage": "1", "stage": "2"}, "params": {"lr": "1"}}
    assert clashing_keys(doc, frozenset()) is None
    assert clashing_keys(doc, frozenset({TRAILING_SPACES})) is None
    reason = clashing_keys(doc, frozenset({CASE}))
    assert reason.startswith("its tag keys 'Stage' and 'stage' are one key to the target's "
                             "database, which compares them without regard to case:")


def test_trailing_spaces_clash_only_where_they_are_folded():
    doc = {"params": {"lr": "1", "lr ": "2"}}
    assert clashing_keys(doc, frozenset({CASE})) is None
    assert "its param keys 'lr' and 'lr '" in clashing_keys(doc, BOTH)


def test_metric_keys_clash_and_accents_never_do():
    assert "its metric keys 'LOSS' and 'loss'" in clashing_keys(
        {"metrics": {"keys": ["loss", "LOSS"], "points": 2}}, BOTH)
    # which accented letters a collation equates differs between collations: not guessed
    assert clashing_keys({"tags": {"a": "1", "Ä": "2", "modele": "3", "modèle": "4"}},
                         BOTH) is None
    assert clashing_keys({"tags": "not a mapping", "metrics": {"keys": None}}, BOTH) is None
