"""Atomic checkpoints: a run killed mid-save keeps its previous checkpoint intact."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..io import atomic_path, one_reason

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataError(f"{path}: corrupt checkpoint ({one_reason(e)})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: not a featurefields checkpoint (or written by an incompatible version)")
    return state
