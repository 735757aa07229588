"""ff-train: distil a 2D teacher's features (and the colours) of posed images into a 3D Gaussian feature field."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, cli_entry
from ..render.backends import BACKENDS
from ..teachers import available_teachers
from ..validate import arg, integer, number
from . import ArgParser
from ..train.config import DEFAULT_DEPTH_WEIGHT, TrainConfig

EXAMPLES = """\
examples:
  ff-train scenes/tabletop --out outputs/tabletop
        the bundled demo: colour + the 'labels' teacher (semantic masks -> text embeddings)
  ff-train ../shared/data/nerf_synthetic_chair --max-size 100 --out outputs/chair
        a NeRF-synthetic Blender scene at 100x100, colour only
  ff-train scenes/tabletop --teacher labels --teacher sift --out outputs/tabletop2
        two teachers in one field: a shared latent with one decoder head each
  ff-train scenes/tabletop --teacher clip --teacher-checkpoint clip=~/models/open_clip_vit_b16.bin
        a foundation-model teacher from local weights (nothing is downloaded)
  ff-train scenes/tabletop --out outputs/tabletop --resume --iterations 6000
        continue a run from its checkpoint
  ff-train scenes/tabletop --view
        watch it train in a browser at http://127.0.0.1:8080 (--view 8090 for another port): colour, depth,
        features and text queries on snapshots taken between steps; a pause button; edits once it is done
  ff-train ../shared/data/open3d_livingroom1_clean_micro --max-size 320 --holdout last:30 --out outputs/lr_last30
        hold out the sequence's last 30 frames (a region the training never saw) instead of every 8th
  ff-process my_photos/ --out scenes/mine && ff-train scenes/mine --optimize-cameras
        your own capture: pose it with COLMAP, then train while refining the poses
  ff-train scenes/mine --scale-from-depth my_depth/ --depth-scale 1000
        a COLMAP scene made metric by depth maps of the same images (millimetre PNGs)
  ff-train path/to/rgbd_dataset_freiburg1_desk --intrinsics 517.3,516.5,318.6,255.3 --stride 5
        a TUM RGB-D sequence with its sensor's calibration

teachers: labels (semantic masks -> sentence embeddings, 384-D, offline), sift (dense SIFT, 128-D, offline),
segments (graph-based segments -> grouping loss, offline), clip (open_clip, MaskCLIP or multi-scale crops),
sam (Segment Anything image embeddings, 256-D), dino (DINOv2 patch features). Weights for clip/sam/dino are looked
up in the standard caches (~/.cache/featurefields/<teacher>, torch hub, Hugging Face) or given with
--teacher-checkpoint NAME=PATH.

scene formats (detected automatically): COLMAP (sparse/0 + images/ or images_N/; make one from photos or a video
with ff-process), nerfstudio transforms.json, NeRF-synthetic Blender (transforms_{train,test}.json), RGB-D
sequences: Open3D/Redwood (colour + depth folders + trajectory.log), TUM RGB-D (rgb.txt, depth.txt,
groundtruth.txt), 7-Scenes (frame-*.pose.txt), ScanNet (color/ depth/ pose/ intrinsic/). Frames are kept as given:
metric for all but COLMAP, whose frame has no scale unless --scale-from-depth or --known-distance sets one.

