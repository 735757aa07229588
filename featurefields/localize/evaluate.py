"""``ff-eval localize``: localise held-out frames of the training scene and compare with their ground-truth poses.

Reported: rotation error (geodesic angle, degrees), translation error (centimetres), success rates at (2 cm, 2 deg)
and (5 cm, 5 deg), medians, time per image; plus the iNeRF-style baseline: the fine stage alone, started from the
ground-truth pose perturbed by a fixed rotation about a random axis and a fixed translation in a random direction
(10 deg / 10 cm, 30 deg / 30 cm, 60 deg / 50 cm by default), which shows the basin the coarse stage removes. A
frame counts as a success only if the estimate says so *and* it is within the bounds; a failed estimate counts as
a miss with infinite error (medians then include it).
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import LocalizeConfig
from .fine import pypose, refine_pose
from .index import get_index
from .inputs import make_query
from .pipeline import localize, verify

if TYPE_CHECKING:
    from ..fields.base import FeatureField, View

THRESHOLDS = ((2.0, 2.0), (5.0, 5.0))  # (cm, deg)
DEFAULT_PERTURBATIONS = ((10.0, 0.10), (30.0, 0.30), (60.0, 0.50))  # (deg, metres)


@dataclass
class LocalizeEvalConfig:
    views: str = "test"
    depth: bool = False  # give each frame's depth image too (RGB-D localisation)
    baseline: bool = True
    perturbations: tuple[tuple[float, float], ...] = DEFAULT_PERTURBATIONS
    seed: int = 0
    pictures: int = 6  # frames drawn in localize_grid.png
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)


def pose_errors(est: np.ndarray | None, gt: np.ndarray) -> tuple[float, float]:
    """(rotation error in degrees, geodesic; translation error in cm) of a camera-to-world estimate."""
    if est is None:
        return math.inf, math.inf
    rel = torch.as_tensor(est[:3, :3].T @ gt[:3, :3], dtype=torch.float64)
    rot = float(pypose().mat2SO3(rel, check=False).Log().norm())
    return math.degrees(rot), float(np.linalg.norm(est[:3, 3] - gt[:3, 3])) * 100.0


def perturb(gt: np.ndarray, deg: float, metres: float, rng: np.random.Generator) -> np.ndarray:
    """``gt`` rotated by exactly ``deg`` about a random axis through the camera centre and moved ``metres`` in a
    random direction."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    R = pypose().so3(torch.from_numpy(axis * math.radians(deg))).Exp().matrix().numpy()
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    out = gt.copy()
    out[:3, :3] = R @ gt[:3, :3]
    out[:3, 3] = gt[:3, 3] + metres * d
    return out


def summarise(rows: list[dict]) -> dict:
    """Success rates at the thresholds, medians and means of the errors, time per image."""
    n = len(rows)
    out: dict = {"frames": n}
    if not n:
        return out
    rot = [r["rotation_deg"] for r in rows]
    tr = [r["translation_cm"] for r in rows]
    ok = [r["success"] for r in rows]
    out["reported_success"] = sum(ok) / n
    for cm, deg in THRESHOLDS:
        hit = [s and t <= cm and a <= deg for s, t, a in zip(ok, tr, rot)]
        out[f"within_{cm:g}cm_{deg:g}deg"] = sum(hit) / n
    out["median_rotation_deg"] = _num(statistics.median(rot))
    out["median_translation_cm"] = _num(statistics.median(tr))
    fin = [(a, t) for a, t, s in zip(rot, tr, ok) if s]
    out["mean_rotation_deg_of_successes"] = _num(statistics.fmean(a for a, _ in fin)) if fin else None
    out["mean_translation_cm_of_successes"] = _num(statistics.fmean(t for _, t in fin)) if fin else None
    secs = [r["seconds"] for r in rows]
    out["median_seconds"] = round(statistics.median(secs), 3)
    out["max_seconds"] = round(max(secs), 3)
    return out


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)


