"""Gripper-versus-scene collision checks with FCL (python-fcl): the scene as triangle meshes in bounding-volume
hierarchies, the gripper as its finger and palm boxes."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .gripper import ParallelJaw


class SceneCollider:
    """Triangle meshes (world frame) to test gripper poses against; build once, query many poses."""

    def __init__(self, meshes: Sequence[tuple[np.ndarray, np.ndarray]]):
        import fcl

        self._objects = []
        for vertices, triangles in meshes:
            v = np.asarray(vertices, np.float64)
            t = np.asarray(triangles, np.int64)
            if len(t) == 0:
                continue
            model = fcl.BVHModel()
            model.beginModel(len(v), len(t))
            model.addSubModel(v, t)
            model.endModel()
            self._objects.append(fcl.CollisionObject(model, fcl.Transform()))

    def __len__(self) -> int:
        return len(self._objects)

    def box_collides(self, center: np.ndarray, rotation: np.ndarray, extent: np.ndarray) -> bool:
        import fcl

        box = fcl.CollisionObject(fcl.Box(*map(float, extent)), fcl.Transform(rotation, center))
        return any(fcl.collide(box, o, fcl.CollisionRequest(), fcl.CollisionResult()) > 0 for o in self._objects)

    def gripper_collides(self, gripper: ParallelJaw, pose: np.ndarray, opening: float,
                         margins: dict[str, float] | None = None) -> str | None:
        """The name of the first gripper part that touches the scene at ``pose`` [4, 4] with the fingers
        ``opening`` apart, or None when it is free; ``margins``: metres a part (by name) is grown by on each side."""
        R, t = pose[:3, :3], pose[:3, 3]
        for name, c, e in gripper.boxes(opening):
            if self.box_collides(R @ c + t, R, e + 2 * (margins or {}).get(name, 0.0)):
                return name
        return None
