"""Scenes with wrong poses, for camera refinement: a copy of a nerfstudio scene whose training poses are each
turned by exactly ``degrees`` (about a random axis, around the camera centre) and moved by exactly ``metres`` (in a
random direction); held-out poses stay true. Everything but transforms.json is linked, not copied."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()


def perturbed_scene_copy(src: Path, dst: Path, degrees: float = 1.0, metres: float = 0.02, eval_every: int = 8,
                         seed: int = 0) -> Path:
    """``dst``: a scene whose frames i % eval_every != 0 (the training frames under the default split) have
    perturbed poses. The json records which frames were perturbed and by how much."""
    src, dst = Path(src).resolve(), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name != "transforms.json" and not (dst / entry.name).exists():
            os.symlink(entry, dst / entry.name)
    meta = json.loads((src / "transforms.json").read_text())
    rng = np.random.default_rng(seed)
    changed = []
    for i, fr in enumerate(meta["frames"]):
        if eval_every and i % eval_every == 0:
            continue
        m = np.array(fr["transform_matrix"], dtype=np.float64)
        m[:3, :3] = rotation_about(rng.normal(size=3), math.radians(degrees)) @ m[:3, :3]
        step = rng.normal(size=3)
        m[:3, 3] += metres * step / np.linalg.norm(step)
        fr["transform_matrix"] = m.tolist()
        changed.append(fr["file_path"])
    meta["perturbation"] = {"degrees": degrees, "metres": metres, "seed": seed, "frames": changed}
    (dst / "transforms.json").write_text(json.dumps(meta, indent=1))
    return dst


def pose_errors(c2w: np.ndarray, true_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotation error in degrees [N], camera-centre error in scene units [N]) between two sets of poses."""
    rel = np.einsum("nji,njk->nik", true_c2w[:, :3, :3], c2w[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(c2w[:, :3, 3] - true_c2w[:, :3, 3], axis=1)
