"""selection: the grammar of --experiments and --models."""

from __future__ import annotations

import pytest

from mlflow_exim.errors import EximError
from mlflow_exim.selection import parse_selection


@pytest.mark.parametrize("spec, expected", [
    ("all", None), ("  all ", None), ("churn", ["churn"]), ("a, b,,c , ", ["a", "b", "c"]),
    ("team-*,7", ["team-*", "7"]),
])
def test_parse_selection(spec, expected):
    assert parse_selection(spec) == expected


def test_parse_selection_from_file(tmp_path):
    path = tmp_path / "sel.txt"
    path.write_text("# experiments to move\n\nchurn\n  fraud  \n\n#old\nteam-*\n")
    assert parse_selection(str(path)) == ["churn", "fraud", "team-*"]


def test_parse_selection_file_indented_comment(tmp_path):
    path = tmp_path / "sel.txt"
    path.write_text("churn\n  # note\n")
    assert parse_selection(str(path)) == ["churn"]


@pytest.mark.parametrize("content", [None, "", "\n  \n# only a comment\n"])
def test_parse_selection_bad_file(tmp_path, content):
    path = tmp_path / "sel.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EximError) as info:
        parse_selection(str(path))
    assert str(info.value).startswith(f"{path}: ")
    assert ("names nothing" if content is not None else "cannot read") in str(info.value)


def test_parse_selection_empty_list():
    with pytest.raises(EximError, match="names nothing"):
        parse_selection(" , ,")
