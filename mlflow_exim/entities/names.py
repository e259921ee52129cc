"""Objects a target finds by name: the one it returns must bear the name asked for.

A tracking server on MySQL or MariaDB compares names as its database's collation does,
and their defaults (``utf8mb4_0900_ai_ci``, ``latin1_swedish_ci``...) ignore case, and
some accents: asked for experiment ``case``, it returns ``Case``. Taking that one would
write two source objects into one target object, so it is refused instead: the object
fails, saying which name its server took it for and how to import it under another.
"""

from __future__ import annotations

from typing import TypeVar

from mlflow_exim.errors import EximError

T = TypeVar("T")


def exactly(found: T | None, name: str, what: str, target: str,
            rename: str | None = None) -> T | None:
    """``found`` (what ``target`` returned for the ``what`` named ``name``, or None) when
    its name is ``name``; else an error naming both, and ``rename`` (the option that
    imports it under another name, if there is one)."""
    if found is None or found.name == name:
        return found
    raise EximError(f"{target} took {what} name {name!r} for its {what} {found.name!r} (its "
                    "database compares names without regard to case or accents), so it "
                    "cannot hold both: not merged into it"
                    + (f"; import it under another name ({rename})" if rename else ""))


def same(found: T | None, name: str) -> T | None:
    """``found`` when its name is ``name``, else None: for a lookup that may miss."""
    return found if found is not None and found.name == name else None
