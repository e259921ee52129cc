"""Names and keys on a target that may compare them without regard to case.

A tracking server on MySQL or MariaDB compares names as its database's collation does,
and their defaults (``utf8mb4_0900_ai_ci``, ``latin1_swedish_ci``...) ignore case, and
some accents: asked for experiment ``case``, it returns ``Case``. Taking that one would
write two source objects into one target object, so it is refused instead: the object
fails, saying which name its server took it for and how to import it under another.
Keys fare worse there: of two tags ``Stage`` and ``stage`` set one after the other, the
second silently overwrites the first. An object holding keys such a target cannot tell
apart is refused before anything of it is written (see :func:`clashing_keys`): keys that
differ by case, or by trailing spaces (which the PAD SPACE collations drop), as the
target is found to fold them. Which accented letters a collation takes for which others
differs from one to the next (Swedish keeps ``Ä`` apart from ``a``, the general one does
not), so keys that differ by accents only are not refused: verify finds what merged.
"""

from __future__ import annotations

from typing import TypeVar

from mlflow_exim.endpoint import CASE, TRAILING_SPACES
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


def folded(key: str, folding: frozenset[str]) -> str:
    """``key`` as a database that compares text without regard to ``folding`` sees it."""
    if CASE in folding:
        key = key.lower()
    return key.rstrip(" ") if TRAILING_SPACES in folding else key


# The sections of a bundle document whose keys a target stores as one column each.
KEYED_SECTIONS = ("tags", "params")


def clashing_keys(doc: dict, folding: frozenset[str]) -> str | None:
    """Why a target whose database compares keys without regard to ``folding`` cannot
    hold the object of document ``doc``: two keys of one of its sections (tags, params, a
    run's metrics) that are one to it; None when there are none."""
    sections = {name: doc.get(name) for name in KEYED_SECTIONS}
    metrics = doc.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("keys"), list):
        sections["metric"] = metrics["keys"]
    for section, keys in sections.items():
        if not isinstance(keys, (dict, list)):
            continue
        by_fold: dict[str, list[str]] = {}
        for key in keys:
            by_fold.setdefault(folded(str(key), folding), []).append(str(key))
        for same_keys in by_fold.values():
            if len(same_keys) > 1:
                one, other = sorted(same_keys)[:2]
                return (f"its {section.rstrip('s')} keys {one!r} and {other!r} are one key to "
                        "the target's database, which compares them without regard to "
                        f"{' or '.join(sorted(folding))}: one would overwrite the other")
    return None
