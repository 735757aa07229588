"""Wall time and held-out quality of ff-train on the bundled demo and on the NeRF-synthetic chair (100x100).

    python benchmarks/train.py --out benchmarks/results/train_cpu.json [--only demo|chair|...] [--backend B ...]

Each run calls the same code path as the CLI and records the settings, the wall time (teacher extraction included)
and the metrics that ff-train wrote, and the machine (benchmarks/machine.py: CPU model, SIMD flags, the native
extension's build, load average before and after). Results are a JSON list of rows, one per run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import machine  # noqa: E402

from featurefields.cli.train import build_parser, config_from_args  # noqa: E402
from featurefields.io import write_json  # noqa: E402
from featurefields.train.trainer import train  # noqa: E402

RUNS = {
    # name: (scene, extra CLI arguments) -- 'demo' is exactly the README's demo command
    "demo": (ROOT / "scenes" / "tabletop", []),
    "chair": (ROOT.parent / "shared" / "data" / "nerf_synthetic_chair", ["--max-size", "100"]),
    # two teachers in one field; sift's view-dependent features (SH degree 2, the default) against none
    "demo-labels-sift": (ROOT / "scenes" / "tabletop", ["--teacher", "labels", "--teacher", "sift"]),
    "demo-labels-sift-flat": (ROOT / "scenes" / "tabletop", ["--teacher", "labels", "--teacher", "sift",
                                                             "--feature-view-degree", "0"]),
}


def run(name: str, scene: Path, extra: list[str], quick: bool, workdir: Path, backend: str) -> dict:
    args = [str(scene), "--out", str(workdir / f"{name}-{backend}"), "--no-progress", "--backend", backend, *extra]
    if quick:
        args += ["--iterations", "200"]
    cfg = config_from_args(build_parser().parse_args(args))
    before = machine.load()
    t0 = time.perf_counter()
    metrics = train(cfg)
    wall = time.perf_counter() - t0
    desc = machine.describe()
    return {
        "run": name, "scene": _short(scene), "backend": metrics["backend"],
        "args": extra + (["--iterations", "200"] if quick else []), "iterations": cfg.iterations,
        "wall_seconds": round(wall, 1), "train_seconds": metrics["train_seconds"],
        "device": metrics["device"], "torch_threads": torch.get_num_threads(),
        "cpu": desc["cpu"]["cpu_model"],
        **{k: v for k, v in metrics.items() if k not in ("per_view", "scene", "device", "train_seconds")},
        "machine": {"cpu": desc["cpu"], "native": desc["native"], "load_before": before, "load_after": desc["load"]},
    }


def _short(path: Path) -> str:
    for base in (ROOT, ROOT.parent):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--only", choices=sorted(RUNS), action="append", help="run only these (repeatable)")
    p.add_argument("--quick", action="store_true", help="200 iterations each: a smoke run, not a result")
    p.add_argument("--backend", action="append", help="render backends to compare (default: auto)")
    p.add_argument("--keep", metavar="DIR", help="keep the runs' outputs under DIR (default: a temporary folder)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            tmp = args.keep
        for name in args.only or sorted(RUNS):
            scene, extra = RUNS[name]
            if not scene.exists():
                print(f"skip {name}: {scene} not found")
                continue
            for backend in args.backend or ["auto"]:
                print(f"== {name} ({backend})")
                rows.append(run(name, scene, extra, args.quick, Path(tmp), backend))
                print(json.dumps(rows[-1], indent=1))
    write_json(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
