"""--optimize-cameras on the bundled scene with every training pose wrong by 1 degree and 2 cm.

    python benchmarks/camera_refine.py --out benchmarks/results/camera_refine_tabletop.json [--iterations N]
    python benchmarks/camera_refine.py --out R.json --workdir DIR --reuse   # evaluate the runs already in DIR

Three trainings of ``scenes/tabletop`` with the README's demo settings: on the true poses; on a copy whose 42
training poses are each turned by exactly 1 degree (random axis, about the camera centre) and moved by exactly 2 cm
(random direction) -- ``tests/train/helpers.py::perturbed_scene_copy`` --, without and with ``--optimize-cameras``.
The 6 held-out poses are true in every copy.

Every run is evaluated three ways, each labelled in the JSON:

- ``raw``: the trained training poses against the true ones as they are, and held-out PSNR rendered at the true
  held-out poses (what a later tool sees if it trusts the given frame).
- ``rigid``: after the best rigid alignment of the trained camera centres onto the true ones.
- ``protocol`` (the standard one for joint pose and field optimisation: BARF, Lin et al., "BARF: Bundle-Adjusting
  Neural Radiance Fields", ICCV 2021, Sec. 4; also NeRF-- and nerfstudio's camera optimiser): pose errors after a
  Procrustes *similarity* alignment (Umeyama, roma's ``rigid_points_registration`` with scaling) of the trained
  training centres onto the true ones; each held-out view's pose starts from its true pose carried by that
  alignment into the learned frame and is then refined photometrically against the frozen field (test-time pose
  optimisation; the localiser's own fine stage, ``featurefields/localize/fine.py::refine_pose``, colour only, no
  exposure fit) before its PSNR is measured. The run on the true poses goes through the same protocol, so both
  sides of the comparison get the same test-time refinement.

No training can see the common motion of the whole set (moving the scene and every camera together changes no
image), so --optimize-cameras keeps the corrections free of one (train/cameras.py); the perturbations' own common
part (42 random draws do not average to exactly zero) is then an error floor on the raw numbers, reported as
``gauge_floor``: the true corrections with their common similarity removed, compared with the true poses.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import featurefields  # noqa: E402
from benchmarks.sfm_tabletop import machine  # noqa: E402
from featurefields.cli.train import build_parser, config_from_args  # noqa: E402
from featurefields.data import load_scene  # noqa: E402
from featurefields.io import write_json  # noqa: E402
from featurefields.train.checkpoint import load_checkpoint  # noqa: E402
from featurefields.train.trainer import Trainer  # noqa: E402
from tests.train.helpers import perturbed_scene_copy, pose_errors  # noqa: E402

SCENE = ROOT / "scenes" / "tabletop"


def align(src: np.ndarray, dst: np.ndarray, scale: bool) -> np.ndarray:
    """The similarity [4, 4] (rigid unless ``scale``) best taking the points src [N, 3] onto dst [N, 3]: Procrustes /
    Umeyama through roma, as BARF's evaluation aligns trained camera centres to the true ones."""
    import roma
    import torch

    R, t, *s = roma.rigid_points_registration(torch.as_tensor(src), torch.as_tensor(dst), compute_scaling=scale)
    T = np.eye(4)
    T[:3, :3] = (float(s[0]) if s else 1.0) * R.numpy()
    T[:3, 3] = t.numpy()
    return T


