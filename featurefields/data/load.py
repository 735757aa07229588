"""Scene loading entry point and the per-frame pipeline every format shares.

A format loader only turns its files into a list of :class:`FrameSpec` (paths, pose, intrinsics); reading,
undistorting, resizing and stacking happen here once, so every format gets the same size checks, the same
pixel-centre-correct resampling and the same error messages.
"""
from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import one_reason, open_image, read_image
from .cameras import Cameras
from .scene import SceneData
from .detect import COLOR_DIRS, DEPTH_DIRS, detect_format, find_subdir, find_trajectory  # noqa: F401
from .undistort import Distortion, UndistortCache, undistort, undistorted_image
from .validate import check_exists, check_image_size, check_size

FORMATS = ("auto", "nerfstudio", "blender", "colmap", "rgbd", "tum", "7scenes", "scannet")
RGBD_FORMATS = ("rgbd", "tum", "7scenes", "scannet")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")

T = TypeVar("T")
R = TypeVar("R")


def load_scene(
    path: str | os.PathLike,
    *,
    downscale: float = 1.0,
    max_size: int | None = None,
    eval_every: int = 8,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    format: str = "auto",
    with_extras: bool = True,
    stride: int = 1,
    depth_scale: float | None = None,
    intrinsics: str | None = None,
    scale_from_depth: str | os.PathLike | None = None,
    known_distance: Sequence[str] | None = None,
    undistort_cache: str | os.PathLike | None | bool = True,
    allow_outside_root: bool = False,
    holdout: str | None = None,
) -> SceneData:
    """Load a scene folder (or a transforms.json) into the world frame it was given in (metric for every format
    but COLMAP's, which has no scale; ``scene.frame_info`` says which).

    ``downscale`` divides the resolution, ``max_size`` caps the longest side (the stronger of the two wins).
    ``eval_every``: hold out frames ``i % eval_every == 0`` when the source has no split (0 = hold out none).
    ``with_extras=False`` skips depth, masks, semantics, instances and points (cameras and images only).
    ``stride``, ``intrinsics`` (``fx,fy,cx,cy`` or a file) and ``depth_scale`` (raw depth units per metre; default
    per layout) apply to RGB-D sequences. ``scale_from_depth`` (a folder of metric depth maps named like the
    images, ``depth_scale`` units per metre, default 1000) or ``known_distance`` (A, B, metres; A/B frame names or
    x,y,z) make a COLMAP frame metric. ``undistort_cache``: folder for pinhole versions of distorted images (True:
    the default folder, see :func:`~featurefields.data.undistort.default_undistort_cache`; False/None: none).
    ``allow_outside_root``: follow file paths in the scene's files that leave its folder (refused by default).
    ``holdout`` replaces ``eval_every`` with another split (see :func:`parse_holdout`): ``every:K``, ``last:N``
    (a contiguous block at the end: views the training never came near) or ``first:N``.
    """
    if undistort_cache is True:
        from .undistort import default_undistort_cache

        undistort_cache = default_undistort_cache()
    opts = LoadOptions.make(downscale, max_size, eval_every, background, with_extras, allow_outside_root, holdout,
                            undistort_cache or None)
    if format not in FORMATS:
        raise DataError(f"unknown scene format {format!r} (choose from {', '.join(FORMATS)})")
    path = check_exists(path)
    if format == "auto":
        fmt, root = detect_format(path)
    elif path.is_file() and format != "nerfstudio":  # a transforms_*.json or trajectory.log: its scene folder
        fmt, root = format, (detect_format(path)[1] if format == "rgbd" and path.name == "trajectory.log"
                             else path.parent)
    else:
        fmt, root = format, path
    if fmt not in RGBD_FORMATS and (stride != 1 or intrinsics is not None):
        raise ConfigError(f"stride/intrinsics apply to RGB-D sequences only, but {path} is a {fmt} scene")
    # (1000 was the default before scenes could choose their own: older configs pass it for every format)
    if fmt not in RGBD_FORMATS + ("colmap",) and depth_scale not in (None, 1000.0):
        raise ConfigError(f"depth_scale applies to RGB-D sequences and --scale-from-depth only, but {path} is a "
                          f"{fmt} scene")
    if scale_from_depth is not None and fmt != "colmap":
        raise ConfigError(f"--scale-from-depth: {path} is a {fmt} scene, whose frame is metric already; only "
                          "COLMAP frames (no scale) are rescaled")
    rgbd = dict(stride=stride, depth_scale=depth_scale, intrinsics=intrinsics)
    if fmt == "nerfstudio":
        from .nerfstudio import load_nerfstudio

        scene = load_nerfstudio(root, opts)
    elif fmt == "blender":
        from .blender import load_blender

        scene = load_blender(root, opts)
    elif fmt == "colmap":
        from .colmap import load_colmap

        scene = load_colmap(root, opts, scale_from_depth=scale_from_depth,
                            depth_scale=1000.0 if depth_scale is None else depth_scale)
    elif fmt == "tum":
        from .tum import load_tum

        scene = load_tum(root, opts, **rgbd)
    elif fmt == "7scenes":
        from .posefiles import load_seven_scenes

        scene = load_seven_scenes(root, opts, **rgbd)
    elif fmt == "scannet":
        from .posefiles import load_scannet

        scene = load_scannet(root, opts, **rgbd)
    else:
        from .rgbd import load_rgbd

        scene = load_rgbd(root, opts, **rgbd)
    scene.frame_info = {"source": fmt, **scene.frame_info}
    if known_distance:
        from .scale import known_distance as apply_known_distance

        scene = apply_known_distance(scene, known_distance)
    return scene


