"""How view-dependent is a teacher? Its own features of the same surface point, seen from the training views.

    python benchmarks/teacher_consistency.py --teacher sift --out benchmarks/results/teacher_consistency_sift.json

For every valid teacher cell of every held-out view, the point behind it (ground-truth depth) is projected into
each training view that sees it (depth test, 2 cm) and the teacher's feature there is sampled bilinearly. Reported:
cosine to the nearest training view's feature; and to the average of all training views' features, equally weighted
(tau = inf: the best a direction-independent field could do if it averaged the views) or weighted by
exp(-(1 - cos angle) / tau) between the two viewing directions of the point (what a field whose features vary
smoothly with direction could reach). Needs a scene with depth maps (the bundled tabletop).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurefields.data import load_scene  # noqa: E402
from featurefields.io import write_json  # noqa: E402
from featurefields.teachers import make_teacher, views_from_scene  # noqa: E402

TAUS = (0.003, 0.01, 0.03, 0.1, math.inf)  # 1 - cos: 4.4, 8.1, 14, 26 degrees, and equal weights


def cell_points(scene, i: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [h, w, 3] behind the centres of an h x w grid over view i, and where depth is known [h, w]."""
    H, W = scene.height, scene.width
    ys, xs = (torch.arange(h) + 0.5) * H / h, (torch.arange(w) + 0.5) * W / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    d = scene.depths[i][yy.long().clamp(max=H - 1), xx.long().clamp(max=W - 1)]
    K, c2w = scene.cameras.K[i], scene.cameras.c2w[i]
    cam = torch.stack([(xx - K[0, 2]) / K[0, 0] * d, (yy - K[1, 2]) / K[1, 1] * d, d], -1)
    return cam @ c2w[:3, :3].T + c2w[:3, 3], d > 0


def sample_in_view(scene, j: int, pts: torch.Tensor, feats: torch.Tensor, valid: torch.Tensor):
    """Teacher features of view j at world points [h, w, 3] -> ([h, w, D], [h, w] seen and valid there)."""
    H, W = scene.height, scene.width
    w2c = torch.linalg.inv(scene.cameras.c2w[j])
    K = scene.cameras.K[j]
    p = pts @ w2c[:3, :3].T + w2c[:3, 3]
    u, v = p[..., 0] / p[..., 2] * K[0, 0] + K[0, 2], p[..., 1] / p[..., 2] * K[1, 1] + K[1, 2]
    grid = torch.stack([u / W * 2 - 1, v / H * 2 - 1], -1)[None]
    f = F.grid_sample(feats.permute(2, 0, 1)[None], grid, align_corners=False)[0].permute(1, 2, 0)
    ok_cell = F.grid_sample(valid.float()[None, None], grid, align_corners=False)[0, 0] > 0.99
    inside = (grid[0].abs() < 1).all(-1) & (p[..., 2] > 0)
    depth = scene.depths[j][v.long().clamp(0, H - 1), u.long().clamp(0, W - 1)]
    return f, inside & ok_cell & ((depth - p[..., 2]).abs() < 0.02)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default=str(ROOT / "scenes" / "tabletop"))
    p.add_argument("--teacher", default="sift")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args()
    scene = load_scene(args.scene)
    if scene.depths is None:
        raise SystemExit(f"error: {args.scene} has no depth maps")
    teacher = make_teacher(args.teacher)
    views = views_from_scene(scene)
    outputs = {}

    def teach(i: int):
        if i not in outputs:
            o = teacher.extract([views[i]])[0]
            outputs[i] = (F.normalize(o.features.float(), dim=-1), o.valid)
        return outputs[i]

    cams = scene.cameras
    rows = []
    for i in scene.test_idx:
        fi, vi = teach(i)
        h, w = fi.shape[:2]
        pts, known = cell_points(scene, i, h, w)
        dir_i = F.normalize(pts - cams.c2w[i][:3, 3], dim=-1)
        nearest = min(scene.train_idx, key=lambda k: float((cams.c2w[k][:3, 3] - cams.c2w[i][:3, 3]).norm()))
        acc = {tau: torch.zeros_like(fi) for tau in TAUS}
        seen = torch.zeros(h, w)
        near_cos = None
        for j in scene.train_idx:
            fj, vj = teach(j)
            f, ok = sample_in_view(scene, j, pts, fj, vj)
            ok &= known
            cos_angle = (dir_i * F.normalize(pts - cams.c2w[j][:3, 3], dim=-1)).sum(-1)
            for tau in TAUS:
                weight = ok.float() if math.isinf(tau) else ok * torch.exp(-(1 - cos_angle) / tau)
                acc[tau] += f * weight[..., None]
            seen += ok
            if j == nearest:
                m = vi & ok
                near_cos = float((F.normalize(f, dim=-1) * fi).sum(-1)[m].mean())
        m = vi & (seen > 0)
        row = {"view": i, "nearest_train_view": nearest, "cells": int(m.sum()),
               "mean_views_seeing": round(float(seen[m].mean()), 1), "cos_nearest": round(near_cos, 4)}
        for tau in TAUS:
            key = "cos_average_equal" if math.isinf(tau) else f"cos_average_tau_{tau}"
            row[key] = round(float((F.normalize(acc[tau], dim=-1) * fi).sum(-1)[m].mean()), 4)
        rows.append(row)
        print(row)
    keys = [k for k in rows[0] if k.startswith("cos_")]
    result = {"scene": args.scene, "teacher": args.teacher, "teacher_config": teacher.config(),
              "mean": {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys}, "per_view": rows}
    print(result["mean"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
