"""With a depth image: point-to-plane ICP (open3d) of the query's depth against the field's rendered depth at the
current estimate, re-rendered each round (frame-to-model, as KinectFusion tracks): geometry pins down translation
along the optical axis, which colour alone constrains least."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .inputs import Query
from .photometric import render_view

if TYPE_CHECKING:
    from ..fields.base import FeatureField

ROUNDS = (0.05, 0.02, 0.01)  # correspondence distances per round, as fractions of the scene's typical depth


def backproject(depth: np.ndarray, K: np.ndarray, step: int = 1) -> np.ndarray:
    """[M, 3] camera-frame points of the valid pixels of ``depth`` [H, W] (every ``step``-th pixel)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h:step, 0:w:step]
    z = depth[v, u]
    ok = z > 0
    x = ((u[ok] + 0.5) - K[0, 2]) / K[0, 0] * z[ok]
    y = ((v[ok] + 0.5) - K[1, 2]) / K[1, 1] * z[ok]
    return np.stack([x, y, z[ok]], 1)


def icp_refine(field: "FeatureField", query: Query, c2w0: np.ndarray, scene_depth: float, min_alpha: float = 0.9
               ) -> tuple[np.ndarray, float]:
    """(refined c2w, fitness: the fraction of query points with a correspondence in the last round)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    K = query.K.numpy()
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(backproject(query.depth.numpy(), K, 2)))
    c2w, fitness = np.asarray(c2w0, np.float64).copy(), 0.0
    for frac in ROUNDS:
        with torch.no_grad():
            out = render_view(field, torch.from_numpy(c2w), query.K, query.width, query.height)
        alpha = out.alpha.numpy()
        d = np.where(alpha > min_alpha, out.depth.numpy() / np.maximum(alpha, 1e-6), 0)
        cam = backproject(d, K, 2)
        if len(cam) < 100 or len(src.points) < 100:
            break
        tgt = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cam @ c2w[:3, :3].T + c2w[:3, 3]))
        tgt.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(12))
        tgt.orient_normals_towards_camera_location(c2w[:3, 3])
        thr = frac * scene_depth
        res = reg.registration_icp(src, tgt, thr, c2w, reg.TransformationEstimationPointToPlane(),
                                   reg.ICPConvergenceCriteria(max_iteration=20))
        if res.fitness < 0.2:  # too little overlap to trust: keep what we had
            break
        c2w, fitness = np.asarray(res.transformation).copy(), float(res.fitness)
    return c2w, fitness
