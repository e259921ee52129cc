"""Deterministic JSON and JSON Lines, with errors that name the file.

Floats that JSON cannot hold (NaN, ±Infinity) are written as the strings
"NaN", "Infinity" and "-Infinity" so that every file is strict JSON.
"""

from __future__ import annotations

import json
import json.scanner
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_exim.errors import BundleError

# How the bundle writes the floats JSON has no number for (see docs/FORMAT.md): the
# bundle's own names for them.
from mlflow_exim.floats import NON_FINITE as NON_FINITE
from mlflow_exim.floats import decode_float as decode_float
from mlflow_exim.floats import encode_float as encode_float


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    separators = None if indent else (",", ":")
    return json.dumps(obj, sort_keys=True, indent=indent, ensure_ascii=False,
                      allow_nan=False, separators=separators)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(obj) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(path, f"cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(path, f"is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 1000 deep
        raise BundleError(path, f"is not valid JSON: {type(exc).__name__}") from None


class JsonLinesWriter:
    """Appends one compact JSON object per line; used for streams that can be very long."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._file = None

    def __enter__(self) -> JsonLinesWriter:
        self._file = self.path.open("w", encoding="utf-8")
        return self

    def write(self, obj: Any) -> None:
        self._file.write(dumps(obj, indent=None) + "\n")
        self.count += 1

    def __exit__(self, *exc) -> None:
        self._file.close()


# json.loads without its per-call checks: a history of a million points is a million lines
_decoder = json.JSONDecoder()
_decode = _decoder.decode
_scan = json.scanner.make_scanner(_decoder)  # the C scanner: the one value at an index


def _decode_line(line: str) -> Any:
    """A line's JSON value. Where the line is one value and its newline (as every bundle
    writer writes it), json's C scanner reads it with no Python in between: half the time
    of :func:`json.loads` on a million points. Any other line is decoded by json itself,
    with its own error, so the two accept the same lines."""
    try:
        value, end = _scan(line, 0)
    except StopIteration:
        return _decode(line)
    if end == len(line) or (end == len(line) - 1 and line[end] == "\n"):
        return value
    return _decode(line)


def iter_json_lines(path: Path) -> Iterator[Any]:
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(path, "file is missing") from None
    except OSError as exc:
        raise BundleError(path, f"cannot be read: {exc.strerror}") from None
    with handle:
        number = 0
        try:
            for number, line in enumerate(handle, start=1):  # noqa: B007 - named on error
                if not line.isspace():
                    yield _decode_line(line)
        except json.JSONDecodeError as exc:
            raise BundleError(path, f"line {number} is not valid JSON: {exc.msg}") from None
        except UnicodeDecodeError:
            raise BundleError(path, f"is not UTF-8 after line {number}") from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 1000 deep
            raise BundleError(path, f"line {number} is not valid JSON: "
                                    f"{type(exc).__name__}") from None