@dataclass(frozen=True)
class LoadOptions:
    downscale: float
    max_size: int | None
    eval_every: int
    background: tuple[float, float, float]
    with_extras: bool
    allow_outside_root: bool = False
    holdout: tuple[str, int] | None = None  # parsed parse_holdout(); None: every eval_every-th frame
    undistort_cache: Path | None = None  # pinhole versions of distorted images (None: undistort every load)

    @staticmethod
    def make(downscale, max_size, eval_every, background, with_extras, allow_outside_root=False,
             holdout=None, undistort_cache=None) -> "LoadOptions":
        if not (isinstance(downscale, (int, float)) and math.isfinite(downscale) and downscale > 0):
            raise ConfigError(f"downscale must be a positive number, got {downscale!r}")
        if max_size is not None and (int(max_size) != max_size or max_size < 1):
            raise ConfigError(f"max_size must be a positive integer, got {max_size!r}")
        if int(eval_every) != eval_every or eval_every < 0:
            raise ConfigError(f"eval_every must be a non-negative integer, got {eval_every!r}")
        bg = tuple(float(c) for c in background)
        if len(bg) != 3 or not all(0.0 <= c <= 1.0 for c in bg):
            raise ConfigError(f"background must be three values in [0, 1], got {background!r}")
        return LoadOptions(float(downscale), None if max_size is None else int(max_size), int(eval_every), bg,
                           bool(with_extras), bool(allow_outside_root), parse_holdout(holdout),
                           None if undistort_cache is None else Path(undistort_cache))


HOLDOUT_KINDS = ("every", "last", "first")


def parse_holdout(spec: str | None) -> tuple[str, int] | None:
    """'every:K' | 'last:N' | 'first:N' -> (kind, number); None stays None (the eval_every split)."""
    if spec is None:
        return None
    kind, sep, num = str(spec).strip().lower().partition(":")
    if not sep or kind not in HOLDOUT_KINDS or not num.strip().isdigit() or int(num) < 1:
        raise ConfigError(f"holdout {spec!r}: use every:K (every K-th frame), last:N or first:N (a contiguous block "
                          "of N frames), with K, N >= 1")
    return kind, int(num)


