"""Cheap stand-ins shared by the teacher tests."""
from __future__ import annotations

import torch

from featurefields.teachers import Teacher, TeacherInput, TeacherOutput


class CountingTeacher(Teacher):
    """A cheap deterministic teacher for cache tests: half-resolution colour statistics, counting its calls."""

    name = "counting"

    def __init__(self, scale: float = 1.0, dim: int = 5):
        self.dim = dim
        self.scale = scale
        self.batches: list[int] = []  # size of every extract() call

    def config(self):
        return {"scale": self.scale, "dim": self.dim}

    def extract(self, views):
        self.batches.append(len(views))
        outs = []
        for v in views:
            img = v.image.float() / 255.0  # [H, W, 3]
            h, w = v.height // 2, v.width // 2
            small = img[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(dim=(1, 3))  # [h, w, 3]
            ramp = torch.linspace(-1, 1, self.dim)
            feats = self.scale * (small.mean(-1, keepdim=True) * ramp + small[..., :1] * ramp.flip(0) ** 2)
            outs.append(TeacherOutput(features=feats.float(), valid=small[..., 1] > 0.3))
        return outs

    @property
    def calls(self) -> int:
        return len(self.batches)


def random_views(n: int, h: int = 12, w: int = 16, seed: int = 0, labels: list[str] | None = None
                 ) -> list[TeacherInput]:
    g = torch.Generator().manual_seed(seed)
    views = []
    for i in range(n):
        image = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
        sem = None
        if labels is not None:
            sem = torch.randint(-1, len(labels), (h, w), generator=g).to(torch.int16)
        views.append(TeacherInput(image=image, semantics=sem, label_names=labels, name=f"frame_{i:03d}.png"))
    return views
