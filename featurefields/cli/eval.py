"""ff-eval: measure a trained field against a scene's ground truth."""
from __future__ import annotations

import argparse
import sys

from ..errors import cli_entry
from ..validate import arg, number
from . import ArgParser

EXAMPLES = """\
examples:
  ff-eval segmentation outputs/tabletop/checkpoint.pt --out outputs/eval_tabletop
        every object of objects.json: mask IoU in the held-out views and 3D precision/recall of its Gaussians
  ff-eval segmentation outputs/tabletop/checkpoint.pt --labels mug,bowl --min-opacity 0.3 --out outputs/e2
        chosen labels, a different opacity threshold for 'reasonably opaque' Gaussians

segmentation: each label is queried as text. --negatives scene (default) is the best-label rule: a pixel or
Gaussian belongs to the label when its LERF relevancy > 0.5 against every other scene label, i.e. the label scores
best. 2D: IoU against the ground-truth semantic masks, averaged over the views where the label is visible or
predicted. 3D: precision and recall of the selection (by default the Gaussians that render mostly inside the
label's masks over the training views, --lift views) against the Gaussians whose centre lies inside the label's
mesh (objects.json poses, metric world frame) or within --dilation of it and no nearer to another mesh (table,
room, other objects); both sides only count Gaussians with opacity >= --min-opacity (0.3), and each selection is
kept whole (--clean keeps only its largest connected component). Writes segmentation.json and
segmentation_grid.png (render | ground truth | query masks | errors) under --out. Targets: IoU >= 0.80,
precision and recall >= 0.85 per label.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..query.evaluate import SegmentationConfig

    d = SegmentationConfig()
    p = ArgParser(prog="ff-eval", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{segmentation}", parser_class=ArgParser)
    s = sub.add_parser("segmentation", help="text-query masks and 3D selections against ground-truth labels",
                       description="Per-label 2D mask IoU and 3D selection precision/recall.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--scene", help="the training scene folder, if it moved since training")
    s.add_argument("--labels", help="comma-separated labels (default: the objects of objects.json)")
    s.add_argument("--views", default=d.views, help="test | train | all | frame list (default: test)")
    s.add_argument("--negatives", default=d.negatives, help="scene (default) | auto | canonical | 'a; b'")
    s.add_argument("--threshold", type=arg(number, lo=0, hi=1), default=d.threshold,
                   help="relevancy threshold (default 0.5)")
    s.add_argument("--min-opacity", type=arg(number, lo=0, hi=1), default=d.min_opacity,
                   help="only Gaussians at least this opaque count, selected or ground truth (default %(default)s)")
    s.add_argument("--dilation", type=arg(number, lo=0, hi=10), default=d.dilation,
                   help="metres around a mesh that still count as the object (default %(default)s)")
    s.add_argument("--2d-only", dest="only_2d", action="store_true",
                   help="evaluate the 2D masks alone, for a scene without objects.json (no 3D ground truth); "
                        "without it such a scene is refused rather than reported as passing on 2D alone")
    s.add_argument("--clean", action=argparse.BooleanOptionalAction, default=d.clean,
                   help="keep only the largest connected component of each selection (default: off)")
    s.add_argument("--lift", choices=["views", "features"], default=d.lift,
                   help="3D selection: Gaussians that render mostly inside the label's masks over the training views "
                        "(views, default) or whose own feature scores the label (features: no rendering, faster)")
    s.add_argument("--teacher", help="text-aligned teacher to query (default: the first)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..query.evaluate import SegmentationConfig, evaluate_segmentation
    from ..validate import text
    from .query import engine_from_args, output_folder

    labels = [x.strip() for x in text(args.labels, "--labels").split(",") if x.strip()] if args.labels else None
    cfg = SegmentationConfig(labels=labels, views=args.views, negatives=args.negatives, threshold=args.threshold,
                             min_opacity=args.min_opacity, dilation=args.dilation, clean=args.clean,
                             lift=args.lift, teacher=args.teacher, require_3d=not args.only_2d)
    out = output_folder(args, None)
    engine = engine_from_args(args, out)
    engine.text_teacher(args.teacher)  # a field that cannot answer text fails before any rendering
    with out as folder:  # staged: segmentation.json and the grid appear together, or not at all
        r = evaluate_segmentation(engine, cfg, folder)
    for lab, row in r["per_label"].items():
        extra = (f"  3D precision {row['precision_3d']:.3f} recall {row['recall_3d']:.3f}"
                 if "precision_3d" in row else "")
        print(f"{lab:>12}: IoU {row['iou']:.3f}{extra}")
    tail = (f", 3D precision {r['mean_precision_3d']:.3f}, recall {r['mean_recall_3d']:.3f}"
            if "mean_precision_3d" in r else "")
    verdict = "all targets met" if r["passed"] else "some targets missed"
    if "mean_precision_3d" not in r:
        verdict = f"2D targets {'met' if r['passed'] else 'missed'} (3D not evaluated: no objects.json)"
    print(f"mean IoU {r['mean_iou']:.3f}{tail}; {verdict}; {out.path}/segmentation.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
