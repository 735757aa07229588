"""NeRF-synthetic Blender scenes: ``transforms_{train,val,test}.json`` with RGBA renders.

Train = the train json, test = the test json (the val json only stands in when there is no test json). Published
copies often ship only some of the listed test renders, so frames whose image is missing are dropped with one note
per split; a corrupt image is still an error.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import read_json
from .cameras import GL_TO_CV
from .load import FrameSpec, LoadOptions, existing_image, image_size, load_frames, relative_name
from .scene import SceneData
from .validate import check_exists, check_field_of_view, check_intrinsics, check_pose, require_keys, resolve_inside

_GL_TO_CV = GL_TO_CV.double().numpy()


def load_blender(path: str | os.PathLike, opts: LoadOptions) -> SceneData:
    root = check_exists(path)
    if opts.holdout is not None:
        raise ConfigError(f"{root}: a Blender scene has its own train/test split; a holdout cannot replace it")
    train_json = root / "transforms_train.json"
    if not train_json.is_file():
        raise DataError(f"{root}: no transforms_train.json (not a Blender scene)")
    notes: list[str] = []
    test_json = root / "transforms_test.json"
    if not test_json.is_file():
        test_json = root / "transforms_val.json"
        notes.append("no transforms_test.json; " + ("using transforms_val.json as the test split"
                                                     if test_json.is_file() else "no test frames"))

    train = _split(train_json, root, notes, opts.allow_outside_root)
    test = _split(test_json, root, notes, opts.allow_outside_root) if test_json.is_file() else []
    # The renders carry their size; K follows from camera_angle_x at that size (load_frames checks all agree).
    w, h = image_size(train[0][1])
    specs = [FrameSpec(name=name, image=img, c2w=c2w, K=_K(angle, w, h, name)) for name, img, c2w, angle in train + test]
    loaded = load_frames(specs, opts)
    return loaded.to_scene(root, specs, list(range(len(train))), list(range(len(train), len(specs))), notes)


def _split(json_path: Path, root: Path, notes: list[str],
           allow_outside: bool = False) -> list[tuple[str, Path, np.ndarray, float]]:
    """(name, image path, c2w in OpenCV axes, camera_angle_x) of the listed frames whose image exists."""
    meta = read_json(json_path)
    require_keys(meta, ["camera_angle_x", "frames"], str(json_path))
    angle = check_field_of_view(meta["camera_angle_x"], f"{json_path}: camera_angle_x")
    frames = meta["frames"]
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{json_path}: 'frames' must be a non-empty list")
    specs = []
    for i, fr in enumerate(frames):
        require_keys(fr, ["file_path", "transform_matrix"], f"{json_path} frame {i}")
        img = existing_image(resolve_inside(root, fr["file_path"], f"{json_path} frame {i} file_path", allow_outside))
        name = relative_name(img, root)
        c2w = check_pose(fr["transform_matrix"], f"{json_path} frame {name}") @ _GL_TO_CV
        if not img.exists():
            continue
        specs.append((name, img, c2w, angle))
    if not specs:
        raise DataError(f"{json_path}: none of the {len(frames)} listed images exist (e.g. {frames[0]['file_path']})")
    if len(specs) < len(frames):
        n = len(specs)
        notes.append(f"{json_path.name} lists {len(frames)} frames, {n} images exist; using those {n}")
    return specs


def _K(angle_x: float, w: int, h: int, name: str) -> np.ndarray:
    f = 0.5 * w / math.tan(0.5 * angle_x)
    check_intrinsics(f, f, w / 2.0, h / 2.0, f"frame {name}", (w, h), ("focal length from camera_angle_x",) * 2)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
