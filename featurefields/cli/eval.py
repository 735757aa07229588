"""ff-eval: measure a trained field against a scene's ground truth."""
from __future__ import annotations

import argparse
import math
import os
import sys

from ..errors import cli_entry
from ..validate import MAX_IMAGE_SIDE, arg, integer, number, text
from . import ArgParser

# Before torch loads OpenMP (see ff-localize): passive waits are much faster on a machine shared with other jobs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXAMPLES = """\
examples:
  ff-eval segmentation outputs/tabletop/checkpoint.pt --out outputs/eval_tabletop
        every object of objects.json: mask IoU in the held-out views and 3D precision/recall of its Gaussians
  ff-eval segmentation outputs/tabletop/checkpoint.pt --labels mug,bowl --min-opacity 0.3 --out outputs/e2
        chosen labels, a different opacity threshold for 'reasonably opaque' Gaussians
  ff-eval segmentation outputs/descriptive/checkpoint.pt --queries benchmarks/queries_descriptive.json --out e3
        open vocabulary: per query of the file (object -> exact label, partial name, synonyms, class word, phrase),
        mask IoU against its answers, recall per answer, coverage of other objects, 3D precision/recall; default
        settings (--negatives auto); writes queries.json with the acceptance of each kind

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

  ff-eval grasp outputs/tabletop/checkpoint.pt --scene scenes/tabletop --gripper panda --out outputs/eval_grasp
        every object (and named part) of objects.json: the field's top-5 grasps executed in MuJoCo on the true meshes

grasp: for each object, the field's grasps (ff-grasp) run in a physics simulation of the ground-truth scene (table
as a static box, objects as free bodies of CoACD convex pieces at --density kg/m^3, a floating gripper with
force-limited prismatic fingers): approach from 10 cm, close, lift 15 cm, shake (3 cm tugs along x and y, a 0.3
rad twist), hold 2 s; success = both fingers still on the object and its lowest point > 10 cm above the table.
Also the analytic checks on the true mesh (force closure of the contacts moved onto it, collision of the open
gripper with the true scene). Objects whose true surface offers the planner no collision-free force-closure grasp
"do not fit the gripper" (the reason is reported) and leave the success rates. Writes grasp_summary.json (with a
markdown table), grasp_<object>.json and grasp_<object>.png (the top grasp at the moment of lift).
"""

LOCALIZE_EXAMPLES = """\
examples:
  ff-eval localize outputs/tabletop/checkpoint.pt --frames test --out outputs/eval_loc
        localise every held-out frame from its image alone; errors against the ground-truth poses
  ff-eval localize outputs/room/checkpoint.pt --depth --out outputs/eval_loc_rgbd
        RGB-D: each frame's depth image too (ICP + a depth term in the refinement)
  ff-eval localize outputs/tabletop/checkpoint.pt --no-baseline --out outputs/eval_loc
        skip the iNeRF-style baseline (the fine stage alone from perturbed ground truth)

