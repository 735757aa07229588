"""The fine stage: minimise the robust photometric error (and, given a depth image, the relative depth error) of
renders against the query through the rasteriser's exact pose gradient, coarse to fine over an image pyramid.

The pose is updated on SE(3) by pypose's exponential map, as a right perturbation c2w <- c2w Exp(xi): the step
is expressed in the camera's own frame, where rotation and translation are equally well conditioned whatever the
world frame. The 6-vector is scaled so a unit step is one radian or one typical scene depth. Adam gives
steps of a known size; L-BFGS (the default) adds curvature from the gradients alone and lands on the minimum
instead of circling it, in far fewer renders.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .config import FineConfig
from .inputs import Query, scale_intrinsics
from .photometric import depth_loss, photometric_loss, render_view

if TYPE_CHECKING:
    from ..fields.base import FeatureField


LOSS_SCALE = 1e6  # L-BFGS sees the loss times this: its first step is then normalised (see refine_pose)


def pypose():
    """The pypose module (it still decorates with torch.jit.script, which warns on import: silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pypose as pp
    return pp


def se3_exp(xi: Tensor) -> Tensor:
    """[6] (translation, rotation vector) -> [4, 4] through pypose's SE(3) exponential (differentiable)."""
    return pypose().se3(xi).Exp().matrix()


@dataclass
class FineResult:
    c2w: np.ndarray  # [4, 4] float64
    losses: list[list[float]] = field(default_factory=list)  # per level, per step
    seconds: float = 0.0


@dataclass
class Level:
    """One pyramid level: the query pooled to (width, height), and the resolution renders are made at before
    being pooled the same way. Rendering Gaussians directly at a quarter of the resolution is not the same as
    shrinking the full image (small splats alias); rendering at twice the level's size and pooling removes most of
    that bias, which otherwise pulls the coarse levels' minimum off the true pose."""

    target: Tensor  # [h, w, 3]
    depth: Tensor | None  # [h, w] metres, 0 = unknown
    K: Tensor  # [3, 3] of the render
    render_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.target.shape[1], self.target.shape[0]


def pool(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[H, W, C] -> [h, w, C] box-filtered (the same filter for renders and the query)."""
    if (x.shape[1], x.shape[0]) == tuple(size):
        return x
    return torch.nn.functional.adaptive_avg_pool2d(x.permute(2, 0, 1)[None], (size[1], size[0]))[0].permute(1, 2, 0)


def pyramid_level(query: Query, scale: float, supersample: float = 2.0) -> Level:
    w, h = max(8, round(query.width * scale)), max(8, round(query.height * scale))
    rs = min(1.0, scale * supersample)
    rw, rh = max(8, round(query.width * rs)), max(8, round(query.height * rs))
    depth = None
    if query.depth is not None:  # mean of the valid depths in each cell
        d = query.depth[..., None]
        valid = pool((d > 0).float(), (w, h))
        depth = torch.where(valid > 0.5, pool(d, (w, h)) / valid.clamp_min(1e-6), 0)[..., 0]
    return Level(pool(query.image, (w, h)), depth, scale_intrinsics(query.K, rw / query.width, rh / query.height),
                 (rw, rh))


class Pooled:
    """A render pooled to a level's size (rgb, alpha and expected depth are all linear in the blend weights)."""

    def __init__(self, out, size: tuple[int, int]):
        both = pool(torch.cat([out.rgb, out.alpha[..., None], out.depth[..., None]], -1), size)
        self.rgb, self.alpha, self.depth = both[..., :3], both[..., 3], both[..., 4]


def refine_pose(field: "FeatureField", query: Query, c2w0: np.ndarray, cfg: FineConfig, scene_depth: float
                ) -> FineResult:
    """Refine ``c2w0`` [4, 4] against ``query`` (at its working resolution); ``scene_depth`` (metres, e.g. the
    index's median depth) scales the translation steps."""
    t0 = time.perf_counter()
    if len(cfg.levels) != len(cfg.steps):
        from ..errors import ConfigError

        raise ConfigError("fine stage: give as many steps as pyramid levels")
    c2w = torch.as_tensor(c2w0, dtype=torch.float64).clone()
    result = FineResult(c2w0)
    # Rotations act about a pivot at the scene's typical depth on the optical axis, not about the camera centre:
    # about the centre, a small turn and a sideways shift move the image almost identically (a long, narrow
    # valley in the loss); about the pivot they separate into "move the image" and "orbit the pivot".
    pivot = torch.eye(4, dtype=torch.float64)
    pivot[2, 3] = scene_depth * cfg.pivot
    pivot_inv = torch.linalg.inv(pivot)
    for scale, steps in zip(cfg.levels, cfg.steps):
        if steps <= 0:
            continue
        q = pyramid_level(query, scale)
        # One unit of xi: a rotation that moves the image by `first_step_px` pixels of this level, or the
        # translation that moves points at the scene's typical depth as much. L-BFGS's first trial step has an L1
        # length of one unit when the gradient's is above one (hence LOSS_SCALE), so this sets it to a sensible
        # size whatever the image; later steps are quasi-Newton and do not depend on units.
        fx_level = float(q.K[0, 0]) * q.size[0] / q.render_size[0]
        unit = cfg.first_step_px / fx_level
        step = unit * torch.tensor([scene_depth] * 3 + [1.0] * 3, dtype=torch.float64)
        xi = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        losses: list[float] = []

        def closure(q=q, xi=xi, c2w=c2w, step=step, losses=losses):
            pose = c2w @ pivot @ se3_exp(xi * step) @ pivot_inv
            out = Pooled(render_view(field, pose, q.K, *q.render_size), q.size)
            loss, mask = photometric_loss(out, q.target, robust_scale=cfg.robust_scale, min_alpha=cfg.min_alpha,
                                          brightness=cfg.brightness)
            if q.depth is not None and cfg.depth_weight > 0:
                loss = loss + cfg.depth_weight * depth_loss(out, q.depth, mask)
            if xi.grad is not None:
                xi.grad.zero_()
            loss.backward()
            if not bool(torch.isfinite(xi.grad).all()):
                xi.grad.zero_()
            losses.append(float(loss.detach()))
            return loss.detach()

        def scaled(closure=closure, xi=xi):
            loss = closure() * LOSS_SCALE
            xi.grad.mul_(LOSS_SCALE)
            return loss

        if cfg.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([xi], lr=1.0, max_iter=steps, max_eval=steps, history_size=10,
                                    tolerance_grad=1e-9, tolerance_change=cfg.tolerance, line_search_fn="strong_wolfe")
            opt.step(scaled)
        else:
            opt = torch.optim.Adam([xi], lr=cfg.lr)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda i, n=steps: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / n)))
            for _ in range(steps):
                opt.step(closure)
                sched.step()
        with torch.no_grad():
            c2w = c2w @ pivot @ se3_exp(xi.detach() * step) @ pivot_inv
        result.losses.append(losses)
    result.c2w = c2w.numpy()
    result.seconds = time.perf_counter() - t0
    return result
