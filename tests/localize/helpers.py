"""A tiny localisation scene that needs neither training nor ray casting: colour-only Gaussians sampled on the
generated tabletop's meshes (as the query tests' oracle, without its label features), and a nerfstudio scene whose
images are this field's own renders at orbiting cameras. Localising one of its held-out renders has an exact
answer, so the tests can tell a right pose from a wrong one to a fraction of a degree."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from featurefields.fields.gaussians import FeatureLayout, GaussianField
from featurefields.fields.rendering import render_field
from featurefields.scenegen.meshes import Mesh, sample_surface
from featurefields.scenegen.tabletop import GL_TO_CV, build_tabletop, orbit_cameras

from ..query.helpers import flat_frames, rotmat_to_quat, save_as_checkpoint

SIZE = (160, 120)


def splat_tabletop(seed: int = 0, per_object: int = 600, table: int = 5000, room: int = 8000,
                   spread: float = 2.0) -> GaussianField:
    """Flat opaque splats on every mesh (the ceiling left out: no camera sees it), ``spread`` times the sample
    spacing wide so the surfaces render closed."""
    scene = build_tabletop(seed)
    rng = np.random.default_rng(seed)
    parts = [(scene.room, room), (scene.table, table)] + [(o.world_mesh, per_object) for o in scene.objects]
    pts, nrm, col, side = [], [], [], []
    for k, (mesh, n) in enumerate(parts):
        if k == 0:
            mesh = Mesh(mesh.vertices, mesh.triangles[mesh.normals[mesh.triangles].mean(1)[:, 2] >= -0.5],
                        mesh.colors, mesh.normals)
        p, nn, c = sample_surface(mesh, n, rng)
        pts.append(p)
        nrm.append(nn)
        col.append(c)
        side.append(np.full(n, np.sqrt(mesh.face_areas().sum() / n)))
    pts, nrm, col, side = (np.concatenate(x) for x in (pts, nrm, col, side))
    scales = np.stack([0.45 * spread * side, 0.45 * spread * side, 0.05 * side], 1)
    field = GaussianField(torch.from_numpy(pts).float(), torch.from_numpy(col).float(),
                          torch.from_numpy(np.log(scales)).float(), FeatureLayout([], latent_dim=0), sh_degree=0)
    params = {k: v.detach().clone() for k, v in field.params().items()}
    params["quats"] = torch.from_numpy(rotmat_to_quat(flat_frames(nrm))).float()
    params["opacity_logits"] = torch.full((len(pts),), 4.0)
    field.replace_params(params)
    return field.requires_grad_(False)


def rendered_scene(field: GaussianField, root: Path, views: int = 16, size: tuple[int, int] = SIZE,
                   seed: int = 0) -> Path:
    """A nerfstudio scene of ``views`` orbiting cameras whose images are renders of ``field`` (white background)."""
    w, h = size
    c2w_gl, K = orbit_cameras(views, seed, w, h)
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(views):
        with torch.no_grad():
            out = render_field(field, torch.from_numpy(c2w_gl[i] @ GL_TO_CV).float(), torch.from_numpy(K).float(),
                               w, h, background=torch.ones(3), with_features=False)
        img = (out.rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"frame_{i:05d}.png")
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": c2w_gl[i].tolist()})
    meta = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": w, "h": h,
            "camera_model": "PINHOLE", "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


def localization_scene(root: Path, views: int = 24) -> tuple[Path, Path]:
    """(scene folder, checkpoint) of the tiny localisation scene; every 4th view is held out."""
    field = splat_tabletop()
    scene = rendered_scene(field, root / "scene", views)
    ckpt = save_as_checkpoint(field, scene, root / "run" / "checkpoint.pt", teachers=(), eval_every=4)
    return scene, ckpt


def rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))
