"""Atomic checkpoints: a run killed mid-save keeps its previous checkpoint intact.

Loading validates everything a consumer relies on (:func:`check_checkpoint`): a checkpoint whose arrays disagree
in length, hold NaN, or a string where a tensor belongs is refused with one line naming the file and the entry,
before any training step, query or edit runs on it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..io import atomic_path, one_reason
from ..validate import integer, mapping, number, tensor, text

CHECKPOINT_VERSION = 1
MAX_TEACHER_DIM = 65536


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


def check_field_state(fs, where: str) -> int:
    """A GaussianField.state() dict: consistent shapes, finite values, decoder heads matching the layout.
    Returns the Gaussian count."""
    from ..fields.gaussians import FeatureDecoder, FeatureLayout
    from ..render.sh import num_sh_bases

    fs = mapping(fs, where)
    sh_degree = integer(fs.get("sh_degree"), f"{where}.sh_degree", lo=0, hi=3, error=DataError)
    lay = mapping(fs.get("layout"), f"{where}.layout")
    teachers = lay.get("teachers")
    if not isinstance(teachers, list):
        raise DataError(f"{where}.layout.teachers: expected a list, got {type(teachers).__name__}")
    for i, t in enumerate(teachers):
        t = mapping(t, f"{where}.layout.teachers[{i}]")
        text(t.get("name"), f"{where}.layout.teachers[{i}].name", error=DataError)
        integer(t.get("dim"), f"{where}.layout.teachers[{i}].dim", lo=1, hi=MAX_TEACHER_DIM, error=DataError)
    for key, hi in (("latent_dim", 4096), ("decoder_hidden", 65536), ("view_degree", 3)):
        integer(lay.get(key, 0), f"{where}.layout.{key}", lo=0, hi=hi, error=DataError)
    try:
        layout = FeatureLayout.from_dict(dict(lay))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}.layout: malformed ({one_reason(e)})") from None
    params = mapping(fs.get("params"), f"{where}.params")
    means = tensor(params.get("means"), f"{where}.params.means", (None, 3))
    n = means.shape[0]
    shapes = {"log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,), "sh0": (n, 1, 3),
              "shN": (n, num_sh_bases(sh_degree) - 1, 3), "features": (n, layout.width),
              "features_view": (n, num_sh_bases(layout.view_degree) - 1, layout.width)}
    for name, shape in shapes.items():
        if name == "features_view" and name not in params:  # checkpoints from before view-dependent features
            continue
        tensor(params.get(name), f"{where}.params.{name}", shape)
    if n and bool((params["quats"].norm(dim=-1) == 0).any()):
        raise DataError(f"{where}.params.quats: some rotations are all zeros")
    decoder = mapping(fs.get("decoder"), f"{where}.decoder")
    for k, v in decoder.items():
        tensor(v, f"{where}.decoder.{k}", tuple(None for _ in range(getattr(v, "ndim", 0))))
    try:
        FeatureDecoder(layout).load_state_dict(dict(decoder))
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}.decoder: does not match the feature layout ({one_reason(e)[:200]})") from None
    return n


def _check_optimizer(opt, params: dict, n: int, where: str) -> None:
    """Adam moments of the Gaussian parameters must have the parameters' shapes (else the first step fails)."""
    from ..fields.gaussians import GaussianField

    opt = mapping(opt, where)
    groups, st = opt.get("param_groups"), opt.get("state")
    if not isinstance(groups, list) or not isinstance(st, dict):
        raise DataError(f"{where}: expected 'param_groups' (a list) and 'state' (a dict)")
    for g in groups:
        g = mapping(g, f"{where}.param_groups[]")
        name = g.get("name")
        if name not in GaussianField.param_names or name not in params:
            continue
        for pid in g.get("params", []):
            entry = st.get(pid)
            if not entry:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                if key in entry:
                    tensor(entry[key], f"{where}: {name}.{key}", tuple(params[name].shape))
