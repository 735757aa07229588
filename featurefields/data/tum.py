"""TUM RGB-D sequences: ``rgb.txt`` / ``depth.txt`` (timestamp + file) and ``groundtruth.txt`` (timestamp tx ty tz
qx qy qz qw), as the benchmark ships them.

Colour, depth and poses are recorded at different rates (30 Hz images, 100 Hz motion capture), so each colour
frame takes the depth image and the pose nearest in time, within ``max_dt`` seconds (0.02 s, the benchmark's own
association tolerance); colour frames without both are dropped with a note. The ground truth is the colour
camera's optical centre in the motion-capture world: camera-to-world in OpenCV axes, kept as given. Depth PNGs
are 5000 units per metre and already registered to the colour camera, whose intrinsics the benchmark documents as
fx = fy = 525, cx = 319.5, cy = 239.5 for every sequence; ``--intrinsics`` replaces them (e.g. with the per-sensor
freiburg calibrations).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .load import FrameSpec, LoadOptions, image_size, holdout_split, load_frames, relative_name
from .rgbd import PRIMESENSE, K_from_opencv, check_rgbd_options, parse_intrinsics
from .scene import SceneData
from .validate import as_float, check_nonempty_dir, check_pose, resolve_inside

TUM_DEPTH_SCALE = 5000.0
MAX_DT = 0.02
LISTS = ("rgb.txt", "depth.txt", "groundtruth.txt")


def is_tum(root: Path) -> bool:
    return all((root / n).is_file() for n in LISTS[:2])


def read_list(path: Path, columns: int) -> tuple[np.ndarray, list[list[str]]]:
    """(timestamps [N] float64, the other columns per line); '#' lines are comments."""
    if not path.is_file():
        raise DataError(f"{path}: not found (a TUM RGB-D sequence has rgb.txt, depth.txt and groundtruth.txt)")
    stamps, rows = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        toks = line.split()
        if not toks or toks[0].startswith("#"):
            continue
        if len(toks) != columns:
            raise DataError(f"{path} line {n}: expected {columns} columns, got {len(toks)}")
        stamps.append(as_float(toks[0], f"{path} line {n}: timestamp"))
        rows.append(toks[1:])
    if not stamps:
        raise DataError(f"{path}: no entries")
    return np.array(stamps), rows


def nearest(query: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest stamp, |time difference|) for each query time."""
    order = np.argsort(stamps)
    s = stamps[order]
    right = np.searchsorted(s, query).clip(0, len(s) - 1)
    left = (right - 1).clip(0)
    pick = np.where(np.abs(s[left] - query) <= np.abs(s[right] - query), left, right)
    return order[pick], np.abs(s[pick] - query)


def pose_from_tum(row: list[str], what: str) -> np.ndarray:
    """Camera-to-world [4, 4] from 'tx ty tz qx qy qz qw' (the quaternion is xyzw, as roma expects)."""
    import roma

    v = np.array([as_float(t, what) for t in row])
    q = torch.from_numpy(v[3:])
    norm = float(q.norm())
    if not 0.99 < norm < 1.01:
        raise DataError(f"{what}: quaternion norm {norm:.4f} is not 1")
    m = np.eye(4)
    m[:3, :3] = roma.unitquat_to_rotmat(q / norm).numpy()
    m[:3, 3] = v[:3]
    return check_pose(m, what)


def load_tum(path: str | os.PathLike, opts: LoadOptions, *, stride: int = 1, depth_scale: float | None = None,
             intrinsics: str | None = None, max_dt: float = MAX_DT) -> SceneData:
    root = check_nonempty_dir(path)
    depth_scale = check_rgbd_options(stride, depth_scale, TUM_DEPTH_SCALE)
    rgb_t, rgb_rows = read_list(root / "rgb.txt", 2)
    depth_t, depth_rows = read_list(root / "depth.txt", 2)
    gt_t, gt_rows = read_list(root / "groundtruth.txt", 8)
    jd, dd = nearest(rgb_t, depth_t)
    jp, dp = nearest(rgb_t, gt_t)
    keep = np.flatnonzero((dd <= max_dt) & (dp <= max_dt))
    notes = []
    if len(keep) < len(rgb_t):
        notes.append(f"{len(rgb_t) - len(keep)} of {len(rgb_t)} colour frames have no depth image and pose within "
                     f"{max_dt:g} s; dropped")
    if not len(keep):
        raise DataError(f"{root}: no colour frame has a depth image and a ground-truth pose within {max_dt:g} s "
                        "(are rgb.txt, depth.txt and groundtruth.txt from the same sequence?)")
    keep = keep[::int(stride)]

    def listed(rel: str, what: str) -> Path:  # the list files' paths stay inside the sequence (issue 14)
        return resolve_inside(root, rel, f"{root / what}: {rel}", opts.allow_outside_root)

    first = listed(rgb_rows[keep[0]][0], "rgb.txt")
    size = image_size(first)
    if intrinsics is not None:
        fx, fy, cx, cy = parse_intrinsics(intrinsics)
    else:
        fx, fy, cx, cy, w, h = PRIMESENSE
        if size != (w, h):
            raise DataError(f"{root}: TUM's documented intrinsics are for {w}x{h} images, not {size[0]}x{size[1]} "
                            "(pass --intrinsics fx,fy,cx,cy)")
        notes.append("TUM RGB-D: using the benchmark's documented intrinsics fx=fy=525, cx=319.5, cy=239.5 "
                     "(--intrinsics to change)")
    K = K_from_opencv(fx, fy, cx, cy)
    specs = []
    for i in keep:
        img = listed(rgb_rows[i][0], "rgb.txt")
        depth = listed(depth_rows[jd[i]][0], "depth.txt")
        specs.append(FrameSpec(name=relative_name(img, root), image=img, depth=depth,
                               depth_scale=1.0 / depth_scale, K=K, size=size, extras_from="rgb.txt",
                               c2w=pose_from_tum(gt_rows[jp[i]], f"{root / 'groundtruth.txt'} at {gt_t[jp[i]]:.4f}")))
    train_idx, test_idx = holdout_split(len(specs), opts, str(root))
    loaded = load_frames(specs, opts)
    return loaded.to_scene(root, specs, train_idx, test_idx, notes)
