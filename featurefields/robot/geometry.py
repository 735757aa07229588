"""Geometry a robot needs around a located object: the plane it rests on, its unseen underside, an upright
oriented box, and box overlap.

A camera never sees what an object stands on: the visible surface of a ball on a table ends a little below its
equator, and its centroid and box would be too high. Objects on a support are completed by the support plane: the
footprint of the object (its visible points dropped onto the plane, convex hull) is added as a surface, which is
what the underside of a box, book, can, mug or bottle is, and nearly so for a ball. Boxes are upright (one axis
along the support's normal, the yaw of the smallest footprint rectangle: OpenCV's minAreaRect), because that is
the box a robot plans with and the only one that is stable between two scans of a round object; when every yaw
gives the same footprint area (round things) the yaw is taken from the world's x axis, so the box does not spin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ROUND_FOOTPRINT = 1.03  # footprint rectangles within 3% of the smallest over every yaw: a round footprint


@dataclass
class Plane:
    """Points x with normal . x + offset = 0; ``normal`` [3] unit, pointing to the side the cameras are on."""

    normal: Tensor
    offset: float

    def distance(self, points: Tensor) -> Tensor:  # [P] signed, positive above
        return points @ self.normal + self.offset

    def project(self, points: Tensor) -> Tensor:  # [P, 3] onto the plane
        return points - self.distance(points)[:, None] * self.normal


@dataclass
class OrientedBox:
    """center [3], rotation [3, 3] (columns: the box's axes in the world), extent [3] (full side lengths)."""

    center: Tensor
    rotation: Tensor
    extent: Tensor

    def to_open3d(self):
        import open3d as o3d

        return o3d.geometry.OrientedBoundingBox(self.center.double().numpy(), self.rotation.double().numpy(),
                                                self.extent.double().numpy())

    @property
    def volume(self) -> float:
        return float(self.extent.prod())

    def contains(self, points: Tensor, margin: float = 0.0) -> Tensor:  # [P] bool
        local = (points - self.center) @ self.rotation
        return (local.abs() <= self.extent / 2 + margin).all(-1)

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "rotation": self.rotation.tolist(), "extent": self.extent.tolist()}


def fit_support_plane(points: Tensor, normals: Tensor, up: Tensor, below: float, tolerance: float = 0.004
                      ) -> Plane | None:
    """The plane an object stands on: RANSAC (open3d) over surface points facing ``up`` (within 25 degrees) that
    lie below height ``below`` (along ``up``); None if fewer than 50 such points agree."""
    import open3d as o3d

    cand = (normals @ up > 0.9) & (points @ up < below)
    if int(cand.sum()) < 50:
        return None
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[cand].double().numpy()))
    model, inliers = pcd.segment_plane(distance_threshold=tolerance, ransac_n=3, num_iterations=200,
                                       probability=0.9999)
    if len(inliers) < 50:
        return None
    n = torch.tensor(model[:3], dtype=torch.float32)
    d = float(model[3]) / float(n.norm())
    n = n / n.norm()
    if float(n @ up) < 0:
        n, d = -n, -d
    return Plane(n, d)


