"""ff-localize: where was this photo taken? The camera pose of one image in a trained field, with no initial guess."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError, cli_entry
from ..validate import MAX_IMAGE_SIDE, arg, integer, number
from . import ArgParser

# Before torch loads OpenMP: on a machine shared with other jobs, spinning OpenMP workers wait for cores that other
# processes hold; a passive wait measured 5-10x faster per render here under load (and the same when idle).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXAMPLES = """\
examples:
  ff-localize outputs/tabletop/checkpoint.pt photo.png --fov 62 --out outputs/where
        a photo with a known horizontal field of view (principal point at the centre)
  ff-localize outputs/tabletop/checkpoint.pt photo.png --intrinsics K.json --out outputs/where
        intrinsics from a file: {"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "width": W, "height": H}, nerfstudio-style
        fl_x/fl_y/cx/cy/w/h, or an Open3D camera json
  ff-localize outputs/room/checkpoint.pt color.jpg --intrinsics cam.json --depth depth.png --out outputs/where
        with a depth image (16-bit PNG in millimetres, --depth-scale to change; or .npy metres): adds ICP and a
        depth term to the refinement
  ff-localize outputs/tabletop/checkpoint.pt photo.png --fov 62 --no-refine --out outputs/coarse
        the coarse stage only (matches + PnP)

how: SIFT keypoints of the image are matched with those of the training views nearest by a global descriptor
(VLAD), lifted to 3D by the field's rendered depth; PnP-RANSAC on each view's matches and on all of them gives
hypotheses, ranked by how well a render at each agrees with the image; the best are refined by minimising the
robust photometric error of renders through the rasteriser's exact pose gradient (L-BFGS on SE(3), an image
pyramid). The map of the field is built once (seconds) and cached in the run's cache/ folder.

outputs under --out: pose.json (c2w: camera-to-world, OpenCV axes, the field's world frame; K, width, height: a
camera file ff-query --view accepts; inliers, errors, confidence, seconds per stage) and localize.png (image |
render at the estimate | difference). When no pose can be defended (an image of another scene, a blank image,
too few inliers) nothing is written: one error line says why and the exit code is 2.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..localize import LocalizeConfig

    d = LocalizeConfig()
    p = ArgParser(prog="ff-localize", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder)")
    p.add_argument("image", help="the image to localise (PNG or JPEG)")
    cam = p.add_mutually_exclusive_group(required=True)
    cam.add_argument("--intrinsics", metavar="K.json", help="the camera's intrinsics (see the examples)")
    cam.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view, principal point centred")
    p.add_argument("--depth", help="a depth image of the same size (16-bit PNG, or .npy in metres)")
    p.add_argument("--depth-scale", type=arg(number, lo=0, lo_open=True), default=1000.0,
                   help="raw depth units per metre of a PNG depth image (default %(default)s: millimetres)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scene", help="the training scene folder, if it moved since training")
    p.add_argument("--no-refine", action="store_true", help="stop after the coarse stage")
    p.add_argument("--work-size", type=arg(integer, lo=32, hi=MAX_IMAGE_SIDE), default=d.work_size,
                   help="longest image side everything runs at (default %(default)s; larger images are shrunk)")
    p.add_argument("--min-inliers", type=arg(integer, lo=6, hi=1_000_000), default=d.coarse.min_inliers,
                   help="fewer PnP inliers than this: no pose (default %(default)s)")
    p.add_argument("--min-ncc", type=arg(number, lo=-1, hi=1), default=d.min_ncc,
                   help="the render at the final pose must correlate with the image at least this much "
                        "(default %(default)s)")
    p.add_argument("--cache", help="folder for the field's localisation map (default: the run's cache/ folder)")
    p.add_argument("--no-cache", action="store_true", help="build the map in memory only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while the map is built")
    return p


def config_from_args(args):
    from ..localize import LocalizeConfig

    cfg = LocalizeConfig(work_size=args.work_size, min_ncc=args.min_ncc)
    cfg.coarse.min_inliers = args.min_inliers  # the options' ranges are checked while parsing (validate.arg)
    return cfg


def cache_dir_for(args) -> Path | None:
    """--cache, else the run folder's cache/ when it can be written, else none (memory only)."""
    if args.no_cache:
        return None
    if args.cache:
        return Path(args.cache)
    ckpt = Path(args.checkpoint)
    run = ckpt if ckpt.is_dir() else ckpt.parent
    cache = run / "cache"
    return cache if os.access(cache if cache.is_dir() else run, os.W_OK) else None


def read_camera(args, image_path: str):
    """(K, declared size or None) from --intrinsics or --fov (the image's size for --fov)."""
    import torch

    from ..fields.base import fov_intrinsics
    from ..io import read_image
    from ..localize.inputs import read_intrinsics

    if args.intrinsics:
        return read_intrinsics(args.intrinsics)
    h, w = read_image(image_path).shape[:2]
    return fov_intrinsics(w, h, args.fov).to(torch.float64), None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if not Path(args.image).is_file():
        raise ConfigError(f"{args.image}: image not found")
    from .query import engine_scene_check, output_folder

    engine_scene_check(args)
    out = output_folder(args, None, args.image, args.depth, args.intrinsics)  # checked before any work
    K, size = read_camera(args, args.image)
    import featurefields as ff
    from ..errors import FFError
    from ..io import write_image, write_json
    from ..localize import localize
    from ..localize.picture import estimate_row
    from ..localize.inputs import make_query

    field = ff.load(args.checkpoint, scene_root=args.scene)
    out.refuse_inputs(field.scene_root)
    query = make_query(args.image, K, args.depth, depth_scale=args.depth_scale, size=size)  # bad input: before work
    est = localize(field, query.image, query.K, depth=query.depth, config=cfg, cache_dir=cache_dir_for(args),
                   refine=not args.no_refine, progress=not args.no_progress)
    if not est.success:
        raise FFError(f"{args.image}: no pose: {est.reason}")
    record = {"name": Path(args.image).stem, "image": str(args.image), "c2w": est.c2w.tolist(),
              "K": query.K.tolist(), "width": query.width, "height": query.height, **est.to_dict(),
              "config": cfg.to_dict()}
    with out as folder:  # staged: pose.json and the picture appear together, or not at all
        write_image(folder / "localize.png", estimate_row(field, query.image, query.K, est, Path(args.image).stem))
        write_json(folder / "pose.json", record)
    c = est.c2w[:3, 3]
    print(f"pose: camera at ({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}) m, {est.inliers} inliers, NCC {est.ncc:.3f}, "
          f"confidence {est.confidence:.2f}, {est.timings.get('total', 0):.1f} s", file=sys.stderr)
    print(out.path / "pose.json")
    return 0


if __name__ == "__main__":
    main()
