"""Adaptive density control as in 3DGS: clone small Gaussians and split large ones where the screen-space
positional gradient is high, prune transparent or oversized ones, and periodically reset opacities.

Every change of the Gaussian set is one *remap*: a list of source indices (repeats allowed) into the old set,
plus optional new values. Parameters and the optimiser's moments follow the same remap, with fresh moments for new
Gaussians, so there is exactly one place where the optimiser state is edited.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .gaussians import GaussianField


@dataclass
class DensityConfig:
    refine_start: int = 200  # first step that densifies
    refine_stop: int = 1500  # last step that densifies
    refine_every: int = 100
    reset_every: int = 3000  # opacity reset period (0 = never)
    grow_grad2d: float = 0.0002  # threshold on the mean NDC-scaled gradient of 2D means
    grow_scale3d: float = 0.01  # clone below, split above this size (fraction of the scene extent)
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1  # prune Gaussians larger than this fraction of the extent (after the first reset)
    max_gaussians: int = 1_000_000


class DensityController:
    def __init__(self, cfg: DensityConfig, extent: float):
        self.cfg = cfg
        self.extent = extent
        self.grad_sum: Tensor | None = None  # [N]
        self.count: Tensor | None = None  # [N]

    def observe(self, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        """Accumulate |d loss / d means2d| of the Gaussians seen in this view (after backward)."""
        if means2d.grad is None:
            return
        n = means2d.shape[0]
        if self.grad_sum is None or self.grad_sum.shape[0] != n:
            self.grad_sum = torch.zeros(n, device=means2d.device)
            self.count = torch.zeros(n, device=means2d.device)
        g = means2d.grad.detach() * torch.tensor([width / 2.0, height / 2.0], device=means2d.device)
        seen = radii > 0
        self.grad_sum += torch.where(seen, g.norm(dim=-1), 0.0)  # (no boolean indexing: a whole pass cheaper)
        self.count += seen

    def step(self, step: int, field: GaussianField, optimizer: torch.optim.Optimizer) -> dict[str, int]:
        """Densify/prune/reset when the schedule says so; returns counts of what changed."""
        cfg, out = self.cfg, {}
        if cfg.refine_start <= step <= cfg.refine_stop and step % cfg.refine_every == 0 and self.count is not None:
            out["cloned"], out["split"] = self._grow(field, optimizer)
            out["pruned"] = self._prune(field, optimizer, step)
            self.grad_sum = self.count = None
        if cfg.reset_every and step > 0 and step % cfg.reset_every == 0 and step <= cfg.refine_stop:
            reset_opacities(field, optimizer, 2 * cfg.prune_opacity)
            out["reset"] = 1
        return out

    def _grow(self, field: GaussianField, optimizer) -> tuple[int, int]:
        n = len(field)
        grads = self.grad_sum / self.count.clamp_min(1)
        high = grads > self.cfg.grow_grad2d
        small = field.scales.detach().max(dim=-1).values <= self.cfg.grow_scale3d * self.extent
        clone, split = high & small, high & ~small
        budget = self.cfg.max_gaussians - n
        if budget <= 0:
            return 0, 0
        clone = _limit(clone, budget)
        split = _limit(split, budget - int(clone.sum()))
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone + n_split == 0:
            return 0, 0
        clone_idx, split_idx = clone.nonzero()[:, 0], split.nonzero()[:, 0]
        keep_idx = (~split).nonzero()[:, 0]
        # Split: each selected Gaussian becomes two, sampled from itself and shrunk by 1.6.
        p = field.params()
        idx2 = split_idx.repeat(2)
        scales = p["log_scales"].detach()[idx2].exp()
        rot = quat_to_rotmat(p["quats"].detach()[idx2])
        offset = (rot @ (scales * torch.randn_like(scales))[..., None])[..., 0]
        new_means = p["means"].detach()[idx2] + offset
        new_log_scales = (scales / 1.6).log()
        idx = torch.cat([keep_idx, clone_idx, idx2])
        n_old = len(keep_idx)
        values = {
            "means": torch.cat([p["means"].detach()[keep_idx], p["means"].detach()[clone_idx], new_means]),
            "log_scales": torch.cat([p["log_scales"].detach()[keep_idx], p["log_scales"].detach()[clone_idx],
                                     new_log_scales]),
        }
        fresh = torch.arange(len(idx)) >= n_old
        remap(field, optimizer, idx, values, fresh)
        return n_clone, n_split

    def _prune(self, field: GaussianField, optimizer, step: int) -> int:
        dead = field.opacities.detach() < self.cfg.prune_opacity
        if self.cfg.reset_every and step > self.cfg.reset_every:
            dead |= field.scales.detach().max(dim=-1).values > self.cfg.prune_scale3d * self.extent
        if dead.all():  # never prune to an empty scene: keep the most opaque one
            dead[field.opacities.detach().argmax()] = False
        n_dead = int(dead.sum())
        if n_dead:
            idx = (~dead).nonzero()[:, 0]
            remap(field, optimizer, idx, {}, torch.zeros(len(idx), dtype=torch.bool))
        return n_dead


def _limit(mask: Tensor, budget: int) -> Tensor:
    if int(mask.sum()) <= budget:
        return mask
    out = torch.zeros_like(mask)
    out[mask.nonzero()[:max(budget, 0), 0]] = True
    return out


def remap(field: GaussianField, optimizer: torch.optim.Optimizer | None, idx: Tensor,
          values: dict[str, Tensor], fresh: Tensor) -> None:
    """New Gaussian set = old[idx], with ``values`` overriding some parameters; optimiser moments follow, and rows
    where ``fresh`` is True start with zero moments."""
    old = field.params()
    new = {name: values.get(name, p.detach()[idx]) for name, p in old.items()}
    field.replace_params(new)
    if optimizer is None:
        return
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            name = next((k for k, v in old.items() if v is p), None)
            if name is None:
                continue
            new_p = getattr(field, name)
            state = optimizer.state.pop(p, None)
            if state:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        s = state[key][idx].clone()
                        s[fresh] = 0
                        state[key] = s
                optimizer.state[new_p] = state
            group["params"][i] = new_p


def reset_opacities(field: GaussianField, optimizer, value: float) -> None:
    """Clamp opacities to at most ``value`` so floaters must re-earn their opacity (3DGS opacity reset); the
    opacity moments restart from zero."""
    logit = math.log(value / (1 - value))
    with torch.no_grad():
        field.opacity_logits.clamp_(max=logit)
    state = optimizer.state.get(field.opacity_logits, {}) if optimizer is not None else {}
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key].zero_()


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)
