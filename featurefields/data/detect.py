"""Which loader a scene folder needs, from the files it holds."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .validate import check_nonempty_dir

COLOR_DIRS = ("image", "color", "colour", "rgb")
DEPTH_DIRS = ("depth",)


def detect_format(path: Path) -> tuple[str, Path]:
    """(format, path to hand to that loader) from what the folder contains."""
    if path.is_file():
        if path.name.startswith("transforms_") and path.suffix == ".json":
            return "blender", path.parent
        if path.suffix == ".json":
            return "nerfstudio", path
        if path.name == "trajectory.log":
            return "rgbd", path.parent if find_subdir(path.parent, COLOR_DIRS) else path.parent.parent
        raise DataError(f"{path}: unknown scene format (expected a folder, a transforms.json or a trajectory.log)")
    check_nonempty_dir(path)
    from .colmap import find_model, has_model_files, image_dirs
    from .posefiles import is_scannet, seven_scenes_dirs
    from .tum import is_tum

    # A COLMAP model wins over a transforms.json beside it (ff-process writes both; the model is the source).
    if has_model_files(path) or find_model(path, required=False) is not None:
        return "colmap", path
    if (path / "transforms.json").is_file():
        return "nerfstudio", path / "transforms.json"
    if (path / "transforms_train.json").is_file():
        return "blender", path
    if is_tum(path):
        return "tum", path
    if find_subdir(path, COLOR_DIRS) and find_subdir(path, DEPTH_DIRS) and find_trajectory(path, required=False):
        return "rgbd", path
    if is_scannet(path):
        return "scannet", path
    if seven_scenes_dirs(path):
        return "7scenes", path
    if image_dirs(path) or (path / "sparse").is_dir():
        find_model(path)  # says what is missing: sparse/, or a model inside it
    raise DataError(
        f"{path}: unknown scene format (expected a COLMAP model in sparse/ beside images/, transforms.json, "
        f"transforms_train.json, a TUM RGB-D sequence (rgb.txt, depth.txt, groundtruth.txt), "
        f"{'/'.join(COLOR_DIRS)} + depth folders with a trajectory.log, ScanNet's color/ depth/ pose/, or "
        "7-Scenes' frame-*.pose.txt files)"
    )


def find_subdir(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def find_trajectory(root: Path, *, required: bool = True) -> Path | None:
    """``trajectory.log`` in ``root`` or exactly one direct subfolder (Open3D's reconstruction layout)."""
    if (root / "trajectory.log").is_file():
        return root / "trajectory.log"
    found = sorted(p for p in root.glob("*/trajectory.log") if p.is_file())
    if len(found) > 1:
        raise DataError(f"{root}: several trajectory.log files ({', '.join(str(p.relative_to(root)) for p in found)})")
    if found:
        return found[0]
    if required:
        raise DataError(f"{root}: no trajectory.log in the folder or its subfolders")
    return None
