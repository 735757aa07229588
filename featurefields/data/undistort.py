"""Undistortion of real lenses into pinhole images with the same K, once per image (cached on disk).

Every renderer downstream is pinhole, so distorted frames are resampled at load time. COLMAP's camera models are
mapped onto the two OpenCV families here (``OPENCV`` with its rational extension, and ``OPENCV_FISHEYE``): COLMAP's
SIMPLE_RADIAL / RADIAL / OPENCV / FULL_OPENCV use exactly OpenCV's radial-tangential equations on normalised
coordinates and COLMAP's OPENCV_FISHEYE is OpenCV's equidistant fisheye (the tests hold the maps to COLMAP's own
projection and to OpenCV's inverse). OpenCV puts pixel centres at integers, featurefields at +0.5, hence the
half-pixel shift of K below.

Undistorting a large photo is a decode + remap per image, repeated on every load (training, then every query), so
the pinhole images are cached like teacher outputs: keyed by the source file's bytes, the lens and K, written
atomically, PNG with the valid-pixel mask as alpha.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

UNDISTORT_CACHE_VERSION = 1
# COLMAP models whose images can be read: name -> names of the distortion parameters after the intrinsics.
COLMAP_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": (),
    "PINHOLE": (),
    "SIMPLE_RADIAL": ("k",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
    "FULL_OPENCV": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
}

_MAP_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_MAP_LOCK = threading.Lock()


@dataclass(frozen=True)
class Distortion:
    """A lens in OpenCV terms. ``model``: "OPENCV" (coefficients k1 k2 p1 p2 [k3 [k4 k5 k6]], OpenCV's order) or
    "OPENCV_FISHEYE" (k1 k2 k3 k4)."""

    model: str
    coeffs: tuple[float, ...]


def colmap_camera(model: str, params, what: str) -> tuple[np.ndarray, Distortion | None]:
    """(K [3, 3] with pixel centres at +0.5 -- COLMAP's convention too --, lens or None) of a COLMAP camera."""
    if model not in COLMAP_MODELS:
        raise DataError(f"{what}: camera model {model} is not supported (use one of {', '.join(COLMAP_MODELS)})")
    p = [float(v) for v in params]
    n_focal = 1 if model.startswith("SIMPLE") or model == "RADIAL" else 2
    want = n_focal + 2 + len(COLMAP_MODELS[model])
    if len(p) != want:
        raise DataError(f"{what}: camera model {model} takes {want} parameters, got {len(p)}")
    fx, fy = (p[0], p[0]) if n_focal == 1 else (p[0], p[1])
    cx, cy = p[n_focal], p[n_focal + 1]
    extra = p[n_focal + 2:]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if not any(extra):
        return K, None
    if model == "OPENCV_FISHEYE":
        return K, Distortion("OPENCV_FISHEYE", tuple(extra))
    if model == "SIMPLE_RADIAL":
        coeffs = (extra[0], 0.0, 0.0, 0.0)
    elif model == "RADIAL":
        coeffs = (extra[0], extra[1], 0.0, 0.0)
    else:  # OPENCV, FULL_OPENCV: COLMAP's parameter order is OpenCV's
        coeffs = tuple(extra)
    return K, Distortion("OPENCV", coeffs)


def undistort_maps(K: np.ndarray, dist: Distortion, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables (OpenCV pixel convention) that turn a distorted ``size`` image into a pinhole image with K."""
    import cv2

    key = (tuple(np.round(K, 9).ravel()), dist, tuple(size))
    with _MAP_LOCK:
        if key in _MAP_CACHE:
            return _MAP_CACHE[key]
    Kcv = K.astype(np.float64).copy()
    Kcv[0, 2] -= 0.5
    Kcv[1, 2] -= 0.5
    D = np.asarray(dist.coeffs, dtype=np.float64)
    if dist.model == "OPENCV_FISHEYE":
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(Kcv, D, np.eye(3), Kcv, tuple(size), cv2.CV_32FC1)
    else:
        m1, m2 = cv2.initUndistortRectifyMap(Kcv, D, None, Kcv, tuple(size), cv2.CV_32FC1)
    with _MAP_LOCK:
        if len(_MAP_CACHE) > 64:
            _MAP_CACHE.clear()
        _MAP_CACHE[key] = (m1, m2)
    return m1, m2


def undistort(arr: np.ndarray, K: np.ndarray, dist: Distortion, *, nearest: bool, fill: float = 0) -> np.ndarray:
    import cv2

    h, w = arr.shape[:2]
    m1, m2 = undistort_maps(K, dist, (w, h))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(arr, m1, m2, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def valid_after_undistort(K: np.ndarray, dist: Distortion, size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool: pinhole pixels whose source lies inside the distorted image."""
    ones = np.full((size[1], size[0]), 255, np.uint8)
    return undistort(ones, K, dist, nearest=True) > 0


def default_undistort_cache() -> Path:
    """``$FF_UNDISTORT_CACHE`` if set, else ``$XDG_CACHE_HOME/featurefields/undistorted`` (``~/.cache/...``)."""
    if os.environ.get("FF_UNDISTORT_CACHE"):
        return Path(os.environ["FF_UNDISTORT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "featurefields" / "undistorted"


class UndistortCache:
    """Pinhole versions of distorted images, keyed by content: a changed file, lens or K is a miss, never stale."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def key(self, image: Path, K: np.ndarray, dist: Distortion) -> str:
        h = hashlib.sha256(f"featurefields-undistort-v{UNDISTORT_CACHE_VERSION}\0".encode())
        try:
            h.update(image.read_bytes())
        except OSError as e:
            raise DataError(f"{image}: cannot read image ({e.strerror})") from None
        h.update(np.round(np.asarray(K, np.float64), 9).tobytes())
        h.update(f"{dist.model}\0{','.join(repr(float(c)) for c in dist.coeffs)}".encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(RGB uint8 [H, W, 3], valid [H, W] bool) or None on a miss or an unreadable entry."""
        from PIL import Image

        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with Image.open(p) as im:
                rgba = np.asarray(im.convert("RGBA"))
        except (OSError, ValueError):
            return None
        return np.ascontiguousarray(rgba[..., :3]), rgba[..., 3] > 0

    def put(self, key: str, rgb: np.ndarray, valid: np.ndarray) -> None:
        """Best effort: a read-only or full cache folder only costs the next load another remap."""
        from ..io import write_image

        rgba = np.concatenate([rgb[..., :3], np.where(valid, 255, 0).astype(np.uint8)[..., None]], axis=2)
        try:
            write_image(self.path(key), rgba)
        except OSError:
            pass


def undistorted_image(path: Path, K: np.ndarray, dist: Distortion, cache: UndistortCache | None,
                      read) -> tuple[np.ndarray, np.ndarray]:
    """(pinhole RGB(A) image, valid mask) of the distorted image at ``path`` (``read(path)`` decodes it), through
    the cache when one is given. RGBA sources (transparency) bypass the cache, whose alpha holds the mask."""
    key = cache.key(path, K, dist) if cache is not None else None
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    img = read(path)
    out = undistort(img, K, dist, nearest=False)
    valid = valid_after_undistort(K, dist, (img.shape[1], img.shape[0]))
    if key is not None and out.shape[2] == 3:
        cache.put(key, out, valid)
    return out, valid
