"""Input checks shared by every scene loader.

Each check raises :class:`DataError` with one line that names the culprit (file, frame, key), so a user with a
broken export learns what to fix instead of getting a NaN loss fifty thousand steps later.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import DataError

ROTATION_TOL = 1e-3


def check_exists(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path


def check_nonempty_dir(path: str | os.PathLike) -> Path:
    path = check_exists(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    if not any(path.iterdir()):
        raise DataError(f"{path}: folder is empty")
    return path


def require_keys(obj: Any, keys: Iterable[str], where: str) -> None:
    """``where`` names the file (and frame) so the message says which entry lacks the key."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")


def as_float(value: Any, what: str) -> float:
    """A finite float from JSON; strings like "525.0" are accepted, NaN/inf/garbage are not."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise DataError(f"{what}: value is {out} (NaN/inf)")
    return out


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, what: str) -> None:
    for name, v in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not math.isfinite(float(v)):
            raise DataError(f"{what}: intrinsics {name} is {v} (NaN/inf)")
    for name, v in (("fx", fx), ("fy", fy)):
        if v <= 0:
            raise DataError(f"{what}: focal length {name}={v} is not positive")


def check_pose(matrix: Any, what: str) -> np.ndarray:
    """A rigid 4x4 camera-to-world matrix (float64) from a 3x4 or 4x4 nested list/array.

    Rejects NaN/inf, a bottom row other than [0 0 0 1], and rotations that are not orthonormal with det +1 (a
    scaled or mirrored rotation silently breaks every later stage; exporters that rescale scenes produce them).
    """
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: pose is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise DataError(f"{what}: pose must be 4x4 (or 3x4), got shape {'x'.join(map(str, m.shape)) or 'scalar'}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{what}: pose contains NaN/inf")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise DataError(f"{what}: pose bottom row is {m[3].tolist()}, expected [0, 0, 0, 1]")
    R = m[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > ROTATION_TOL:
        scales = np.linalg.norm(R, axis=0)
        raise DataError(
            f"{what}: pose rotation is not orthonormal (column norms {np.round(scales, 4).tolist()}); "
            "a scaled rotation is a common export bug"
        )
    det = np.linalg.det(R)
    if det < 0:
        raise DataError(f"{what}: pose rotation has det {det:.3f} (a reflection, not a rotation)")
    return m


def check_size(size: tuple[int, int], expected: tuple[int, int], what: str, expected_from: str) -> None:
    """Sizes are (width, height); the message names both so the user sees which one is off."""
    if tuple(size) != tuple(expected):
        raise DataError(f"{what}: size {size[0]}x{size[1]} differs from {expected[0]}x{expected[1]} ({expected_from})")


def check_counts(what: str, **counts: int) -> None:
    """Several lists that must pair up one-to-one (images, depths, poses)."""
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n} {k}" for k, n in counts.items())
        raise DataError(f"{what}: counts do not match ({listed})")
