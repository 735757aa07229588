"""Query results as files: relevancy heatmaps and masks (PNG), per-Gaussian relevancy (PLY), object point clouds.

Every file is written atomically. Splat PLYs keep the convention of the training run's ``field.ply`` (parameters
in the field's frame, ``world_from_scene`` recorded in the header; the identity for every loader so far), while
point clouds, which have no such header, are transformed to the metric world frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from ..fields.gaussians import GaussianField, sh0_to_rgb
from ..fields.ply import write_ply
from ..fields.splats import gaussians_of
from ..io import atomic_path, write_image
from .selection import Selection

# Turbo (Mikhailov, Google 2019): every 8th entry of its published 256-entry lookup table (Apache-2.0), linearly
# interpolated; within 0.007 of the full table everywhere.
_TURBO = np.array([
    [0.19, 0.0718, 0.2322], [0.225, 0.1635, 0.451], [0.2511, 0.2524, 0.6337], [0.2682, 0.3382, 0.7805],
    [0.2763, 0.4212, 0.8912], [0.2754, 0.5012, 0.9659], [0.2586, 0.5796, 0.9988], [0.2138, 0.6589, 0.9796],
    [0.1584, 0.7355, 0.923], [0.1117, 0.8057, 0.8452], [0.0927, 0.8655, 0.7623], [0.1201, 0.9119, 0.6866],
    [0.1966, 0.949, 0.5947], [0.3051, 0.977, 0.4899], [0.4278, 0.9942, 0.3858], [0.5466, 0.9991, 0.2958],
    [0.6436, 0.99, 0.2336], [0.7158, 0.9688, 0.2082], [0.7952, 0.9302, 0.2039], [0.8671, 0.8797, 0.2139],
    [0.9267, 0.8202, 0.2257], [0.9693, 0.7552, 0.2266], [0.9916, 0.6841, 0.2071], [0.9964, 0.5985, 0.1738],
    [0.9859, 0.5048, 0.1337], [0.9619, 0.4109, 0.0931], [0.9262, 0.3247, 0.0584], [0.8807, 0.2533, 0.0352],
    [0.824, 0.1918, 0.0197], [0.7556, 0.1373, 0.0094], [0.6754, 0.0898, 0.0045], [0.5834, 0.0493, 0.0049],
    [0.4796, 0.0158, 0.0106]])
_TURBO_AT = np.round(np.linspace(0, 255, len(_TURBO))) / 255  # the LUT positions of the anchors


def turbo(x: np.ndarray | Tensor) -> np.ndarray:
    """The turbo colour map: values in [0, 1] (clipped) [...] -> float RGB in [0, 1] [..., 3]."""
    x = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, np.float64)
    x = np.clip(np.nan_to_num(np.asarray(x, np.float64)), 0.0, 1.0)
    return np.stack([np.interp(x, _TURBO_AT, _TURBO[:, c]) for c in range(3)], -1)


def heatmap_overlay(rgb: Tensor, relevancy: Tensor, threshold: float = 0.5) -> np.ndarray:
    """LERF-style picture: relevancy above ``threshold``, stretched to [0, 1], in turbo over the render; below the
    threshold the render shows through (dimmed). rgb [H, W, 3] in [0, 1], relevancy [H, W] -> uint8 [H, W, 3]."""
    base = rgb.detach().float().clamp(0, 1).cpu().numpy()
    rel = relevancy.detach().float().cpu().numpy()
    heat = np.clip((rel - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0)
    alpha = np.where(rel > threshold, 0.35 + 0.35 * heat, 0.0)[..., None]
    out = (0.75 * base) * (1 - alpha) + turbo(heat) * alpha
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def mask_image(mask: Tensor) -> np.ndarray:
    """[H, W] bool -> uint8 0/255 (a plain grayscale PNG any tool reads as a mask)."""
    return (mask.detach().cpu().numpy().astype(np.uint8) * 255)


def write_view_outputs(out_dir: str | Path, stem: str, rgb: Tensor, relevancy: Tensor | None, mask: Tensor,
                       threshold: float = 0.5) -> list[Path]:
    """``<stem>_heatmap.png`` (when there is a relevancy map) and ``<stem>_mask.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    paths = []
    if relevancy is not None:
        paths.append(out_dir / f"{stem}_heatmap.png")
        write_image(paths[-1], heatmap_overlay(rgb, relevancy, threshold))
    paths.append(out_dir / f"{stem}_mask.png")
    write_image(paths[-1], mask_image(mask))
    return paths


