"""3D relevancy speed: LERF relevancy of every Gaussian of a 1M-Gaussian field with a 384-D decoder, on this CPU.

    python benchmarks/query.py --out benchmarks/results/query_cpu.json [--gaussians 1000000] [--repeats 5]

The field is random (1M Gaussians, the default 16-D latent, a linear head to the labels teacher's 384 dimensions);
queries are encoded by the real offline all-MiniLM-L6-v2 text encoder, with LERF's four canonical negatives.
Rows (median of --repeats runs, after one warm-up):

- ``engine_seconds``: ``QueryEngine.relevancy_3d`` end to end, with a new query phrase every run (text encoding
  included, sentence model already loaded): what ``ff-query`` pays per query;
- ``scoring_seconds``: the scoring alone (texts already embedded), the default path that folds the linear head
  into the text embeddings (exact, see ``linear_cosine_scores``);
- ``load_average_1min``: the machine's load before and after (timings on a busy 2-core machine are slower);
- ``decode_seconds``: the same scores by decoding every Gaussian to 384-D in chunks (``exact=True``): the path
  non-linear heads take; ``max_abs_difference`` between the two;
- ``full_width_seconds``: a full-width layout (384 stored channels per Gaussian, chunks sliced and normalised).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec  # noqa: E402
from featurefields.query.engine import QueryEngine  # noqa: E402
from featurefields.query.relevancy import CANONICAL_NEGATIVES, relevancy_from_scores  # noqa: E402


def random_field(n: int, latent: int, dim: int = 384, seed: int = 0) -> GaussianField:
    g = torch.Generator().manual_seed(seed)
    layout = FeatureLayout([TeacherSpec("labels", dim)], latent_dim=latent)
    f = GaussianField(torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.full((n, 3), -4.0),
                      layout, sh_degree=0, seed=seed)
    return f.requires_grad_(False)


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--gaussians", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    n, rows = args.gaussians, {}
    load_before = os.getloadavg()[0]  # other processes on these 2 cores slow everything down: recorded

    field = random_field(n, latent=16)
    engine = QueryEngine(field, teacher_records=[{"name": "labels"}])
    counter = iter(range(10_000))
    engine.relevancy_3d("warm up the sentence model")
    rows["engine_seconds"], rel = timed(lambda: engine.relevancy_3d(f"red mug {next(counter)}"), args.repeats)
    texts = engine.encode_text(["red mug"] + list(CANONICAL_NEGATIVES), "labels")

    def score(exact: bool, eng=engine):
        s = eng.scores(eng.field.element_features(), texts, "labels", exact=exact)
        return relevancy_from_scores(s[:, :1], s[:, 1:])

    rows["scoring_seconds"], fast = timed(lambda: score(False), args.repeats)
    rows["decode_seconds"], slow = timed(lambda: score(True), args.repeats)
    rows["max_abs_difference"] = float((fast - slow).abs().max())
    del field, engine

    full = QueryEngine(random_field(n, latent=0), teacher_records=[{"name": "labels"}])
    rows["full_width_seconds"], _ = timed(lambda: score(False, full), args.repeats)

    result = {
        "benchmark": "3D LERF relevancy of every Gaussian", "gaussians": n, "teacher_dim": 384, "latent_dim": 16,
        "negatives": list(CANONICAL_NEGATIVES), "repeats": args.repeats, "statistic": "median",
        **{k: round(v, 4) if k.endswith("seconds") else v for k, v in rows.items()},
        "target_seconds": 1.0, "meets_target": rows["engine_seconds"] < 1.0,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or
        platform.machine(), "cpu_count": os.cpu_count(), "device": "cpu",
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
