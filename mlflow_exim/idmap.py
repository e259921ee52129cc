"""Source → target ids. Every reference that changes on import is rewritten through here."""

from __future__ import annotations

import threading


class IdMap:
    KINDS = ("experiment", "run", "logged_model", "model_version")

    def __init__(self):
        self._maps: dict[str, dict[str, str]] = {kind: {} for kind in self.KINDS}
        self._lock = threading.Lock()

    def add(self, kind: str, source_id: str, target_id: str) -> None:
        with self._lock:
            self._maps[kind][source_id] = target_id

    def get(self, kind: str, source_id: str | None) -> str | None:
        if source_id is None:
            return None
        return self._maps[kind].get(source_id)

    def to_dict(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {kind: dict(ids) for kind, ids in self._maps.items()}
