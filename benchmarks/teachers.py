"""Teacher throughput on this machine: images/s for each teacher, and the time of a fully cached second pass.

    python benchmarks/teachers.py --out benchmarks/results/teachers_cpu.json [--images 4] [--only NAME ...]

CLIP, SAM and DINO run with **randomly initialised weights of their default architectures** (no pretrained
weights exist offline here): the speed is that of the real networks, the features are meaningless. The images are
views of the bundled tabletop scene. Rows: teacher, options, images, seconds, images_per_s, output shape, cache
hit seconds for all images.
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

from featurefields.data import load_scene  # noqa: E402
from featurefields.teachers import FeatureCache, extract_features, make_teacher, views_from_scene  # noqa: E402

TEACHERS = {  # name: options (random-init for the foundation models, stated in the results)
    "labels": {},
    "sift": {},
    "segments": {},
    "clip": {"pretrained": None},
    "dino": {"random_init": True},
    "sam": {"random_init": True},
}


def bench(name: str, options: dict, views, cache_root: Path) -> dict:
    t0 = time.perf_counter()
    teacher = make_teacher(name, **options)
    build = time.perf_counter() - t0
    cache = FeatureCache(cache_root / name)
    t0 = time.perf_counter()
    outs = extract_features(teacher, views, cache, progress=False)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    extract_features(teacher, views, cache, progress=False)
    hit = time.perf_counter() - t0
    return {"teacher": name, "options": {k: v for k, v in options.items()},
            "random_init_weights": name in ("clip", "dino", "sam"), "images": len(views),
            "image_size": [views[0].width, views[0].height], "build_seconds": round(build, 2),
            "seconds": round(cold, 2), "images_per_s": round(len(views) / cold, 3),
            "output_shape": list(outs[0].features.shape), "cache_hit_seconds": round(hit, 4),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=4, help="views of scenes/tabletop per teacher")
    p.add_argument("--only", action="append", choices=sorted(TEACHERS))
    args = p.parse_args()
    scene = load_scene(ROOT / "scenes" / "tabletop")
    views = views_from_scene(scene, list(range(args.images)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(TEACHERS):
            rows.append(bench(name, TEACHERS[name], views, Path(tmp)))
            print(json.dumps(rows[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