def write_relevancy_ply(path: str | Path, field: GaussianField, relevancy: Tensor, names: list[str] | None = None,
                        world_from_scene: Tensor | None = None) -> None:
    """The whole field as a 3DGS PLY plus a ``relevancy`` float property per Gaussian (one per positive,
    ``relevancy_<i>``, when there are several; ``names`` are recorded in the header comment via the property
    order). relevancy: [N] or [P, N]."""
    field = gaussians_of(field)
    rel = relevancy.detach().float().cpu()
    if rel.ndim == 1:
        rel = rel[None]
    if rel.shape[1] != len(field):
        raise ConfigError(f"{rel.shape[1]} relevancy values for {len(field)} Gaussians")
    extra = {"relevancy": rel[0].numpy()} if rel.shape[0] == 1 else {
        f"relevancy_{i}": r.numpy() for i, r in enumerate(rel)}
    write_ply(path, field, world_from_scene, extra=extra)


def orient_normals(points: Tensor, normals: Tensor, viewpoints: Tensor | None, k: int = 10) -> Tensor:
    """Give unoriented normals [n, 3] a consistent outward sign.

    Each normal first points towards the nearest viewpoint (a surface seen by a camera faces it; with no cameras:
    away from the points' centroid). That vote is right for most points but not all (the top of a ball seen from
    a ring of cameras at its height), so signs are then made consistent between neighbours (open3d's tangent-plane
    propagation over a k-nearest-neighbour graph) and each connected piece keeps the sign most of its first votes
    agree with."""
    import open3d as o3d

    from .selection import components

    pts, nrm = points.double(), F.normalize(normals.double(), dim=-1)
    if viewpoints is not None and len(viewpoints):
        vp = viewpoints.double().to(pts.device)
        towards = vp[torch.cdist(pts, vp).argmin(dim=1)] - pts
    else:
        towards = pts - pts.mean(0)
    vote = torch.where((nrm * towards).sum(-1) < 0, -1.0, 1.0).double()
    nrm = nrm * vote[:, None]
    if len(pts) <= k:
        return nrm.float()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.cpu().numpy()))
    pcd.normals = o3d.utility.Vector3dVector(nrm.cpu().numpy())
    pcd.orient_normals_consistent_tangent_plane(k)
    out = torch.from_numpy(np.asarray(pcd.normals)).to(nrm)
    agree = (out * nrm).sum(-1) > 0  # where propagation kept the first vote
    labels, _ = components(pts, k=k)
    for c in np.unique(labels):
        part = torch.from_numpy(labels == c)
        if agree[part].float().mean() < 0.5:
            out[part] = -out[part]
    return out.float()


def selection_point_cloud(field, sel: Selection, viewpoints: Tensor | None = None):
    """The selected elements of a field (a GaussianFeatureField, or a bare GaussianField in its own frame) as an
    open3d point cloud in world coordinates: centres, colours (DC term), and normals from each splat's shortest
    axis, oriented towards the nearest of ``viewpoints`` [V, 3] (world camera centres)."""
    import open3d as o3d

    from ..fields.splats import GaussianFeatureField

    if isinstance(field, GaussianField):
        field = GaussianFeatureField(field)
    if len(sel) != len(field):
        raise ConfigError(f"the selection covers {len(sel)} Gaussians but the field has {len(field)}")
    if sel.count == 0:
        raise ConfigError("the selection is empty: no points to export (check the query or lower --threshold)")
    idx = sel.indices.to(field.device)
    pts = field.element_positions()[idx].float().cpu()
    normals = orient_normals(pts, field.element_normals()[idx].cpu(), viewpoints)
    colors = sh0_to_rgb(gaussians_of(field).sh0.detach()[idx][:, 0]).clamp(0, 1).cpu()
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(pts.double().numpy())
    pcd.normals = o3d.utility.Vector3dVector(normals.double().numpy())
    pcd.colors = o3d.utility.Vector3dVector(colors.double().numpy())
    return pcd


def write_point_cloud(path: str | Path, pcd) -> None:
    """open3d point cloud -> PLY (binary), atomically."""
    import open3d as o3d

    path = Path(path)
    if path.suffix.lower() not in (".ply", ".pcd"):
        raise ConfigError(f"{path}: point clouds are written as .ply or .pcd")
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), pcd, write_ascii=False):
            raise DataError(f"{path}: open3d could not write the point cloud")
