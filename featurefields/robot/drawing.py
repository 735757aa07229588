"""Grasps drawn for people: gripper boxes over the field's surface (PLY) and over a rendered view (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..fields.base import FeatureField
from ..io import atomic_path, write_image
from .gripper import ParallelJaw

RANK_COLOURS = np.array([[230, 40, 40], [255, 140, 0], [240, 210, 30], [60, 180, 75], [40, 130, 230],
                         [145, 30, 180], [70, 240, 240], [240, 50, 230], [170, 110, 40], [128, 128, 128]], np.uint8)
_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float) / 2
_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                   [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
_EDGES = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]


def gripper_corners(gripper: ParallelJaw, pose: np.ndarray, opening: float) -> list[np.ndarray]:
    """World corners [8, 3] of each gripper box at ``pose``."""
    R, t = pose[:3, :3], pose[:3, 3]
    return [(c + _CORNERS * e) @ R.T + t for _, c, e in gripper.boxes(opening)]


def grasps_ply(path: str | Path, result, gripper: ParallelJaw) -> None:
    """One PLY: the located surroundings as coloured points, and each grasp's gripper as coloured box faces (rank
    1 red, 2 orange, 3 yellow, ...), world frame. Mesh viewers show the faces; point-cloud viewers the points."""
    from plyfile import PlyData, PlyElement

    pts = [loc.surroundings.points.numpy() for loc in result.located]
    cols = [(loc.surroundings.colors.clamp(0, 1).numpy() * 255).astype(np.uint8) for loc in result.located]
    verts, vcols, faces = [np.concatenate(pts)], [np.concatenate(cols)], []
    base = len(verts[0])
    for rank, g in enumerate(result):
        colour = RANK_COLOURS[min(rank, len(RANK_COLOURS) - 1)]
        for corners in gripper_corners(gripper, g.pose.double().numpy(), g.opening):
            verts.append(corners)
            vcols.append(np.tile(colour, (8, 1)))
            faces.append(_FACES + base)
            base += 8
    v = np.concatenate(verts).astype(np.float32)
    c = np.concatenate(vcols).astype(np.uint8)
    vdata = np.empty(len(v), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                    ("blue", "u1")])
    for i, k in enumerate("xyz"):
        vdata[k] = v[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        vdata[k] = c[:, i]
    f = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    fdata = np.empty(len(f), dtype=[("vertex_indices", "i4", (3,))])
    fdata["vertex_indices"] = f
    ply = PlyData([PlyElement.describe(vdata, "vertex"), PlyElement.describe(fdata, "face")],
                  comments=["featurefields ff-grasp: world frame, metres; grippers coloured by rank"])
    with atomic_path(path) as tmp:
        ply.write(str(tmp))


def draw_grasps(path: str | Path, field: FeatureField, result, gripper: ParallelJaw, scale: int = 3) -> None:
    """The training view that sees the best grasp most squarely, rendered by the field, with every grasp's
    gripper boxes drawn over it (rank colours, thicker for better ones) and contacts as white dots."""
    import cv2

    best = result[0]
    target = best.position.double()
    views = field.views("all")

    def facing(v):
        to = target - v.c2w[:3, 3].double()
        return float(v.c2w[:3, 2].double() @ to) / float(to.norm()) / float(to.norm())

    view = max(views, key=facing)
    with torch.no_grad():
        rgb = field.render(view, with_features=False).rgb.clamp(0, 1).cpu().numpy()
    img = np.ascontiguousarray((rgb * 255).astype(np.uint8).repeat(scale, 0).repeat(scale, 1))
    w2c = np.linalg.inv(view.c2w.double().numpy())
    K = view.K.double().numpy()

    def project(p: np.ndarray) -> np.ndarray | None:
        cam = p @ w2c[:3, :3].T + w2c[:3, 3]
        if (cam[:, 2] <= 1e-3).any():
            return None
        uv = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
        return (uv * scale).round().astype(int)

    for rank in reversed(range(len(result))):
        g = result[rank]
        colour = tuple(int(x) for x in RANK_COLOURS[min(rank, len(RANK_COLOURS) - 1)])
        for corners in gripper_corners(gripper, g.pose.double().numpy(), g.opening):
            uv = project(corners)
            if uv is None:
                continue
            for a, b in _EDGES:
                cv2.line(img, tuple(map(int, uv[a])), tuple(map(int, uv[b])), colour, 2 if rank < 3 else 1,
                         cv2.LINE_AA)
        uv = project(g.contacts.double().numpy())
        if uv is not None:
            for p in uv:
                cv2.circle(img, tuple(map(int, p)), 3, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.putText(img, f"{best.query}: top {len(result)} grasps ({view.stem})", (6, 18), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (255, 255, 255), 1, cv2.LINE_AA)
    write_image(path, img)
