"""Source → target ids. Every reference that changes on import is rewritten through here."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class IdMap:
    """Target ids by kind (the declared kinds' names, see :mod:`mlflow_exim.catalog`) and
    source id. Safe to fill from worker threads. ``known`` (an earlier import's
    :meth:`to_dict`) answers for the objects this map has not been given: links to what an
    earlier import brought, such as an earlier chunk of a pipelined migrate; it is not
    part of :meth:`to_dict`."""

    def __init__(self, kinds: Iterable[str], known: dict[str, dict[str, str]] | None = None):
        self._maps: dict[str, dict[str, str]] = {kind: {} for kind in kinds}
        self._known = {kind: dict((known or {}).get(kind, {})) for kind in self._maps}
        self._lock = threading.Lock()

    def add(self, kind: str, source_id: str, target_id: str | None) -> None:
        if target_id is None:
            return
        with self._lock:
            self._maps[kind][source_id] = target_id

    def get(self, kind: str, source_id: str | None) -> str | None:
        if source_id is None:
            return None
        return self._maps[kind].get(source_id) or self._known[kind].get(source_id)

    def to_dict(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {kind: dict(ids) for kind, ids in self._maps.items()}
