"""nerfstudio ``transforms.json`` scenes (plus our semantic/instance/point-file extensions).

Intrinsics may be shared (top level) or per frame; poses are OpenGL camera-to-world and are flipped to OpenCV axes.
Distorted cameras are undistorted to a pinhole camera with the same K, so every renderer downstream stays pinhole.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import one_reason, read_json, read_plyfile
from .cameras import GL_TO_CV
from .load import (
    Distortion,
    FrameSpec,
    LoadOptions,
    existing_image,
    image_size,
    holdout_split,
    load_frames,
    relative_name,
)
from .scene import SceneData
from .validate import (
    as_float,
    check_exists,
    check_field_of_view,
    check_image_size,
    check_intrinsics,
    check_pose,
    require_keys,
    resolve_inside,
)

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_model",
                  "k1", "k2", "k3", "k4", "p1", "p2")
CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "OPENCV_FISHEYE")
DEFAULT_DEPTH_UNIT_SCALE = 1e-3  # nerfstudio's default: uint16 millimetres
_GL_TO_CV = GL_TO_CV.double().numpy()


def load_nerfstudio(path: str | os.PathLike, opts: LoadOptions) -> SceneData:
    path = check_exists(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    meta = read_json(json_path)
    where = json_path.name
    require_keys(meta, ["frames"], str(json_path))
    frames = meta["frames"]
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{json_path}: 'frames' must be a non-empty list")
    root = json_path.parent
    depth_scale = as_float(meta.get("depth_unit_scale_factor", DEFAULT_DEPTH_UNIT_SCALE),
                           f"{json_path}: depth_unit_scale_factor")
    if depth_scale <= 0:
        raise DataError(f"{json_path}: depth_unit_scale_factor={depth_scale:g} must be positive (metres per raw "
                        "depth unit, e.g. 0.001 for millimetres)")

    def resolve(rel: Any, what: str) -> Path:
        return resolve_inside(root, rel, what, opts.allow_outside_root)

    specs: list[FrameSpec] = []
    for i, fr in enumerate(frames):
        fwhere = f"{json_path} frame {i}"
        require_keys(fr, ["file_path", "transform_matrix"], fwhere)
        img = existing_image(resolve(fr["file_path"], f"{fwhere} file_path"))
        name = relative_name(img, root)
        fwhere = f"{json_path} frame {name}"
        c2w = check_pose(fr["transform_matrix"], fwhere) @ _GL_TO_CV
        K, size, dist = _intrinsics(meta, fr, img, fwhere)
        specs.append(FrameSpec(
            name=name, image=img, c2w=c2w, K=K, size=size, dist=dist, extras_from=where,
            depth=_opt_path(resolve, fr, "depth_file_path", fwhere), depth_scale=depth_scale,
            mask=_opt_path(resolve, fr, "mask_path", fwhere),
            semantic=_opt_path(resolve, fr, "semantic_path", fwhere),
            instance=_opt_path(resolve, fr, "instance_path", fwhere),
        ))

    notes: list[str] = []
    train_idx, test_idx, keep = _splits(meta, specs, resolve, json_path, opts)
    if len(keep) < len(specs):
        notes.append(f"{where}: {len(specs) - len(keep)} frames are in no split list; they are not loaded")
        specs = [specs[i] for i in keep]

    label_names = None
    if "semantic_labels" in meta:
        label_names = meta["semantic_labels"]
        if not isinstance(label_names, list) or not all(isinstance(n, str) for n in label_names):
            raise DataError(f"{json_path}: semantic_labels must be a list of names")
    loaded = load_frames(specs, opts, n_labels=len(label_names) if label_names is not None else None)

    points = colors = None
    if opts.with_extras and meta.get("ply_file_path"):
        points, colors = read_ply_points(resolve(meta["ply_file_path"], f"{json_path}: ply_file_path"))
    scene = loaded.to_scene(root, specs, train_idx, test_idx, notes,
                            label_names=label_names if opts.with_extras else None, points=points, point_colors=colors)
    if meta.get("metric_scale", True) is False:  # ff-process writes COLMAP's scale-free frame here too
        scene.frame_info = {"metric": False}
        scene.notes.append(f"{where}: metric_scale is false: the frame has no metric scale (--known-distance "
                           "makes it metric)")
    return scene


def _opt_path(resolve, fr: dict, key: str, where: str) -> Path | None:
    return resolve(fr[key], f"{where} {key}") if fr.get(key) is not None else None


def _intrinsics(meta: dict, fr: dict, img: Path, where: str) -> tuple[np.ndarray, tuple[int, int] | None, Distortion | None]:
    """Per-frame keys override the shared top-level ones (nerfstudio allows both)."""

    def get(key, default=None):
        return fr.get(key, meta.get(key, default))

    if get("w") is not None and get("h") is not None:
        size = check_image_size(get("w"), get("h"), f"{where}: w/h")
        declared = size
    else:
        size, declared = image_size(img), None
    w, h = size
    names = ("fl_x", "fl_y")
    if get("fl_x") is not None:
        fx = as_float(get("fl_x"), f"{where}: fl_x")
    elif get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * check_field_of_view(get("camera_angle_x"), f"{where}: camera_angle_x"))
        names = ("fl_x (from camera_angle_x)", "fl_y")
    else:
        raise DataError(f"{where}: missing required key 'fl_x' (or 'camera_angle_x')")
    fy = as_float(get("fl_y"), f"{where}: fl_y") if get("fl_y") is not None else fx
    cx = as_float(get("cx", w / 2.0), f"{where}: cx")
    cy = as_float(get("cy", h / 2.0), f"{where}: cy")
    check_intrinsics(fx, fy, cx, cy, where, size, names)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    model = str(get("camera_model", "OPENCV")).upper()
    if model not in CAMERA_MODELS:
        raise DataError(f"{where}: camera_model {model!r} is not supported (use one of {', '.join(CAMERA_MODELS)})")
    dist = None
    if model == "OPENCV":
        c = tuple(as_float(get(k, 0.0), f"{where}: {k}") for k in ("k1", "k2", "p1", "p2", "k3"))
        dist = Distortion("OPENCV", c) if any(c) else None
    elif model == "OPENCV_FISHEYE":
        c = tuple(as_float(get(k, 0.0), f"{where}: {k}") for k in ("k1", "k2", "k3", "k4"))
        dist = Distortion("OPENCV_FISHEYE", c)
    return K, declared, dist


def _splits(meta: dict, specs: list[FrameSpec], resolve, json_path: Path,
            opts: LoadOptions) -> tuple[list[int], list[int], list[int]]:
    """(train_idx, test_idx, kept frame indices); indices are into the kept frames. val counts as test."""
    lists = {k: meta.get(k) for k in ("train_filenames", "val_filenames", "test_filenames")}
    if all(v is None for v in lists.values()):
        train, test = holdout_split(len(specs), opts, str(json_path))
        return train, test, list(range(len(specs)))
    if opts.holdout is not None:
        raise ConfigError(f"{json_path}: the scene lists its own train/test split; a holdout cannot replace it")
    by_path = {os.path.normpath(s.image): i for i, s in enumerate(specs)}

    def indices(key) -> set[int] | None:
        names = lists[key]
        if names is None:
            return None
        if not isinstance(names, list):
            raise DataError(f"{json_path}: {key} must be a list of file paths")
        out = set()
        for n in names:
            p = os.path.normpath(existing_image(resolve(n, f"{json_path}: {key}")))
            if p not in by_path:
                raise DataError(f"{json_path}: {key} lists {n!r}, which is not a frame")
            out.add(by_path[p])
        return out

    train = indices("train_filenames")
    val, test = indices("val_filenames"), indices("test_filenames")
    held = None if val is None and test is None else (val or set()) | (test or set())
    everything = set(range(len(specs)))
    if train is None:
        train = everything - held
    if held is None:
        held = everything - train
    if not train:
        raise DataError(f"{json_path}: train_filenames selects no frames")
    keep = sorted(train | held)
    new = {old: j for j, old in enumerate(keep)}
    return sorted(new[i] for i in train), sorted(new[i] for i in held), keep


def read_ply_points(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """xyz [P, 3] float32 and rgb [P, 3] in [0, 1] (None when the file has no colours)."""
    ply = read_plyfile(path, "PLY point file")
    try:
        v = ply["vertex"]
        names = v.data.dtype.names
        xyz = np.stack([np.asarray(v[k], dtype=np.float64) for k in ("x", "y", "z")], axis=1)
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise DataError(f"{path}: not a readable PLY point file ({one_reason(e)})") from None
    if len(xyz) == 0:
        raise DataError(f"{path}: the point file holds no points")
    if not np.all(np.isfinite(xyz)):
        raise DataError(f"{path}: points contain NaN/inf")
    rgb = None
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if all(k in names for k in keys):
            try:
                cols = [np.asarray(v[k]) for k in keys]
                rgb = np.stack(cols, axis=1).astype(np.float64)
            except (ValueError, TypeError) as e:
                raise DataError(f"{path}: colours {'/'.join(keys)} are not numbers ({one_reason(e)})") from None
            if np.issubdtype(cols[0].dtype, np.integer):
                rgb /= float(np.iinfo(cols[0].dtype).max)
            rgb = np.clip(np.nan_to_num(rgb), 0.0, 1.0)
            break
    return torch.from_numpy(xyz).float(), None if rgb is None else torch.from_numpy(rgb).float()
