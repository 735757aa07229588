"""A demo training step alone and with one other CPU-bound process beside it (``python -c "while True: pass"``), with
and without the thread governor (featurefields/threads.py), on the native backend.

    python benchmarks/train_sharing.py --out benchmarks/results/train_sharing_cpu.json \\
        [--checkpoint outputs/tabletop/checkpoint.pt] [--steps 60]

Each case runs in a fresh process that resumes the demo from a checkpoint (default: trains one to step 1500 first,
the end of densification, ~110k Gaussians) and times --steps steps of ``Trainer.train`` (the governor is part of the
training loop; ``FF_ADAPT_THREADS=0`` turns it off). The competing process starts before the steps and runs at the
same nice level. Rows record the median and mean step time, the threads in use at the end, the machine and its load,
and ``slowdown``: the step time over the same setting's time alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "tabletop"
HOG = "while True: pass"


def trainer_args(out: Path, cache: Path, iterations: int) -> list[str]:
    return [str(SCENE), "--out", str(out), "--no-progress", "--backend", "native", "--cache-dir", str(cache),
            "--iterations", str(iterations)]


def make_checkpoint(workdir: Path, steps: int) -> Path:
    """Train the demo for `steps` steps (a fresh process) and return its checkpoint."""
    out = workdir / "base"
    code = ("import sys; sys.path.insert(0, %r); from featurefields.cli.train import build_parser, config_from_args; "
            "from featurefields.train.trainer import Trainer; cfg = config_from_args(build_parser().parse_args(%r)); "
            "t = Trainer(cfg); t.train()") % (str(ROOT), trainer_args(out, workdir / "cache", steps))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return out / "checkpoint.pt"


def worker(checkpoint: str, cache: str, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    import machine
    from featurefields.cli.train import build_parser, config_from_args
    from featurefields.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(checkpoint, Path(tmp) / "checkpoint.pt")
        start = torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]
        cfg = config_from_args(build_parser().parse_args(trainer_args(Path(tmp), Path(cache), start + steps)))
        tr = Trainer(cfg, resume=True)
        times, threads = [], []
        step = tr.train_step

        def timed(i, s):
            t0 = time.perf_counter()
            out = step(i, s)
            times.append(time.perf_counter() - t0)
            threads.append(torch.get_num_threads())
            return out

        tr.train_step = timed
        threads0 = torch.get_num_threads()
        before = machine.load()
        tr.train()
        after = machine.load()
    return {"steps": len(times), "step_ms_median": round(1e3 * statistics.median(times), 1),
            "step_ms_mean": round(1e3 * statistics.fmean(times), 1),
            "step_ms_last_half_median": round(1e3 * statistics.median(times[len(times) // 2:]), 1),
            "threads_start": threads0, "threads_end": threads[-1], "gaussians": len(tr.field),
            "load_before": before, "load_after": after}


def run_case(checkpoint: Path, cache: Path, steps: int, hog: bool, adapt: bool) -> dict:
    env = {**os.environ, "FF_ADAPT_THREADS": "1" if adapt else "0"}
    competitor = subprocess.Popen([sys.executable, "-c", HOG]) if hog else None
    try:
        time.sleep(1.0 if hog else 0.0)
        proc = subprocess.run([sys.executable, __file__, "--worker", str(checkpoint), str(cache), str(steps)],
                              capture_output=True, text=True, cwd=ROOT, env=env)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"case": "one CPU-bound process beside it" if hog else "alone", "adapt_threads": adapt, **row}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="JSON file to write (required, except in the timed worker it starts)")
    p.add_argument("--checkpoint", help="a demo checkpoint to resume (default: train one to --start-step)")
    p.add_argument("--cache-dir", help="teacher feature cache of that run (default: next to the checkpoint)")
    p.add_argument("--start-step", type=int, default=1500, help="steps to train first without --checkpoint")
    p.add_argument("--steps", type=int, default=60, help="timed steps per case")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return 0
    if not args.out:
        p.error("--out is required")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine
    from featurefields.io import write_json

    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
            cache = Path(args.cache_dir) if args.cache_dir else checkpoint.parent / "cache"
        else:
            checkpoint = make_checkpoint(Path(tmp), args.start_step)
            cache = Path(tmp) / "cache"
        rows = []
        for adapt in (True, False):
            for hog in (False, True):
                rows.append(run_case(checkpoint, cache, args.steps, hog, adapt))
                alone = next(r for r in rows if r["adapt_threads"] == adapt and r["case"] == "alone")
                rows[-1]["slowdown"] = round(rows[-1]["step_ms_median"] / alone["step_ms_median"], 2)
                print(json.dumps(rows[-1]))
        result = {"machine": machine.describe(), "rows": rows}
        write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
