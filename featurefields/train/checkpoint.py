"""Atomic checkpoints: a run killed mid-save keeps its previous checkpoint intact.

Loading validates everything a consumer relies on (:func:`check_checkpoint`): a checkpoint whose arrays disagree
in length, hold NaN, or a string where a tensor belongs is refused with one line naming the file and the entry,
before any training step, query or edit runs on it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..fields.gaussians import check_state as check_field_state
from ..io import atomic_path, one_reason
from ..validate import integer, mapping, number, tensor, text

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)


def load_checkpoint(path: str | Path, *, validate: bool = True) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - unpickling a damaged file fails in many ways
        raise DataError(f"{path}: corrupt checkpoint ({one_reason(e)})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: not a featurefields checkpoint (or written by an incompatible version)")
    if validate:
        check_checkpoint(state, str(path))
    return state


def check_checkpoint(state: dict, where: str) -> None:
    """Refuse (DataError naming ``where`` and the entry) a checkpoint any consumer would trip over later."""
    if "field" not in state:
        raise DataError(f"{where}: holds no field (no 'field' entry)")
    n = check_field_state(state["field"], f"{where}: field")
    if "step" in state:
        integer(state["step"], f"{where}: step", lo=0, error=DataError)
    if state.get("optimizer") is not None:
        _check_optimizer(state["optimizer"], state["field"]["params"], n, f"{where}: optimizer")
    for key, kind in (("config", dict), ("scene", dict), ("teachers", list), ("history", list)):
        if state.get(key) is not None and not isinstance(state[key], kind):
            raise DataError(f"{where}: '{key}' is a {type(state[key]).__name__}, expected a {kind.__name__}")
    for i, t in enumerate(state.get("teachers") or []):
        text(mapping(t, f"{where}: teachers[{i}]").get("name"), f"{where}: teachers[{i}].name", error=DataError)
    scene = state.get("scene") or {}
    if scene.get("root") is not None:
        text(scene["root"], f"{where}: scene.root", error=DataError)
    if scene.get("world_from_scene") is not None:
        try:
            wfs = torch.as_tensor(scene["world_from_scene"], dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(f"{where}: scene.world_from_scene is not a 4x4 matrix") from None
        tensor(wfs, f"{where}: scene.world_from_scene", (4, 4))
    if state.get("train_seconds") is not None:
        number(state["train_seconds"], f"{where}: train_seconds", lo=0, error=DataError)


def _check_optimizer(opt, params: dict, n: int, where: str) -> None:
    """Adam moments of the Gaussian parameters must have the parameters' shapes (else the first step fails)."""
    from ..fields.gaussians import GaussianField

    opt = mapping(opt, where)
    groups, st = opt.get("param_groups"), opt.get("state")
    if not isinstance(groups, list) or not isinstance(st, dict):
        raise DataError(f"{where}: expected 'param_groups' (a list) and 'state' (a dict)")
    for i, g in enumerate(groups):
        g = mapping(g, f"{where}.param_groups[{i}]")
        ids = g.get("params")
        if not isinstance(ids, list) or not all(isinstance(pid, int) for pid in ids):
            raise DataError(f"{where}.param_groups[{i}].params: expected a list of parameter ids")
        name = g.get("name")
        for pid in ids:
            entry = st.get(pid)
            if entry is None:
                continue
            entry = mapping(entry, f"{where}.state[{pid}]")
            for key in ("exp_avg", "exp_avg_sq"):
                if key in entry and name in GaussianField.param_names and name in params:
                    tensor(entry[key], f"{where}: {name}.{key}", tuple(params[name].shape))
                elif key in entry:
                    tensor(entry[key], f"{where}: {name}.{key}", tuple(None for _ in range(
                        getattr(entry[key], "ndim", 0))))
