"""Input checks shared by every scene loader and camera file, built on :mod:`featurefields.validate`.

Each check raises :class:`DataError` with one line that names the culprit (file, frame, key), so a user with a
broken export learns what to fix instead of getting a NaN loss fifty thousand steps later.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import validate
from ..errors import DataError

ROTATION_TOL = 1e-3
# A pinhole camera's horizontal/vertical field of view must lie in this range (degrees): beyond 160 degrees a
# pinhole projection is degenerate (use a fisheye model), below 0.05 degrees the focal length is surely in the
# wrong unit. Both catch focal lengths in metres or millimetres, and camera_angle_x in degrees.
MIN_FOV_DEG, MAX_FOV_DEG = 0.05, 160.0


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
    return validate.number(value, what, error=DataError)


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, what: str,
                     size: tuple[int, int] | None = None, names: tuple[str, str] = ("fx", "fy")) -> None:
    """Finite, positive focal lengths; with the image ``size`` (width, height) also a pinhole field of view in
    [MIN_FOV_DEG, MAX_FOV_DEG] and a principal point no further than one image size outside the image.
    ``names`` are the focal lengths' names in the source file (fl_x, fl_y), for the message."""
    for name, v in ((names[0], fx), (names[1], fy), ("cx", cx), ("cy", cy)):
        if not math.isfinite(float(v)):
            raise DataError(f"{what}: intrinsics {name} is {v} (NaN/inf)")
    for name, v in zip(names, (fx, fy)):
        if v <= 0:
            raise DataError(f"{what}: focal length {name}={v:g} is not positive")
    if size is None:
        return
    for name, f, extent in ((names[0], fx, size[0]), (names[1], fy, size[1])):
        fov = math.degrees(2 * math.atan(extent / (2 * f)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            raise DataError(f"{what}: focal length {name}={f:g} px gives a {fov:.4g} degree field of view over "
                            f"{extent} px; a pinhole camera needs {MIN_FOV_DEG:g}-{MAX_FOV_DEG:g} degrees (is it in "
                            "pixels?)")
    for name, c, extent in (("cx", cx, size[0]), ("cy", cy, size[1])):
        if not -extent <= c <= 2 * extent:
            raise DataError(f"{what}: principal point {name}={c:g} lies far outside the {size[0]}x{size[1]} image")


def check_field_of_view(angle: Any, what: str) -> float:
    """camera_angle_x (radians) of a pinhole camera, in [MIN_FOV_DEG, MAX_FOV_DEG] degrees."""
    a = as_float(angle, what)
    if not math.radians(MIN_FOV_DEG) <= a <= math.radians(MAX_FOV_DEG):
        raise DataError(f"{what}={a:g} rad ({math.degrees(a):.4g} degrees) is not a pinhole field of view: expected "
                        f"{math.radians(MIN_FOV_DEG):.4g}-{math.radians(MAX_FOV_DEG):.4g} rad "
                        f"({MIN_FOV_DEG:g}-{MAX_FOV_DEG:g} degrees)")
    return a


def check_K(K: Any, what: str, size: tuple[int, int] | None = None, names: tuple[str, str] = ("fx", "fy")
            ) -> np.ndarray:
    """A 3x3 pinhole intrinsics matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew): float64."""
    try:
        m = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: K is not a numeric 3x3 matrix") from None
    if m.shape != (3, 3):
        raise DataError(f"{what}: K must be 3x3, got shape {'x'.join(map(str, m.shape)) or 'scalar'}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{what}: K contains NaN/inf")
    if not np.allclose(m[2], [0.0, 0.0, 1.0]) or m[0, 1] != 0 or m[1, 0] != 0:
        raise DataError(f"{what}: K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {m.round(4).tolist()}")
    check_intrinsics(m[0, 0], m[1, 1], m[0, 2], m[1, 2], what, size, names)
    return m


def check_image_size(width: Any, height: Any, what: str) -> tuple[int, int]:
    """Declared or decoded image size: whole, positive, within :data:`featurefields.validate.MAX_IMAGE_SIDE`."""
    return validate.image_size(width, height, what, error=DataError)


def resolve_inside(root: Path, rel: Any, what: str, allow_outside: bool = False) -> Path:
    """``root / rel`` for a path listed in a scene file; refused when it leaves ``root`` ('../', an absolute
    path) unless ``allow_outside`` (ff-train --allow-outside-scene). Symbolic links inside the scene are
    followed: only the listed path itself is checked."""
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{what}: expected a file path, got {rel!r}")
    validate.text(rel, what, error=DataError)
    if "\0" in rel:
        raise DataError(f"{what}: {rel!r} contains a NUL byte")
    path = Path(os.path.normpath(Path(root) / rel))
    if len(os.fsencode(path)) > 4000 or any(len(os.fsencode(part)) > 255 for part in path.parts):
        raise DataError(f"{what}: {rel[:40]!r}... is longer than a file name can be")
    absolute, top = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if not allow_outside and top not in absolute.parents:
        raise DataError(f"{what}: {rel!r} leads outside the scene folder {root}; refusing to read it (pass "
                        "--allow-outside-scene if the scene really keeps files elsewhere)")
    return path


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
