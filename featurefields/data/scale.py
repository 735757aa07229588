"""Making a scale-free frame (COLMAP's) metric: from metric depth maps, or from one known distance.

Never implicit: the frame is only rescaled when the user asks, the factor and how it was found go into
``SceneData.frame_info`` (and from there into metrics.json and the checkpoint), and rotation and origin are kept.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .load import read_depth
from .scene import SceneData

MIN_DEPTH_SAMPLES = 20


def depth_file_for(depth_dir: Path, image_name: str) -> Path | None:
    """The depth map of an image: the same relative path (or just the same file stem) with a .png or .npy suffix."""
    rel = Path(image_name)
    for cand in (rel.with_suffix(".png"), rel.with_suffix(".npy"), Path(rel.name).with_suffix(".png"),
                 Path(rel.name).with_suffix(".npy")):
        if (depth_dir / cand).is_file():
            return depth_dir / cand
    return None


def scale_from_depth_maps(recon, images: Sequence, depth_dir: Path, depth_scale: float
                          ) -> tuple[float, str, list[Path]]:
    """(scale, how it was found, depth file per image): the median over every observation of a sparse point of
    metric depth at its pixel / the point's depth in COLMAP units. Observations are COLMAP's own (the point was
    matched there), so occlusion cannot pair a point with another surface's depth."""
    if not depth_dir.is_dir():
        raise DataError(f"--scale-from-depth {depth_dir}: no such folder")
    if not depth_scale > 0:
        raise ConfigError(f"depth_scale must be positive, got {depth_scale!r}")
    files, ratios = [], []
    for im in images:
        f = depth_file_for(depth_dir, im.name)
        if f is None:
            raise DataError(f"--scale-from-depth {depth_dir}: no depth map for image {im.name} (expected "
                            f"{Path(im.name).with_suffix('.png')})")
        files.append(f)
        depth = read_depth(f, 1.0 / depth_scale)  # [h, w] metres
        cam = recon.camera(im.camera_id)
        T = np.asarray(im.cam_from_world().matrix(), dtype=np.float64)  # [3, 4]
        obs = [(p.xy, p.point3D_id) for p in im.points2D if p.has_point3D()]
        if not obs:
            continue
        xy = np.array([o[0] for o in obs])  # [M, 2] pixel coordinates, pixel centres at +0.5
        xyz = np.array([recon.point3D(o[1]).xyz for o in obs])
        z = xyz @ T[:3, :3].T[:, 2] + T[2, 3]  # [M] depth along the optical axis, COLMAP units
        h, w = depth.shape
        u = np.floor(xy[:, 0] * w / cam.width).astype(np.int64)
        v = np.floor(xy[:, 1] * h / cam.height).astype(np.int64)
        ok = (u >= 0) & (u < w) & (v >= 0) & (v < h) & (z > 0)
        d = np.zeros(len(z))
        d[ok] = depth[v[ok], u[ok]]
        ok &= d > 0
        ratios.append(d[ok] / z[ok])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if len(r) < MIN_DEPTH_SAMPLES:
        raise DataError(f"--scale-from-depth {depth_dir}: only {len(r)} sparse points have a valid depth (need "
                        f"{MIN_DEPTH_SAMPLES}); are these the depth maps of these images?")
    s = float(np.median(r))
    spread = float(np.median(np.abs(r / s - 1.0)))
    how = (f"median ratio of metric depth ({depth_dir}) to COLMAP depth over {len(r)} sparse-point observations, "
           f"median deviation {100 * spread:.2f}%")
    return s, how, files


def parse_point(text: str, scene: SceneData, what: str) -> np.ndarray:
    """A frame name or stem (its camera centre) or ``x,y,z`` in the scene's frame."""
    stems = {Path(n).stem: i for i, n in enumerate(scene.frame_names)}
    names = {n: i for i, n in enumerate(scene.frame_names)}
    if text in names or text in stems:
        i = names.get(text, stems.get(text))
        return scene.cameras.c2w[i, :3, 3].double().numpy()
    try:
        xyz = np.array([float(t) for t in text.split(",")])
    except ValueError:
        xyz = np.zeros(0)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
        raise ConfigError(f"{what} {text!r}: expected a frame name (e.g. {Path(scene.frame_names[0]).stem}) or "
                          "x,y,z in the scene's frame")
    return xyz


def scale_from_known_distance(scene: SceneData, spec: Sequence[str]) -> tuple[float, str]:
    """``spec`` = (A, B, metres): A and B frame names (camera centres) or x,y,z points in the scene's frame."""
    if len(spec) != 3:
        raise ConfigError("--known-distance takes three values: A B METRES")
    a, b = parse_point(spec[0], scene, "--known-distance"), parse_point(spec[1], scene, "--known-distance")
    try:
        metres = float(spec[2])
    except ValueError:
        metres = float("nan")
    if not (math.isfinite(metres) and metres > 0):
        raise ConfigError(f"--known-distance: the distance must be a positive number of metres, got {spec[2]!r}")
    d = float(np.linalg.norm(a - b))
    if d <= 1e-12:
        raise ConfigError(f"--known-distance: {spec[0]} and {spec[1]} are the same point")
    return metres / d, f"{spec[0]} to {spec[1]} is {metres:g} m (was {d:.6g} units)"


def apply_scale(scene: SceneData, s: float, how: str) -> SceneData:
    """Scale positions (camera centres, points) by ``s`` about the origin; rotations and depth maps (metric
    already) stay. The scene is changed in place and returned."""
    scene.cameras.c2w[:, :3, 3] *= s
    if scene.points is not None:
        scene.points = scene.points * s
    prior = float(scene.frame_info.get("scale", 1.0))
    scene.frame_info = {**scene.frame_info, "metric": True, "scale": prior * s, "scale_from": how}
    scene.notes.append(f"metric frame: scaled by {s:.6g} ({how})")
    return scene


def check_scalable(scene: SceneData, what: str) -> None:
    if scene.frame_info.get("metric", True):
        raise ConfigError(f"{what}: {scene.root} is a {scene.frame_info.get('source', 'metric')} scene whose frame "
                          "is metric already; its scale is never changed")


def known_distance(scene: SceneData, spec: Sequence[str] | None) -> SceneData:
    if not spec:
        return scene
    check_scalable(scene, "--known-distance")
    s, how = scale_from_known_distance(scene, spec)
    return apply_scale(scene, s, how)