def carry(T: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Poses c2w [N, 4, 4] moved by the similarity T [4, 4] (rotations kept orthonormal, centres scaled)."""
    import torch

    from featurefields.fields.base import similarity_pose

    return np.stack([similarity_pose(torch.as_tensor(T), torch.as_tensor(p)).numpy() for p in c2w])


def pose_stats(c2w: np.ndarray, true: np.ndarray) -> dict:
    r, t = pose_errors(c2w, true)
    return {"rotation_deg_mean": float(r.mean()), "rotation_deg_max": float(r.max()),
            "translation_mm_mean": float(1000 * t.mean()), "translation_mm_max": float(1000 * t.max())}


def run(name: str, scene: Path, extra: list[str], work: Path, iterations: int | None, reuse: bool) -> dict:
    """Train (or, with ``reuse``, read back the finished run in work/name) and return its row."""
    argv = [str(scene), "--out", str(work / name), "--no-progress", "--cache-dir", str(work / "cache"), *extra]
    if iterations:
        argv += ["--iterations", str(iterations)]
    ckpt_path = work / name / "checkpoint.pt"
    if reuse and (work / name / "metrics.json").is_file():
        metrics = json.loads((work / name / "metrics.json").read_text())
        wall = None
    else:
        t0 = time.perf_counter()
        metrics = Trainer(config_from_args(build_parser().parse_args(argv))).train()
        wall = round(time.perf_counter() - t0, 1)
    row = {"run": name, "command": "ff-train " + " ".join(argv[:1] + extra), "wall_seconds": wall,
           "train_seconds": metrics.get("train_seconds"), "num_gaussians": metrics["num_gaussians"],
           "raw": {"psnr_held_out_at_true_poses": metrics["psnr"], "ssim": metrics["ssim"],
                   "feature_cosine/labels": metrics.get("feature_cosine/labels"),
                   "per_view_psnr": [v["psnr"] for v in metrics["per_view"]]}}
    if "camera_corrections" in metrics:
        row["camera_corrections"] = metrics["camera_corrections"]
    row["_checkpoint"] = ckpt_path
    return row


def held_out(field, true_c2w: np.ndarray, T: np.ndarray, test_idx: list[int]) -> dict:
    """Held-out PSNR at the true poses, at the true poses carried into the learned frame by T (true -> learned is
    T^-1), and after test-time photometric refinement of each pose from there against the frozen field (BARF's
    protocol): the localiser's fine stage, colour only and without its exposure fit (train and test frames come
    from one camera, and PSNR counts exposure too). Also how far the refinement moved each pose."""
    import torch

    from featurefields.localize.config import FineConfig
    from featurefields.localize.fine import refine_pose
    from featurefields.localize.inputs import make_query
    from featurefields.train.losses import psnr

    fine = FineConfig(brightness=False)
    start_all = carry(np.linalg.inv(T), true_c2w)
    rows = []
    for i in test_idx:
        v = field.frame_view(i)
        gt = v.image.float() / 255

        def render(c2w: np.ndarray, v=v):
            with torch.no_grad():
                return field.render(v, c2w=torch.as_tensor(c2w, dtype=torch.float32), with_features=False)

        def score(c2w: np.ndarray, gt=gt) -> float:
            return float(psnr(render(c2w).rgb, gt))

        start = start_all[i]
        out = render(start)
        covered = out.alpha > 0.5
        scene_depth = float((out.depth[covered] / out.alpha[covered]).median())
        t0 = time.perf_counter()
        refined = refine_pose(field, make_query(v.image, v.K), start, fine, scene_depth).c2w
        rot, tr = pose_errors(refined[None], start[None])
        rows.append({"frame": v.name, "psnr_at_true_pose": score(true_c2w[i]), "psnr_aligned": score(start),
                     "psnr_refined": score(refined), "refinement_rotation_deg": float(rot[0]),
                     "refinement_translation_mm": float(1000 * tr[0]), "refine_seconds": time.perf_counter() - t0})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "frame"}
    return {"mean": mean, "per_view": rows}


def gauge_floor(perturbed: Path, true_c2w: np.ndarray, train_idx: list[int]) -> dict:
    """Pose errors of the exact corrections once their common similarity is taken out, as training does."""
    import roma
    import torch

    from featurefields.fields.init import scene_extent
    from featurefields.train.cameras import CameraCorrections

    given = load_scene(perturbed, with_extras=False)
    c2w = given.cameras.c2w.double()
    true = torch.as_tensor(true_c2w)
    cams = CameraCorrections(len(given), train_idx).double().requires_grad_(False)
    for k, i in enumerate(train_idx):
        cams.rotvecs[k].copy_(roma.rotmat_to_rotvec(true[i, :3, :3] @ c2w[i, :3, :3].T))
        cams.translations[k].copy_(true[i, :3, 3] - c2w[i, :3, 3])
    for _ in range(3):
        cams.remove_common_motion(c2w, scene_extent(given.cameras[train_idx]))
    fixed = cams.corrected(c2w).numpy()
    return pose_stats(fixed[train_idx], true_c2w[train_idx])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iterations", type=int, help="training steps (default: ff-train's)")
    ap.add_argument("--workdir")
    ap.add_argument("--reuse", action="store_true", help="evaluate runs already finished in --workdir (no training)")
    ap.add_argument("--only", action="append", help="true, perturbed or optimized (default: all three)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="camera_refine_"))
    perturbed = perturbed_scene_copy(SCENE, work / "tabletop_perturbed", degrees=1.0, metres=0.02)
    true_scene = load_scene(SCENE, with_extras=False)
    true_c2w = true_scene.cameras.c2w.double().numpy()
    train_idx = true_scene.train_idx
    plan = {"true": (SCENE, []), "perturbed": (perturbed, []), "optimized": (perturbed, ["--optimize-cameras"])}
    rows = []
    for name in args.only or list(plan):
        scene, extra = plan[name]
        row = run(name, scene, extra, work, args.iterations, args.reuse)
        ckpt = row.pop("_checkpoint")
        cams = load_checkpoint(ckpt)["cameras"]
        field = featurefields.load(ckpt)  # the trained field, for both alignments' held-out renders
        c2w = np.asarray(cams["c2w"], dtype=np.float64)
        c2w = c2w[[cams["frame_names"].index(n) for n in true_scene.frame_names]]
        row["raw"]["training_poses_vs_true"] = pose_stats(c2w[train_idx], true_c2w[train_idx])
        rigid = align(c2w[train_idx, :3, 3], true_c2w[train_idx, :3, 3], scale=False)
        row["rigid"] = {"training_poses_vs_true": pose_stats(carry(rigid, c2w[train_idx]), true_c2w[train_idx]),
                        "held_out": held_out(field, true_c2w, rigid, true_scene.test_idx)["mean"]}
        sim = align(c2w[train_idx, :3, 3], true_c2w[train_idx, :3, 3], scale=True)
        row["protocol"] = {"alignment_scale": float(np.cbrt(np.linalg.det(sim[:3, :3]))),
                           "training_poses_vs_true": pose_stats(carry(sim, c2w[train_idx]), true_c2w[train_idx]),
                           "held_out": held_out(field, true_c2w, sim, true_scene.test_idx)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("raw", "protocol")}
                         | {"protocol": {**row["protocol"], "held_out": row["protocol"]["held_out"]["mean"]}}))
    by = {r["run"]: r for r in rows}
    summary = {"gauge_floor": gauge_floor(perturbed, true_c2w, train_idx)}
    for name in ("perturbed", "optimized"):
        if "true" in by and name in by:
            raw = [by[r]["raw"]["psnr_held_out_at_true_poses"] for r in ("true", name)]
            protocol = [by[r]["protocol"]["held_out"]["mean"]["psnr_refined"] for r in ("true", name)]
            summary[f"psnr_gap_{name}_db"] = {"raw": raw[0] - raw[1], "protocol": protocol[0] - protocol[1]}
    write_json(args.out, {"benchmark": "camera_refine_tabletop", "perturbation": {"degrees": 1.0, "metres": 0.02,
               "frames": "the 42 training frames", "held_out": "6 true poses"},
               "machine": machine(), "runs": rows, "summary": summary})
    print(json.dumps(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
