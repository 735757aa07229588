"""Robot API speed: ``field.locate`` and ``field.grasps`` for one query on a trained field, on this CPU.

    python benchmarks/grasp.py CHECKPOINT --out benchmarks/results/grasp_cpu.json [--queries mug,box] [--repeats 3]

Per query (median of --repeats runs in one process, each on a fresh field so no fused surface is reused; the
sentence model is loaded once before): ``locate_seconds`` (element relevancy, instances, surface fusion, point
relevancy, support plane, box), ``grasps_seconds`` (antipodal pairs, quality, poses, collisions), and their sum,
``total_seconds``, against the 2 s goal. The machine (CPU model, SIMD flags, threads) and its load average before
and after are recorded: on a shared 2-core machine, other processes slow everything down.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import featurefields as ff  # noqa: E402
from featurefields.machine import describe  # noqa: E402
from featurefields.robot import PANDA  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--queries", default="mug,box,can,mug handle")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    t0 = time.perf_counter()
    probe = ff.load(args.checkpoint)
    probe.engine.encode_text(["warm up"], probe.text_teacher())
    probe.views("train")  # the scene, loaded once: what a robot holds in memory anyway
    setup = time.perf_counter() - t0
    rows = {}
    for q in queries:
        runs = []
        for _ in range(args.repeats):
            field = ff.load(args.checkpoint)
            field.attach_scene(probe.scene)
            t1 = time.perf_counter()
            found = field.locate(q)
            t2 = time.perf_counter()
            grasps = field.grasps(q, gripper=PANDA, k=10, located=found)
            t3 = time.perf_counter()
            runs.append({"locate": t2 - t1, "grasps": t3 - t2, "total": t3 - t1, "instances": len(found),
                         "grasps_found": len(grasps), "timings": found[0].timings if found else {}})
        med = {k: statistics.median(r[k] for r in runs) for k in ("locate", "grasps", "total")}
        rows[q] = {"locate_seconds": round(med["locate"], 3), "grasps_seconds": round(med["grasps"], 3),
                   "total_seconds": round(med["total"], 3), "instances": runs[-1]["instances"],
                   "grasps_found": runs[-1]["grasps_found"],
                   "locate_stages_seconds": {k: round(v, 3) for k, v in runs[-1]["timings"].items()},
                   "meets_2s_goal": med["total"] < 2.0}
        print(q, rows[q], flush=True)
    result = {"benchmark": "field.locate + field.grasps per query", "checkpoint": args.checkpoint,
              "num_gaussians": len(probe), "repeats": args.repeats, "statistic": "median",
              "setup_seconds": round(setup, 2), "per_query": rows, "goal_seconds": 2.0,
              "all_meet_goal": all(r["meets_2s_goal"] for r in rows.values()), **describe(),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