outputs under --out: checkpoint.pt (resume / query), field.ply (3DGS-compatible, features as feat_* properties),
metrics.json (held-out PSNR, SSIM, feature cosine per teacher), previews/*.png (ground truth | render | depth |
teacher and rendered feature PCA), config.json, cache/ (teacher features, float16).
"""


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = ArgParser(
        prog="ff-train", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", help="scene folder (or a transforms.json)")
    p.add_argument("--out", help="output folder; everything the run writes goes here (default: outputs/<scene>)")
    p.add_argument("--iterations", type=int, default=d.iterations, help="optimisation steps (default %(default)s)")
    p.add_argument("--teacher", action="append", dest="teachers", metavar="NAME",
                   help=f"2D teacher to distil, one of {', '.join(available_teachers())}; repeat for several "
                        "(default: 'labels' if the scene has semantic masks, else colour only)")
    p.add_argument("--teacher-weight", action="append", default=[], metavar="NAME=W",
                   help="weight of a teacher's feature loss (default 1)")
    p.add_argument("--teacher-checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="local weights for a teacher (e.g. clip=~/models/ViT-B-16.pt); nothing is downloaded")
    p.add_argument("--teacher-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="a teacher setting, e.g. sift.size=4 or clip.mode=multiscale (numbers and true/false are "
                        "converted); see each teacher's docstring")
    p.add_argument("--teacher-device", help="device the teachers run on (default: cpu)")
    p.add_argument("--latent-dim", type=int, default=None,
                   help="per-Gaussian feature width, decoded per pixel to each teacher's width; 0 = full width "
                        "(default: 16 when a teacher is wider than 64, else full width)")
    p.add_argument("--decoder-hidden", type=int, default=d.decoder_hidden,
                   help="hidden units of each teacher's decoder head; 0 = linear (default %(default)s)")
    p.add_argument("--feature-view-degree", type=int, choices=[0, 1, 2, 3], default=None,
                   help="SH degree of view-dependent features, for teachers whose descriptors change with the "
                        "viewpoint (default: 2 when a teacher says so, e.g. sift; else 0)")
    p.add_argument("--feature-loss", choices=["cosine", "l1"], default=d.feature_loss)
    p.add_argument("--feature-samples", type=int, default=d.feature_samples,
                   help="teacher pixels per step in the feature loss; 0 = all (default %(default)s)")
    p.add_argument("--feature-balance", type=float, default=d.feature_balance,
                   help="share of those pixels spread evenly over the teacher's feature clusters, so small parts "
                        "(a mug's handle) are learned too; 0 = uniform (default %(default)s)")
    p.add_argument("--depth-weight", type=float, default=None,
                   help="weight of a relative L1 loss to the scene's metric depth maps, when it has them (RGB-D "
                        f"sequences, generated scenes); 0 turns it off (default {DEFAULT_DEPTH_WEIGHT:g})")
    p.add_argument("--feature-moves-geometry", action="store_true",
                   help="let feature gradients move the Gaussians (default: only colour shapes geometry)")
    p.add_argument("--downscale", type=float, default=d.downscale, help="divide image resolution by this factor")
    p.add_argument("--max-size", type=int, default=None, help="cap the longest image side, in pixels")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="hold out every k-th frame for evaluation; 0 holds out none (default %(default)s)")
    p.add_argument("--holdout", metavar="SPLIT",
                   help="another held-out split instead of --eval-every: every:K, last:N or first:N (a contiguous "
                        "block of N frames, e.g. last:30 for views the training never came near)")
    p.add_argument("--stride", type=int, default=d.stride, help="RGB-D sequences: use every k-th frame")
    p.add_argument("--depth-scale", type=float, default=None,
                   help="raw depth units per metre, for RGB-D sequences and --scale-from-depth (default: the "
                        "layout's own: 5000 for TUM RGB-D, else 1000 = millimetres)")
    p.add_argument("--intrinsics", metavar="FX,FY,CX,CY|FILE",
                   help="RGB-D sequences: camera intrinsics in pixels (OpenCV convention), or a file (Open3D json, "
                        "camera-intrinsics.txt, ScanNet intrinsic_color.txt); default: the layout's own")
    p.add_argument("--scale-from-depth", metavar="DIR",
                   help="COLMAP scenes: make the (scale-free) frame metric from metric depth maps of the same "
                        "images, named like them (.png in --depth-scale units or .npy); they also feed the "
                        "depth loss. The factor is recorded in metrics.json and the checkpoint")
    p.add_argument("--known-distance", nargs=3, metavar=("A", "B", "METRES"),
                   help="COLMAP scenes: make the frame metric from one known distance; A and B are frame names "
                        "(their camera centres) or x,y,z points in COLMAP's frame")
    p.add_argument("--optimize-cameras", action="store_true",
                   help="refine every training pose with a learned SE(3) correction (from the rasteriser's pose "
                        "gradients); the corrected poses are saved with the checkpoint and used by every later tool")
    p.add_argument("--camera-warmup", type=arg(integer, lo=0), default=d.camera_warmup, metavar="STEPS",
                   help="--optimize-cameras: training steps before the poses start to move, while the Gaussians "
                        "settle on a rough scene (at most a tenth of --iterations; default %(default)s)")
    p.add_argument("--camera-regularizer", type=float, default=d.camera_regularizer,
                   help="--optimize-cameras: weight pulling corrections to zero (default %(default)s)")
    p.add_argument("--sh-degree", type=int, default=d.sh_degree, choices=[0, 1, 2, 3])
    p.add_argument("--init", choices=["auto", "depth", "points", "random"], default=d.init,
                   help="initial Gaussians: from depth maps, the scene's point file, or random (default: auto)")
    p.add_argument("--init-points", type=int, default=d.init_points, help="initial Gaussian count")
    p.add_argument("--background", default="white", help="white, black or r,g,b in [0,1] (behind RGBA images)")
    p.add_argument("--cache-dir", help="teacher feature cache (default: OUT/cache)")
    p.add_argument("--allow-outside-scene", action="store_true",
                   help="follow file paths in the scene's JSON that leave its folder ('../', absolute paths); "
                        "refused by default")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--backend", default=d.backend, choices=list(BACKENDS),
                   help="rasteriser: native (compiled kernels, CPU or CUDA), torch (plain PyTorch reference) or "
                        "gsplat (GPU); auto = native when built (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint period in steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--view", type=arg(integer, lo=0, hi=65535), nargs="?", const=8080, default=None, metavar="PORT",
                   help="serve a browser viewer of the training field on PORT (default 8080; see ff-view --help); "
                        "it keeps serving the final field after training until Ctrl-C")
    p.add_argument("--view-host", default="127.0.0.1", help="address the viewer listens on (default %(default)s)")
    return p


def parse_background(text: str) -> tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
    if text in named:
        return named[text]
    try:
        rgb = tuple(float(x) for x in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 1 for c in rgb):  # (NaN fails the comparison too)
        raise ConfigError(f"--background {text!r}: use white, black or three numbers in [0,1] like 0.5,0.5,0.5")
    return rgb  # type: ignore[return-value]


def _pairs(items: list[str], flag: str, form: str, convert) -> list[tuple[str, object]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not (sep and name and value):
                raise ValueError
            out.append((name.strip().lower(), convert(value)))
        except ValueError:
            raise ConfigError(f"{flag} {item!r}: expected {form}") from None
    return out


def _option_value(text: str):
    """'4' -> 4, '0.5' -> 0.5, 'true'/'false' -> bool, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    weights = dict(_pairs(args.teacher_weight, "--teacher-weight", "NAME=NUMBER", float))
    checkpoints = dict(_pairs(args.teacher_checkpoint, "--teacher-checkpoint", "NAME=PATH", str))
    options: dict[str, dict] = {}
    for key, value in _pairs(args.teacher_option, "--teacher-option", "NAME.KEY=VALUE", _option_value):
        name, dot, opt = key.partition(".")
        if not (dot and name and opt):
            raise ConfigError(f"--teacher-option {key}=...: expected NAME.KEY=VALUE, e.g. sift.size=4")
        options.setdefault(name, {})[opt] = value
    out = args.out or str(Path("outputs") / (Path(args.scene).resolve().name or "scene"))
    cfg = TrainConfig(scene=args.scene, out=out, iterations=args.iterations, teachers=args.teachers,
                      teacher_weights=weights, teacher_checkpoints=checkpoints, teacher_options=options,
                      teacher_device=args.teacher_device, latent_dim=args.latent_dim,
                      decoder_hidden=args.decoder_hidden, feature_view_degree=args.feature_view_degree,
                      feature_loss=args.feature_loss,
                      feature_samples=args.feature_samples, feature_balance=args.feature_balance,
                      feature_moves_geometry=args.feature_moves_geometry, depth_weight=args.depth_weight,
                      downscale=args.downscale,
                      max_size=args.max_size, eval_every=args.eval_every, holdout=args.holdout, stride=args.stride,
                      depth_scale=args.depth_scale, intrinsics=args.intrinsics,
                      scale_from_depth=args.scale_from_depth, known_distance=args.known_distance,
                      optimize_cameras=args.optimize_cameras, camera_regularizer=args.camera_regularizer,
                      camera_warmup=args.camera_warmup,
                      sh_degree=args.sh_degree, init=args.init,
                      init_points=args.init_points, background=parse_background(args.background),
                      cache_dir=args.cache_dir, device=args.device, backend=args.backend, seed=args.seed,
                      save_every=args.save_every, allow_outside_scene=args.allow_outside_scene,
                      progress=not args.no_progress)
    cfg.validate()  # every option checked before the scene is loaded
    cfg.density.refine_stop = min(cfg.density.refine_stop, int(0.6 * cfg.iterations))
    return cfg


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    from ..train.trainer import CHECKPOINT, Trainer

    if args.view is not None:  # a busy port fails now, not after loading the scene and its teachers
        from ..viewer import check_port

        check_port(args.view_host, args.view)
    trainer = Trainer(cfg, resume=args.resume)
    server = source = None
    if args.view is not None:
        from ..viewer.live import watch
        from .view import setup_logging

        setup_logging()
        server, source = watch(trainer, args.view_host, args.view)
        print(f"viewer: open {server.url} to watch the training", flush=True)
    try:
        metrics = trainer.train()
        keys = [k for k in metrics if k in ("psnr", "ssim") or k.startswith("feature_cosine/")]
        summary = ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)
        print(f"done: {metrics['num_gaussians']} Gaussians, {metrics['train_seconds']:.0f} s; held-out {summary}")
        print(f"outputs in {cfg.out}/ (checkpoint.pt, field.ply, metrics.json, previews/)")
        if server is not None:
            source.finish(trainer, Path(cfg.out) / CHECKPOINT)
            print(f"viewer: still serving the trained field at {server.url} (Ctrl-C stops)", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("viewer: stopped")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    main()
