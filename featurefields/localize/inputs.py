"""What a localisation query is made of, checked once: an RGB image, pinhole intrinsics for it, optionally a metric
depth image. Files (for the CLI) and arrays (for the API) end up in the same :class:`Query`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..io import read_image, read_json

PRINCIPAL_BAND = (0.25, 0.75)  # a principal point outside this fraction of the image means K is for another size
MAX_DEPTH_M = 1000.0


@dataclass
class Query:
    image: Tensor  # [H, W, 3] float32 in [0, 1]
    K: Tensor  # [3, 3] float64, pixel centres at +0.5 (featurefields' convention)
    depth: Tensor | None = None  # [H, W] float32 metres, 0 where unknown

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def height(self) -> int:
        return self.image.shape[0]

    def resized(self, longest: int) -> "Query":
        """The query with its longest side at most ``longest`` (area-filtered colour, nearest depth); K follows."""
        import cv2

        s = min(1.0, longest / max(self.width, self.height))
        if s >= 1.0:
            return self
        w, h = max(1, round(self.width * s)), max(1, round(self.height * s))
        img = cv2.resize(self.image.numpy(), (w, h), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(self.K, w / self.width, h / self.height)
        depth = None
        if self.depth is not None:
            from ..data.load import resize_nearest

            depth = torch.from_numpy(np.ascontiguousarray(resize_nearest(self.depth.numpy(), (w, h))))
        return Query(torch.from_numpy(np.ascontiguousarray(img)), K, depth)


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """K of the same camera with the image resampled by (sx, sy) (pixel centres at +0.5: coordinates just scale)."""
    out = K.clone()
    out[0] = out[0] * sx
    out[1] = out[1] * sy
    return out


def make_query(image: Any, intrinsics: Any, depth: Any = None, *, depth_scale: float = 1000.0,
               size: tuple[int, int] | None = None) -> Query:
    """Check and convert. ``image``: a path, or an [H, W, 3] array (uint8, or float in [0, 1]); ``intrinsics``: a
    3x3 K (pixel centres at +0.5, i.e. cx = W / 2 for a centred camera); ``depth``: a path (16-bit PNG in units of
    1 / ``depth_scale`` metres, or .npy metres) or an [H, W] array in metres. ``size``: the (width, height) the
    intrinsics were given for, when known (then it must match the image exactly)."""
    img = _image(image)
    h, w = img.shape[:2]
    K = _intrinsics(intrinsics, w, h, size)
    dep = None if depth is None else _depth(depth, w, h, depth_scale)
    return Query(img, K, dep)


def _image(image: Any) -> Tensor:
    where = str(image) if isinstance(image, (str, Path)) else "the image"
    if isinstance(image, (str, Path)):
        arr = read_image(image, mode="RGB")
    else:
        arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 8:
        raise DataError(f"{where}: expected an RGB image of at least 8x8 pixels, got an array of shape "
                        f"{list(arr.shape)}")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all() or out.min() < -1e-3 or out.max() > 1 + 1e-3:
            raise DataError(f"{where}: a float image must hold finite values in [0, 1]")
    else:
        raise DataError(f"{where}: unsupported pixel type {arr.dtype} (use uint8 or float in [0, 1])")
    return torch.from_numpy(np.ascontiguousarray(out.clip(0, 1)))


def _intrinsics(intrinsics: Any, w: int, h: int, size: tuple[int, int] | None) -> Tensor:
    try:
        K = torch.as_tensor(np.asarray(intrinsics, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError("intrinsics must be a 3x3 matrix of numbers") from None
    if K.shape != (3, 3):
        raise ConfigError(f"intrinsics must be a 3x3 matrix, not of shape {list(K.shape)}")
    if not bool(torch.isfinite(K).all()):
        raise ConfigError("intrinsics contain NaN or inf")
    fx, fy, cx, cy = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
    if fx <= 0 or fy <= 0:
        raise ConfigError(f"focal lengths must be positive, got fx={fx:g}, fy={fy:g}")
    if abs(float(K[1, 0])) + abs(float(K[2, 0])) + abs(float(K[2, 1])) > 1e-9 or abs(float(K[2, 2]) - 1) > 1e-9:
        raise ConfigError("intrinsics must be an upper-triangular pinhole matrix with K[2, 2] = 1")
    if size is not None and tuple(size) != (w, h):
        raise DataError(f"the intrinsics are for {size[0]}x{size[1]} images but the image is {w}x{h}")
    lo, hi = PRINCIPAL_BAND
    if not (lo * w <= cx <= hi * w and lo * h <= cy <= hi * h):
        raise DataError(f"the principal point ({cx:g}, {cy:g}) is far from the centre of this {w}x{h} image: the "
                        "intrinsics are probably for another image size (give width/height in the intrinsics file, "
                        "or rescale K)")
    return K


def _depth(depth: Any, w: int, h: int, scale: float) -> Tensor:
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"depth scale must be a positive number of units per metre, not {scale}")
    where = str(depth) if isinstance(depth, (str, Path)) else "the depth image"
    if isinstance(depth, (str, Path)):
        p = Path(depth)
        if p.suffix.lower() == ".npy":
            if not p.is_file():
                raise DataError(f"{p}: depth file not found")
            try:
                arr = np.load(p, allow_pickle=False).astype(np.float32)
            except (ValueError, OSError) as e:
                raise DataError(f"{p}: not a readable .npy depth array ({e})") from None
        else:
            raw = read_image(p)
            if raw.ndim != 2 or raw.dtype != np.uint16:
                raise DataError(f"{p}: depth must be a single-channel 16-bit PNG (or a .npy of metres), got "
                                f"{raw.dtype} with shape {list(raw.shape)}")
            arr = raw.astype(np.float32) / scale
    else:
        arr = (depth.detach().cpu().numpy() if isinstance(depth, Tensor) else np.asarray(depth)).astype(np.float32)
    if arr.ndim != 2:
        raise DataError(f"{where}: depth must be an [H, W] array, got shape {list(arr.shape)}")
    if arr.shape != (h, w):
        raise DataError(f"{where}: depth is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > MAX_DEPTH_M:
        raise DataError(f"{where}: depth must be finite, non-negative metres (0 = unknown)")
    if not (arr > 0).any():
        raise DataError(f"{where}: the depth image holds no valid depth")
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_intrinsics(path: str | Path) -> tuple[Tensor, tuple[int, int] | None]:
    """(K, (width, height) or None) from a JSON file: {"K": 3x3, "width", "height"}, nerfstudio-style
    fl_x/fl_y/cx/cy/w/h, or an Open3D PinholeCameraIntrinsic (column-major, pixel centres on integers: +0.5 here)."""
    path = Path(path)
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object with intrinsics")
    try:
        if "intrinsic_matrix" in meta:
            from ..data.rgbd import read_open3d_intrinsics

            fx, fy, cx, cy, w, h = read_open3d_intrinsics(path)
            return torch.tensor([[fx, 0, cx + 0.5], [0, fy, cy + 0.5], [0, 0, 1]], dtype=torch.float64), (w, h)
        if "K" in meta:
            K = torch.tensor(meta["K"], dtype=torch.float64)
        elif "fl_x" in meta:
            w0, h0 = meta.get("w", meta.get("width")), meta.get("h", meta.get("height"))
            cx = meta.get("cx", None if w0 is None else w0 / 2)
            cy = meta.get("cy", None if h0 is None else h0 / 2)
            if cx is None or cy is None:
                raise DataError(f"{path}: fl_x needs cx/cy or the image size (w, h)")
            K = torch.tensor([[meta["fl_x"], 0, cx], [0, meta.get("fl_y", meta["fl_x"]), cy], [0, 0, 1]],
                             dtype=torch.float64)
        else:
            raise DataError(f"{path}: needs 'K' (3x3), fl_x/fl_y/cx/cy, or an Open3D 'intrinsic_matrix'")
        w, h = meta.get("width", meta.get("w")), meta.get("height", meta.get("h"))
        size = None if w is None or h is None else (int(w), int(h))
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise DataError(f"{path}: malformed intrinsics ({e})") from None
    if K.shape != (3, 3):
        raise DataError(f"{path}: K must be 3x3, not {list(K.shape)}")
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise DataError(f"{path}: image size {size[0]}x{size[1]} is not positive")
    return K, size
