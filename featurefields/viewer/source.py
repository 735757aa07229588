"""The field every browser of a server renders, replaced as a whole when it changes, never mutated in place.

A browser's frame reads ``(version, field)`` once and renders that object to the end, so an edit by another
browser, or a new snapshot of a training run, can never show up half-applied. Edits swap in a new field object
(:mod:`featurefields.query.edit` returns one); live training publishes copies of the trainer's parameters taken
between two steps (:mod:`.live`).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..fields.base import FeatureField
from .scheduling import RenderBudget


class FieldSource:
    """A versioned field. ``checkpoint``: the checkpoint file it came from (edits need its full state: config,
    teachers, Adam moments); None where the field cannot be edited (a training run in progress)."""

    live = False

    def __init__(self, field: FeatureField, checkpoint: str | Path | None = None):
        self._field = field
        self.version = 0
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.budget = RenderBudget(1.0)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int, str], None]] = []

    @property
    def editable(self) -> bool:  # edits write a new checkpoint from the one the field came from
        return self.checkpoint is not None

    def current(self) -> tuple[int, FeatureField]:
        with self._lock:
            return self.version, self._field

    def replace(self, field: FeatureField, why: str, checkpoint: str | Path | None = None) -> int:
        """Swap in a new field (an edit's result) and tell every listener (the browsers) which version it is."""
        with self._lock:
            self._field = field
            self.version += 1
            version = self.version
            if checkpoint is not None:
                self.checkpoint = Path(checkpoint)
        for listener in list(self._listeners):
            listener(version, why)
        return version

    def listen(self, callback: Callable[[int, str], None]) -> None:
        self._listeners.append(callback)

    def unlisten(self, callback: Callable[[int, str], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def status(self) -> str:
        _, field = self.current()
        return f"{len(field):,} Gaussians"
