"""ff-query: ask a trained feature field where something is, by text or by a click/box, in 2D views and in 3D."""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from ..errors import ConfigError, DataError, cli_entry
from ..guard import OutputFolder
from ..validate import arg, number
from . import ArgParser

EXAMPLES = """\
examples:
  ff-query outputs/tabletop/checkpoint.pt "mug" --views test --out outputs/q_mug
        relevancy heatmaps (turbo over the render) and masks for every held-out view, plus the 3D selection
  ff-query outputs/tabletop/checkpoint.pt "red mug; bowl" --negatives canonical --ply --out outputs/q2
        two positives (a pixel is relevant to either), LERF's canonical negatives, per-Gaussian relevancy PLY
  ff-query outputs/tabletop/checkpoint.pt "banana" --views 3,frame_00016 --camera cams.json --out outputs/q3
        chosen frames plus novel cameras from a JSON file (c2w or nerfstudio transform_matrix, K or fl_x..)
  ff-query outputs/tabletop/checkpoint.pt --view frame_00008 --point 120,80 --out outputs/click
        a click: the feature under it, compared with every pixel of that view and with every Gaussian
  ff-query outputs/tabletop/checkpoint.pt --view 8 --box 60,40,130,110 --teacher sam --out outputs/box
        a box through SAM's own prompt decoder (fields trained with the sam teacher), lifted to 3D

how it scores: text -> the field's text-aligned teacher (labels: all-MiniLM-L6-v2; clip: its text tower);
relevancy = min over negatives of softmax(q.f, n.f) at temperature 0.1 (LERF), on rendered feature maps and on
every Gaussian's own decoded feature. Masks and the 3D selection keep relevancy > --threshold (0.5: the query
beats every negative). --negatives auto first matches the query against the scene's label names: a label it
names ("banana" for "yellow banana") or is close to in the text space (cosine >= 0.4 to the label, its compound
or its head noun, within 0.1 of the best: "cup" for "blue coffee mug", "fruit" for "yellow banana") scores for
the query; several labels only for a word more generic than its nearest label (nearer the canonical phrases):
"kitchenware" is the mug and the bowl, "cola" the can alone; and of those, only the labels nearer the word than
any of COCO's twelve supercategories (kitchen, food, sports, ...): "food" is the banana and the cereal box, not
the bowl (kitchen) or the toy ball (sports). The other labels and the canonical object/things/stuff/texture are
negatives. 'vocabulary-generic': without the category test; 'vocabulary-window': every close label scores;
'vocabulary-z': close labels that also stand out from the scene's labels (z-score >= 1.2). 'scene': the same as
auto without canonical (best-label assignment); 'similar': matched labels only leave the negatives; 'words':
labels named by the query's words leave the negatives (the old rule); 'canonical': LERF's four. query.json lists
what each phrase stood for.

outputs under --out: <view>_heatmap.png, <view>_mask.png (0/255) per view; selection.pt (3D selection, for
ff-edit --selection); relevancy.ply with --ply (the field + a 'relevancy' property per Gaussian); query.json
(positives, negatives, per-view mask area, selected Gaussian count).
"""


def add_field_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    p.add_argument("--scene", help="the training scene folder, if it moved since training")
    p.add_argument("--teacher", help="which of the field's teachers answers (default: the first text-aligned one "
                                     "for text, the first non-SAM one for prompts)")


def add_selection_options(p: argparse.ArgumentParser, min_opacity: float | None = None,
                          why: str = "see-through Gaussians carry poorly supervised features") -> None:
    from ..query.engine import DEFAULT_MIN_OPACITY

    p.add_argument("--negatives", default="auto",
                   help="auto (= vocabulary, the default) | vocabulary-generic | vocabulary-window | vocabulary-z | "
                        "scene | similar | words | canonical | 'phrase; phrase' (auto: the query also scores as "
                        "the scene labels it names or is close to in the text space, 'banana' as 'yellow banana', "
                        "several only for a word more generic than its nearest label and nearer it than any broad "
                        "category; the other labels + canonical are negatives)")
    p.add_argument("--threshold", type=arg(number, lo=-1, hi=1), default=None,
                   help="relevancy (text, default 0.5) or cosine similarity (prompts, default 0.8) above which a "
                        "pixel or Gaussian is selected")
    p.add_argument("--min-opacity", type=arg(number, lo=0, hi=1),
                   default=DEFAULT_MIN_OPACITY if min_opacity is None else min_opacity,
                   help=f"3D selections keep Gaussians at least this opaque (default %(default)s: {why})")
    p.add_argument("--clean", action="store_true",
                   help="keep only the largest connected component of the 3D selection")
    p.add_argument("--lift", choices=["features", "views"], default="features",
                   help="3D text selection from each Gaussian's own feature (features, default: instant) or from "
                        "what it renders as: more than half its weight inside the 2D masks of the training views "
                        "(views: ~0.15 s per view; better along contacts and half-hidden parts)")


