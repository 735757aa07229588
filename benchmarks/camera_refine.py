"""--optimize-cameras on the bundled scene with every training pose wrong by 1 degree and 2 cm.

    python benchmarks/camera_refine.py --out benchmarks/results/camera_refine_tabletop.json [--iterations N]

Three trainings of ``scenes/tabletop`` with the README's demo settings: on the true poses; on a copy whose 42
training poses are each turned by exactly 1 degree (random axis, about the camera centre) and moved by exactly 2 cm
(random direction) -- ``tests/train/helpers.py::perturbed_scene_copy`` --, without and with ``--optimize-cameras``.
The 6 held-out poses are true in every copy and every run is evaluated there: a perturbed copy's test views are
rendered at their true poses, because that is what the comparison is about (how well the field matches the real
scene) and the perturbations leave the frame where it was: zero-mean and random. The corrected training poses are
compared with the true ones directly (the raw error every later tool sees) and after the best rigid alignment
(what is left once a common drift of the whole set is removed); held-out PSNR is reported at the true poses and
with them carried by that alignment into the frame the training poses ended in.

No training can see the common motion of the whole set (moving the scene and every camera together changes no
image), so --optimize-cameras keeps the corrections free of one (train/cameras.py); the perturbations' own common
part (42 random draws do not average to exactly zero) is then an error floor, reported as ``gauge_floor``: the
true corrections with their common similarity removed, compared with the true poses.
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

from benchmarks.sfm_tabletop import machine  # noqa: E402
from featurefields.cli.train import build_parser, config_from_args  # noqa: E402
from featurefields.data import load_scene  # noqa: E402
from featurefields.io import write_json  # noqa: E402
from featurefields.train.checkpoint import load_checkpoint  # noqa: E402
from featurefields.train.trainer import Trainer  # noqa: E402
from tests.train.helpers import perturbed_scene_copy, pose_errors  # noqa: E402

SCENE = ROOT / "scenes" / "tabletop"


def rigid_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Best rotation + translation taking the points src [N, 3] onto dst (Kabsch, through pycolmap's estimator)."""
    from featurefields.data.colmap import import_pycolmap

    rig = import_pycolmap().estimate_rigid3d(src, dst)
    return np.vstack([np.asarray(rig.matrix()), [0, 0, 0, 1.0]])


def pose_stats(c2w: np.ndarray, true: np.ndarray) -> dict:
    r, t = pose_errors(c2w, true)
    return {"rotation_deg_mean": float(r.mean()), "rotation_deg_max": float(r.max()),
            "translation_mm_mean": float(1000 * t.mean()), "translation_mm_max": float(1000 * t.max())}


def run(name: str, scene: Path, extra: list[str], work: Path, iterations: int | None) -> dict:
    argv = [str(scene), "--out", str(work / name), "--no-progress", "--cache-dir", str(work / "cache"), *extra]
    if iterations:
        argv += ["--iterations", str(iterations)]
    t0 = time.perf_counter()
    trainer = Trainer(config_from_args(build_parser().parse_args(argv)))
    metrics = trainer.train()
    row = {"run": name, "command": "ff-train " + " ".join(argv[:1] + extra), "wall_seconds":
           round(time.perf_counter() - t0, 1), "psnr": metrics["psnr"], "ssim": metrics["ssim"],
           "feature_cosine/labels": metrics.get("feature_cosine/labels"), "num_gaussians": metrics["num_gaussians"],
           "per_view_psnr": [v["psnr"] for v in metrics["per_view"]]}
    if "camera_corrections" in metrics:
        row["camera_corrections"] = metrics["camera_corrections"]
    ckpt = load_checkpoint(work / name / "checkpoint.pt")
    row["_cameras"] = ckpt["cameras"]
    row["_trainer"] = trainer
    return row


def psnr_in_learned_frame(trainer: Trainer, T: np.ndarray, true_c2w: np.ndarray) -> float:
    """Held-out PSNR with the true held-out poses carried into the frame the training poses ended in (T: the
    rigid alignment of the trained training poses onto the true ones): what is left once the unobservable common
    motion of the whole set (the gauge) is not counted, as pose-refining NeRF papers evaluate."""
    import torch

    cams = trainer.scene.cameras
    for i in trainer.scene.test_idx:
        cams.c2w[i] = torch.as_tensor(np.linalg.inv(T) @ true_c2w[i], dtype=cams.c2w.dtype)
    return trainer.evaluate()["psnr"]


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
        row = run(name, scene, extra, work, args.iterations)
        cams, trainer = row.pop("_cameras"), row.pop("_trainer")
        c2w = np.asarray(cams["c2w"], dtype=np.float64)
        order = [cams["frame_names"].index(n) for n in true_scene.frame_names]
        c2w = c2w[order]
        row["training_poses_vs_true"] = pose_stats(c2w[train_idx], true_c2w[train_idx])
        T = rigid_align(c2w[train_idx, :3, 3], true_c2w[train_idx, :3, 3])
        row["training_poses_vs_true_after_rigid_alignment"] = pose_stats(
            np.einsum("ij,njk->nik", T, c2w[train_idx]), true_c2w[train_idx])
        row["psnr_held_out_poses_in_learned_frame"] = psnr_in_learned_frame(trainer, T, true_c2w)
        del trainer
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "per_view_psnr"}))
    by = {r["run"]: r for r in rows}
    summary = {"gauge_floor": gauge_floor(perturbed, true_c2w, train_idx)}
    if "true" in by and "perturbed" in by:
        summary["psnr_drop_without_optimize_cameras_db"] = by["true"]["psnr"] - by["perturbed"]["psnr"]
    if "true" in by and "optimized" in by:
        summary["psnr_gap_with_optimize_cameras_db"] = by["true"]["psnr"] - by["optimized"]["psnr"]
    write_json(args.out, {"benchmark": "camera_refine_tabletop", "perturbation": {"degrees": 1.0, "metres": 0.02,
               "frames": "the 42 training frames", "held_out": "6 true poses, evaluated there"},
               "machine": machine(), "runs": rows, "summary": summary})
    print(json.dumps(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
