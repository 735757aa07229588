"""ff-export: write what a query finds as files: per-Gaussian relevancy PLY, the object's point cloud with normals,
and 2D masks and heatmaps for chosen or novel views."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, FFError, cli_entry
from . import ArgParser
from .query import (add_field_options, add_selection_options, engine_from_args, gather_views, output_folder, progress,
                    slug, text_selection)

EXAMPLES = """\
examples:
  ff-export outputs/tabletop/checkpoint.pt "mug" --out outputs/mug
        relevancy.ply (all Gaussians + a 'relevancy' property) and points.ply (the mug: centres, colours, normals)
  ff-export outputs/tabletop/checkpoint.pt "banana" --clean --views test --out outputs/banana
        ... plus a heatmap and a mask PNG for every held-out view
  ff-export outputs/tabletop/checkpoint.pt "bowl" --views novel:6 --camera cams.json --out outputs/bowl
        masks and heatmaps for six interpolated novel poses and the cameras in cams.json

points.ply is in the scene's metric world coordinates (x y z, nx ny nz, red green blue); normals are each splat's
shortest axis, flipped towards the nearest training camera. relevancy.ply follows field.ply's convention
(3DGS-compatible; opens in splat viewers, and the relevancy property colours it in e.g. CloudCompare).
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ff-export", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_options(p)
    p.add_argument("query", help="text: one phrase or several separated by ';'")
    p.add_argument("--out", help="output folder (default: outputs/export/<query>)")
    p.add_argument("--views", help="also write masks and heatmaps for these views: test | train | all | novel:N | "
                                   "frame indices or names")
    p.add_argument("--camera", action="append", default=[], metavar="FILE",
                   help="also write masks and heatmaps for the novel camera(s) in this JSON file; repeatable")
    p.add_argument("--no-relevancy-ply", action="store_true", help="skip relevancy.ply")
    p.add_argument("--no-points", action="store_true", help="skip points.ply")
    add_selection_options(p)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..query.relevancy import split_positives

    split_positives(args.query)
    if args.no_relevancy_ply and args.no_points and not (args.views or args.camera):
        raise ConfigError("nothing to export: every output is switched off")
    import torch

    from ..io import write_json
    from ..query.engine import DEFAULT_THRESHOLD
    from ..query.export import selection_point_cloud, write_point_cloud, write_relevancy_ply, write_view_outputs

    out = output_folder(args, Path("outputs") / "export" / slug(args.query), *args.camera)
    engine = engine_from_args(args, out)
    # Every check first (views, camera files, an empty selection), then the work, then the files.
    views = gather_views(engine, args.views, args.camera) if (args.views or args.camera) else []
    rel3 = engine.relevancy_3d(args.query, negatives=args.negatives, teacher=args.teacher)
    sel = text_selection(engine, args.query, args, rel3)
    if not args.no_points and sel.count == 0:
        raise ConfigError(f"{args.query!r} selects no Gaussians, so there is no point cloud to export (try "
                          "--negatives canonical or a lower --threshold)")
    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD
    written = []
    with out as folder:  # staged: the files appear only if everything below succeeds
        if not args.no_relevancy_ply:
            write_relevancy_ply(folder / "relevancy.ply", engine.field, rel3.combined,
                                world_from_scene=engine.world_from_scene)
            written.append("relevancy.ply")
        if not args.no_points:
            try:
                viewpoints = torch.stack([v.center for v in engine.views("all")])
            except FFError:  # without the scene, normals face away from the object's centre
                viewpoints = None
            write_point_cloud(folder / "points.ply", selection_point_cloud(engine.field, sel, viewpoints))
            written.append("points.ply")
        for v in progress(views, "views"):
            rel = engine.relevancy_2d(args.query, v, negatives=args.negatives, teacher=args.teacher)
            write_view_outputs(folder, v.stem, rel.render.rgb, rel.combined, rel.mask(threshold), threshold)
        if views:
            written.append(f"{len(views)} x (heatmap, mask) PNG")
        write_json(folder / "export.json", {"query": args.query, "positives": rel3.positives,
                                            "negatives": rel3.negatives, "selected_gaussians": sel.count,
                                            "num_gaussians": len(engine.field), "views": [v.stem for v in views],
                                            "files": written})
    print(f"{sel.count} Gaussians selected; wrote {', '.join(written)} to {out.path}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
