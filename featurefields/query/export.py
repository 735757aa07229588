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

from ..data.cameras import Cameras
from ..errors import ConfigError, DataError
from ..fields.density import quat_to_rotmat
from ..fields.gaussians import GaussianField, sh0_to_rgb
from ..fields.ply import write_ply
from ..io import atomic_path, write_image
from .selection import Selection

# Turbo (Mikhailov, Google 2019) as its published polynomial fit: coefficients of 1, x, x^2, x^3 and x^4, x^5.
_TURBO4 = np.array([[0.13572138, 4.61539260, -42.66032258, 132.13108234],
                    [0.09140261, 2.19418839, 4.84296658, -14.18503333],
                    [0.10667330, 12.64194608, -60.58204836, 110.36276771]])
_TURBO2 = np.array([[-152.94239396, 59.28637943], [4.27729857, 2.82956604], [-89.90310912, 27.34824973]])


def turbo(x: np.ndarray | Tensor) -> np.ndarray:
    """The turbo colour map: values in [0, 1] (clipped) [...] -> float RGB in [0, 1] [..., 3]."""
    x = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, np.float64)
    x = np.clip(np.nan_to_num(x), 0.0, 1.0)[..., None]
    v4 = np.concatenate([np.ones_like(x), x, x ** 2, x ** 3], -1)
    v2 = np.concatenate([x ** 4, x ** 5], -1)
    return np.clip(v4 @ _TURBO4.T + v2 @ _TURBO2.T, 0.0, 1.0)


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
    rel = relevancy.detach().float().cpu()
    if rel.ndim == 1:
        rel = rel[None]
    if rel.shape[1] != len(field):
        raise ConfigError(f"{rel.shape[1]} relevancy values for {len(field)} Gaussians")
    extra = {"relevancy": rel[0].numpy()} if rel.shape[0] == 1 else {
        f"relevancy_{i}": r.numpy() for i, r in enumerate(rel)}
    write_ply(path, field, world_from_scene, extra=extra)


def gaussian_normals(field: GaussianField, idx: Tensor | None = None) -> Tensor:
    """Each Gaussian's shortest axis (the normal of a flat splat), unoriented: [n, 3] unit."""
    quats = field.quats.detach() if idx is None else field.quats.detach()[idx]
    scales = field.scales.detach() if idx is None else field.scales.detach()[idx]
    rot = quat_to_rotmat(quats)  # [n, 3, 3], columns = local axes in the world
    axis = scales.argmin(dim=-1)
    return F.normalize(rot[torch.arange(len(axis)), :, axis], dim=-1)


def orient_normals(points: Tensor, normals: Tensor, viewpoints: Tensor | None) -> Tensor:
    """Flip normals towards the nearest viewpoint (a surface seen by a camera faces it), or, with no cameras,
    away from the points' centroid."""
    if viewpoints is not None and len(viewpoints):
        d = torch.cdist(points.float(), viewpoints.float())  # [n, C]
        towards = viewpoints.float()[d.argmin(dim=1)] - points.float()
    else:
        towards = points.float() - points.float().mean(0)
    sign = torch.where((normals * towards).sum(-1) < 0, -1.0, 1.0)
    return normals * sign[:, None]


def selection_point_cloud(field: GaussianField, sel: Selection, world_from_scene: Tensor | None = None,
                          cameras: Cameras | None = None):
    """The selected Gaussians as an open3d point cloud in world coordinates: centres, colours (DC term), and
    normals from each splat's shortest axis, oriented towards the nearest camera."""
    import open3d as o3d

    if len(sel) != len(field):
        raise ConfigError(f"the selection covers {len(sel)} Gaussians but the field has {len(field)}")
    if sel.count == 0:
        raise ConfigError("the selection is empty: no points to export (check the query or lower --threshold)")
    idx = sel.indices.to(field.means.device)
    pts = field.means.detach()[idx].float().cpu()
    normals = gaussian_normals(field, idx).cpu()
    normals = orient_normals(pts, normals, cameras.centers if cameras is not None else None)
    colors = sh0_to_rgb(field.sh0.detach()[idx][:, 0]).clamp(0, 1).cpu()
    m = (world_from_scene if world_from_scene is not None else torch.eye(4)).float()
    lin = m[:3, :3]
    pts = pts @ lin.T + m[:3, 3]
    normals = F.normalize(normals @ torch.linalg.inv(lin), dim=-1)  # normals transform with the inverse transpose
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
