"""Shared fixtures: paths to the shared real data, a tiny hand-made nerfstudio scene for CLI tests, and the oracle
field (a tiny generated tabletop whose Gaussians lie on its meshes with exact label features)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data {name} not found at {path}")
    return path


def look_at_gl(eye: np.ndarray, target=np.zeros(3), up=np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """Camera-to-world in OpenGL axes (x right, y up, z backward), as transforms.json stores it."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    upv = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, upv, back, eye
    return m


def write_tiny_nerfstudio(root: Path, n: int = 6, w: int = 16, h: int = 12, semantics: bool = True) -> Path:
    """n views of a two-colour pattern on a circle; labels 'floor' and 'ball'."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "semantics").mkdir(exist_ok=True)
    frames = []
    rng = np.random.default_rng(0)
    for i in range(n):
        a = 2 * math.pi * i / n
        eye = np.array([2 * math.cos(a), 2 * math.sin(a), 1.0])
        sem = np.zeros((h, w), np.uint8)
        sem[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
        img = np.where(sem[..., None] == 1, [200, 40, 40], [40, 40, 200]).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 10, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"f{i}.png")
        Image.fromarray(sem).save(root / "semantics" / f"f{i}.png")
        frame = {"file_path": f"images/f{i}.png", "transform_matrix": look_at_gl(eye).tolist()}
        if semantics:
            frame["semantic_path"] = f"semantics/f{i}.png"
        frames.append(frame)
    meta = {"fl_x": 14.0, "fl_y": 14.0, "cx": w / 2, "cy": h / 2, "w": w, "h": h, "camera_model": "PINHOLE",
            "semantic_labels": ["floor", "ball"], "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


@pytest.fixture
def tiny_scene(tmp_path) -> Path:
    return write_tiny_nerfstudio(tmp_path / "tiny")


@dataclass
class Oracle:
    scene: Path  # tiny tabletop scene folder (objects.json, meshes, semantics)
    checkpoint: Path
    field: object  # GaussianField
    labels: list[str]  # label of every Gaussian (a named part's own: "mug handle")

    def truth(self, *objects: str, parts: bool = True):
        """[N] bool: the Gaussians of these objects, their named parts included unless ``parts=False``."""
        import torch

        from featurefields.scenegen.meshes import OBJECT_PARTS

        want = set(objects) | {p for o in objects for p, _ in OBJECT_PARTS.get(o, [])} if parts else set(objects)
        return torch.tensor([lab in want for lab in self.labels])

    def count(self, obj: str) -> int:
        return int(self.truth(obj).sum())


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Oracle:
    from tests.query.helpers import oracle_field, save_as_checkpoint, tiny_tabletop

    root = tmp_path_factory.mktemp("oracle")
    scene = tiny_tabletop(root / "tabletop")
    field, labels = oracle_field(per_object=500)
    ckpt = save_as_checkpoint(field, scene, root / "run" / "checkpoint.pt")
    return Oracle(scene, ckpt, field, labels)


@dataclass
class LocScene:
    scene: Path  # nerfstudio scene whose images are renders of the field (tests/localize/helpers.py)
    checkpoint: Path
    field: object  # FeatureField


@pytest.fixture(scope="session")
def loc(tmp_path_factory) -> LocScene:
    """The tiny localisation scene: ~10 s, no training, no ray casting."""
    import featurefields as ff
    from tests.localize.helpers import localization_scene

    scene, ckpt = localization_scene(tmp_path_factory.mktemp("localize"))
    return LocScene(scene, ckpt, ff.load(ckpt))


@pytest.fixture(scope="session")
def located(loc):
    """(view, estimate) of one held-out frame, localised once with the default settings."""
    view = loc.field.views("test")[1]
    return view, loc.field.localize(view.image, view.K)


@pytest.fixture(autouse=True, scope="session")
def _undistort_cache_in_tmp(tmp_path_factory):
    """Undistorted images go to a session folder, not the user's ~/.cache."""
    import os

    old = os.environ.get("FF_UNDISTORT_CACHE")
    os.environ["FF_UNDISTORT_CACHE"] = str(tmp_path_factory.mktemp("undistorted"))
    yield
    if old is None:
        os.environ.pop("FF_UNDISTORT_CACHE", None)
    else:
        os.environ["FF_UNDISTORT_CACHE"] = old
