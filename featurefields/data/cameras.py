"""Pinhole cameras in the metric world frame.

Convention everywhere inside featurefields: camera-to-world matrices in the **OpenCV** camera convention
(x right, y down, z forward), pixel centres at ``(u + 0.5, v + 0.5)``, intrinsics ``K`` in pixels of the stored
image size. Loaders convert from OpenGL/Blender (x right, y up, z backward) by flipping the y and z axes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

# Flip between OpenGL/Blender (y up, z back) and OpenCV (y down, z forward) camera axes: c2w_cv = c2w_gl @ GL_TO_CV.
GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


@dataclass
class Cameras:
    c2w: Tensor  # [N, 4, 4] camera-to-world, OpenCV axes, metres
    K: Tensor  # [N, 3, 3] intrinsics in pixels
    width: int
    height: int

    def __post_init__(self) -> None:
        assert self.c2w.ndim == 3 and self.c2w.shape[1:] == (4, 4), self.c2w.shape
        assert self.K.shape == (self.c2w.shape[0], 3, 3), self.K.shape

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = [idx]
        return replace(self, c2w=self.c2w[idx], K=self.K[idx])

    @property
    def viewmats(self) -> Tensor:  # [N, 4, 4] world-to-camera
        return torch.linalg.inv(self.c2w)

    @property
    def centers(self) -> Tensor:  # [N, 3]
        return self.c2w[:, :3, 3]

    def resized(self, width: int, height: int) -> "Cameras":
        """Same cameras for an image resampled to ``width x height`` (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[:, 0, :] *= sx
        K[:, 1, :] *= sy
        K[:, 2, :] = torch.tensor([0.0, 0.0, 1.0])
        return Cameras(self.c2w.clone(), K, width, height)

    def to(self, device) -> "Cameras":
        return replace(self, c2w=self.c2w.to(device), K=self.K.to(device))


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
