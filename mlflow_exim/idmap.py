"""Source → target ids. Every reference that changes on import is rewritten through here."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class IdMap:
    """Target ids by kind (the declared kinds' names, see :mod:`mlflow_exim.catalog`) and
    source id. Safe to fill from worker threads."""

    def __init__(self, kinds: Iterable[str]):
        self._maps: dict[str, dict[str, str]] = {kind: {} for kind in kinds}
        self._lock = threading.Lock()

    def add(self, kind: str, source_id: str, target_id: str | None) -> None:
        if target_id is None:
            return
        with self._lock:
            self._maps[kind][source_id] = target_id

    def get(self, kind: str, source_id: str | None) -> str | None:
        if source_id is None:
            return None
        return self._maps[kind].get(source_id)

    def to_dict(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {kind: dict(ids) for kind, ids in self._maps.items()}
