"""What featurefields' allocator settings (featurefields/allocator.py) do to a native forward + backward: page faults
and time per step, with glibc's defaults (FF_MALLOC=default) and with the fixed thresholds, in fresh processes
taken in turn (ABAB...), so that both see the same machine load.

    python benchmarks/allocator.py --out benchmarks/results/allocator_cpu.json [--rounds 4] [--backend native]

Scene: benchmarks/rasterize.py's synthetic one (D=32, N=100k, 256x256); per process a warm-up, then the median of 7
steps and the minor page faults per step over 5 more.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import torch
import featurefields.allocator as allocator
from featurefields.render import render
from rasterize import make_scene
D, N, size = 32, 100_000, 256
means, quats, scales, opac, colors, viewmat, K = make_scene(N, size, D)
leaves = [t.requires_grad_() for t in (means, quats, scales, opac, colors, viewmat)]
bg = torch.rand(D).requires_grad_()
g = torch.Generator().manual_seed(1)
w_img, w_alpha = torch.randn(size, size, D, generator=g), torch.randn(size, size, 1, generator=g)
def step():
    for t in leaves + [bg]:
        t.grad = None
    t0 = time.perf_counter()
    out = render(means, quats, scales, opac, colors, viewmat, K, size, size, background=bg, backend={backend!r})
    ((out.image * w_img).sum() + (out.alpha * w_alpha).sum()).backward()
    return time.perf_counter() - t0
step()
ms = 1e3 * statistics.median(step() for _ in range(7))
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5
print(json.dumps({{"ms": round(ms, 2), "faults": faults, "allocator": allocator.tune()}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--backend", default="native")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    code = WORKER.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), backend=args.backend)
    runs: dict[str, list] = {"default": [], "tuned": []}
    before = machine.load()
    for r in range(args.rounds):
        for how in ("default", "tuned"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            env["FF_MALLOC"] = "default" if how == "default" else ""
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            runs[how].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(how, runs[how][-1], flush=True)
    summary = {how: {"step_ms_median": statistics.median(x["ms"] for x in rs),
                     "faults_per_step_median": statistics.median(x["faults"] for x in rs),
                     "faulted_mb_per_step_median": round(statistics.median(x["faults"] for x in rs) * 4096 / 2**20, 1)}
               for how, rs in runs.items()}
    summary["speedup"] = round(summary["default"]["step_ms_median"] / summary["tuned"]["step_ms_median"], 3)
    desc = machine.describe()
    result = {"benchmark": "allocator settings: native forward + backward, D=32, N=100k, 256x256",
              "backend": args.backend, "rounds": args.rounds, "runs": runs, "summary": summary,
              "machine": {"cpu": desc["cpu"], "load_before": before, "load_after": machine.load(),
                          "torch_threads": desc["torch_threads"], "native": desc["native"]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