def plane_basis(normal: Tensor, x_hint: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Two unit vectors spanning the plane: the first along ``x_hint`` (default world x) projected onto it."""
    hint = torch.tensor([1.0, 0.0, 0.0]) if x_hint is None else x_hint.float()
    e1 = hint - (hint @ normal) * normal
    if float(e1.norm()) < 1e-3:
        e1 = torch.tensor([0.0, 1.0, 0.0]) - normal[1] * normal
    e1 = e1 / e1.norm()
    return e1, torch.linalg.cross(normal, e1)


def footprint_fill(points: Tensor, plane: Plane, spacing: float) -> Tensor:
    """Points every ``spacing`` on the plane inside the convex hull of ``points`` dropped onto it: [F, 3]."""
    from scipy.spatial import ConvexHull, QhullError

    e1, e2 = plane_basis(plane.normal)
    flat = plane.project(points)
    uv = torch.stack([flat @ e1, flat @ e2], -1).double().numpy()
    if len(uv) < 3:
        return points.new_zeros(0, 3)
    try:
        hull = ConvexHull(uv)
    except QhullError:
        return points.new_zeros(0, 3)
    lo, hi = uv.min(0), uv.max(0)
    gu, gv = np.meshgrid(np.arange(lo[0], hi[0] + spacing, spacing), np.arange(lo[1], hi[1] + spacing, spacing))
    grid = np.stack([gu.ravel(), gv.ravel()], 1)
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    grid = torch.from_numpy(grid[inside]).float()
    origin = -plane.offset * plane.normal
    return origin + grid[:, :1] * e1 + grid[:, 1:] * e2


def upright_box(points: Tensor, up: Tensor, bottom: float | None = None) -> OrientedBox:
    """The smallest-footprint box with one axis along ``up`` holding ``points`` [P, 3]; ``bottom``: the height
    (along ``up``) its base is extended down to, e.g. the support plane's. Axes: the footprint's longer side, its
    shorter side, up."""
    import cv2

    up = up / up.norm()
    e1, e2 = plane_basis(up)
    uv = torch.stack([points @ e1, points @ e2], -1).double().numpy().astype(np.float32)
    h = points @ up
    lo_h, hi_h = float(h.min()) if bottom is None else min(float(h.min()), bottom), float(h.max())
    (cx, cy), (w, l), ang = cv2.minAreaRect(uv)
    if _round_footprint(uv, w * l):
        c = (uv.min(0) + uv.max(0)) / 2
        (cx, cy), (w, l), ang = (float(c[0]), float(c[1])), tuple(uv.max(0) - uv.min(0)), 0.0
    elif w < l:  # the longer footprint side first
        w, l, ang = l, w, ang + 90.0
    a = np.deg2rad(ang)
    ax1 = float(np.cos(a)) * e1 + float(np.sin(a)) * e2
    ax2 = torch.linalg.cross(up, ax1)
    center = float(cx) * e1 + float(cy) * e2 + (lo_h + hi_h) / 2 * up
    return OrientedBox(center.float(), torch.stack([ax1, ax2, up], 1).float(),
                       torch.tensor([float(w), float(l), hi_h - lo_h]).float())


def is_round(points: Tensor, up: Tensor) -> bool:
    """Whether the footprint of ``points`` [P, 3] on the plane normal to ``up`` is round (no yaw of its own)."""
    import cv2

    e1, e2 = plane_basis(up / up.norm())
    uv = torch.stack([points @ e1, points @ e2], -1).double().numpy().astype(np.float32)
    (_, _), (w, l), _ = cv2.minAreaRect(uv)
    return _round_footprint(uv, w * l)


def _round_footprint(uv: np.ndarray, best_area: float) -> bool:
    """Whether every yaw gives (nearly) the smallest footprint rectangle: then the yaw means nothing."""
    worst = 0.0
    for deg in range(0, 90, 5):
        a = np.deg2rad(deg)
        r = uv @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        worst = max(worst, float(np.prod(r.max(0) - r.min(0))))
    return worst <= ROUND_FOOTPRINT * max(best_area, 1e-12)


def upright_box_iou(a: OrientedBox, b: OrientedBox) -> float:
    """IoU of two boxes that share their third (up) axis: footprint intersection (OpenCV's rotated-rectangle
    intersection) times height overlap, over the union."""
    import cv2

    up = a.rotation[:, 2]
    if float(torch.abs(up @ b.rotation[:, 2])) < 0.999:
        raise ValueError("upright_box_iou needs boxes with the same up axis")
    e1, e2 = plane_basis(up)

    def rect(box: OrientedBox):
        c = box.center
        ang = float(torch.rad2deg(torch.atan2(box.rotation[:, 0] @ e2, box.rotation[:, 0] @ e1)))
        return ((float(c @ e1), float(c @ e2)), (float(box.extent[0]), float(box.extent[1])), ang)

    kind, pts = cv2.rotatedRectangleIntersection(rect(a), rect(b))
    inter_area = float(cv2.contourArea(cv2.convexHull(pts))) if kind != cv2.INTERSECT_NONE and pts is not None \
        else 0.0
    ha, hb = float(a.center @ up), float(b.center @ up)
    overlap = max(0.0, min(ha + float(a.extent[2]) / 2, hb + float(b.extent[2]) / 2)
                  - max(ha - float(a.extent[2]) / 2, hb - float(b.extent[2]) / 2))
    inter = inter_area * overlap
    union = a.volume + b.volume - inter
    return inter / union if union > 0 else 0.0


def camera_up(c2w: Tensor) -> Tensor:
    """The scene's up direction as the cameras hold it: the mean of their image-up axes (-y in OpenCV), [3]."""
    up = -c2w[:, :3, 1].float().mean(0)
    return up / up.norm().clamp_min(1e-9)