def evaluate_localization(field: "FeatureField", cfg: LocalizeEvalConfig, out_dir: str | os.PathLike | None = None,
                          cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Localise every frame of ``cfg.views`` (their images, ground-truth intrinsics, optionally their depth) and
    report; writes localize.json and localize_grid.png under ``out_dir`` when given."""
    from tqdm import tqdm

    from ..errors import ConfigError

    views = field.views(cfg.views)
    scene = field.scene
    if cfg.depth and scene.depths is None:
        raise ConfigError(f"{field.source}: the scene has no depth images for --depth")
    if any(v.image is None for v in views):
        raise ConfigError("localisation needs frames with images")
    t0 = time.perf_counter()
    index, built = get_index(field, cfg.localize.index, cache_dir, progress)
    index_seconds = index.build_seconds if built else 0.0
    rows, pictures = [], []
    bar = tqdm(views, desc="localize", unit="frame", disable=not progress)
    for v in bar:
        depth = scene.depths[v.index] if cfg.depth else None
        t = time.perf_counter()
        est = localize(field, v.image, v.K, depth=depth, config=cfg.localize, cache_dir=cache_dir)
        secs = time.perf_counter() - t
        gt = v.c2w.double().numpy()
        rot, tr = pose_errors(est.c2w, gt)
        crot, ctr = pose_errors(est.coarse_c2w, gt)
        rows.append({"frame": v.name, "success": est.success, "reason": est.reason, "rotation_deg": rot,
                     "translation_cm": tr, "coarse_rotation_deg": crot, "coarse_translation_cm": ctr,
                     "inliers": est.inliers, "matches": est.matches, "ncc": est.ncc, "confidence": est.confidence,
                     "seconds": secs, "timings": {k: round(x, 3) for k, x in est.timings.items()}})
        bar.set_postfix(rot=f"{rot:.2f}", cm=f"{tr:.2f}")
        if len(pictures) < cfg.pictures:
            pictures.append((v, est))
    result = {"scene": str(field.scene_root), "field": str(field.source), "views": cfg.views,
              "frames": len(views), "depth": cfg.depth, "index_views": len(index), "index_points": index.num_points,
              "index_images": index.source, "index_seconds": round(index_seconds, 3),
              "summary": summarise(rows), "coarse_summary": summarise([_coarse_row(r) for r in rows]),
              "per_frame": [_clean(r) for r in rows]}
    if cfg.baseline:
        result["baseline"] = baseline(field, views, cfg, index.median_depth, progress)
    result["machine"] = machine_info()
    result["config"] = cfg.localize.to_dict()
    result["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if out_dir is not None:
        from ..io import write_image, write_json

        out = Path(out_dir)
        write_json(out / "localize.json", result)
        if pictures:
            from .picture import estimate_grid

            write_image(out / "localize_grid.png", estimate_grid(field, pictures))
    return result


def _coarse_row(r: dict) -> dict:
    return {**r, "rotation_deg": r["coarse_rotation_deg"], "translation_cm": r["coarse_translation_cm"]}


def _clean(r: dict) -> dict:
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()}


def baseline(field: "FeatureField", views: list["View"], cfg: LocalizeEvalConfig, scene_depth: float,
             progress: bool) -> list[dict]:
    """The fine stage alone from perturbed ground truth, per perturbation level: what iNeRF-style refinement
    reaches without the coarse stage (success judged by the same verification as :func:`localize`)."""
    from tqdm import tqdm

    rng = np.random.default_rng(cfg.seed)
    scene = field.scene
    levels = []
    for deg, metres in cfg.perturbations:
        rows = []
        for v in tqdm(views, desc=f"baseline {deg:g} deg / {metres * 100:g} cm", unit="frame",
                      disable=not progress, leave=False):
            q = make_query(v.image, v.K, scene.depths[v.index] if cfg.depth else None).resized(cfg.localize.work_size)
            gt = v.c2w.double().numpy()
            start = perturb(gt, deg, metres, rng)
            t = time.perf_counter()
            pose = refine_pose(field, q, start, cfg.localize.fine, scene_depth).c2w
            score, _ = verify(field, q, pose, cfg.localize)
            secs = time.perf_counter() - t
            rot, tr = pose_errors(pose, gt)
            rows.append({"success": score >= cfg.localize.min_ncc, "rotation_deg": rot, "translation_cm": tr,
                         "seconds": secs})
        levels.append({"perturbation_deg": deg, "perturbation_cm": metres * 100, **summarise(rows)})
    return levels


def machine_info() -> dict:
    """What the timings depend on (featurefields/machine.py: CPU model and SIMD, threads, the native build, the
    OpenMP wait policy, the load), with the short keys this report always had."""
    from ..machine import describe

    d = describe()
    return {**d, "cpu_model": d["cpu"]["cpu_model"], "simd": d["cpu"]["simd_flags"], "cpu_count": os.cpu_count(),
            "load_average_1min": d["load"].get("loadavg_1m")}
