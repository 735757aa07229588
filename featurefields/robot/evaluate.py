"""``ff-eval grasp``: the field's grasps, executed in MuJoCo on the scene's ground-truth meshes, and checked
analytically against them.

For every object of ``objects.json``: plan the top-k grasps on the field (``field.grasps(label)``), run each in a
fresh simulation of the ground-truth scene (:mod:`.sim`), and check it on the ground-truth mesh (force closure of
its contacts moved onto the mesh, collision of the open gripper with the ground-truth scene). Whether an object
fits the gripper at all is decided the same way on the ground truth: the planner run on the object's true surface
must find a collision-free force-closure grasp; if it cannot, the object is reported as not fitting, with the
planner's reason, and left out of the success rates. Part queries ("mug handle") are planned on the part and
simulated on the whole object; their contacts must lie on the part's mesh.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..fields.base import FeatureField, SurfacePoints
from ..io import read_json, write_image, write_json
from ..machine import describe
from ..query.selection import Selection
from .collision import SceneCollider
from .geometry import OrientedBox, Plane, is_round, upright_box
from .grasps import _grasps_of, plan_grasps
from .gripper import ParallelJaw, load_gripper
from .locate import Located
from .quality import ferrari_canny
from .sim import SimConfig, SimObject, simulate_grasp

CONTACT_ON_PART = 0.005  # metres: a contact within this of the part's mesh (and nearer to it than the rest) is on it
TARGET_CENTROID = 0.01  # metres
TARGET_BOX_IOU = 0.7
TARGET_PART = 0.8  # 3D precision and recall of a located part's Gaussians


@dataclass
class GroundTruthScene:
    """objects.json's meshes: local-frame vertices and triangles, poses, the table's box."""

    root: Path
    objects: dict[str, dict]  # label -> {"vertices", "triangles", "pose", "entry"}
    table: tuple[np.ndarray, np.ndarray]  # world box of the table

    @classmethod
    def load(cls, root: str | Path) -> "GroundTruthScene":
        root = Path(root)
        path = root / "objects.json"
        if not path.is_file():
            raise DataError(f"{root}: no objects.json: grasps can only be simulated on a scene with ground-truth "
                            "meshes (e.g. one written by ff-scene)")
        data = read_json(path)
        objects = {}
        for o in data.get("objects", []):
            v, t = _read_mesh(root / o["mesh"])
            objects[o["label"]] = {"vertices": v, "triangles": t, "pose": np.asarray(o["pose"], float), "entry": o}
        table = data.get("table")
        if not isinstance(table, dict) or "bbox_min" not in table:
            raise DataError(f"{path}: needs a 'table' with bbox_min/bbox_max to simulate on")
        tpose = np.asarray(table.get("pose", np.eye(4)), float)
        lo, hi = np.asarray(table["bbox_min"], float) + tpose[:3, 3], np.asarray(table["bbox_max"], float) + tpose[:3, 3]
        return cls(root, objects, (lo, hi))

    def world(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        o = self.objects[label]
        return o["vertices"] @ o["pose"][:3, :3].T + o["pose"][:3, 3], o["triangles"]

    def sim_objects(self) -> list[SimObject]:
        return [SimObject(k, o["vertices"], o["triangles"], o["pose"]) for k, o in self.objects.items()]

    def collider(self) -> SceneCollider:
        lo, hi = self.table
        box = _box_mesh(lo, hi)
        return SceneCollider([self.world(k) for k in self.objects] + [box])

    def part_mesh(self, part: str) -> tuple[str, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """(object label, part mesh in the world, rest of the object in the world) of a named part."""
        for label, o in self.objects.items():
            for p in o["entry"].get("parts", []):
                if p["label"] == part:
                    pv, pt = _read_mesh(self.root / p["mesh"])
                    rv, rt = _read_mesh(self.root / o["entry"]["rest_mesh"])
                    R, t = o["pose"][:3, :3], o["pose"][:3, 3]
                    return label, (pv @ R.T + t, pt), (rv @ R.T + t, rt)
        return None


def evaluate_grasps(field: FeatureField, scene_root: str | Path, *, gripper: ParallelJaw | str | None = None,
                    k: int = 5, labels: list[str] | None = None, parts: list[str] | None = None,
                    cfg: SimConfig | None = None, out_dir: str | Path | None = None, seed: int = 0,
                    progress: bool = True) -> dict:
    """Run the evaluation (see the module docstring); with ``out_dir``, write ``grasp_summary.json``,
    ``grasp_<label>.json`` and ``grasp_<label>.png`` (the top grasp at the moment of lift) there."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    grip = load_gripper(gripper)
    cfg = cfg or SimConfig()
    gt = GroundTruthScene.load(scene_root)
    labels = labels or list(gt.objects)
    unknown = [lab for lab in labels if lab not in gt.objects]
    if unknown:
        raise DataError(f"{', '.join(unknown)}: not among the scene's objects ({', '.join(gt.objects)})")
    parts = parts if parts is not None else [p["label"] for o in gt.objects.values() for p in o["entry"].get("parts", [])]
    collider = gt.collider()
    table_plane = Plane(torch.tensor([0.0, 0.0, 1.0]), -float(gt.table[1][2]))
    out = Path(out_dir) if out_dir is not None else None
    rows, machine = {}, describe()
    for label in tqdm(labels + parts, desc="ff-eval grasp", unit="query", disable=not progress):
        is_part = label in parts
        target = gt.part_mesh(label)[0] if is_part else label
        if target is None:
            raise DataError(f"{label}: no such part in {gt.root / 'objects.json'}")
        fit_reason = None if is_part else _fits(gt, label, grip, table_plane, seed)
        row: dict = {"query": label, "object": target, "machine": machine, "fits": fit_reason is None,
                     "why_not": fit_reason}
        result = plan_grasps(field, label, gripper=grip, k=k, seed=seed)
        row["planner"] = {"num_grasps": len(result), "reason": result.reason, "timings": result.timings}
        vertices, triangles = gt.world(target)
        trials = []
        for rank, g in enumerate(result):
            pose = g.pose.double().numpy()
            outcome = simulate_grasp(gt.sim_objects(), target, gt.table, grip, pose, g.opening, cfg,
                                     render=rank == 0 and out is not None)
            eps, fc = _gt_force_closure(g.contacts.double().numpy(), vertices, triangles, grip)
            trial = {"rank": rank + 1, **g.to_dict(), "sim": outcome.to_dict(), "gt_force_closure": fc,
                     "gt_epsilon": eps, "gt_collision": collider.gripper_collides(grip, pose, g.opening)}
            if is_part:
                trial["contacts_on_part"] = _contacts_on_part(g.contacts.double().numpy(), gt.part_mesh(label))
            trials.append(trial)
            if rank == 0 and out is not None and outcome.frames.get("lift") is not None:
                write_image(out / f"grasp_{_slug(label)}.png", outcome.frames["lift"])
        row["grasps"] = trials
        row["top1_success"] = bool(trials and trials[0]["sim"]["success"])
        row["top5_any_success"] = any(t["sim"]["success"] for t in trials[:5])
        if is_part:
            row["top1_contacts_on_part"] = bool(trials and trials[0]["contacts_on_part"])
        rows[label] = row
        if out is not None:
            write_json(out / f"grasp_{_slug(label)}.json", row)
    fitting = [r for lab, r in rows.items() if lab in labels and r["fits"]]
    summary = {
        "checkpoint": field.source, "scene": str(gt.root), "machine": describe(), "gripper": grip.to_dict(), "k": k,
        "protocol": cfg.to_dict(),
        "objects": {lab: {"fits": r["fits"], "why_not": r["why_not"], "top1": r["top1_success"],
                          "top5_any": r["top5_any_success"], "num_grasps": r["planner"]["num_grasps"]}
                    for lab, r in rows.items() if lab in labels},
        "parts": {lab: {"top1": r["top1_success"], "top1_contacts_on_part": r.get("top1_contacts_on_part"),
                        "num_grasps": r["planner"]["num_grasps"]} for lab, r in rows.items() if lab in parts},
        "top1_success_rate": float(np.mean([r["top1_success"] for r in fitting])) if fitting else float("nan"),
        "top5_any_success_rate": float(np.mean([r["top5_any_success"] for r in fitting])) if fitting else float("nan"),
        "not_fitting": {lab: r["why_not"] for lab, r in rows.items() if lab in labels and not r["fits"]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    summary["table"] = summary_table(summary)
    if out is not None:
        write_json(out / "grasp_summary.json", summary)
    return summary


def true_centroid(gt: GroundTruthScene, label: str) -> torch.Tensor:
    """The object's mesh centroid: the area-weighted mean of its surface (trimesh's ``centroid``), world frame."""
    import trimesh

    v, t = gt.world(label)
    return torch.tensor(trimesh.Trimesh(v, t, process=False).centroid, dtype=torch.float32)


def true_box(gt: GroundTruthScene, label: str, like: OrientedBox | None = None) -> OrientedBox:
    """The upright box of the object's mesh, made as :func:`~.geometry.upright_box` makes the located one. A round
    footprint (a can, a bowl, a ball) has no yaw of its own: with ``like``, its box is then taken in ``like``'s
    axes, so a located box is not marked down for a yaw that means nothing."""
    v = torch.from_numpy(gt.world(label)[0]).float()
    box = upright_box(v, torch.tensor([0.0, 0.0, 1.0]))
    if like is None or not is_round(v, box.rotation[:, 2]):
        return box
    local = v @ like.rotation  # [V, 3] in like's axes
    lo, hi = local.min(0).values, local.max(0).values
    return OrientedBox(like.rotation @ ((lo + hi) / 2), like.rotation.clone(), hi - lo)


def evaluate_locate(field: FeatureField, scene_root: str | Path, *, labels: list[str] | None = None,
                    parts: list[str] | None = None, out_dir: str | Path | None = None, **locate_options) -> dict:
    """``field.locate`` for every object (and named part) of objects.json against its true mesh: the number of
    instances found, centroid error (metres) and upright-box IoU of the best match; for parts, the 3D precision and
    recall of the located Gaussians against the part's true Gaussians (the rule of ``ff-eval segmentation``)."""
    from ..query.evaluate import GroundTruth3D, load_scene_meshes
    from .geometry import upright_box_iou

    t0 = time.perf_counter()
    gt = GroundTruthScene.load(scene_root)
    labels = labels or list(gt.objects)
    parts = parts if parts is not None else [p["label"] for o in gt.objects.values() for p in o["entry"].get("parts", [])]
    opac = field.element_opacities().cpu()
    truth3d = GroundTruth3D(field.element_positions().cpu(), load_scene_meshes(gt.root), gt.root) if parts else None
    rows = {}
    for label in labels + parts:
        t1 = time.perf_counter()
        found = field.locate(label, **locate_options)
        seconds = time.perf_counter() - t1
        row: dict = {"instances": len(found), "seconds": round(seconds, 3), "reason": found.reason or None}
        if label in parts and found:
            sel = found[0].selection.opaque(opac, 0.3)
            want = Selection(truth3d.inside(label, 0.01)).opaque(opac, 0.3)
            tp = (sel & want).count
            row.update(precision_3d=tp / max(sel.count, 1), recall_3d=tp / max(want.count, 1),
                       selected=sel.count, gt_gaussians=want.count)
            row["passed"] = row["precision_3d"] >= TARGET_PART and row["recall_3d"] >= TARGET_PART
        elif found:
            c = true_centroid(gt, label)
            best = min(found, key=lambda f: float((f.centroid - c).norm()))
            row.update(centroid=best.centroid.tolist(), true_centroid=c.tolist(),
                       centroid_error_m=float((best.centroid - c).norm()),
                       box_iou=upright_box_iou(best.box, true_box(gt, label, like=best.box)), extent=best.extent.tolist(),
                       score=best.score, on_support=best.support is not None)
            row["passed"] = row["centroid_error_m"] <= TARGET_CENTROID and row["box_iou"] >= TARGET_BOX_IOU
        else:
            row["passed"] = False
        rows[label] = row
    objects = [r for lab, r in rows.items() if lab in labels]
    result = {
        "checkpoint": field.source, "scene": str(gt.root), "machine": describe(), "per_query": rows,
        "targets": {"centroid_error_m": TARGET_CENTROID, "box_iou": TARGET_BOX_IOU, "part_precision_recall": TARGET_PART},
        "mean_centroid_error_m": float(np.mean([r.get("centroid_error_m", np.nan) for r in objects])),
        "mean_box_iou": float(np.mean([r.get("box_iou", np.nan) for r in objects])),
        "passed": all(r["passed"] for r in rows.values()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if out_dir is not None:
        write_json(Path(out_dir) / "locate.json", result)
    return result


def summary_table(summary: dict) -> str:
    lines = ["| query | fits the gripper | top-1 | any of top 5 | grasps |", "| --- | --- | --- | --- | --- |"]
    for lab, r in summary["objects"].items():
        fits = "yes" if r["fits"] else f"no: {r['why_not']}"
        lines.append(f"| {lab} | {fits} | {_mark(r['top1'])} | {_mark(r['top5_any'])} | {r['num_grasps']} |")
    for lab, r in summary["parts"].items():
        on = "on the part" if r["top1_contacts_on_part"] else "NOT on the part"
        lines.append(f"| {lab} (part) | contacts {on} | {_mark(r['top1'])} | | {r['num_grasps']} |")
    return "\n".join(lines)


def _mark(ok: bool) -> str:
    return "success" if ok else "fail"


def _fits(gt: GroundTruthScene, label: str, grip: ParallelJaw, table: Plane, seed: int) -> str | None:
    """None if the planner finds a grasp on the object's true surface, else why not."""
    import trimesh

    v, t = gt.world(label)
    if not len(t):
        return "its mesh is empty"
    mesh = trimesh.Trimesh(v, t, process=False)
    pts, faces = trimesh.sample.sample_surface(mesh, 3000, seed=seed)
    pts = torch.from_numpy(np.asarray(pts)).float()
    nrm = torch.from_numpy(np.asarray(mesh.face_normals[faces])).float()
    others = [gt.world(k) for k in gt.objects if k != label] + [_box_mesh(*gt.table)]
    surr = SurfacePoints(pts, nrm, torch.zeros_like(pts), 0.003)
    verts = np.concatenate([o[0] for o in others] + [v])
    offsets = np.cumsum([0] + [len(o[0]) for o in others])
    tris = np.concatenate([o[1] + off for o, off in zip(others, offsets[:-1])] + [t + offsets[-1]])
    surr.mesh_vertices, surr.mesh_triangles = torch.from_numpy(verts).float(), torch.from_numpy(tris).long()
    resting = float(pts[:, 2].min()) - float(gt.table[1][2]) < 0.01
    completed = torch.cat([pts, torch.tensor([[float(pts[:, 0].mean()), float(pts[:, 1].mean()),
                                               float(gt.table[1][2])]])])
    loc = Located(label, pts, nrm, pts.mean(0), upright_box(completed, torch.tensor([0.0, 0.0, 1.0])), 1.0,
                  Selection.none(0), table if resting else None, surr)
    grasps, reason = _grasps_of(loc, 0, label, grip, None, -1.0, None, 600, np.random.default_rng(seed), k=1)
    return None if grasps else reason.replace("instance 0: ", "")


def _gt_force_closure(contacts: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, grip: ParallelJaw
                      ) -> tuple[float, bool]:
    """The grasp's contacts moved to the nearest points of the true mesh, with its normals: epsilon, closure."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
    q = scene.compute_closest_points(o3d.core.Tensor(contacts.astype(np.float32)))
    pts = q["points"].numpy().astype(np.float64)
    fn = np.cross(vertices[triangles[:, 1]] - vertices[triangles[:, 0]], vertices[triangles[:, 2]] - vertices[triangles[:, 0]])
    n = fn[q["primitive_ids"].numpy()]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    centroid = vertices.mean(0)
    scale = float(np.linalg.norm(vertices - centroid, axis=1).max())
    eps = ferrari_canny(pts, -n, centroid, grip.friction, scale)
    return eps, eps > 0


def _contacts_on_part(contacts: np.ndarray, part) -> bool:
    import open3d as o3d

    _, (pv, pt), (rv, rt) = part

    def dist(v, t):
        s = o3d.t.geometry.RaycastingScene()
        s.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(t.astype(np.uint32)))
        return s.compute_distance(o3d.core.Tensor(contacts.astype(np.float32))).numpy()

    d_part, d_rest = dist(pv, pt), dist(rv, rt)
    return bool(np.all((d_part <= CONTACT_ON_PART) & (d_part <= d_rest)))


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    if not path.is_file():
        raise DataError(f"{path}: mesh not found")
    mesh = o3d.io.read_triangle_mesh(str(path))
    if len(mesh.triangles) == 0:
        raise DataError(f"{path}: not a triangle mesh")
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.triangles, np.int64)


def _box_mesh(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    box = trimesh.creation.box(extents=hi - lo)
    return np.asarray(box.vertices) + (lo + hi) / 2, np.asarray(box.faces)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_") or "query"
