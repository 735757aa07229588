"""ff-process: pose a folder of photos or a video with COLMAP (pycolmap, on the CPU) into a scene ff-train reads."""
from __future__ import annotations

import argparse

from ..errors import cli_entry
from ..validate import MAX_IMAGE_SIDE, arg, integer, number
from . import ArgParser

EXAMPLES = """\
examples:
  ff-process my_photos/ --out scenes/mine
        a folder of photos: SIFT features, exhaustive matching, incremental mapping; then
        ff-train scenes/mine --out outputs/mine
  ff-process walkaround.mp4 --out scenes/walk --fps 3
        a video: the sharpest frame of every 1/3 s (blurry ones skipped), sequential matching
  ff-process scenes/tabletop/images --out /tmp/tt_sfm
        the bundled scene's 48 images, posed from the pixels alone
  ff-process photos/ --out scenes/p --camera-model OPENCV --max-size 1600
        a stronger lens model, photos shrunk to 1600 px first

what it writes under --out: images/ (the frames used), sparse/0/ (the COLMAP model, binary), transforms.json (the
same cameras for nerfstudio), sparse_pc.ply (the sparse points) and process.json (images registered, mean
reprojection error, options, timings). It reports how many images were registered and fails, writing nothing,
when fewer than half are.

COLMAP's frame has no metric scale: ff-train keeps it as given and says so. To make it metric (for measurements and
the robot tools), train with --scale-from-depth DIR (metric depth maps of the same images) or
--known-distance A B METRES.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..process.sfm import CAMERA_MODELS, MATCHERS, SfmOptions

    d = SfmOptions()
    p = ArgParser(prog="ff-process", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a folder of images, or a video file")
    p.add_argument("--out", required=True, help="scene folder to create")
    p.add_argument("--fps", type=arg(number, lo=0, lo_open=True, hi=1000), default=2.0,
                   help="video: frames kept per second of video (default %(default)s)")
    p.add_argument("--max-frames", type=arg(integer, lo=2, hi=100_000), default=300,
                   help="video: at most this many frames, spread over the whole video (default %(default)s)")
    p.add_argument("--blur-ratio", type=arg(number, lo=0, hi=1), default=0.4,
                   help="video: drop frames whose sharpness (variance of the Laplacian) is below this fraction "
                        "of the median; 0 keeps all (default %(default)s)")
    p.add_argument("--max-size", type=arg(integer, lo=16, hi=MAX_IMAGE_SIDE), default=None,
                   help="shrink images (or frames) so the longest side is at most this many pixels")
    p.add_argument("--matcher", choices=list(MATCHERS), default=d.matcher,
                   help="auto: sequential for a video, exhaustive for up to 300 photos (default %(default)s)")
    p.add_argument("--camera-model", choices=list(CAMERA_MODELS), default=d.camera_model,
                   help="COLMAP camera model to estimate (default %(default)s)")
    p.add_argument("--camera-per-image", action="store_true",
                   help="one camera per image (photos from different cameras or zoom settings); default: one shared")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (only once all succeeded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..process.scene import process
    from ..process.sfm import SfmOptions

    sfm = SfmOptions(matcher=args.matcher, camera_model=args.camera_model, single_camera=not args.camera_per_image,
                     seed=args.seed, progress=not args.no_progress)
    report = process(args.input, args.out, sfm=sfm, fps=args.fps, max_frames=args.max_frames,
                     blur_ratio=args.blur_ratio, max_size=args.max_size, overwrite=args.overwrite)
    cam = report["camera"]
    print(f"registered {report['registered']} of {report['images']} images, mean reprojection error "
          f"{report['mean_reprojection_error_px']:.3f} px, {report['points3D']} points; camera {cam['model']} "
          f"{cam['width']}x{cam['height']} f={cam['params'][0]:.1f}")
    print(f"scene in {args.out}/ (images/, sparse/0/, transforms.json); next: ff-train {args.out}")
    print("note: COLMAP's frame has no metric scale; ff-train --scale-from-depth DIR or --known-distance makes it "
          "metric")
    return 0


if __name__ == "__main__":
    main()
