"""ff-view: look at a trained feature field in a browser, ask it in words, click to select, edit and export."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import cli_entry
from ..validate import MAX_IMAGE_SIDE, arg, integer, number
from . import ArgParser

EXAMPLES = """\
examples:
  ff-view outputs/tabletop/checkpoint.pt
        serve the demo field at http://127.0.0.1:8080 (open it in a browser; several browsers may connect)
  ff-view outputs/tabletop --port 8090 --out outputs/tabletop_edits
        another port; edits and exports written under outputs/tabletop_edits/
  ff-view outputs/tabletop/checkpoint.pt --host 0.0.0.0 --max-size 1024
        reachable from other machines, resting frames up to 1024 pixels wide
  ff-view outputs/tabletop/field.ply --scene scenes/tabletop
        a splat PLY with feature properties, with its scene's cameras
  ff-train scenes/tabletop --view
        watch a field while it trains (same viewer; pause button; edits once it is done)

in the browser: Mode shows colour, depth, feature PCA per teacher, the query's relevancy (turbo over the
render, as ff-query draws it) or the selection (orange). Type positives separated by ';' in Query and press
Enter; "Select query in 3D" turns it into a selection of Gaussians (own features, or the views lift). A click in
the scene is a point prompt at that pixel, shift-drag a box prompt; Combine says whether a result replaces, adds
to or subtracts from the selection. Extract / Delete / Recolour write a new checkpoint.pt + field.ply under
--out/edits/ and every browser sees the edited field; exports (points.ply, relevancy.ply, screenshots) go to
--out/exports/. Click a training camera's frustum to look from it.

frames are rendered on the server by featurefields' own rasteriser, per browser: the newest camera wins (stale
frames are dropped), frames are smaller while the camera moves (chosen from measured render times, to keep
--target-fps) and full size (up to --max-size) once it rests.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..viewer.server import ViewerConfig

    d = ViewerConfig()
    p = ArgParser(prog="ff-view", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder), or a splat .ply")
    p.add_argument("--port", type=arg(integer, lo=0, hi=65535), default=d.port,
                   help="TCP port (default %(default)s; 0: any free port)")
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s: this machine only; "
                                                  "0.0.0.0 for every interface)")
    p.add_argument("--out", help="folder for edits and exports (default: outputs/view/<run>)")
    p.add_argument("--scene", help="the training scene folder, if it moved since training")
    p.add_argument("--max-size", type=arg(integer, lo=32, hi=MAX_IMAGE_SIDE), default=d.max_side,
                   help="longest side of a resting frame in pixels (default %(default)s)")
    p.add_argument("--target-fps", type=arg(number, lo=0, lo_open=True, hi=240), default=d.target_fps,
                   help="frames per second to keep while the camera moves (default %(default)s)")
    p.add_argument("--splats", action="store_true",
                   help="also send the Gaussians to browsers as client-side splats (smooth navigation, colour only)")
    return p


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ff-view: %(message)s"))
    log = logging.getLogger("featurefields.viewer")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..fields.loading import load
    from ..guard import OutputFolder
    from .query import engine_scene_check
    from ..viewer import FieldSource, ViewerConfig, ViewerServer, check_port

    check_port(args.host, args.port)
    engine_scene_check(args)
    path = Path(args.checkpoint)
    run = path.parent.name if path.is_file() else path.name
    out = Path(args.out or Path("outputs") / "view" / (run or "field"))
    # checked before anything loads: writable, and not where the field or its scene lies (edits go to out/edits/)
    guard = OutputFolder(out, inputs=[path, args.scene], staged=False)
    field = load(path, scene_root=args.scene)
    guard.refuse_inputs(field.scene_root)
    checkpoint = None
    if path.suffix.lower() != ".ply":
        checkpoint = path / "checkpoint.pt" if path.is_dir() else path
    source = FieldSource(field, checkpoint)
    setup_logging()
    server = ViewerServer(source, ViewerConfig(args.host, args.port, args.max_size, args.target_fps, args.splats,
                                               f"featurefields: {run}"), out)
    print(f"ff-view: {len(field):,} Gaussians from {path}; open {server.url} (Ctrl-C stops)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("ff-view: stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    main()
