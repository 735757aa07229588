"""RGB-D sequences: colour + uint16 depth folders with an Open3D/Redwood ``trajectory.log``, and what every RGB-D
layout shares (intrinsics in the OpenCV/ROS convention, ``--intrinsics``, frame listing).

The log holds camera-to-world matrices already in OpenCV axes. Open3D, ROS and calibration tools put pixel centres
at integer coordinates (cx = 319.5 for a 640-wide image); featurefields puts them at +0.5, so cx and cy gain half a
pixel. The other layouts: :mod:`.tum` (TUM RGB-D) and :mod:`.posefiles` (7-Scenes, ScanNet).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import validate
from ..errors import ConfigError, DataError
from ..io import read_json
from .load import (
    COLOR_DIRS,
    DEPTH_DIRS,
    IMAGE_EXTS,
    FrameSpec,
    LoadOptions,
    find_subdir,
    find_trajectory,
    image_size,
    holdout_split,
    load_frames,
    natural_key,
    relative_name,
)
from .scene import SceneData
from .validate import (
    as_float,
    check_counts,
    check_exists,
    check_image_size,
    check_intrinsics,
    check_nonempty_dir,
    check_pose,
    check_size,
    require_keys,
)

PRIMESENSE = (525.0, 525.0, 319.5, 239.5, 640, 480)  # fx, fy, cx, cy (Open3D convention), width, height


def load_rgbd(path: str | os.PathLike, opts: LoadOptions, *, stride: int = 1, depth_scale: float | None = None,
              intrinsics: str | None = None) -> SceneData:
    """``depth_scale``: raw depth units per metre (default 1000: millimetres). ``stride`` keeps every stride-th
    frame. ``intrinsics``: see :func:`parse_intrinsics` (default: the Open3D json beside the frames)."""
    root = check_nonempty_dir(path)
    depth_scale = check_rgbd_options(stride, depth_scale, 1000.0)
    color_dir = find_subdir(root, COLOR_DIRS)
    depth_dir = find_subdir(root, DEPTH_DIRS)
    if color_dir is None:
        raise DataError(f"{root}: no colour folder ({', '.join(COLOR_DIRS)})")
    if depth_dir is None:
        raise DataError(f"{root}: no depth folder")
    log = find_trajectory(root)
    colors = list_images(color_dir, IMAGE_EXTS)
    depths = list_images(depth_dir, (".png",))
    poses = read_trajectory_log(log)
    check_counts(str(root), **{f"{color_dir.name} images": len(colors), f"{depth_dir.name} images": len(depths),
                               f"poses in {relative_name(log, root)}": len(poses)})

    notes: list[str] = []
    size = image_size(colors[0])
    if intrinsics is not None:  # as given, for images of whatever size they are
        (fx, fy, cx, cy), (w, h), source = parse_intrinsics(intrinsics), size, None
    else:
        fx, fy, cx, cy, w, h, source = _intrinsics(root, log.parent)
        if source is None:
            if size != (w, h):
                raise DataError(f"{root}: no camera_*.json / intrinsic.json, and the PrimeSense default is for "
                                f"{w}x{h} images, not {size[0]}x{size[1]} (pass --intrinsics fx,fy,cx,cy)")
            notes.append(f"{root.name}: no intrinsics file; using PrimeSense default fx=fy=525, cx=319.5, cy=239.5")
        else:
            check_size(size, (w, h), f"image {relative_name(colors[0], root)}", f"declared in {source.name}")
    K = K_from_opencv(fx, fy, cx, cy)

    keep = list(range(0, len(colors), int(stride)))
    specs = [
        FrameSpec(name=relative_name(colors[i], root), image=colors[i], depth=depths[i], depth_scale=1.0 / depth_scale,
                  c2w=check_pose(poses[i], f"{relative_name(log, root)} frame {i}"), K=K, size=(w, h),
                  extras_from=source.name if source else "--intrinsics" if intrinsics else "PrimeSense default")
        for i in keep
    ]
    train_idx, test_idx = holdout_split(len(specs), opts, str(root))
    loaded = load_frames(specs, opts)
    return loaded.to_scene(root, specs, train_idx, test_idx, notes)


def check_rgbd_options(stride, depth_scale: float | None, default_scale: float) -> float:
    """The layout's depth scale unless one is given; ConfigError for a bad stride or scale."""
    validate.integer(stride, "stride", lo=1)
    if depth_scale is None:
        return default_scale
    return validate.number(depth_scale, "depth_scale (raw depth units per metre)", lo=0, lo_open=True)


