"""The parts directory of a pipelined migrate (bundle/parts.py, migrate.import_parts): the
reader never waits for a part that will not come, and a reader that fails says so, so that
the writer stops."""

from __future__ import annotations

import pytest

from mlflow_exim.bundle.format import MANIFEST_FILE
from mlflow_exim.bundle.parts import PartsDir
from mlflow_exim.errors import EximError
from mlflow_exim.migrate import import_parts

NAMES = ["part-1-of-2", "part-2-of-2"]


def test_a_reader_stops_at_the_end_mark_without_the_missing_part(tmp_path):
    parts = PartsDir(tmp_path / "bundle")
    parts.start()
    parts.announce(NAMES)
    parts.end()  # the writer failed before writing any part
    assert parts.names() == NAMES
    assert parts.wait(NAMES[0]) is None
    assert import_parts(parts.root, tracking_uri="http://127.0.0.1:9") == []


def test_an_import_that_fails_marks_it_and_a_new_start_clears_it(tmp_path):
    parts = PartsDir(tmp_path / "bundle")
    parts.start()
    parts.announce(NAMES)
    broken = parts.root / NAMES[0]
    broken.mkdir()
    (broken / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(EximError, match="manifest.json"):
        import_parts(parts.root, tracking_uri="http://127.0.0.1:9")
    assert parts.stopped()
    assert [e["event"] for e in parts.events()] == ["import-start"]
    parts.start()  # the next migrate into the same directory
    assert not parts.stopped() and not broken.exists() and parts.events() == []
