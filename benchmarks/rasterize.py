"""Speed and peak memory of the render backends: forward, and forward + backward, of projection + rasterisation.

    python benchmarks/rasterize.py --out benchmarks/results/rasterize_cpu.json            # the full grid
    python benchmarks/rasterize.py --out /tmp/quick.json --quick                          # D=32, N=100k, 256 px
    python benchmarks/rasterize.py --out F.json --append --backend torch --counts 10000   # a slice of the grid
    python benchmarks/rasterize.py --out F.json --quick --threads 1 --threads 2 \
        --variant avx2=build/variants/haswell                                             # other builds, 1 and 2 threads
    python benchmarks/rasterize.py --out F.json --dims 32 128 512 --counts 100000 --sizes 256 --rounds 3
                                             # the backends alternated over 3 rounds (medians: less drift)

Grid: every available backend (native, torch, and gsplat on a GPU) x D in {3, 32, 128, 512} x N in {10k, 100k, 1M}
x 256x256 / 512x512, on the CPU and, when there is one, the GPU. Each row is measured in a fresh process: one warm-up,
then the median of --repeats runs; ``peak_mem_mb`` is what the render itself added on top of the scene (CPU: the
worker's peak RSS minus its RSS before rendering, measured in a process of its own that runs one forward + backward
and nothing else, so allocator caches warmed by the timing runs do not count; GPU: torch.cuda.max_memory_allocated
minus the scene's allocation). Rows: backend, device, D, N, width, height, fwd_ms, fwd_bwd_ms, peak_mem_mb, threads, and the scene's
mean alpha (how much of the image the Gaussians cover).

Every row records the machine (``benchmarks/machine.py``: CPU model, SIMD flags, clock, load average before and after)
and, for the native backend, the SIMD set and -march its extension was built for. Native CPU rows also time the two
blending kernels alone (``fwd_kernel_ms``, ``bwd_kernel_ms``: no projection, binning or autograd) and count the
(Gaussian, pixel) pairs they evaluate: ``live`` (pixel inside the Gaussian's rectangle and not yet stopped: alpha is
evaluated) and ``taken`` (alpha >= 1/255: the D-wide work). FLOPs counted (add, sub, mul 1; FMA 2; compares, min and
bit operations 0): forward 28 per live pair (alpha with its exp2: 24; transmittance and alpha sum: 4) + 2 D per taken
pair; reverse 25 per live pair (alpha, weight) + 2 D (colour gradient) + 2 k (dot product over the k geometry
channels) + 33 (reverse rule, splat gradients) per taken pair. ``*_peak_fraction`` is the kernel's FLOP rate over the
machine's nominal peak for the cores in use (the thread count): cores x float lanes of the CPU's widest SIMD x 2 FMA
units x 2 FLOPs x clock (``peak_gflops``);
``fma_peak_gflops`` is what independent FMA chains reach on the build's own vectors (the practical ceiling).
``--variant NAME=DIR`` runs the native rows with the extension found in DIR/featurefields/ (see
benchmarks/cpu_acceptance.sh, which builds AVX2-only and SSE variants there).

The scene is synthetic and stands in for a trained one: N Gaussians spread through the view frustum at depths 2-6,
opacities uniform in 0.05-0.95, screen radii log-uniform in 2-15 px at N = 100k and scaled by sqrt(100k / N) for other
N (more Gaussians, smaller ones, as in real scenes). The backward starts from fixed random gradients of image and
alpha (the gradient of a fixed random linear loss, handed to autograd as they are), so every gradient (means, quats,
scales, opacities, colours, background, camera pose) is computed and nothing but the renderer is timed: computing
that loss inside the timed region (an elementwise product and sum over the [H, W, D] image, and their backward)
took 13 ms of the native 205 ms at D=128 and is the same work for every backend.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIMS, COUNTS, SIZES = (3, 32, 128, 512), (10_000, 100_000, 1_000_000), (256, 512)
FWD_FLOPS_LIVE, BWD_FLOPS_LIVE, BWD_FLOPS_TAKEN = 28, 25, 33  # see the docstring


def make_scene(n: int, size: int, channels: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    f = 0.9 * size
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    z = 2 + 4 * torch.rand(n, generator=g)
    u, v = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
    means = torch.stack([(u - size / 2) * z / f, (v - size / 2) * z / f, z], -1)
    shrink = math.sqrt(100_000 / n) * size / 256
    r_px = shrink * torch.exp(math.log(2) + (math.log(15) - math.log(2)) * torch.rand(n, generator=g))
    scales = (r_px / 3 * z / f)[:, None] * (0.5 + torch.rand(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=g)
    colors = torch.rand(n, channels, generator=g)
    return means, quats, scales, opacities, colors, torch.eye(4), K


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def use_variant(variant_dir: str) -> None:
    """Make ``featurefields._native`` load from variant_dir/featurefields/ (another build of the extension)."""
    import featurefields

    featurefields.__path__.insert(0, str(Path(variant_dir).resolve() / "featurefields"))


def worker(backend: str, device: str, D: int, N: int, size: int, repeats: int, threads: int = 0,
           variant: str = "") -> dict:
    """repeats = 0: memory only (one forward + backward, no warm-up); else timings (warm-up, then medians)."""
    import torch

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if variant:
        use_variant(variant)
    if threads:
        torch.set_num_threads(threads)
    import machine
    from featurefields.render import render

    dev = torch.device(device)
    scene = [t.to(dev) for t in make_scene(N, size, D)]
    means, quats, scales, opac, colors, viewmat, K = scene
    leaves = [t.requires_grad_() for t in (means, quats, scales, opac, colors, viewmat)]
    bg = torch.rand(D, device=dev).requires_grad_()
    g = torch.Generator().manual_seed(1)
    w_img = torch.randn(size, size, D, generator=g).to(dev)
    w_alpha = torch.randn(size, size, 1, generator=g).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def once(backward: bool) -> float:
        for t in leaves + [bg]:
            t.grad = None
        sync()
        t0 = time.perf_counter()
        out = render(means, quats, scales, opac, colors, viewmat, K, size, size, background=bg, backend=backend)
        if backward:
            torch.autograd.backward([out.image, out.alpha], [w_img, w_alpha])
        sync()
        return time.perf_counter() - t0, float(out.alpha.mean())

    if repeats == 0:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_bytes()
        once(True)
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        return {"peak_mem_mb": round(peak / 2**20, 1)}
    before = machine.load()
    once(True)  # warm-up (and allocator pools)
    fwd = [once(False)[0] for _ in range(repeats)]
    fb, alpha = [], 0.0
    for _ in range(repeats):
        t, alpha = once(True)
        fb.append(t)
    row = {"backend": backend, "device": _device_name(dev), "D": D, "N": N, "width": size, "height": size,
           "fwd_ms": round(1e3 * statistics.median(fwd), 2), "fwd_bwd_ms": round(1e3 * statistics.median(fb), 2),
           "threads": torch.get_num_threads(), "repeats": repeats, "mean_alpha": round(alpha, 4)}
    if backend == "native" and dev.type == "cpu":
        row.update(kernel_rates(scene, bg, w_img, w_alpha, size, repeats))
    desc = machine.describe()
    row["machine"] = {"cpu": desc["cpu"], "load_before": before, "load_after": machine.load(),
                      "nominal_peak_gflops": desc.get("nominal_peak_gflops")}
    if backend == "native":
        row["build"] = desc["native"]
    return row


def kernel_rates(scene, bg, w_img, w_alpha, size: int, repeats: int) -> dict:
    """The blending kernels alone: times, evaluated pairs, ns per pair, FLOP rates (see the module docstring)."""
    import torch

    import machine
    from featurefields.render import native

    lib = native._lib()
    means, quats, scales, opac, colors, viewmat, K = [t.detach() for t in scene]
    D, threads = colors.shape[1], torch.get_num_threads()
    bg = bg.detach()
    m2, co, de, ra = lib.project_fwd(means, quats, scales, viewmat, K, size, size, 0.3, 0.01, 1e10)
    rects, off, ids = lib.bin_tiles(m2, ra, co, opac, de, size, size, 16)
    args = (m2, co, opac, colors, bg, rects, off, ids, size, size, 16)
    img, alpha, last = lib.rasterize_fwd(*args)

    def timed(f) -> float:
        f()
        ts = []
        for _ in range(max(repeats, 3)):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    t_fwd = timed(lambda: lib.rasterize_fwd(*args))
    t_bwd = timed(lambda: lib.rasterize_bwd(*args, img, alpha, last, w_img, w_alpha, D, True, True, True))
    live, taken, entries = lib.rasterize_pairs(*args, last)
    fwd_flops = FWD_FLOPS_LIVE * live + 2 * D * taken
    bwd_flops = BWD_FLOPS_LIVE * live + (2 * D + 2 * D + BWD_FLOPS_TAKEN) * taken  # (geometry channels k = D here)
    peak = machine.peak_flops(min(threads, machine.cpu()["cores"]))
    return {"fwd_kernel_ms": round(1e3 * t_fwd, 2), "bwd_kernel_ms": round(1e3 * t_bwd, 2),
            "pairs_live": live, "pairs_taken": taken, "list_entries_walked": entries,
            "fwd_ns_per_live_pair": round(1e9 * t_fwd / max(live, 1), 3),
            "bwd_ns_per_live_pair": round(1e9 * t_bwd / max(live, 1), 3),
            "fwd_gflops": round(fwd_flops / t_fwd / 1e9, 2), "bwd_gflops": round(bwd_flops / t_bwd / 1e9, 2),
            "fwd_peak_fraction": round(fwd_flops / t_fwd / peak, 4),
            "bwd_peak_fraction": round(bwd_flops / t_bwd / peak, 4),
            "peak_gflops": round(peak / 1e9, 1),  # (of the cores in use: the thread count)
            "fma_peak_gflops": round(lib.fma_peak_flops(threads, 0.3) / 1e9, 1)}


def _device_name(dev) -> str:
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def run_one(backend, device, D, N, size, repeats, timeout, threads=0, variant=("", "")) -> dict | None:
    """Timings in one fresh process, peak memory in another."""
    out = {}
    for rep in (repeats, 0):
        cmd = [sys.executable, __file__, "--worker", backend, device, str(D), str(N), str(size), str(rep),
               str(threads), variant[1]]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  {backend}/{device} D={D} N={N} {size}px: over {timeout} s, skipped")
            return {"backend": backend, "device": device, "D": D, "N": N, "width": size, "height": size,
                    "skipped": f"over {timeout} s"}
        if proc.returncode != 0:
            print(f"  {backend}/{device} D={D} N={N} {size}px failed: {proc.stderr.strip().splitlines()[-1:]}")
            return None
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    if variant[0]:
        out["variant"] = variant[0]
    return out


TIMES = ("fwd_ms", "fwd_bwd_ms", "fwd_kernel_ms", "bwd_kernel_ms")


def _merge_rounds(found: list[dict]) -> dict:
    """One row from the rounds of a run: its timings the medians over the rounds, each round's kept."""
    row = dict(found[0])
    if len(found) > 1:
        for key in TIMES:
            if all(key in f for f in found):
                row[key] = round(statistics.median(f[key] for f in found), 2)
        for phase in ("fwd", "bwd"):  # the rates of the median kernel time (the pair and FLOP counts are fixed)
            t0, t = found[0].get(f"{phase}_kernel_ms"), row.get(f"{phase}_kernel_ms")
            if t0 and t:
                row[f"{phase}_ns_per_live_pair"] = round(found[0][f"{phase}_ns_per_live_pair"] * t / t0, 3)
                row[f"{phase}_gflops"] = round(found[0][f"{phase}_gflops"] * t0 / t, 2)
                row[f"{phase}_peak_fraction"] = round(found[0][f"{phase}_peak_fraction"] * t0 / t, 4)
        row["rounds"] = [{k: f[k] for k in TIMES if k in f} for f in found]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON file to write (a list of rows)")
    ap.add_argument("--quick", action="store_true", help="only D=32, N=100k, 256x256, every available backend")
    ap.add_argument("--backend", action="append", help="only these backends (repeatable)")
    ap.add_argument("--device", action="append", help="only these devices: cpu, cuda (repeatable)")
    ap.add_argument("--dims", type=int, nargs="+", default=DIMS, help="feature widths D of the grid")
    ap.add_argument("--counts", type=int, nargs="+", default=COUNTS, help="Gaussian counts N of the grid")
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="square image sizes of the grid")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out instead of replacing")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (the median is kept)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per row before it is skipped")
    ap.add_argument("--threads", type=int, action="append",
                    help="thread counts to run the native rows with (repeatable; default: PyTorch's; the other "
                         "backends run with the first)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                    help="also run the native rows with the extension built into DIR/featurefields/ (repeatable)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every row this many times, the backends in alternating order, and keep the median "
                         "of the rounds (a shared VM's speed drifts between processes: ratios of rows measured "
                         "minutes apart carry that drift; every round is kept in the row)")
    ap.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        b, dev, D, N, size, rep, threads, variant = args.worker
        print(json.dumps(worker(b, dev, int(D), int(N), int(size), int(rep), int(threads), variant)))
        return 0
    if not args.out:
        ap.error("--out is required")

    import torch

    sys.path.insert(0, str(ROOT))
    from featurefields.io import write_json
    from featurefields.render import available_backends

    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    grid = [(32, 100_000, 256)] if args.quick else [(D, N, s) for s in args.sizes for N in args.counts
                                                     for D in args.dims]
    rows = json.loads(Path(args.out).read_text()) if args.append and Path(args.out).exists() else []
    threads = args.threads or [0]
    variants = [("", "")] + [tuple(v.split("=", 1)) for v in args.variant]
    for device in devices:
        backends = [b for b in available_backends(device) if not args.backend or b in args.backend]
        for D, N, size in grid:
            runs = [(b, t, v) for b in backends
                    for t, v in ([(t, v) for v in variants for t in threads] if b == "native" and device == "cpu"
                                 else [(threads[0], variants[0])])]
            measured: dict = {run: [] for run in runs}
            for r in range(max(1, args.rounds)):
                for run in (runs if r % 2 == 0 else runs[::-1]):
                    row = run_one(run[0], device, D, N, size, args.repeats, args.timeout, run[1], run[2])
                    if row:
                        measured[run].append(row)
            for run in runs:
                if measured[run]:
                    row = _merge_rounds(measured[run])
                    rows.append(row)
                    print(json.dumps({k: x for k, x in row.items() if k not in ("machine", "build", "rounds")}))
            write_json(args.out, rows)  # as it goes: a long run keeps what it measured
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
