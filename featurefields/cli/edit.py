"""ff-edit: extract, delete or recolour what a query selects, saving the result as a new field."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, cli_entry
from . import ArgParser
from .query import (add_field_options, add_selection_options, engine_from_args, output_folder, parse_numbers, slug,
                    text_selection)

EXAMPLES = """\
examples:
  ff-edit outputs/tabletop/checkpoint.pt "mug" --delete --out outputs/no_mug
        remove the mug: a new checkpoint.pt + field.ply without its Gaussians
  ff-edit outputs/tabletop/checkpoint.pt "banana" --extract --clean --out outputs/banana
        keep only the banana (largest connected component of its selection)
  ff-edit outputs/tabletop/checkpoint.pt "mug; bowl" --recolour 1,0.2,0.2 --out outputs/red
        paint the mug and the bowl red (flat colour, view-dependent terms cleared)
  ff-edit outputs/tabletop/checkpoint.pt "table" --also "book" --exclude "mug" --delete --out outputs/e
        combine selections: (table or book) and not mug
  ff-edit outputs/tabletop/checkpoint.pt --selection outputs/click/selection.pt --delete --out outputs/e2
        a selection saved by ff-query (e.g. from a click or box prompt)

outputs under --out: checkpoint.pt (queries, renders, ff-train --resume all work on it; the Adam moments of the
kept Gaussians come along), field.ply (3DGS-compatible, same world frame as the original), edit.json (what was
done: edit, query, counts before/after). The original checkpoint is never modified.
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ff-edit", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    add_field_options(p)
    p.add_argument("query", nargs="?", help="text selecting the Gaussians to edit ('a; b' selects either)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--delete", action="store_true", help="remove the selected Gaussians")
    what.add_argument("--extract", action="store_true", help="keep only the selected Gaussians")
    what.add_argument("--recolour", "--recolor", metavar="R,G,B", help="paint the selection (values in [0, 1])")
    p.add_argument("--also", action="append", default=[], metavar="QUERY", help="add (or) another query's selection")
    p.add_argument("--exclude", action="append", default=[], metavar="QUERY",
                   help="remove (and not) another query's selection")
    p.add_argument("--selection", metavar="FILE", help="a selection.pt written by ff-query, instead of a query")
    add_selection_options(p, 0.0, "an edit takes every Gaussian the query selects, since faint ones together still "
                                  "draw the object")
    p.add_argument("--out", help="output folder (default: outputs/edit/<edit>_<query>)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.query is None) == (args.selection is None):
        raise ConfigError("give either a text query or --selection FILE (one of them)")
    kind = "delete" if args.delete else "extract" if args.extract else "recolour"
    rgb = parse_numbers(args.recolour, 3, "--recolour") if kind == "recolour" else None
    if rgb is not None and not all(0 <= c <= 1 for c in rgb):
        raise ConfigError(f"--recolour {args.recolour!r}: each value must be in [0, 1]")
    from ..query.relevancy import split_positives

    for q in [args.query] * (args.query is not None) + args.also + args.exclude:
        split_positives(q)
    from ..query.edit import apply_edit, save_edited
    from ..query.engine import DEFAULT_THRESHOLD
    from ..query.selection import Selection
    from ..train.checkpoint import load_checkpoint

    what = f"selection {args.selection}" if args.selection is not None else args.query
    out = output_folder(args, Path("outputs") / "edit" / f"{kind}_{slug(what)}", args.selection)
    engine = engine_from_args(args, out)
    n = len(engine.field)
    if args.selection is not None:
        sel = Selection.load(args.selection, n)
    else:
        sel = text_selection(engine, args.query, args)
    for q in args.also:
        sel = sel | text_selection(engine, q, args)
    for q in args.exclude:
        sel = sel - text_selection(engine, q, args)
    if sel.count == 0:
        raise ConfigError(f"{what!r} selects no Gaussians (try --negatives canonical or a lower --threshold)")
    edited, kept = apply_edit(engine.field, kind, sel, rgb)
    info = {"edit": kind, "source": str(args.checkpoint), "query": args.query, "also": args.also,
            "exclude": args.exclude, "selection_file": args.selection, "selected_gaussians": sel.count,
            "negatives": args.negatives, "min_opacity": args.min_opacity,
            "threshold": args.threshold if args.threshold is not None else DEFAULT_THRESHOLD,
            "clean": args.clean, "colour": rgb}
    state = load_checkpoint(args.checkpoint)
    with out as folder:  # staged: all three files or none
        info = save_edited(folder, state, edited, kept, info, recoloured=sel.mask if kind == "recolour" else None)
    print(f"{kind}: {sel.count} Gaussians selected; {info['num_gaussians_before']} -> "
          f"{info['num_gaussians_after']} Gaussians; outputs in {out.path}/ (checkpoint.pt, field.ply, edit.json)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