def holdout_split(n: int, opts: LoadOptions, what: str) -> tuple[list[int], list[int]]:
    """(train, test) frame indices of a scene without its own split: ``opts.holdout`` if given, else every
    ``opts.eval_every``-th frame."""
    if opts.holdout is None:
        return interval_split(n, opts.eval_every, what)
    kind, k = opts.holdout
    if kind == "every":
        return interval_split(n, k, what)
    if k >= n:
        raise ConfigError(f"{what}: holdout {kind}:{k} leaves no training frames out of {n}")
    test = list(range(n - k, n)) if kind == "last" else list(range(k))
    held = set(test)
    return [i for i in range(n) if i not in held], test


def interval_split(n: int, eval_every: int, what: str) -> tuple[list[int], list[int]]:
    """Hold out every ``eval_every``-th frame (i % eval_every == 0); 0 holds out none, and so does a single frame
    (there is nothing to train on otherwise)."""
    if eval_every == 0 or (n == 1 and eval_every > 1):
        return list(range(n)), []
    test = [i for i in range(n) if i % eval_every == 0]
    train = [i for i in range(n) if i % eval_every != 0]
    if not train:
        raise ConfigError(f"{what}: eval_every={eval_every} leaves no training frames out of {n}")
    return train, test


def target_size(width: int, height: int, downscale: float = 1.0, max_size: int | None = None) -> tuple[int, int]:
    """Output (width, height): divide by ``downscale``, then cap the longest side at ``max_size``."""
    s = 1.0 / downscale
    if max_size is not None:
        s = min(s, max_size / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def natural_key(name: str) -> list:
    """Sort ``frame2`` before ``frame10`` when files are not zero-padded."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Decode frames on a few threads (PIL and OpenCV release the GIL); the first error in order is raised."""
    workers = min(8, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items))


# ----------------------------------------------------------------------------------------------------------------
# Resampling


def resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-filtered resize (no aliasing when shrinking); ``size`` is (width, height)."""
    import cv2

    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA)


def resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest sample at each output pixel centre, so labels stay labels and depth is never averaged with 0."""
    h0, w0 = arr.shape[:2]
    w, h = size
    if (w0, h0) == (w, h):
        return arr
    rows = np.minimum(((np.arange(h) + 0.5) * (h0 / h)).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (w0 / w)).astype(np.int64), w0 - 1)
    return arr[rows[:, None], cols[None, :]]


