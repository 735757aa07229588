"""The in-memory scene every loader produces and every later stage consumes."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .cameras import Cameras


@dataclass
class SceneData:
    """Posed images in the metric world frame, plus whatever per-pixel extras the source provides.

    ``world_from_scene`` maps the coordinates used here to the source's metric world frame. Loaders keep it the
    identity (no recentring, no rescaling); an option that normalises must fill it so exports can invert it.
    ``frame_info["metric"]`` is False for frames without a scale (COLMAP's); asking for a metric scale
    (:mod:`.scale`) rescales such a frame and records the factor, and the rescaled frame is then the world.
    """

    name: str
    root: Path
    images: Tensor  # [N, H, W, 3] uint8, background already composited for RGBA sources
    cameras: Cameras  # N cameras, all W x H
    frame_names: list[str]  # N relative image paths, for messages and cache keys
    train_idx: list[int]
    test_idx: list[int]
    depths: Tensor | None = None  # [N, H, W] float32 metres, 0 where unknown
    masks: Tensor | None = None  # [N, H, W] bool, True where the pixel is valid / foreground
    semantics: Tensor | None = None  # [N, H, W] int16 index into label_names, -1 unknown
    instances: Tensor | None = None  # [N, H, W] int16 instance id, -1 unknown
    label_names: list[str] | None = None  # semantic class names, index = value in `semantics`
    points: Tensor | None = None  # [P, 3] float32 initial points (e.g. from depth or a point file)
    point_colors: Tensor | None = None  # [P, 3] float32 in [0, 1]
    world_from_scene: Tensor = field(default_factory=lambda: torch.eye(4))  # [4, 4]
    # What the frame is: {"source": format, "metric": bool, and for a rescaled COLMAP frame "scale", "scale_from"}
    frame_info: dict = field(default_factory=lambda: {"metric": True})
    notes: list[str] = field(default_factory=list)  # things the loader wants the user to know, said once

    @property
    def width(self) -> int:
        return self.cameras.width

    @property
    def height(self) -> int:
        return self.cameras.height

    def __len__(self) -> int:
        return self.images.shape[0]


def scene_fingerprint(scene: SceneData) -> str:
    """A digest of the frames (names, camera-to-world poses) that does not change when the scene folder moves or
    is loaded at another resolution, so ``--resume`` can tell the scene a checkpoint was trained on from another."""
    h = hashlib.sha256(b"featurefields-scene-v1\0")
    for name in scene.frame_names:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    h.update((scene.cameras.c2w.detach().cpu().float().numpy().round(5) + 0.0).tobytes())  # (+0: no -0.0)
    return h.hexdigest()
