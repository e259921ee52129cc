"""Directory names that are safe whatever an object is called or numbered."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from mlflow_exim.errors import BundleError

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def safe_component(value: str) -> str:
    """A single path component for ``value``: the value itself when it is plain
    (letters, digits, ``_``, ``-``), otherwise ``_`` + its url-safe base64. The two
    forms cannot collide because a plain value never starts with ``_``."""
    if _PLAIN.fullmatch(value):
        return value
    encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")
    return "_" + encoded


def check_relative(relative, *, source: Path, field: str) -> str:
    """``relative`` if it is a plain relative path inside a bundle, ``/``-separated, with no
    empty, ``.`` or ``..`` component, no backslash and no NUL; otherwise a BundleError that
    names ``source`` and ``field``. A pure check on the text, before any file is opened."""
    if not isinstance(relative, str):
        raise BundleError(source, f"{field} must be a string")
    parts = relative.split("/")
    if (not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative
            or any(part in ("", ".", "..") for part in parts)):
        raise BundleError(source, f"{field} {relative!r} points outside the bundle or is not "
                                  "a plain relative path")
    return relative


def inside(root: Path, relative: str, *, source: Path) -> Path:
    """``root / relative``, refusing paths that are absolute or climb out of ``root``."""
    candidate = (root / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(root.resolve()):
        raise BundleError(source, f"path {relative!r} points outside the bundle")
    return candidate