def composite_resize(img: np.ndarray, size: tuple[int, int], background: tuple[float, float, float]) -> np.ndarray:
    """uint8 RGB(A) -> uint8 RGB at ``size``, alpha blended over ``background`` (RGB in [0, 1]).

    Premultiplied colour and alpha are box-filtered separately, which equals compositing at full resolution and
    then resizing (both are linear) but does the blend on the small image.
    """
    import cv2

    if img.shape[2] == 3:
        return resize_area(img, size)
    if img[..., 3].min() == 255:
        return resize_area(np.ascontiguousarray(img[..., :3]), size)
    f = img.astype(np.float32)
    a = cv2.multiply(f[..., 3], 1.0 / 255.0)
    pm = cv2.multiply(f, cv2.merge([a, a, a, np.ones_like(a)]))  # [H, W, 4] premultiplied RGB, alpha kept in 0..255
    pm[..., 3] = a
    pm = resize_area(pm, size)
    bg = np.asarray(background, dtype=np.float32) * 255.0
    out = pm[..., :3] + bg * (1.0 - pm[..., 3:4])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def scaled_K(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    out = K.astype(np.float64).copy()
    out[0] *= to_size[0] / from_size[0]
    out[1] *= to_size[1] / from_size[1]
    out[2] = [0.0, 0.0, 1.0]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Per-frame readers


def read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3 or 4]; grey, palette and 16-bit images are converted (transparency kept as alpha)."""
    arr = read_image(path)
    if arr.ndim == 2 or arr.dtype != np.uint8 or arr.shape[2] not in (3, 4):
        # Grey, 16-bit, palette, 2-channel: let PIL do the conversion (keeps transparency as alpha).
        with open_image(path) as im:
            arr = np.asarray(im.convert("RGBA"))
    return arr


def read_depth(path: Path, scale: float, invalid: int | None = None) -> np.ndarray:
    """float32 metres [H, W], 0 = unknown. PNG must be single-channel 16-bit; .npy is multiplied by ``scale`` too.
    ``invalid``: a raw value that means 'no reading' (7-Scenes' 65535)."""
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DataError(f"{path}: depth file not found")
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: corrupt depth file ({one_reason(e)})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise DataError(f"{path}: depth must be a numeric array, got {getattr(arr, 'dtype', type(arr))}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise DataError(f"{path}: depth must be a 2D array, got shape {arr.shape}")
    else:
        arr = read_image(path)
        if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.uint32):
            raise DataError(f"{path}: depth must be a single-channel 16-bit PNG (got {arr.dtype} {arr.shape})")
    depth = arr.astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    if invalid is not None:
        depth[arr == invalid] = 0.0
    return depth


def read_labels(path: Path, n_labels: int | None = None) -> np.ndarray:
    """int16 [H, W]; 255 (8-bit) or 65535 (16-bit) mean unknown -> -1."""
    arr = read_image(path)
    if arr.ndim != 2:
        raise DataError(f"{path}: label image must be single-channel (got shape {arr.shape})")
    unknown = 255 if arr.dtype == np.uint8 else 65535
    arr = arr.astype(np.int64)
    invalid = arr == unknown
    arr[invalid] = -1
    top = int(arr.max()) if arr.size else -1
    if top > np.iinfo(np.int16).max:
        raise DataError(f"{path}: label value {top} does not fit int16")
    if n_labels is not None and top >= n_labels:
        raise DataError(f"{path}: semantic value {top} but only {n_labels} semantic_labels are listed")
    return arr.astype(np.int16)


def read_mask(path: Path) -> np.ndarray:
    """bool [H, W], True where the pixel is valid (any non-zero value)."""
    arr = read_image(path)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2)
    return arr > 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only, within the size limits."""
    with open_image(path) as im:
        size = im.size
    return check_image_size(*size, str(path))


# ----------------------------------------------------------------------------------------------------------------
# The shared pipeline


@dataclass
class FrameSpec:
    name: str  # relative image path, for messages and SceneData.frame_names
    image: Path
    c2w: np.ndarray  # [4, 4] OpenCV axes
    K: np.ndarray  # [3, 3] at the native image size, pixel centres at +0.5
    size: tuple[int, int] | None = None  # declared native (width, height); None = whatever the file is
    dist: Distortion | None = None
    depth: Path | None = None
    depth_scale: float = 1.0  # raw value -> metres multiplier
    depth_invalid: int | None = None  # raw depth value meaning 'no reading'
    mask: Path | None = None
    semantic: Path | None = None
    instance: Path | None = None
    extras_from: str = ""  # names the source file in size messages


@dataclass
class LoadedFrames:
    images: torch.Tensor  # [N, H, W, 3] uint8
    cameras: Cameras
    depths: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    semantics: torch.Tensor | None = None
    instances: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)

    def to_scene(self, root: Path, specs: Sequence["FrameSpec"], train_idx: list[int], test_idx: list[int],
                 notes: list[str], **extras) -> SceneData:
        """The SceneData of these frames; ``extras`` fills the format-specific fields (labels, points)."""
        return SceneData(name=root.name, root=root, images=self.images, cameras=self.cameras,
                         frame_names=[s.name for s in specs], train_idx=train_idx, test_idx=test_idx,
                         depths=self.depths, masks=self.masks, semantics=self.semantics, instances=self.instances,
                         notes=notes + self.notes, **extras)


def load_frames(specs: Sequence[FrameSpec], opts: LoadOptions, *, n_labels: int | None = None) -> LoadedFrames:
    """Read, check, undistort and resize every frame to one common output size."""
    if not specs:
        raise DataError("no frames to load")
    seen: dict[str, int] = {}
    for i, s in enumerate(specs):  # one image under several poses is an export bug, never a dataset
        key = os.path.normpath(os.path.abspath(s.image))
        if key in seen:
            raise DataError(f"frame {s.name} is listed twice (frames {seen[key]} and {i}"
                            f"{' of ' + s.extras_from if s.extras_from else ''}); each frame needs its own image")
        seen[key] = i
    first = specs[0]
    native = first.size if first.size is not None else image_size(first.image)
    for s in specs[1:]:
        if s.size is not None:
            check_size(s.size, native, f"frame {s.name}", f"frame {first.name}")
    out_size = target_size(*native, opts.downscale, opts.max_size)
    extras = opts.with_extras
    has = {k: extras and any(getattr(s, k) is not None for s in specs) for k in ("depth", "mask", "semantic", "instance")}
    distorted = any(s.dist is not None for s in specs)

    def extra(s: FrameSpec, path: Path, arr: np.ndarray, *, fill, kind: str) -> np.ndarray:
        h1, w1 = arr.shape[:2]
        w0, h0 = native
        # Another size is fine for the same view (depth sensors often have their own resolution): same aspect, 1%.
        if (w1, h1) != (w0, h0) and abs(w1 * h0 - h1 * w0) > 0.01 * h1 * w0:
            raise DataError(f"{path}: {kind} size {w1}x{h1} does not match image {s.name} size {w0}x{h0}")
        if s.dist is not None:
            arr = undistort(arr, scaled_K(s.K, native, (w1, h1)), s.dist, nearest=True, fill=fill)
        return resize_nearest(arr, out_size)

    cache = UndistortCache(opts.undistort_cache) if distorted and opts.undistort_cache is not None else None

    def one(s: FrameSpec) -> dict:
        r: dict = {}
        if s.dist is not None:
            img, valid = undistorted_image(s.image, s.K, s.dist, cache, read_rgb)
            if extras:
                r["valid"] = resize_nearest(valid, out_size)
        else:
            img = read_rgb(s.image)
        check_size((img.shape[1], img.shape[0]), native, f"frame {s.name}",
                   f"declared in {s.extras_from}" if s.size is not None else f"frame {first.name}")
        r["image"] = composite_resize(img, out_size, opts.background)
        w, h = out_size
        if has["depth"]:
            r["depth"] = (extra(s, s.depth, read_depth(s.depth, s.depth_scale, s.depth_invalid), fill=0.0,
                                kind="depth")
                          if s.depth is not None else np.zeros((h, w), np.float32))
        if has["mask"]:
            r["mask"] = (extra(s, s.mask, read_mask(s.mask).astype(np.uint8), fill=0, kind="mask") > 0
                         if s.mask is not None else np.ones((h, w), bool))
        for key in ("semantic", "instance"):
            if has[key]:
                p = getattr(s, key)
                r[key] = (extra(s, p, read_labels(p, n_labels if key == "semantic" else None), fill=-1, kind=key)
                          if p is not None else np.full((h, w), -1, np.int16))
        return r

    frames = parallel_map(one, specs)
    cams = Cameras(
        c2w=torch.from_numpy(np.stack([s.c2w for s in specs])).float(),
        K=torch.from_numpy(np.stack([s.K for s in specs])).float(),
        width=native[0],
        height=native[1],
    ).resized(*out_size)
    out = LoadedFrames(images=torch.from_numpy(np.stack([f["image"] for f in frames])), cameras=cams)

    def stack(key):
        return torch.from_numpy(np.stack([f[key] for f in frames]))

    if has["depth"]:
        out.depths = stack("depth").float()
    if has["semantic"]:
        out.semantics = stack("semantic").to(torch.int16)
    if has["instance"]:
        out.instances = stack("instance").to(torch.int16)
    masks = stack("mask") if has["mask"] else None
    if distorted and extras:
        valid = stack("valid")
        if not bool(valid.all()):
            masks = valid if masks is None else masks & valid
            out.notes.append("undistortion leaves pixels outside the source image; they are masked out")
    out.masks = masks
    return out


def relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def existing_image(path: Path, exts: Iterable[str] = IMAGE_EXTS) -> Path:
    """``path`` itself, or with an image extension added when the listing omits it (Blender style)."""
    if path.is_file() or path.suffix.lower() in exts:
        return path
    for ext in exts:
        if path.with_name(path.name + ext).is_file():
            return path.with_name(path.name + ext)
    return path
