"""An 'oracle' field for query tests: Gaussians sampled on a generated tabletop's own meshes, each carrying the
exact labels-teacher embedding of the mesh it lies on, saved as a normal checkpoint. Queries on it have known
answers (3D: exactly the Gaussians of each mesh) without any training, so the tests are fast and can fail."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from featurefields.scenegen.meshes import Mesh, part_masks, sample_surface, submesh
from featurefields.scenegen.tabletop import build_tabletop, generate_tabletop
from featurefields.teachers.text import SentenceEncoder
from featurefields.train.checkpoint import save_checkpoint
from featurefields.train.config import TrainConfig

SIZE = (64, 48)


def tiny_tabletop(root: Path, views: int = 6) -> Path:
    return generate_tabletop(root, seed=0, views=views, width=SIZE[0], height=SIZE[1], n_points=500, progress=False)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotations -> [N, 4] wxyz (Shepperd's method via the largest diagonal term)."""
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(R).as_quat()
    return np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1)


def flat_frames(normals: np.ndarray) -> np.ndarray:
    """Rotations whose third axis is the normal: [N, 3, 3]."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    helper = np.where(np.abs(n[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    t1 = np.cross(helper, n)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    return np.stack([t1, t2, n], axis=2)


def oracle_field(seed: int = 0, per_object: int = 300, table: int = 2500,
                 room: int = 2500) -> tuple[GaussianField, list[str]]:
    """(field, label per Gaussian): flat, opaque splats on every mesh of build_tabletop(seed), full-width 384-D
    labels features equal to the label's sentence embedding."""
    scene = build_tabletop(seed)
    rng = np.random.default_rng(seed)
    parts = [("background", scene.room, room), ("table", scene.table, table)]
    for o in scene.objects:  # named parts ("mug handle") carry their own label, as in the scene's masks
        pieces = part_masks(o.label, o.mesh)
        rest = ~np.any([m for _, m in pieces], axis=0) if pieces else np.ones(len(o.mesh.triangles), bool)
        area = o.mesh.face_areas()
        for label, mask in [(o.label, rest)] + pieces:
            k = int(round(per_object * area[mask].sum() / area.sum()))
            parts.append((label, submesh(o.mesh, mask).transformed(o.pose), k))
    pts, nrm, col, labels, side = [], [], [], [], []
    for label, mesh, n in parts:
        if label == "background":  # the ceiling is never in view, as in the scene's own points.ply
            mesh = Mesh(mesh.vertices, mesh.triangles[mesh.normals[mesh.triangles].mean(1)[:, 2] >= -0.5],
                        mesh.colors, mesh.normals)
        p, nn, c = sample_surface(mesh, n, rng)
        if label == "table":  # the table top under an object is never seen: a trained field has nothing there
            hidden = np.zeros(len(p), bool)
            for o in scene.objects:
                lo, hi = o.world_mesh.bounds  # the object's footprint, on the table top
                hidden |= np.all((p[:, :2] > lo[:2]) & (p[:, :2] < hi[:2]), axis=1) & (p[:, 2] > lo[2] - 1e-3)
            p, nn, c = p[~hidden], nn[~hidden], c[~hidden]
            n = len(p)
        pts.append(p)
        nrm.append(nn)
        col.append(c)
        labels += [label] * n
        side += [np.sqrt(mesh.face_areas().sum() / n)] * n  # splat size ~ the sample spacing
    pts, nrm, col, side = (np.concatenate(x) if x is not side else np.asarray(x) for x in (pts, nrm, col, side))
    scales = np.stack([0.45 * side, 0.45 * side, 0.05 * side], 1)
    enc = SentenceEncoder.shared()
    names = list(dict.fromkeys(labels))
    emb = dict(zip(names, enc.encode([n.replace("_", " ") for n in names])))
    feats = torch.stack([emb[lab] for lab in labels])
    layout = FeatureLayout([TeacherSpec("labels", 384)], latent_dim=0)
    field = GaussianField(torch.from_numpy(pts).float(), torch.from_numpy(col).float(),
                          torch.from_numpy(np.log(scales)).float(), layout, sh_degree=0)
    params = {k: v.detach().clone() for k, v in field.params().items()}
    params["quats"] = torch.from_numpy(rotmat_to_quat(flat_frames(nrm))).float()
    params["opacity_logits"] = torch.full((len(pts),), 3.0)  # opacity 0.95
    params["features"] = feats
    field.replace_params(params)
    return field.requires_grad_(False), labels


def save_as_checkpoint(field: GaussianField, scene_root: Path, path: Path, teachers=("labels",), **config) -> Path:
    """A checkpoint like the trainer's (no optimiser state), so the CLIs can load the field."""
    cfg = TrainConfig(scene=str(scene_root), out=str(path.parent), sh_degree=field.sh_degree, **config)
    save_checkpoint(path, {
        "step": 0, "config": cfg.to_dict(), "field": field.state(),
        "teachers": [{"name": t, "dim": s.dim, "config": {}} for t, s in zip(teachers, field.layout.teachers)],
        "scene": {"name": scene_root.name, "root": str(scene_root), "world_from_scene": torch.eye(4).tolist()},
        "history": [], "train_seconds": 0.0,
    })
    return path
