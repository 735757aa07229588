"""The acceptance table of issue 17 from the JSON files benchmarks/cpu_acceptance.sh writes (run that script; this
only reads its results and says, point by point, what was measured against what was asked).

    python benchmarks/cpu_acceptance.py --out benchmarks/results/cpu_acceptance.json [--machine M.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"


def _load(name: str):
    path = RES / name
    return json.loads(path.read_text()) if path.exists() else None


def _row(rows, **want):
    for r in rows or []:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def rasteriser_points(rows) -> list[dict]:
    points = []
    for D, target in ((32, 10.0), (128, 5.0), (512, 5.0)):
        nat = _row(rows, backend="native", D=D, threads=2, variant=None) or _row(rows, backend="native", D=D)
        ref = _row(rows, backend="torch", D=D)
        if nat and ref and "fwd_bwd_ms" in nat and "fwd_bwd_ms" in ref:
            speed = ref["fwd_bwd_ms"] / nat["fwd_bwd_ms"]
            points.append({"point": f"native fwd+bwd >= {target:g}x torch, D={D}, N=100k, 256x256",
                           "native_ms": nat["fwd_bwd_ms"], "torch_ms": ref["fwd_bwd_ms"],
                           "value": round(speed, 2), "target": target, "met": speed >= target})
    nat = _row(rows, backend="native", D=32, threads=2, variant=None) or _row(rows, backend="native", D=32)
    if nat and "fwd_peak_fraction" in nat:
        points.append({"point": "forward blend >= 25% of the machine's peak FLOP rate, D=32",
                       "value": nat["fwd_peak_fraction"], "target": 0.25, "met": nat["fwd_peak_fraction"] >= 0.25,
                       "fwd_kernel_ms": nat["fwd_kernel_ms"], "fwd_gflops": nat["fwd_gflops"],
                       "peak_gflops": nat["peak_gflops"], "fma_peak_gflops": nat["fma_peak_gflops"]})
    variants = sorted({r.get("variant") for r in rows or [] if r.get("backend") == "native" and r.get("variant")})
    for v in variants:
        r = _row(rows, backend="native", D=32, threads=2, variant=v)
        ref = _row(rows, backend="torch", D=32)
        if r and ref:
            points.append({"point": f"variant {v} ({r['build']['simd']}): fwd+bwd D=32 vs torch",
                           "value": round(ref["fwd_bwd_ms"] / r["fwd_bwd_ms"], 2), "target": None, "met": None,
                           "fwd_peak_fraction": r.get("fwd_peak_fraction")})
    one, two = _row(rows, backend="native", D=32, threads=1, variant=None), nat
    if one and two:
        points.append({"point": "parallel efficiency, 2 threads, fwd+bwd D=32 (reported)",
                       "value": round(one["fwd_bwd_ms"] / (2 * two["fwd_bwd_ms"]), 3), "target": None, "met": None})
    return points


def training_points(rows) -> list[dict]:
    nat, ref = _row(rows, run="demo", backend="native"), _row(rows, run="demo", backend="torch")
    if not (nat and ref):
        return []
    speed = ref["wall_seconds"] / nat["wall_seconds"]
    dpsnr = nat["psnr"] - ref["psnr"]
    key = "feature_cosine/labels"
    dcos = nat.get(key, float("nan")) - ref.get(key, float("nan"))
    return [{"point": "demo trains >= 5x faster end to end than --backend torch", "native_s": nat["wall_seconds"],
             "torch_s": ref["wall_seconds"], "value": round(speed, 2), "target": 5.0, "met": speed >= 5.0},
            {"point": "same held-out quality: PSNR within 0.3 dB", "value": round(dpsnr, 3), "target": 0.3,
             "met": abs(dpsnr) <= 0.3},
            {"point": "same held-out quality: labels cosine within 0.005", "value": round(dcos, 4),
             "target": 0.005, "met": abs(dcos) <= 0.005}]


def sharing_points(result) -> list[dict]:
    rows = (result or {}).get("rows", [])
    r = _row(rows, case="one CPU-bound process beside it", adapt_threads=True)
    off = _row(rows, case="one CPU-bound process beside it", adapt_threads=False)
    if not r:
        return []
    point = {"point": "training step with one CPU-bound process beside it <= 2.5x slower than alone",
             "value": r["slowdown"], "target": 2.5, "met": r["slowdown"] <= 2.5, "step_ms": r["step_ms_median"]}
    if off:
        point["without_governor"] = off["slowdown"]
    return [point]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--machine", help="machine description written at the start of the run")
    p.add_argument("--seconds", type=float, help="how long the whole run took")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine
    from featurefields.io import write_json

    points = (rasteriser_points(_load("cpu_acceptance_rasterize.json"))
              + training_points(_load("cpu_acceptance_train.json"))
              + sharing_points(_load("cpu_acceptance_sharing.json")))
    out = {"machine_at_start": json.loads(Path(args.machine).read_text()) if args.machine else None,
           "machine_at_end": machine.describe(), "run_seconds": args.seconds, "points": points}
    write_json(args.out, out)
    for pt in points:
        status = "-" if pt["met"] is None else "MET" if pt["met"] else "NOT MET"
        target = "" if pt["target"] is None else f" (target {pt['target']})"
        print(f"{status:8s} {pt['point']}: {pt['value']}{target}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