def engine_from_args(args, out: OutputFolder | None = None):
    """The engine of ``args.checkpoint`` (and ``--scene``); ``out`` then also refuses the scene it reads."""
    from ..query import QueryEngine

    engine_scene_check(args)
    engine = QueryEngine.from_checkpoint(args.checkpoint, scene_root=args.scene)
    if out is not None:
        out.refuse_inputs(engine.field.scene_root)
    return engine


def engine_scene_check(args) -> None:
    """A --scene that is not a folder is named as such (not as 'the scene this field was trained on is gone')."""
    if args.scene is not None and not Path(args.scene).is_dir():
        raise DataError(f"--scene {args.scene}: no such folder")


def output_folder(args, default: Path, *inputs) -> OutputFolder:
    """The guarded --out of a command that reads the checkpoint, --scene and ``inputs``: checked before any work."""
    return OutputFolder(args.out or default, inputs=[args.checkpoint, args.scene, *inputs])


def progress(items, what: str):
    """A progress bar over views (on a terminal only) so long view lists show where they are."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="view", disable=None if len(items) > 1 else True, leave=False)


def text_selection(engine, query: str, args, relevancy=None):
    from ..query.engine import DEFAULT_THRESHOLD

    common = dict(threshold=_or(args.threshold, DEFAULT_THRESHOLD), min_opacity=args.min_opacity, clean=args.clean,
                  negatives=args.negatives, teacher=args.teacher)
    if args.lift == "views":
        return engine.select_by_views(query, **common)
    return engine.select(query, relevancy=relevancy, **common)


def parse_numbers(text: str, n: int, flag: str) -> list[float]:
    try:
        vals = [float(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        form = {2: " X,Y", 3: " R,G,B", 4: " X0,Y0,X1,Y1", 6: " X0,Y0,Z0,X1,Y1,Z1"}.get(n, "")
        raise ConfigError(f"{flag} {text!r}: expected {n} numbers{form}")
    return vals


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "query"


def _or(value, default):
    return default if value is None else value


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ff-query", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_options(p)
    p.add_argument("query", nargs="?", help="text: one phrase or several separated by ';' (omit with --point/--box)")
    p.add_argument("--out", help="output folder (default: outputs/query/<query>)")
    p.add_argument("--views", default=None,
                   help="test | train | all | novel:N | comma-separated frame indices or names (default: test)")
    p.add_argument("--camera", action="append", default=[], metavar="FILE",
                   help="JSON camera(s) for novel views; repeatable")
    add_selection_options(p)
    p.add_argument("--point", metavar="X,Y", help="click prompt, in pixels of --view")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box prompt, in pixels of --view")
    p.add_argument("--view", help="the view a --point/--box is given in: frame index or name, or a camera JSON file")
    p.add_argument("--ply", action="store_true", help="also write relevancy.ply (per-Gaussian relevancy)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prompt = args.point is not None or args.box is not None
    if args.point is not None and args.box is not None:
        raise ConfigError("give --point or --box, not both")
    if prompt and args.query is not None:
        raise ConfigError("give a text query or a --point/--box prompt, not both")
    if not prompt and args.query is None:
        raise ConfigError("nothing to ask: give a text query (e.g. \"red mug\") or --point/--box with --view")
    if prompt and args.view is None:
        raise ConfigError("--point/--box need --view: the frame (index or name) or camera file the prompt is given in")
    from ..query.relevancy import split_positives

    if not prompt:
        split_positives(args.query)  # bad queries fail before anything is loaded
    point = parse_numbers(args.point, 2, "--point") if args.point is not None else None
    box = parse_numbers(args.box, 4, "--box") if args.box is not None else None
    name = args.query if not prompt else ("point_" if point else "box_") + "_".join(f"{v:g}" for v in point or box)
    view_file = args.view if args.view is not None and args.view.endswith(".json") else None
    out = output_folder(args, Path("outputs") / "query" / slug(name), *args.camera, view_file)
    engine = engine_from_args(args, out)
    summary = run_prompt(engine, args, point, box, out) if prompt else run_text(engine, args, out)
    print(f"{summary['selected_gaussians']} of {summary['num_gaussians']} Gaussians selected; outputs in "
          f"{out.path}/", file=sys.stderr)
    return 0


def gather_views(engine, views: str | None, cameras: list[str], default: str = "test"):
    """Scene views (``--views``; ``default`` when neither views nor cameras are given) + novel ``--camera`` files."""
    from ..query.engine import views_from_camera_file

    out = engine.views(views) if views else ([] if cameras else engine.views(default))
    for c in cameras:
        out += views_from_camera_file(c, out[0] if out else _first_frame(engine))
    return out


def _first_frame(engine):
    """Frame 0 (its intrinsics fill a camera file's gaps), or None without a scene."""
    from ..errors import DataError

    try:
        return engine.frame_view(0)
    except DataError:
        return None


def run_text(engine, args, out: OutputFolder) -> dict:
    from ..io import write_json
    from ..query.engine import DEFAULT_THRESHOLD
    from ..query.export import write_relevancy_ply, write_view_outputs

    threshold = _or(args.threshold, DEFAULT_THRESHOLD)
    views = gather_views(engine, args.views, args.camera)  # bad views and camera files fail before any work
    rel3 = engine.relevancy_3d(args.query, negatives=args.negatives, teacher=args.teacher)
    sel = text_selection(engine, args.query, args, rel3)
    per_view = []
    with out as folder:  # staged: the files appear only if everything below succeeds
        for v in progress(views, "views"):
            rel = engine.relevancy_2d(args.query, v, negatives=args.negatives, teacher=args.teacher)
            mask = rel.mask(threshold)
            write_view_outputs(folder, v.stem, rel.render.rgb, rel.combined, mask, threshold)
            per_view.append({"view": v.stem, "mask_fraction": round(float(mask.float().mean()), 5),
                             "max_relevancy": round(float(rel.combined.max()), 4)})
        sel.save(folder / "selection.pt", query=args.query, checkpoint=str(args.checkpoint))
        if args.ply:
            write_relevancy_ply(folder / "relevancy.ply", engine.field, rel3.combined,
                                world_from_scene=engine.world_from_scene)
        summary = {"query": args.query, "positives": rel3.positives, "negatives": rel3.negatives,
                   "stands_for": dict(zip(rel3.positives, rel3.stands_for)),
                   "teacher": engine.text_teacher(args.teacher), "threshold": threshold, "views": per_view,
                   "lift": args.lift, "selected_gaussians": sel.count, "num_gaussians": len(engine.field)}
        write_json(folder / "query.json", summary)
    return summary


def prompt_view(engine, spec: str):
    """The one view a prompt is given in: a frame (index or name), novel:N's first pose, or a camera JSON file."""
    if spec.endswith(".json"):
        from ..query.engine import views_from_camera_file

        return views_from_camera_file(spec, _first_frame(engine))[0]
    return engine.views(spec)[0]


def run_prompt(engine, args, point, box, out: OutputFolder) -> dict:
    from ..io import write_image, write_json
    from ..query.engine import DEFAULT_SIMILARITY
    from ..query.export import heatmap_overlay, mask_image

    view = prompt_view(engine, args.view)
    res = engine.prompt(view, point=point, box=box, teacher=args.teacher,
                        threshold=_or(args.threshold, DEFAULT_SIMILARITY),
                        min_opacity=args.min_opacity, clean=args.clean)
    rgb = engine.render(view).rgb
    score = res.score if res.method == "similarity" else res.score.sigmoid()
    summary = {"prompt": {"point": point, "box": box, "view": view.stem}, "method": res.method,
               "teacher": res.teacher, "views": [{"view": view.stem,
                                                  "mask_fraction": round(float(res.mask.float().mean()), 5)}],
               "selected_gaussians": res.selection.count, "num_gaussians": len(engine.field)}
    with out as folder:
        write_image(folder / f"{view.stem}_heatmap.png", heatmap_overlay(
            rgb, score, 0.5 if res.method == "sam" else _or(args.threshold, DEFAULT_SIMILARITY)))
        write_image(folder / f"{view.stem}_mask.png", mask_image(res.mask))
        res.selection.save(folder / "selection.pt", prompt={"point": point, "box": box, "view": view.stem},
                           checkpoint=str(args.checkpoint))
        write_json(folder / "query.json", summary)
    return summary


if __name__ == "__main__":
    main()