localize: each frame's image and intrinsics go to field.localize (no pose given). Reported: rotation error
(geodesic, degrees), translation error (cm), the share within (2 cm, 2 deg) and (5 cm, 5 deg) (a frame whose
estimate reports failure counts as a miss), medians, time per image; the coarse stage's own errors; and the
baseline: the fine stage alone from the ground truth turned by 10/30/60 degrees about a random axis and moved
10/30/50 cm in a random direction. Writes localize.json and localize_grid.png (image | render at the estimate |
difference) under --out. Targets (tabletop): all within (2 cm, 2 deg), medians below 0.5 cm and 0.3 deg.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..query.evaluate import SegmentationConfig

    d = SegmentationConfig()
    p = ArgParser(prog="ff-eval", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{segmentation,locate,grasp,localize}",
                           parser_class=ArgParser)
    s = sub.add_parser("segmentation", help="text-query masks and 3D selections against ground-truth labels",
                       description="Per-label 2D mask IoU and 3D selection precision/recall.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--scene", help="the training scene folder, if it moved since training")
    s.add_argument("--labels", help="comma-separated labels (default: the objects of objects.json)")
    s.add_argument("--views", default=d.views, help="test | train | all | frame list (default: test)")
    s.add_argument("--negatives", default=None,
                   help="scene (default; auto with --queries) | auto | vocabulary | vocabulary-generic | "
                        "vocabulary-window | vocabulary-z | similar | words | canonical | 'a; b'")
    s.add_argument("--queries", metavar="FILE",
                   help="JSON file object -> queries by kind (exact, partial, synonym, class, phrase): evaluate "
                        "what people type instead of the labels (see benchmarks/queries_descriptive.json)")
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
    from ..robot.sim import DEFAULT_DENSITY

    g = sub.add_parser("grasp", help="the field's grasps executed in MuJoCo on the scene's ground-truth meshes",
                       description="Simulated grasp success per object (top-1, any of the top k).", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    g.add_argument("--scene", help="the scene with objects.json (default: the one the field was trained on)")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--gripper", default="panda", help="panda (default), robotiq-2f-85, or a gripper JSON file")
    g.add_argument("--k", type=arg(integer, lo=1, hi=50), default=5,
                   help="grasps simulated per object (default %(default)s)")
    g.add_argument("--labels", help="comma-separated objects (default: every object of objects.json)")
    g.add_argument("--parts", help="comma-separated named parts to grasp (default: every part of objects.json)")
    g.add_argument("--density", type=arg(number, lo=0, lo_open=True, hi=1e5), default=DEFAULT_DENSITY,
                   help="kg/m^3 for every object's mass (default %(default)s)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    lo = sub.add_parser("locate", help="field.locate against the scene's true meshes: centroid, box, parts",
                        description="Per object: instances found, centroid error and upright-box IoU; per named "
                                    "part: 3D precision/recall of its located Gaussians.", epilog=EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    lo.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    lo.add_argument("--scene", help="the scene with objects.json (default: the one the field was trained on)")
    lo.add_argument("--out", required=True, help="output folder")
    lo.add_argument("--labels", help="comma-separated objects (default: every object of objects.json)")
    lo.add_argument("--parts", help="comma-separated named parts (default: every part of objects.json)")
    add_localize_parser(sub)
    return p


def add_localize_parser(sub) -> None:
    from ..localize.evaluate import LocalizeEvalConfig

    d = LocalizeEvalConfig()
    s = sub.add_parser("localize", help="camera localisation of held-out frames against their ground-truth poses",
                       description="Localise scene frames with no initial guess; pose errors, success rates, timing "
                                   "and the iNeRF-style baseline.", epilog=LOCALIZE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--scene", help="the training scene folder, if it moved since training")
    s.add_argument("--frames", default=d.views, help="test (default) | train | all | frame list")
    s.add_argument("--depth", action="store_true", help="give each frame's depth image too (RGB-D)")
    s.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=d.baseline,
                   help="also run the fine stage alone from perturbed ground truth (default: on)")
    s.add_argument("--perturbations", default=",".join(f"{a:g}/{m * 100:g}" for a, m in d.perturbations),
                   help="baseline perturbations as DEG/CM pairs (default %(default)s)")
    s.add_argument("--work-size", type=arg(integer, lo=32, hi=MAX_IMAGE_SIDE), default=d.localize.work_size,
                   help="longest image side localisation runs at (default %(default)s)")
    s.add_argument("--seed", type=int, default=d.seed, help="seed of the baseline's random perturbations")
    s.add_argument("--cache", help="folder for the field's localisation map (default: the run's cache/ folder)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_perturbations(text: str) -> tuple[tuple[float, float], ...]:
    from ..errors import ConfigError

    out = []
    for item in text.split(","):
        deg, sep, cm = item.strip().partition("/")
        try:
            pair = (float(deg), float(cm) / 100.0)
        except ValueError:
            pair = None
        if not sep or pair is None or not all(math.isfinite(x) and x >= 0 for x in pair):
            raise ConfigError(f"--perturbations {text!r}: use DEG/CM pairs such as 10/10,30/30,60/50")
        out.append(pair)
    return tuple(out)


def main_localize(args) -> int:
    from pathlib import Path

    import featurefields as ff
    from ..localize.evaluate import LocalizeEvalConfig, evaluate_localization
    from .query import engine_scene_check, output_folder

    cfg = LocalizeEvalConfig(views=args.frames, depth=args.depth, baseline=args.baseline,
                             perturbations=parse_perturbations(args.perturbations), seed=args.seed)
    cfg.localize.work_size = args.work_size
    engine_scene_check(args)
    out = output_folder(args, None)  # checked before any work: writable, not the folder of what it reads
    field = ff.load(args.checkpoint, scene_root=args.scene)
    out.refuse_inputs(field.scene_root)
    ckpt = Path(args.checkpoint)
    cache = Path(args.cache) if args.cache else (ckpt if ckpt.is_dir() else ckpt.parent) / "cache"
    if not args.cache and not os.access(cache if cache.is_dir() else cache.parent, os.W_OK):
        cache = None
    with out as folder:  # staged: localize.json and the grid appear together, or not at all
        r = evaluate_localization(field, cfg, folder, cache_dir=cache, progress=not args.no_progress)
    s = r["summary"]
    print(f"{s['frames']} frames: {100 * s['within_2cm_2deg']:.0f}% within (2 cm, 2 deg), "
          f"{100 * s['within_5cm_5deg']:.0f}% within (5 cm, 5 deg); median {_fmt(s['median_translation_cm'])} cm, "
          f"{_fmt(s['median_rotation_deg'])} deg; {s['median_seconds']:.1f} s per image (median)")
    for b in r.get("baseline", []):
        print(f"  fine stage alone from {b['perturbation_deg']:g} deg / {b['perturbation_cm']:g} cm: "
              f"{100 * b['within_2cm_2deg']:.0f}% within (2 cm, 2 deg), {100 * b['within_5cm_5deg']:.0f}% within "
              f"(5 cm, 5 deg); median {_fmt(b['median_translation_cm'])} cm, {_fmt(b['median_rotation_deg'])} deg")
    print(f"{out.path}/localize.json", file=sys.stderr)
    return 0


def _fmt(x) -> str:
    return "inf" if x is None else f"{x:.2f}"


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "grasp":
        return run_grasp(args)
    if args.command == "locate":
        return run_locate(args)
    if args.command == "localize":
        return main_localize(args)
    from ..query.evaluate import SegmentationConfig, evaluate_segmentation
    from ..validate import text
    from .query import engine_from_args, output_folder

    labels = [x.strip() for x in text(args.labels, "--labels").split(",") if x.strip()] if args.labels else None
    negatives = args.negatives or ("auto" if args.queries else SegmentationConfig().negatives)
    cfg = SegmentationConfig(labels=labels, views=args.views, negatives=negatives, threshold=args.threshold,
                             min_opacity=args.min_opacity, dilation=args.dilation, clean=args.clean,
                             lift=args.lift, teacher=args.teacher, require_3d=not args.only_2d)
    if args.queries:
        return run_queries(args, cfg)
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


def run_queries(args, cfg) -> int:
    from ..errors import ConfigError
    from ..query.evaluate_queries import evaluate_queries, read_queries
    from .query import engine_from_args, output_folder

    if args.labels:
        raise ConfigError("--labels and --queries do not go together: the query file names the objects")
    queries = read_queries(args.queries)  # a bad file fails before the field loads
    out = output_folder(args, None)
    engine = engine_from_args(args, out)
    engine.text_teacher(args.teacher)
    with out as folder:
        r = evaluate_queries(engine, queries, cfg, folder)
    for q, row in r["per_query"].items():
        extra = (f"  3D precision {row['precision_3d']:.2f} recall {row['recall_3d']:.2f}"
                 if "precision_3d" in row else "")
        print(f"{row['kind']:>8} {q!r:>24} -> {', '.join(row['answers'])}: IoU {row['iou']:.2f}, other objects "
              f"<= {row['max_false_coverage']:.2f}{extra}")
    for name, a in r["acceptance"].items():
        val = a.get("value", a.get("min", a.get("max")))
        print(f"{name}: {val:.3f} (target {a['target']}) {'met' if a['met'] else 'NOT met'}")
    print(f"{'all targets met' if r['passed'] else 'some targets missed'}; {out.path}/queries.json", file=sys.stderr)
    return 0


def _robot_field(args):
    """The field, its scene, the chosen labels and parts, and the guarded --out (checked before any work)."""
    from ..errors import ConfigError
    from ..fields.loading import load
    from .query import engine_scene_check, output_folder

    labels = [x.strip() for x in text(args.labels, "--labels").split(",") if x.strip()] if args.labels else None
    parts = ([x.strip() for x in text(args.parts, "--parts").split(",") if x.strip()]
             if args.parts is not None else None)
    engine_scene_check(args)
    out = output_folder(args, None)
    field = load(args.checkpoint, scene_root=args.scene)
    field.text_teacher()
    scene = args.scene or field.scene_root
    if scene is None:
        raise ConfigError("no scene recorded for this field: pass --scene with objects.json")
    out.refuse_inputs(scene)
    return field, scene, labels, parts, out


def run_locate(args) -> int:
    from ..robot.evaluate import evaluate_locate

    field, scene, labels, parts, out = _robot_field(args)
    with out as folder:  # staged: locate.json appears whole, or not at all
        r = evaluate_locate(field, scene, labels=labels, parts=parts, out_dir=folder)
    for lab, row in r["per_query"].items():
        if "centroid_error_m" in row:
            print(f"{lab:>12}: {row['instances']} instance(s), centroid error {row['centroid_error_m'] * 100:.2f} cm, "
                  f"box IoU {row['box_iou']:.3f}, {row['seconds']:.2f} s")
        elif "precision_3d" in row:
            print(f"{lab:>12}: part, 3D precision {row['precision_3d']:.3f} recall {row['recall_3d']:.3f}, "
                  f"{row['seconds']:.2f} s")
        else:
            print(f"{lab:>12}: not found ({row['reason']})")
    print(f"{'all targets met' if r['passed'] else 'some targets missed'}; {args.out}/locate.json", file=sys.stderr)
    return 0


def run_grasp(args) -> int:
    from ..robot.evaluate import evaluate_grasps
    from ..robot.gripper import load_gripper
    from ..robot.sim import SimConfig

    gripper = load_gripper(args.gripper)
    field, scene, labels, parts, out = _robot_field(args)
    with out as folder:  # staged: the summary and the per-object files appear together
        r = evaluate_grasps(field, scene, gripper=gripper, k=args.k, labels=labels, parts=parts,
                            cfg=SimConfig(density=args.density), out_dir=folder, progress=not args.no_progress)
    print(r["table"])
    print(f"top-1 success {r['top1_success_rate']:.0%}, some top-{args.k} success {r['top5_any_success_rate']:.0%} "
          f"over the objects that fit the gripper; {args.out}/grasp_summary.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
