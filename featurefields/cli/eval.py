"""ff-eval: measure a trained field against a scene's ground truth."""
from __future__ import annotations

import argparse
import math
import sys

from ..errors import cli_entry
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
    s.add_argument("--threshold", type=float, default=d.threshold, help="relevancy threshold (default 0.5)")
    s.add_argument("--min-opacity", type=float, default=d.min_opacity,
                   help="only Gaussians at least this opaque count, selected or ground truth (default %(default)s)")
    s.add_argument("--dilation", type=float, default=d.dilation,
                   help="metres around a mesh that still count as the object (default %(default)s)")
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
    from ..errors import ConfigError
    from ..query import QueryEngine
    from ..query.evaluate import SegmentationConfig, evaluate_segmentation

    if not (args.dilation >= 0 and math.isfinite(args.dilation)):
        raise ConfigError(f"--dilation must be a non-negative number of metres, not {args.dilation}")
    if not 0 <= args.min_opacity <= 1:
        raise ConfigError(f"--min-opacity must be in [0, 1], not {args.min_opacity}")
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    cfg = SegmentationConfig(labels=labels, views=args.views, negatives=args.negatives, threshold=args.threshold,
                             min_opacity=args.min_opacity, dilation=args.dilation, clean=args.clean,
                             lift=args.lift, teacher=args.teacher)
    engine = QueryEngine.from_checkpoint(args.checkpoint, scene_root=args.scene)
    engine.text_teacher(args.teacher)  # a field that cannot answer text fails before any rendering
    r = evaluate_segmentation(engine, cfg, args.out)
    for lab, row in r["per_label"].items():
        extra = (f"  3D precision {row['precision_3d']:.3f} recall {row['recall_3d']:.3f}"
                 if "precision_3d" in row else "")
        print(f"{lab:>12}: IoU {row['iou']:.3f}{extra}")
    tail = (f", 3D precision {r['mean_precision_3d']:.3f}, recall {r['mean_recall_3d']:.3f}"
            if "mean_precision_3d" in r else "")
    print(f"mean IoU {r['mean_iou']:.3f}{tail}; {'all targets met' if r['passed'] else 'some targets missed'}; "
          f"{args.out}/segmentation.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
