"""The tiny localisation scene (see helpers), built once per session: about 10 s, no training, no ray casting."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class LocScene:
    scene: Path
    checkpoint: Path
    field: object  # FeatureField


@pytest.fixture(scope="session")
def loc(tmp_path_factory) -> LocScene:
    import featurefields as ff

    from .helpers import localization_scene

    scene, ckpt = localization_scene(tmp_path_factory.mktemp("localize"))
    return LocScene(scene, ckpt, ff.load(ckpt))


@pytest.fixture(scope="session")
def located(loc):
    """(view, estimate) for one held-out frame, localised once with the default settings."""
    view = loc.field.views("test")[1]
    return view, loc.field.localize(view.image, view.K)
