"""Parallel-jaw grippers as data: finger and palm boxes, opening and force, built in or read from a JSON file.

The grasp frame (the same for every gripper, see :class:`~.grasps.Grasp`): origin midway between the two contact
points, **z the approach direction** (from the palm towards the object), **x the closing direction** (from the
first finger towards the second), y = z x x. Finger pads are flat boxes parallel to the y-z plane; the contacts
sit ``tip_depth`` behind the fingertips (the fingers reach a little past the contacts); the palm is behind the
fingers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import read_json


@dataclass(frozen=True)
class ParallelJaw:
    """A two-finger gripper, metres and newtons."""

    name: str
    max_width: float  # largest opening between the finger pads
    finger_length: float  # along the approach axis, fingertip to palm
    finger_width: float  # along y
    finger_thickness: float  # along the closing axis
    palm: tuple[float, float, float]  # palm box (x along closing, y, z along approach)
    tip_depth: float = 0.01  # how far the fingertips reach past the contact points
    force: float = 70.0  # grip force per finger
    friction: float = 0.8  # Coulomb coefficient assumed at the pads (grasp quality and simulation)
    clearance: float = 0.01  # extra opening beyond the object's width when approaching

    def __post_init__(self):
        for f in fields(self):
            if f.name == "name":
                if not isinstance(self.name, str) or not self.name.strip():
                    raise ConfigError("a gripper needs a name")
                continue
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                       for x in vals) or (f.name == "palm" and len(vals) != 3):
                what = "three positive numbers" if f.name == "palm" else "a positive number"
                raise ConfigError(f"gripper {self.name!r}: {f.name} must be {what}, not {v!r}")
        if self.tip_depth >= self.finger_length:
            raise ConfigError(f"gripper {self.name!r}: tip_depth ({self.tip_depth}) must be shorter than the fingers "
                              f"({self.finger_length})")

    def opening_for(self, width: float) -> float:
        """The opening to approach an object ``width`` wide with: width plus clearance, at most max_width."""
        return float(self.opening_for_all(width))

    def opening_for_all(self, widths) -> np.ndarray:
        """:meth:`opening_for` of many widths [K] at once."""
        return np.minimum(self.max_width, np.asarray(widths, float) + 2 * self.clearance)

    def boxes(self, opening: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, centre [3], extent [3]) of the collision boxes in the grasp frame, fingers ``opening`` apart."""
        z_tip = self.tip_depth
        z_root = z_tip - self.finger_length
        fz = (z_tip + z_root) / 2
        t = self.finger_thickness
        finger = np.array([t, self.finger_width, self.finger_length])
        palm = np.asarray(self.palm, float)
        return [
            ("finger_1", np.array([-(opening / 2 + t / 2), 0.0, fz]), finger),
            ("finger_2", np.array([opening / 2 + t / 2, 0.0, fz]), finger),
            ("palm", np.array([0.0, 0.0, z_root - palm[2] / 2]), palm),
        ]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["palm"] = list(self.palm)
        return d


# Franka Emika Panda hand: 8 cm stroke, 70 N continuous grip force; fingertip pads ~2 cm wide (datasheet values,
# boxes rounded up so collisions err on the safe side).
PANDA = ParallelJaw("panda", max_width=0.08, finger_length=0.054, finger_width=0.021, finger_thickness=0.012,
                    palm=(0.21, 0.065, 0.06), tip_depth=0.012, force=70.0, friction=0.8)
# Robotiq 2F-85: 85 mm stroke, 20-235 N (here 100 N), pads 22 mm wide.
ROBOTIQ_2F85 = ParallelJaw("robotiq-2f-85", max_width=0.085, finger_length=0.06, finger_width=0.022,
                           finger_thickness=0.012, palm=(0.15, 0.07, 0.09), tip_depth=0.012, force=100.0,
                           friction=0.8)
BUILTIN = {g.name: g for g in (PANDA, ROBOTIQ_2F85)}
REQUIRED = ("max_width", "finger_length", "finger_width", "finger_thickness", "palm")


def load_gripper(spec: str | Path | ParallelJaw | None) -> ParallelJaw:
    """A built-in gripper by name ('panda', 'robotiq-2f-85'), or a JSON file with the fields of
    :class:`ParallelJaw` (``name`` optional, metres and newtons)."""
    if spec is None:
        return PANDA
    if isinstance(spec, ParallelJaw):
        return spec
    key = str(spec).strip().lower()
    if key in BUILTIN or key in ("robotiq", "2f-85"):
        return BUILTIN.get(key, ROBOTIQ_2F85)
    path = Path(str(spec))
    if path.suffix.lower() != ".json" and not path.exists():
        raise ConfigError(f"unknown gripper {str(spec)!r}: use one of {', '.join(BUILTIN)} or a JSON file")
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: a gripper file is a JSON object with {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DataError(f"{path}: gripper is missing {', '.join(missing)} (needs {', '.join(REQUIRED)}; metres)")
    known = {f.name for f in fields(ParallelJaw)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"{path}: unknown gripper field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        palm = tuple(float(x) for x in data["palm"])
        kw = {k: (palm if k == "palm" else data[k]) for k in data if k != "name"}
        return ParallelJaw(name=str(data.get("name", path.stem)), **kw)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed gripper ({e})") from None
    except ConfigError as e:
        raise DataError(f"{path}: {e}") from None
