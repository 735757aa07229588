"""The coarse stage, given no pose: retrieve the index views that look most like the query, match its keypoints to
theirs (2D-2D, lifted to 2D-3D by the field's rendered depth), solve PnP-RANSAC per view and on the union of all
matches, and rank the resulting hypotheses by how well a render at each agrees with the image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import CoarseConfig
from .features import Features, ratio_matches
from .index import MapIndex
from .photometric import ncc, render_view

if TYPE_CHECKING:
    from ..fields.base import FeatureField


@dataclass
class Hypothesis:
    c2w: np.ndarray  # [4, 4] float64 camera-to-world, world frame
    inliers: int
    matches: int
    reprojection_px: float  # RMS over the inliers, at the query's working resolution
    source: str  # the index view the matches came from, or 'union'
    score: float = float("nan")  # photometric agreement of a small render with the image (NCC)
    inlier_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def summary(self) -> dict:
        return {"source": self.source, "inliers": self.inliers, "matches": self.matches,
                "reprojection_px": round(self.reprojection_px, 3), "score": round(float(self.score), 4)}


def pose_from_pnp(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    import cv2

    R, _ = cv2.Rodrigues(rvec)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = (-R.T @ tvec.reshape(3))
    return c2w


def pnp_hypothesis(xyz: np.ndarray, uv: np.ndarray, K: np.ndarray, cfg: CoarseConfig, px_scale: float,
                   source: str) -> Hypothesis | None:
    """PnP-RANSAC (OpenCV, SQPnP on the minimal sets), then Levenberg-Marquardt on the inliers."""
    import cv2

    if len(xyz) < 6:
        return None
    thr = cfg.reprojection_px * px_scale
    obj, img = xyz.astype(np.float64), (uv - 0.5).astype(np.float64)  # OpenCV: pixel centres on integers
    Kcv = K.copy()
    Kcv[0, 2] -= 0.5
    Kcv[1, 2] -= 0.5
    cv2.setRNGSeed(0)
    try:
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, Kcv, None, iterationsCount=cfg.ransac_iterations,
                                                 reprojectionError=thr, confidence=0.9999, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    if not ok or inl is None or len(inl) < 4:
        return None
    inl = inl[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], Kcv, None, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, Kcv, None)
    err = np.linalg.norm(proj[:, 0] - img, axis=1)
    inl = np.nonzero(err < thr)[0]  # re-count after refinement
    if len(inl) < 4:
        return None
    rms = float(np.sqrt(np.mean(err[inl] ** 2)))
    return Hypothesis(pose_from_pnp(rvec, tvec), len(inl), len(xyz), rms, source, inlier_idx=inl)


@dataclass
class CoarseResult:
    hypotheses: list[Hypothesis]  # ranked, best first; only those with enough inliers
    retrieved: list[str]
    matches: int  # 2D-3D correspondences over the retrieved views
    best_inliers: int  # the most inliers any hypothesis reached (also when below the minimum)


def coarse_hypotheses(index: MapIndex, query: Features, K: np.ndarray, width: int, cfg: CoarseConfig
                      ) -> CoarseResult:
    px_scale = width / 320.0
    picks = index.retrieve(query, cfg.retrieve)
    hyps: list[Hypothesis] = []
    all_xyz, all_uv = [], []
    for v in picks:
        ref = index.features[v]
        qi, ri = ratio_matches(query.desc, ref.desc, cfg.ratio)
        if len(qi) == 0:
            continue
        xyz, uv = index.xyz[v][ri], query.xy[qi]
        all_xyz.append(xyz)
        all_uv.append(uv)
        h = pnp_hypothesis(xyz, uv, K, cfg, px_scale, index.names[v])
        if h is not None:
            hyps.append(h)
    n = int(sum(len(x) for x in all_xyz))
    if len(all_xyz) > 1:
        h = pnp_hypothesis(np.concatenate(all_xyz), np.concatenate(all_uv), K, cfg, px_scale, "union")
        if h is not None:
            hyps.append(h)
    best = max((h.inliers for h in hyps), default=0)
    good = sorted((h for h in hyps if h.inliers >= cfg.min_inliers), key=lambda h: -h.inliers)
    return CoarseResult(good, [index.names[v] for v in picks], n, best)


def score_hypotheses(field: "FeatureField", hyps: list[Hypothesis], image: torch.Tensor, K: torch.Tensor,
                     cfg: CoarseConfig) -> list[Hypothesis]:
    """Render each hypothesis small and rank by normalised cross-correlation with the (equally small) image:
    inlier counts say how many matches agree, the render says whether the pose actually shows the picture."""
    import cv2

    h0, w0 = image.shape[:2]
    s = min(1.0, cfg.score_size / max(w0, h0))
    w, h = max(8, round(w0 * s)), max(8, round(h0 * s))
    small = torch.from_numpy(cv2.resize(image.numpy(), (w, h), interpolation=cv2.INTER_AREA))
    Ks = K.clone()
    Ks[0] *= w / w0
    Ks[1] *= h / h0
    for hyp in hyps:
        with torch.no_grad():
            out = render_view(field, torch.from_numpy(hyp.c2w), Ks, w, h)
        hyp.score = ncc(out.rgb, small)
    return sorted(hyps, key=lambda x: (-x.score, -x.inliers))
