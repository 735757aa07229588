"""ff-process on the bundled scene's 48 images against its true poses, and the metric scale from its depth maps.

    python benchmarks/sfm_tabletop.py --out benchmarks/results/sfm_tabletop.json [--seeds 0 1 2] [--train]

Runs exactly ``ff-process scenes/tabletop/images --out DIR`` (plus ``--seed``), then aligns the registered camera
centres to the true ones with a similarity transform (Umeyama, through COLMAP's Sim3 estimator
``pycolmap.estimate_sim3d``) and reports the centre error after alignment (ATE, RMS), the rotation error of each
camera after the same alignment, and the alignment's scale. ``--scale-from-depth scenes/tabletop/depth`` then
makes the frame metric from the scene's depth maps; its scale is compared with the alignment's (the scale error).
``--train`` also trains on the first seed's output (``ff-train DIR --scale-from-depth scenes/tabletop/depth``) and
records the held-out metrics.
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

from featurefields.cli.process import main as ff_process  # noqa: E402
from featurefields.data import load_scene  # noqa: E402
from featurefields.data.colmap import import_pycolmap  # noqa: E402
from featurefields.io import write_json  # noqa: E402

SCENE = ROOT / "scenes" / "tabletop"


def machine() -> dict:
    """The machine description every benchmark records (featurefields/machine.py: CPU model, SIMD, threads, the
    native build, the load)."""
    from featurefields.machine import describe

    return describe()


def alignment(c2w: np.ndarray, true: np.ndarray) -> dict:
    """Umeyama similarity from the estimated camera centres to the true ones; errors after it."""
    sim = import_pycolmap().estimate_sim3d(c2w[:, :3, 3], true[:, :3, 3])
    M = np.asarray(sim.matrix())
    s = float(sim.scale)
    centres = c2w[:, :3, 3] @ M[:3, :3].T + M[:3, 3]
    err = np.linalg.norm(centres - true[:, :3, 3], axis=1)
    R = M[:3, :3] / s
    rel = np.einsum("nji,njk->nik", true[:, :3, :3], R @ c2w[:, :3, :3])
    rot = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return {"ate_rms_m": float(np.sqrt((err ** 2).mean())), "centre_error_max_m": float(err.max()),
            "rotation_error_mean_deg": float(rot.mean()), "rotation_error_rms_deg": float(np.sqrt((rot ** 2).mean())),
            "rotation_error_median_deg": float(np.median(rot)), "rotation_error_max_deg": float(rot.max()),
            "sim3_scale": s}


def run_seed(seed: int, work: Path) -> tuple[dict, Path]:
    out = work / f"tt_sfm_seed{seed}"
    t0 = time.perf_counter()
    try:
        ff_process([str(SCENE / "images"), "--out", str(out), "--seed", str(seed), "--no-progress"])
    except SystemExit as e:
        if e.code:
            raise
    seconds = time.perf_counter() - t0
    report = json.loads((out / "process.json").read_text())
    true = load_scene(SCENE, eval_every=0, with_extras=False)
    est = load_scene(out, eval_every=0, with_extras=False)
    idx = [true.frame_names.index(n) for n in est.frame_names]
    c2w, t = est.cameras.c2w.double().numpy(), true.cameras.c2w.double().numpy()[idx]
    row = {"seed": seed, "registered": report["registered"], "images": report["images"],
           "mean_reprojection_error_px": report["mean_reprojection_error_px"], "camera": report["camera"],
           "wall_seconds": round(seconds, 1), **alignment(c2w, t)}
    metric = load_scene(out, eval_every=0, with_extras=False, scale_from_depth=SCENE / "depth")
    row["scale_from_depth"] = metric.frame_info["scale"]
    row["scale_error"] = metric.frame_info["scale"] / row["sim3_scale"] - 1.0
    row["scale_from"] = metric.frame_info["scale_from"]
    mc2w = metric.cameras.c2w.double().numpy()
    row["metric_frame"] = {"ate_rms_m": alignment(mc2w, t)["ate_rms_m"],
                           "sim3_scale_after": alignment(mc2w, t)["sim3_scale"]}
    return row, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--train", action="store_true", help="also train on the first seed's output")
    ap.add_argument("--workdir", help="keep the scenes here (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sfm_tabletop_"))
    rows, first = [], None
    for seed in args.seeds:
        row, out = run_seed(seed, work)
        first = first or out
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("camera", "scale_from")}))
    result = {"benchmark": "sfm_tabletop", "command": "ff-process scenes/tabletop/images --out DIR --seed S",
              "alignment": "Umeyama similarity (pycolmap.estimate_sim3d) of camera centres to the true ones",
              "machine": machine(), "runs": rows}
    if args.train:
        from featurefields.cli.train import build_parser, config_from_args
        from featurefields.train.trainer import train

        argv = [str(first), "--out", str(work / "train"), "--scale-from-depth", str(SCENE / "depth"),
                "--no-progress"]
        t0 = time.perf_counter()
        metrics = train(config_from_args(build_parser().parse_args(argv)))
        result["training"] = {"command": "ff-train DIR --scale-from-depth scenes/tabletop/depth",
                              "wall_seconds": round(time.perf_counter() - t0, 1),
                              **{k: metrics[k] for k in ("psnr", "ssim", "num_gaussians", "world_frame")},
                              "feature_cosine/labels": metrics.get("feature_cosine/labels")}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