def K_from_opencv(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """K with pixel centres at +0.5 from intrinsics in the OpenCV/ROS convention (integer pixel centres)."""
    return np.array([[fx, 0.0, cx + 0.5], [0.0, fy, cy + 0.5], [0.0, 0.0, 1.0]])


def parse_intrinsics(spec: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy), OpenCV/ROS convention, from ``fx,fy,cx,cy`` or a file: an Open3D intrinsics json, or a
    text file holding a 3x3 (or ScanNet's 4x4) matrix or the four numbers (7-Scenes' camera-intrinsics.txt)."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            return read_open3d_intrinsics(path)[:4]
        return read_intrinsics_txt(path)
    toks = spec.replace(",", " ").split()
    try:
        vals = [float(t) for t in toks]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise ConfigError(f"--intrinsics {spec!r}: expected fx,fy,cx,cy (pixels, OpenCV convention) or an "
                          "intrinsics file that exists")
    check_intrinsics(*vals, f"--intrinsics {spec}")
    return vals[0], vals[1], vals[2], vals[3]


def read_intrinsics_txt(path: Path) -> tuple[float, float, float, float]:
    """A whitespace-separated 3x3 or 4x4 matrix, or 'fx fy cx cy'."""
    vals = [as_float(t, f"{path}") for t in path.read_text().split()]
    if len(vals) in (9, 16):
        n = 3 if len(vals) == 9 else 4
        M = np.array(vals).reshape(n, n)
        fx, fy, cx, cy = M[0, 0], M[1, 1], M[0, 2], M[1, 2]
    elif len(vals) == 4:
        fx, fy, cx, cy = vals
    else:
        raise DataError(f"{path}: expected a 3x3 or 4x4 intrinsics matrix or 'fx fy cx cy', got {len(vals)} numbers")
    check_intrinsics(fx, fy, cx, cy, str(path))
    return float(fx), float(fy), float(cx), float(cy)


def list_images(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no {'/'.join(exts)} images")
    return files


def read_trajectory_log(path: str | os.PathLike) -> list[np.ndarray]:
    """Camera-to-world [4, 4] float64 matrices from a Redwood/Open3D ``.log``: per frame a header line of three
    integers, then four rows of four numbers."""
    path = check_exists(path)
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        content = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    lines = [(n, ln.split()) for n, ln in enumerate(content.splitlines(), 1) if ln.strip()]
    if not lines:
        raise DataError(f"{path}: empty trajectory")
    if len(lines) % 5:
        raise DataError(f"{path}: {len(lines)} non-empty lines is not a multiple of 5 (header + 4 matrix rows)")
    poses = []
    for b in range(0, len(lines), 5):
        n, head = lines[b]
        if len(head) != 3 or not all(t.lstrip("-").isascii() and t.lstrip("-").isdigit() for t in head):
            raise DataError(f"{path} line {n}: expected a header of three integers, got {' '.join(head)!r}")
        rows = []
        for n, toks in lines[b + 1:b + 5]:
            if len(toks) != 4:
                raise DataError(f"{path} line {n}: expected 4 numbers, got {len(toks)}")
            rows.append([as_float(t, f"{path} line {n}") for t in toks])
        poses.append(np.array(rows))
    return poses


def read_open3d_intrinsics(path: Path) -> tuple[float, float, float, float, int, int]:
    """(fx, fy, cx, cy, width, height) from an Open3D PinholeCameraIntrinsic json (column-major matrix)."""
    meta = read_json(path)
    require_keys(meta, ["width", "height", "intrinsic_matrix"], str(path))
    m = meta["intrinsic_matrix"]
    if not isinstance(m, list) or len(m) != 9:
        raise DataError(f"{path}: intrinsic_matrix must list 9 numbers (column-major 3x3)")
    K = np.array([as_float(v, f"{path}: intrinsic_matrix") for v in m]).reshape(3, 3).T
    w, h = check_image_size(meta["width"], meta["height"], str(path))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    check_intrinsics(fx, fy, cx + 0.5, cy + 0.5, str(path), (w, h))
    return float(fx), float(fy), float(cx), float(cy), w, h


def _intrinsics(root: Path, log_dir: Path):
    """Open3D intrinsics json beside the frames or the trajectory; else the PrimeSense default (source None)."""
    found: list[Path] = []
    for d in dict.fromkeys([root, log_dir]):
        found += sorted(p for p in d.glob("camera*.json") if p.is_file())
        found += [p for p in (d / "intrinsic.json", d / "intrinsics.json") if p.is_file()]
    if len(found) > 1:
        raise DataError(f"{root}: several intrinsics files ({', '.join(relative_name(p, root) for p in found)})")
    if found:
        return (*read_open3d_intrinsics(found[0]), found[0])
    return (*PRIMESENSE, None)
