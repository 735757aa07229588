"""Edits by a selection: extract it, delete it, or recolour it, giving a new field saved as checkpoint + PLY.

An edited field is a normal field: it renders, queries, exports and even resumes training like any other. To
make the last one work the optimiser's Adam moments are sliced with the same index as the Gaussians (the remap
density control uses), so ``ff-train --resume`` on an edited checkpoint continues from the edited scene.
"""
from __future__ import annotations

import copy
import functools
import time
from pathlib import Path
from typing import Sequence

import torch

from ..errors import ConfigError
from ..fields.gaussians import GaussianField, rgb_to_sh0
from ..fields.ply import write_ply
from ..fields.splats import gaussians_of
from ..io import write_json
from ..train.checkpoint import save_checkpoint
from .selection import Selection

EDITS = ("extract", "delete", "recolour")


def _on_gaussians(edit):
    """Edits act on Gaussians; given a field behind the FeatureField interface they return one like it (same scene,
    teachers and frame) holding the edited Gaussians."""

    @functools.wraps(edit)
    def wrapper(field, *args, **kwargs):
        if isinstance(field, GaussianField):
            return edit(field, *args, **kwargs)
        return field.with_gaussians(edit(gaussians_of(field), *args, **kwargs))

    return wrapper


def _check(field: GaussianField, sel: Selection) -> None:
    if len(sel) != len(field):
        raise ConfigError(f"the selection covers {len(sel)} Gaussians but the field has {len(field)}")


def subset(field: GaussianField, keep: Selection | torch.Tensor) -> GaussianField:
    """A new field holding only the Gaussians in ``keep`` (a Selection or [N] bool); decoder copied."""
    mask = keep.mask if isinstance(keep, Selection) else torch.as_tensor(keep, dtype=torch.bool)
    idx = mask.nonzero()[:, 0].to(field.means.device)
    out = copy.deepcopy(field)
    out.replace_params({name: p.detach()[idx] for name, p in field.params().items()})
    return out


@_on_gaussians
def extract(field: GaussianField, sel: Selection) -> GaussianField:
    """Only the selected Gaussians (e.g. one object, to render or export on its own)."""
    _check(field, sel)
    if sel.count == 0:
        raise ConfigError("the selection is empty: nothing to extract (check the query or lower --threshold)")
    return subset(field, sel)


@_on_gaussians
def delete(field: GaussianField, sel: Selection) -> GaussianField:
    """Everything but the selected Gaussians."""
    _check(field, sel)
    if sel.count == len(field):
        raise ConfigError("the selection covers every Gaussian: deleting it would leave an empty field")
    return subset(field, ~sel)


@_on_gaussians
def recolour(field: GaussianField, sel: Selection, rgb: Sequence[float]) -> GaussianField:
    """The selected Gaussians take a flat colour ``rgb`` (in [0, 1]): DC term set, view-dependent terms zeroed."""
    _check(field, sel)
    rgb_t = torch.as_tensor(list(rgb), dtype=torch.float32)
    if rgb_t.shape != (3,) or not torch.isfinite(rgb_t).all() or (rgb_t < 0).any() or (rgb_t > 1).any():
        raise ConfigError(f"colour must be three numbers in [0, 1], not {list(rgb)}")
    out = copy.deepcopy(field)
    m = sel.mask.to(field.means.device)
    p = {name: t.detach().clone() for name, t in field.params().items()}
    p["sh0"][m] = rgb_to_sh0(rgb_t.to(p["sh0"].device))[None, None, :]
    p["shN"][m] = 0
    out.replace_params(p)
    return out


def apply_edit(field: GaussianField, kind: str, sel: Selection, rgb: Sequence[float] | None = None
               ) -> tuple[GaussianField, torch.Tensor]:
    """(edited field, index of the kept Gaussians into the original) for kind in extract | delete | recolour."""
    if kind == "extract":
        return extract(field, sel), sel.indices
    if kind == "delete":
        return delete(field, sel), (~sel).indices
    if kind == "recolour":
        if rgb is None:
            raise ConfigError("recolour needs a colour")
        return recolour(field, sel, rgb), torch.arange(len(field))
    raise ConfigError(f"unknown edit {kind!r}; one of {', '.join(EDITS)}")


def edited_checkpoint(state: dict, field: GaussianField, kept: torch.Tensor, info: dict,
                      recoloured: torch.Tensor | None = None) -> dict:
    """A checkpoint dict for the edited field: the original's config, teachers and scene, the new Gaussians, the
    Adam moments of the kept Gaussians (recoloured colours restart with zero moments), and an edit log."""
    new = {k: v for k, v in state.items() if k not in ("field", "optimizer", "version")}
    new["field"] = field.state()
    opt = state.get("optimizer")
    if opt is not None:
        new["optimizer"] = _slice_optimizer(opt, kept, recoloured)
    new["edits"] = list(state.get("edits", [])) + [info]
    return new


def _slice_optimizer(opt: dict, kept: torch.Tensor, recoloured: torch.Tensor | None) -> dict:
    opt = copy.deepcopy(opt)
    names = GaussianField.param_names
    for group in opt.get("param_groups", []):
        if group.get("name") not in names:
            continue
        for pid in group["params"]:
            st = opt["state"].get(pid)
            if not st:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key] = st[key][kept.to(st[key].device)].clone()
                    if recoloured is not None and group["name"] in ("sh0", "shN"):
                        st[key][recoloured.to(st[key].device)] = 0
    return opt


def save_edited(out_dir: str | Path, state: dict, field: GaussianField, kept: torch.Tensor, info: dict,
                recoloured: torch.Tensor | None = None) -> dict:
    """Write ``checkpoint.pt``, ``field.ply`` and ``edit.json`` under ``out_dir`` (atomically); returns the info.
    ``recoloured``: [N] bool of recoloured Gaussians (their colour moments restart at zero)."""
    out_dir = Path(out_dir)
    field = gaussians_of(field)
    info = {**info, "num_gaussians_before": int(state["field"]["params"]["means"].shape[0]),
            "num_gaussians_after": len(field), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ckpt = edited_checkpoint(state, field, kept, info, recoloured)
    save_checkpoint(out_dir / "checkpoint.pt", ckpt)
    wfs = torch.tensor(state.get("scene", {}).get("world_from_scene", torch.eye(4).tolist()))
    write_ply(out_dir / "field.ply", field, wfs)
    write_json(out_dir / "edit.json", info)
    return info
