"""``ff-scene``: generate a bundled synthetic scene in nerfstudio format."""
from __future__ import annotations

import argparse
import sys
import time

from ..errors import cli_entry
from ..validate import arg, integer
from . import ArgParser

EPILOG = """\
example:
  ff-scene tabletop --seed 0 --out scenes/tabletop
      the committed demo scene: 48 views of 8 objects on a table, 200x150 pixels
  ff-scene tabletop --seed 3 --out /tmp/tt --views 8 --width 80 --height 60
      a small variant with another object layout and camera orbit
  ff-scene tabletop --labels descriptive --out /tmp/tabletop_descriptive
      the same table, objects named by phrases ("blue coffee mug", "yellow banana"): for testing queries with words
      that are not the training labels (ff-eval segmentation --queries benchmarks/queries_descriptive.json)

Output folder (replaced atomically, so an interrupted run leaves nothing half-written):
  transforms.json   PINHOLE intrinsics, OpenGL camera-to-world poses, semantic/instance label lists
  images/ depth/ normals/ semantics/ instances/   one PNG per view (depth: uint16 millimetres)
  points.ply        coloured surface samples for initialisation
  objects.json, meshes/   per-object label, instance id, mesh, metric object-to-world pose, bounding box
The same arguments always give byte-identical files."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="ff-scene",
        description="Render a deterministic synthetic scene (RGB, depth, normals, semantic and instance masks, "
        "object meshes and metric poses) into a nerfstudio-format folder. Offline, CPU only.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scene", choices=["tabletop"], help="which scene to build (tabletop: objects on a wooden table)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created or replaced)")
    p.add_argument("--seed", type=int, default=0, help="object layout and camera jitter (default 0)")
    p.add_argument("--views", type=int, default=48, help="number of cameras on the orbit (default 48)")
    p.add_argument("--width", type=int, default=200, help="image width in pixels (default 200)")
    p.add_argument("--height", type=int, default=150, help="image height in pixels (default 150)")
    p.add_argument("--points", type=arg(integer, lo=1, hi=10_000_000), default=5000,
                   help="surface points written to points.ply (default 5000)")
    p.add_argument("--labels", choices=["plain", "descriptive"], default="plain",
                   help="label names: plain (mug, bowl, ..., with part classes 'mug handle', 'bottle neck'; "
                   "default) or descriptive (blue coffee mug, ceramic bowl, ...; whole objects only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..guard import check_writable_folder
    from ..scenegen import GENERATORS

    check_writable_folder(args.out)  # (the generator then replaces the folder atomically, see below)
    t0 = time.perf_counter()
    out = GENERATORS[args.scene](args.out, seed=args.seed, views=args.views, width=args.width, height=args.height,
                                 n_points=args.points, progress=not args.quiet, labels=args.labels)
    if not args.quiet:
        print(f"wrote {out} ({args.views} views, {args.width}x{args.height}) in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
