"""``localize``: the camera pose of one image in a field's world frame, with no initial guess.

Coarse (retrieval, matches lifted by rendered depth, PnP-RANSAC hypotheses ranked by renders), then, with a depth
image, ICP, then photometric refinement through the rasteriser's pose gradient. A pose is only returned when it
can be defended: enough PnP inliers, and a render at the final pose that correlates with the image. Otherwise
``success`` is False and ``reason`` says which test failed: an image of another scene, a blank one, one with too
few matches.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import ConfigError
from .coarse import Hypothesis, coarse_hypotheses, score_hypotheses
from .config import LocalizeConfig
from .features import sift
from .fine import refine_pose
from .index import get_index
from .inputs import Query, make_query
from .photometric import fit_gain, ncc, render_view

if TYPE_CHECKING:
    from ..fields.base import FeatureField


@dataclass
class PoseEstimate:
    """The answer of :func:`localize`. ``c2w`` is None unless ``success``; the numbers say how it was found."""

    success: bool
    reason: str  # why there is no pose ('' on success)
    c2w: np.ndarray | None  # [4, 4] float64 camera-to-world, OpenCV axes, the field's world frame
    inliers: int = 0  # PnP inliers of the chosen hypothesis
    matches: int = 0  # 2D-3D correspondences over the retrieved views
    reprojection_error: float = float("nan")  # RMS pixels over the inliers (at the query's own resolution)
    photometric_error: float = float("nan")  # mean absolute colour error of the final render, in [0, 1]
    ncc: float = float("nan")  # normalised cross-correlation of the final render with the image
    confidence: float = 0.0  # in [0, 1]: 0 without a pose
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage ('index' only when built now)
    coarse_c2w: np.ndarray | None = None  # the pose before refinement
    hypotheses: list[dict] = field(default_factory=list)  # every ranked hypothesis: source, inliers, score
    retrieved: list[str] = field(default_factory=list)  # the index views retrieval picked
    used_depth: bool = False

    def to_dict(self) -> dict:
        def num(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), 6)

        return {
            "success": self.success, "reason": self.reason,
            "c2w": None if self.c2w is None else np.asarray(self.c2w).tolist(),
            "coarse_c2w": None if self.coarse_c2w is None else np.asarray(self.coarse_c2w).tolist(),
            "inliers": self.inliers, "matches": self.matches, "reprojection_error_px": num(self.reprojection_error),
            "photometric_error": num(self.photometric_error), "ncc": num(self.ncc),
            "confidence": num(self.confidence), "used_depth": self.used_depth,
            "timings_seconds": {k: round(v, 4) for k, v in self.timings.items()},
            "retrieved": self.retrieved, "hypotheses": self.hypotheses,
        }


def confidence(inliers: int, ncc_value: float, cfg: LocalizeConfig) -> float:
    """Photometric evidence (how far the final NCC is above the acceptance threshold, towards 1) times
    geometric evidence (saturating in the inlier count, 0.63 at the minimum)."""
    photo = max(0.0, min(1.0, (ncc_value - cfg.min_ncc) / max(1e-6, 1.0 - cfg.min_ncc)))
    geo = 1.0 - math.exp(-inliers / max(1, cfg.coarse.min_inliers))
    return photo * geo


def localize(field: "FeatureField", image: Any, intrinsics: Any, *, depth: Any = None,
             config: LocalizeConfig | None = None, cache_dir: str | os.PathLike | None = None,
             size: tuple[int, int] | None = None, depth_scale: float = 1000.0, refine: bool = True,
             progress: bool = False) -> PoseEstimate:
    """The pose of ``image`` (a path or an [H, W, 3] array) seen through ``intrinsics`` (3x3 K, pixel centres at
    +0.5), optionally with a metric ``depth`` image; see :func:`.inputs.make_query` for the forms accepted.

    ``cache_dir``: where the localisation map of the field is kept between runs; ``refine=False`` stops after the
    coarse stage. Bad input raises :class:`~featurefields.errors.FFError`; an image that cannot be localised
    returns ``success=False`` with the reason."""
    cfg = config or LocalizeConfig()
    if cfg.work_size < 32:
        raise ConfigError(f"work size must be at least 32 pixels, not {cfg.work_size}")
    t_start = time.perf_counter()
    full = make_query(image, intrinsics, depth, depth_scale=depth_scale, size=size)
    timings: dict[str, float] = {}
    index, built = get_index(field, cfg.index, cache_dir, progress)
    if built:
        timings["index"] = index.build_seconds
    t = time.perf_counter()
    q = full.resized(cfg.work_size)
    px_back = full.width / q.width  # working pixels -> the query's own pixels

    def fail(reason: str, **kw) -> PoseEstimate:
        timings["total"] = time.perf_counter() - t_start - timings.get("index", 0.0)
        return PoseEstimate(False, reason, None, timings=timings, used_depth=full.depth is not None, **kw)

    spread = float(q.image.mean(-1).std())
    if spread < cfg.blank_std:
        timings["features"] = time.perf_counter() - t
        return fail(f"the image is blank (grey-level spread {spread * 255:.1f} of 255): nothing to localise")
    feats = sift(q.image.numpy(), cfg.index.max_keypoints, cfg.index.contrast_threshold)
    timings["features"] = time.perf_counter() - t
    if len(feats) < cfg.coarse.min_inliers:
        return fail(f"only {len(feats)} keypoints in the image (need at least {cfg.coarse.min_inliers}): blank or "
                    "featureless")
    t = time.perf_counter()
    K = q.K.numpy()
    coarse = coarse_hypotheses(index, feats, K, q.width, cfg.coarse)
    timings["matching_pnp"] = time.perf_counter() - t
    if not coarse.hypotheses:
        return fail(f"too few inliers: the best PnP hypothesis has {coarse.best_inliers} of {coarse.matches} matches "
                    f"(need {cfg.coarse.min_inliers}); the image is probably not of this scene",
                    matches=coarse.matches, retrieved=coarse.retrieved, inliers=coarse.best_inliers)
    t = time.perf_counter()
    ranked = score_hypotheses(field, coarse.hypotheses, q.image, q.K, cfg.coarse)
    timings["scoring"] = time.perf_counter() - t
    summaries = [h.summary() for h in ranked]

    candidates: list[tuple[Hypothesis, np.ndarray, float, float]] = []  # (hypothesis, pose, ncc, mae)
    timings["icp"] = timings["fine"] = 0.0
    for hyp in distinct_contenders(ranked, cfg, index.median_depth):
        pose = hyp.c2w
        if q.depth is not None and cfg.icp:
            t = time.perf_counter()
            from .icp import icp_refine

            pose, _ = icp_refine(field, q, pose, index.median_depth)
            timings["icp"] += time.perf_counter() - t
        if refine:
            t = time.perf_counter()
            pose = refine_pose(field, q, pose, cfg.fine, index.median_depth).c2w
            timings["fine"] += time.perf_counter() - t
        score, mae = verify(field, q, pose, cfg)
        candidates.append((hyp, pose, score, mae))
        if score >= cfg.accept_ncc:  # convincing: the other contenders cannot do meaningfully better
            break
    hyp, pose, score, mae = max(candidates, key=lambda c: c[2])
    common = dict(inliers=hyp.inliers, matches=coarse.matches, reprojection_error=hyp.reprojection_px * px_back,
                  photometric_error=mae, ncc=score, coarse_c2w=hyp.c2w, hypotheses=summaries,
                  retrieved=coarse.retrieved)
    if not score >= cfg.min_ncc:
        return fail(f"the render at the best pose does not look like the image (correlation {score:.2f}, need "
                    f"{cfg.min_ncc:.2f}; {hyp.inliers} PnP inliers): the image is probably not of this scene", **common)
    timings["total"] = time.perf_counter() - t_start - timings.get("index", 0.0)
    return PoseEstimate(True, "", pose, confidence=confidence(hyp.inliers, score, cfg), timings=timings,
                        used_depth=full.depth is not None, **common)


def distinct_contenders(ranked: list[Hypothesis], cfg: LocalizeConfig, scene_depth: float) -> list[Hypothesis]:
    """The best hypothesis, plus up to ``keep - 1`` runners-up that scored nearly as well (within
    ``contender_margin`` NCC) and sit somewhere else (more than 2 degrees or 5% of the scene depth away): two
    renders that explain the image equally well are both worth refining; two copies of one pose are not."""
    out = [ranked[0]]
    for h in ranked[1:]:
        if len(out) >= max(1, cfg.coarse.keep):
            break
        if h.score < ranked[0].score - cfg.coarse.contender_margin:
            break
        if all(_apart(h.c2w, o.c2w, scene_depth) for o in out):
            out.append(h)
    return out


def _apart(a: np.ndarray, b: np.ndarray, scene_depth: float) -> bool:
    c = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2
    deg = math.degrees(math.acos(max(-1.0, min(1.0, c))))
    return deg > 2.0 or float(np.linalg.norm(a[:3, 3] - b[:3, 3])) > 0.05 * scene_depth


def verify(field: "FeatureField", q: Query, c2w: np.ndarray, cfg: LocalizeConfig) -> tuple[float, float]:
    """(NCC, mean absolute colour error after gain compensation) of a render at ``c2w`` against the image."""
    with torch.no_grad():
        out = render_view(field, torch.from_numpy(np.asarray(c2w)), q.K, q.width, q.height)
        mask = out.alpha > cfg.fine.min_alpha
        gain, offset = fit_gain(out.rgb, q.image, mask)
        mae = float((out.rgb * gain + offset - q.image).abs()[mask].mean()) if bool(mask.any()) else float("nan")
    return ncc(out.rgb, q.image), mae
