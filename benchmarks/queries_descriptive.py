r"""Open-vocabulary queries on the descriptive tabletop: every query rule (--negatives mode) on the same field.

    ff-scene tabletop --labels descriptive --out /tmp/desc
    ff-train /tmp/desc --out /tmp/desc_run                      # defaults: labels teacher, 2000 iterations
    python benchmarks/queries_descriptive.py /tmp/desc_run/checkpoint.pt --locate \
        --out benchmarks/results/queries_descriptive.json

For each rule, :func:`featurefields.query.evaluate_queries.evaluate_queries` with the queries of
``benchmarks/queries_descriptive.json`` (object -> exact label, partial name, two synonyms, a class word, a
descriptive phrase). The default rule ('auto') is measured as ``ff-eval segmentation --queries`` measures it (3D
selection by the views lift); the others with the cheaper per-Gaussian feature lift, which is enough to rank them.
'words@0.1' is the old word rule with a lower ("calibrated") relevancy threshold of 0.1; 'vocabulary-generic',
'vocabulary-window' and 'vocabulary-z' are the vocabulary rule with the other text-matching rules
(featurefields.query.relevancy.MATCH_RULES).

``--locate``: the robot API too: ``field.locate`` (default settings) for each object's partial name and synonyms,
the found instance nearest the object against its true mesh centroid (as ``ff-eval locate`` measures it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurefields.io import write_json  # noqa: E402
from featurefields.machine import describe  # noqa: E402
from featurefields.query.engine import QueryEngine  # noqa: E402
from featurefields.query.evaluate import SegmentationConfig  # noqa: E402
from featurefields.query.evaluate_queries import evaluate_queries, read_queries  # noqa: E402

MODES = ("auto", "vocabulary-generic", "vocabulary-window", "vocabulary-z", "similar", "words", "words@0.1",
         "canonical")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--queries", default=str(ROOT / "benchmarks" / "queries_descriptive.json"))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--locate", action="store_true", help="also field.locate the partial names and synonyms")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    queries = read_queries(args.queries)
    engine = QueryEngine.from_checkpoint(args.checkpoint)
    rows = {}
    for spec in args.modes.split(","):
        mode, _, thr = spec.partition("@")
        cfg = SegmentationConfig(negatives=mode, threshold=float(thr) if thr else 0.5,
                                 lift="views" if spec == "auto" else "features")
        t0 = time.perf_counter()
        r = evaluate_queries(engine, queries, cfg)
        rows[spec] = {"lift": cfg.lift, "threshold": cfg.threshold, "passed": r["passed"],
                      "acceptance": r["acceptance"], "by_kind": r["by_kind"],
                      "iou": {q: round(x["iou"], 4) for q, x in r["per_query"].items()},
                      "seconds": round(time.perf_counter() - t0, 1)}
        if spec == "auto":
            rows[spec]["per_query"] = r["per_query"]
        a = r["acceptance"]
        print(f"{spec:>10}: exact/partial min IoU {a['exact_partial_iou']['min']:.3f}, synonyms mean "
              f"{a['synonym_mean_iou']['value']:.3f}, class recall min {a['class_recall']['min']:.3f}, max false "
              f"coverage {a['max_false_coverage']['max']:.3f}", file=sys.stderr)
    result = {"checkpoint": str(args.checkpoint), "queries": str(args.queries), "default": "auto", "modes": rows}
    if args.locate:
        result["locate"] = locate_rows(engine, queries)
    write_json(args.out, {**result, "machine": describe()})
    print(args.out, file=sys.stderr)


def locate_rows(engine: QueryEngine, queries: dict) -> dict:
    from featurefields.robot.evaluate import TARGET_CENTROID, GroundTruthScene, true_centroid

    gt = GroundTruthScene.load(engine.scene.root)
    rows = {}
    for label, kinds in queries.items():
        c = true_centroid(gt, label)
        for q in kinds.get("partial", []) + kinds.get("synonym", []):
            t0 = time.perf_counter()
            found = engine.field.locate(q)
            row = {"object": label, "instances": len(found), "seconds": round(time.perf_counter() - t0, 2),
                   "reason": found.reason or None}
            if found:
                best = min(found, key=lambda f: float((f.centroid - c).norm()))
                row.update(centroid_error_m=round(float((best.centroid - c).norm()), 4), score=round(best.score, 3))
            row["passed"] = row.get("centroid_error_m", 1.0) <= TARGET_CENTROID and len(found) == 1
            rows[q] = row
            print(f"locate {q!r:>16} ({label}): {len(found)} instance(s), centroid error "
                  f"{row.get('centroid_error_m', float('nan')):.3f} m", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
