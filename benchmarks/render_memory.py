"""Peak memory (and time) of one forward+backward of the reference renderer, measured in a fresh process.

    python benchmarks/render_memory.py --out benchmarks/results/render_memory_cpu.json
    python benchmarks/render_memory.py --out /tmp/speed.json --width 200 --height 150 --channels 20 --gaussians 30000

The scene is synthetic: Gaussians spread through the view frustum with screen radii of roughly 2-15 px (log-uniform),
opacity 0.1 by default (the 3DGS initial value; nothing saturates, so no pixel terminates early: the most work and
memory per pixel). Peak memory is the worker's ``ru_maxrss``; the baseline is its RSS just before rendering (Python,
torch, the scene tensors), so ``peak - baseline`` is what rendering itself costs. Exit code 1 if the peak exceeds
``--limit-gb``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_scene(n: int, width: int, height: int, channels: int, opacity: float | None, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    f = 0.9 * width  # ~58 degree horizontal field of view
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    z = 2 + 4 * torch.rand(n, generator=g)
    u, v = torch.rand(n, generator=g) * width, torch.rand(n, generator=g) * height
    means = torch.stack([(u - width / 2) * z / f, (v - height / 2) * z / f, z], -1)
    r_px = torch.exp(math.log(2) + (math.log(15) - math.log(2)) * torch.rand(n, generator=g))
    scales = (r_px / 3 * z / f)[:, None] * (0.5 + torch.rand(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    if opacity is None:
        opacities = 0.05 + 0.9 * torch.rand(n, generator=g)
    else:
        opacities = torch.full((n,), opacity)
    colors = torch.rand(n, channels, generator=g)
    return means, quats, scales, opacities, colors, torch.eye(4), K


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from featurefields.render import render

    torch.set_num_threads(args.threads)
    means, quats, scales, opac, colors, viewmat, K = make_scene(args.gaussians, args.width, args.height,
                                                                args.channels, args.opacity)
    leaves = [t.requires_grad_() for t in (means, quats, scales, opac, colors)]
    target = torch.rand(args.height, args.width, args.channels, generator=torch.Generator().manual_seed(1))
    baseline = _rss_bytes()
    times_f, times_fb, visible = [], [], 0
    for _ in range(args.repeats):
        for t in leaves:
            t.grad = None
        t0 = time.perf_counter()
        out = render(*leaves, viewmat, K, args.width, args.height, tile_size=args.tile_size)
        t1 = time.perf_counter()
        ((out.image - target).square().mean() + out.alpha.mean()).backward()
        t2 = time.perf_counter()
        times_f.append(t1 - t0)
        times_fb.append(t2 - t0)
        visible = int((out.radii > 0).sum())
        mean_alpha = float(out.alpha.mean())
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "visible_gaussians": visible,
            "mean_alpha": mean_alpha, "forward_s": times_f, "forward_backward_s": times_fb,
            "grads_finite": all(bool(torch.isfinite(t.grad).all()) for t in leaves)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--gaussians", type=int, default=50_000)
    ap.add_argument("--opacity", type=float, default=0.1, help="constant opacity; negative = uniform 0.05-0.95")
    ap.add_argument("--tile-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--repeats", type=int, default=2, help="forward+backward runs (the first one warms up)")
    ap.add_argument("--limit-gb", type=float, default=8.0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.opacity < 0:
        args.opacity = None

    if args.worker:  # inside the fresh process: measure and print one JSON line
        print(json.dumps(worker(args)))
        return 0

    cmd = [sys.executable, __file__, "--worker"] + [a for a in (argv if argv is not None else sys.argv[1:])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    gib = 1024 ** 3
    result = {
        "benchmark": "render forward+backward peak memory (featurefields.render, CPU reference)",
        "config": {"width": args.width, "height": args.height, "channels": args.channels,
                   "gaussians": args.gaussians, "opacity": args.opacity if args.opacity is not None else "0.05-0.95",
                   "tile_size": args.tile_size, "threads": args.threads, "repeats": args.repeats},
        "visible_gaussians": m["visible_gaussians"],
        "mean_alpha": m["mean_alpha"],
        "baseline_rss_gib": round(m["baseline_rss_bytes"] / gib, 3),
        "peak_rss_gib": round(m["peak_rss_bytes"] / gib, 3),
        "render_peak_over_baseline_gib": round((m["peak_rss_bytes"] - m["baseline_rss_bytes"]) / gib, 3),
        "limit_gib": args.limit_gb,
        "fits": m["peak_rss_bytes"] <= args.limit_gb * gib,
        "forward_s_best": round(min(m["forward_s"]), 4),
        "forward_backward_s_best": round(min(m["forward_backward_s"]), 4),
        "forward_s_all": [round(t, 4) for t in m["forward_s"]],
        "forward_backward_s_all": [round(t, 4) for t in m["forward_backward_s"]],
        "grads_finite": m["grads_finite"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    sys.path.insert(0, str(ROOT))
    from featurefields.io import write_json

    write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0 if result["fits"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
