"""RGB-D sequences with one camera-to-world pose file per frame: 7-Scenes and ScanNet (as exported by its reader).

- 7-Scenes: ``frame-NNNNNN.color.png`` / ``.depth.png`` / ``.pose.txt`` side by side, in the folder or in its
  ``seq-XX/`` subfolders (then ``TrainSplit.txt`` / ``TestSplit.txt``, when present, split by sequence). Depth in
  millimetres, 65535 = no reading.
- ScanNet: ``color/N.jpg``, ``depth/N.png`` (millimetres), ``pose/N.txt``, ``intrinsic/intrinsic_color.txt``;
  frames whose pose is -inf (tracking lost) are dropped. Depth maps of another size (ScanNet's 640x480 depth
  beside 1296x968 colour) are resampled to the colour image.

Intrinsics, first found: ``--intrinsics``, a ``camera-intrinsics.txt`` beside the frames (or one folder up),
ScanNet's ``intrinsic_color.txt``, and for 640x480 7-Scenes frames the dataset's published fx = fy = 585,
cx = 320, cy = 240. Poses are kept as given (OpenCV axes, metres).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .load import FrameSpec, LoadOptions, image_size, holdout_split, load_frames, natural_key, relative_name
from .rgbd import K_from_opencv, check_rgbd_options, parse_intrinsics, read_intrinsics_txt
from .scene import SceneData
from .validate import check_nonempty_dir, check_pose

SEVEN_SCENES = (585.0, 585.0, 320.0, 240.0, 640, 480)
INVALID_DEPTH = 65535
_FRAME = re.compile(r"(frame-\d+)\.color\.(png|jpg)$")


def seven_scenes_dirs(root: Path) -> list[Path]:
    """Folders holding 7-Scenes frames: ``root`` itself, or its ``seq-XX`` subfolders."""
    if any(root.glob("*.pose.txt")):
        return [root]
    return sorted((d for d in root.glob("seq-*") if d.is_dir() and any(d.glob("*.pose.txt"))),
                  key=lambda d: natural_key(d.name))


def is_scannet(root: Path) -> bool:
    return all((root / d).is_dir() for d in ("color", "depth", "pose"))


def read_pose_file(path: Path) -> np.ndarray | None:
    """A 4x4 (or 3x4) camera-to-world matrix; None when it holds inf/nan (ScanNet's 'tracking lost')."""
    try:
        vals = [float(t) for t in path.read_text().split()]
    except ValueError:
        raise DataError(f"{path}: pose file must hold 16 (or 12) numbers") from None
    if len(vals) not in (12, 16):
        raise DataError(f"{path}: pose file must hold 16 (or 12) numbers, got {len(vals)}")
    m = np.array(vals).reshape(-1, 4)
    if not np.all(np.isfinite(m)):
        return None
    return check_pose(m, str(path))


def load_seven_scenes(path: str | os.PathLike, opts: LoadOptions, *, stride: int = 1,
                      depth_scale: float | None = None, intrinsics: str | None = None) -> SceneData:
    root = check_nonempty_dir(path)
    depth_scale = check_rgbd_options(stride, depth_scale, 1000.0)
    dirs = seven_scenes_dirs(root)
    if not dirs:
        raise DataError(f"{root}: no frame-NNNNNN.pose.txt files (7-Scenes layout)")
    frames: list[tuple[Path, Path, Path, str]] = []  # colour, depth, pose, sequence
    for d in dirs:
        colours = sorted((p for p in d.iterdir() if _FRAME.search(p.name)), key=lambda p: natural_key(p.name))
        if not colours:
            raise DataError(f"{d}: pose files but no frame-NNNNNN.color.png images")
        for c in colours:
            stem = _FRAME.search(c.name).group(1)
            depth, pose = d / f"{stem}.depth.png", d / f"{stem}.pose.txt"
            for f, what in ((depth, "depth image"), (pose, "pose file")):
                if not f.is_file():
                    raise DataError(f"{c}: no {what} {f.name} beside it")
            frames.append((c, depth, pose, d.name))
    frames = frames[::int(stride)]
    notes: list[str] = []
    size = image_size(frames[0][0])
    K = _intrinsics(root, intrinsics, size, notes, scannet=False)
    specs, seqs = [], []
    for c, depth, pose, seq in frames:
        c2w = read_pose_file(pose)
        if c2w is None:
            raise DataError(f"{pose}: pose holds inf/nan")
        specs.append(FrameSpec(name=relative_name(c, root), image=c, depth=depth, depth_scale=1.0 / depth_scale,
                               depth_invalid=INVALID_DEPTH, c2w=c2w, K=K, size=size, extras_from="camera intrinsics"))
        seqs.append(seq)
    train_idx, test_idx = _seven_scenes_split(root, seqs, opts, notes)
    loaded = load_frames(specs, opts)
    return loaded.to_scene(root, specs, train_idx, test_idx, notes)


def _seven_scenes_split(root: Path, seqs: list[str], opts: LoadOptions, notes: list[str]):
    """TrainSplit.txt / TestSplit.txt list 'sequence1' lines meaning seq-01; else every k-th frame (or --holdout)."""
    files = [root / "TrainSplit.txt", root / "TestSplit.txt"]
    if len(set(seqs)) < 2 or not all(f.is_file() for f in files):
        return holdout_split(len(seqs), opts, str(root))
    if opts.holdout is not None:
        raise ConfigError(f"{root}: the scene lists its own train/test split (TrainSplit.txt, TestSplit.txt); a "
                          "holdout cannot replace it")
    names = []
    for f in files:
        nums = {int(m) for m in re.findall(r"sequence\s*(\d+)", f.read_text())}
        names.append({f"seq-{n:02d}" for n in nums})
    train = [i for i, s in enumerate(seqs) if s in names[0]]
    test = [i for i, s in enumerate(seqs) if s in names[1]]
    if not train:
        return holdout_split(len(seqs), opts, str(root))
    notes.append(f"7-Scenes split: {len(train)} training frames ({', '.join(sorted(names[0]))}), {len(test)} test")
    return train, test


def load_scannet(path: str | os.PathLike, opts: LoadOptions, *, stride: int = 1, depth_scale: float | None = None,
                 intrinsics: str | None = None) -> SceneData:
    root = check_nonempty_dir(path)
    depth_scale = check_rgbd_options(stride, depth_scale, 1000.0)
    colours = sorted((p for p in (root / "color").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
                     key=lambda p: natural_key(p.name))
    if not colours:
        raise DataError(f"{root / 'color'}: no images")
    frames, lost = [], 0
    for c in colours[::int(stride)]:
        depth, pose = root / "depth" / f"{c.stem}.png", root / "pose" / f"{c.stem}.txt"
        for f, what in ((depth, "depth image"), (pose, "pose file")):
            if not f.is_file():
                raise DataError(f"{c}: no {what} {relative_name(f, root)}")
        c2w = read_pose_file(pose)
        if c2w is None:
            lost += 1
            continue
        frames.append((c, depth, c2w))
    notes: list[str] = []
    if lost:
        notes.append(f"{lost} frames have an invalid (-inf) pose (tracking lost); dropped")
    if not frames:
        raise DataError(f"{root}: every pose is invalid")
    size = image_size(frames[0][0])
    K = _intrinsics(root, intrinsics, size, notes, scannet=True)
    specs = [FrameSpec(name=relative_name(c, root), image=c, depth=d, depth_scale=1.0 / depth_scale, c2w=c2w, K=K,
                       size=size, extras_from="intrinsics") for c, d, c2w in frames]
    train_idx, test_idx = holdout_split(len(specs), opts, str(root))
    loaded = load_frames(specs, opts)
    return loaded.to_scene(root, specs, train_idx, test_idx, notes)


def _intrinsics(root: Path, spec: str | None, size: tuple[int, int], notes: list[str], *, scannet: bool) -> np.ndarray:
    if spec is not None:
        return K_from_opencv(*parse_intrinsics(spec))
    for f in (root / "camera-intrinsics.txt", root.parent / "camera-intrinsics.txt",
              root / "intrinsic" / "intrinsic_color.txt"):
        if f.is_file():
            return K_from_opencv(*read_intrinsics_txt(f))
    fx, fy, cx, cy, w, h = SEVEN_SCENES
    if not scannet and size == (w, h):
        notes.append("7-Scenes: no camera-intrinsics.txt; using the dataset's published fx=fy=585, cx=320, cy=240")
        return K_from_opencv(fx, fy, cx, cy)
    raise DataError(f"{root}: no camera-intrinsics.txt{' or intrinsic/intrinsic_color.txt' if scannet else ''}; "
                    "pass --intrinsics fx,fy,cx,cy (pixels) or an intrinsics file")

