"""``featurefields.load``: a checkpoint or a splat PLY in, a :class:`~.base.FeatureField` out."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .base import FeatureField


def load(path: str | Path, *, device: str | torch.device = "cpu", scene_root: str | Path | None = None,
         **options) -> FeatureField:
    """Load a trained field in its scene's metric world frame: a run folder or its ``checkpoint.pt``, or a 3DGS
    ``.ply`` with ``feat_*`` properties. ``scene_root``: the training scene, if it moved since training."""
    from .splats import GaussianFeatureField

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: checkpoint not found (give a checkpoint.pt, its run folder, or a splat .ply)")
    if p.suffix.lower() == ".ply":
        field = GaussianFeatureField.from_ply(p, device=device, **options)
        if scene_root is not None:
            field.attach_scene(root=scene_root)
        return field
    kwargs = dict(options)
    if scene_root is not None:
        kwargs["scene_root"] = scene_root
    return GaussianFeatureField.from_checkpoint(p, device=device, **kwargs)
