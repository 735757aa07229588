"""COLMAP scenes: a sparse model (``sparse/0/`` or ``sparse/``, binary or text) beside ``images/`` or ``images_N/``.

Read with pycolmap (COLMAP's own reader, so every file version COLMAP writes is understood). Poses are COLMAP's
``cam_from_world`` inverted: camera-to-world in OpenCV axes already, no flip. COLMAP's frame has no metric scale,
so it is kept exactly as given and the scene says so (``SceneData.frame_info``); ``scale_from_depth`` (metric depth
maps of the same images) or a known distance make it metric, explicitly and on the record (see :mod:`.scale`).
Distorted cameras are undistorted (:mod:`.undistort`); the sparse points initialise the Gaussians.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import one_reason
from .load import FrameSpec, LoadOptions, image_size, holdout_split, load_frames, natural_key
from .scene import SceneData
from .undistort import COLMAP_MODELS, colmap_camera
from .validate import check_nonempty_dir, check_pose, resolve_inside

MODEL_FILES = ("cameras", "images", "points3D")
NON_METRIC = ("COLMAP's frame has no metric scale (distances are in arbitrary units); pass --scale-from-depth DIR "
              "or --known-distance to make it metric")


def import_pycolmap():
    """pycolmap, imported after PIL's and OpenCV's codecs.

    pycolmap's extension exports its own zlib symbols; when it is loaded first, PNG encoders loaded later (PIL,
    OpenCV) free zlib state with the wrong allocator and the process aborts (pycolmap 4.2.1, seen on every PNG
    write). Loading the image libraries first binds them to their own zlib. Every import of pycolmap in
    featurefields goes through here.
    """
    import cv2  # noqa: F401
    import PIL.Image  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401

    try:
        import pycolmap
    except ImportError as e:  # pragma: no cover - a dependency, but say how to fix a broken install
        raise DataError(f"pycolmap is needed for COLMAP scenes and ff-process ({e}); pip install pycolmap") from None
    return pycolmap


def has_model_files(d: Path) -> bool:
    return all((d / f"{n}.bin").is_file() for n in MODEL_FILES) or all((d / f"{n}.txt").is_file() for n in MODEL_FILES)


def find_model(root: Path, *, required: bool = True) -> Path | None:
    """``sparse/0`` (or the lowest-numbered model), else ``sparse/`` itself."""
    sparse = root / "sparse"
    if not sparse.is_dir():
        if required:
            raise DataError(f"{root}: no sparse/ folder, so no COLMAP model (cameras, images, points3D); make one "
                            f"with `ff-process {root / 'images'} --out {root}`")
        return None
    subs = sorted((d for d in sparse.iterdir() if d.is_dir() and d.name.isdigit() and has_model_files(d)),
                  key=lambda d: int(d.name))
    if subs:
        return subs[0]
    if has_model_files(sparse):
        return sparse
    if required:
        raise DataError(f"{sparse}: holds no COLMAP model (cameras, images and points3D as .bin or .txt, in "
                        "sparse/0/ or sparse/)")
    return None


def image_dirs(root: Path) -> dict[int, Path]:
    """{downscale factor: folder}: ``images/`` is 1, ``images_N/`` is N."""
    out = {}
    for d in root.iterdir():
        m = re.fullmatch(r"images(?:_(\d+))?", d.name)
        if d.is_dir() and m:
            out[int(m.group(1) or 1)] = d
    return out


def read_model(model: Path):
    """A pycolmap Reconstruction, or one DataError line naming the file and what is wrong with it."""
    pycolmap = import_pycolmap()
    _check_text_models(model, pycolmap)
    try:
        return pycolmap.Reconstruction(str(model))
    except (ValueError, RuntimeError) as e:
        raise DataError(f"{model}: not a readable COLMAP model ({one_reason(e)})") from None


def _check_text_models(model: Path, pycolmap) -> None:
    """A text cameras.txt naming a model COLMAP does not know fails deep in the reader; name the camera here."""
    path = model / "cameras.txt"
    if (model / "cameras.bin").is_file() or not path.is_file():
        return
    known = set(pycolmap.CameraModelId.__members__)
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        toks = line.split()
        if toks and not toks[0].startswith("#") and len(toks) >= 2 and toks[1] not in known:
            raise DataError(f"{path} line {n}: camera {toks[0]} has unknown camera model {toks[1]!r} (supported: "
                            f"{', '.join(COLMAP_MODELS)})")


def load_colmap(path: str | os.PathLike, opts: LoadOptions, *, scale_from_depth: str | os.PathLike | None = None,
                depth_scale: float = 1000.0) -> SceneData:
    """``scale_from_depth``: a folder of metric depth maps named like the images (``depth_scale`` raw units per
    metre); they also become the scene's depth maps (and so feed the depth loss)."""
    root = check_nonempty_dir(path)
    if has_model_files(root):  # pointed at the model folder itself (sparse/0 or sparse)
        model, root = root, root.parent.parent if root.parent.name == "sparse" else root.parent
    else:
        model = find_model(root)
    recon = read_model(model)
    dirs = image_dirs(root)
    if not dirs:
        raise DataError(f"{root}: a COLMAP model but no images/ (or images_N/) folder beside sparse/")
    factor, img_dir = _pick_image_dir(dirs, opts)
    notes: list[str] = []
    if factor > 1:
        notes.append(f"using {img_dir.name}/ (1/{factor} resolution)")
        opts = LoadOptions(max(1.0, opts.downscale / factor), opts.max_size, opts.eval_every, opts.background,
                           opts.with_extras, opts.undistort_cache)

    images = sorted((im for im in recon.images.values()), key=lambda im: natural_key(im.name))
    posed = [im for im in images if im.has_pose]
    if not posed:
        raise DataError(f"{model}: no image in the model has a pose (nothing was registered)")
    if len(posed) < len(images):
        notes.append(f"{len(images) - len(posed)} of {len(images)} images in the model have no pose; skipped")
    files = {im.name: resolve_inside(img_dir, im.name, f"{model} image name", opts.allow_outside_root)
             for im in posed}  # names from the model stay inside the images folder (issue 14)
    missing = [im.name for im in posed if not files[im.name].is_file()]
    if missing:
        raise DataError(f"{img_dir} does not match the COLMAP model {model}: {len(missing)} of {len(posed)} posed "
                        f"images are missing from it (e.g. {missing[0]!r})")
    listed = {im.name for im in images}
    extra = [p for p in img_dir.rglob("*") if p.is_file() and p.relative_to(img_dir).as_posix() not in listed
             and p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if extra:
        notes.append(f"{len(extra)} images in {img_dir.name}/ are not in the model (not registered); not loaded")

    specs = []
    for im in posed:
        cam = recon.camera(im.camera_id)
        where = f"{model} camera {im.camera_id} (image {im.name})"
        K, dist = colmap_camera(cam.model.name, cam.params, where)
        file = files[im.name]
        size = image_size(file)
        K = _fit_K(K, (cam.width, cam.height), size, file, factor, model)
        c2w = check_pose(np.linalg.inv(_homogeneous(im.cam_from_world().matrix())), f"{model} image {im.name}")
        specs.append(FrameSpec(name=f"{img_dir.name}/{im.name}", image=file, c2w=c2w, K=K, size=size, dist=dist,
                               extras_from=f"{model.relative_to(root)}"))

    frame_info = {"source": "colmap", "model": str(model.relative_to(root)), "metric": False}
    scale = None
    if scale_from_depth is not None:
        from .scale import scale_from_depth_maps

        scale, how, depth_files = scale_from_depth_maps(recon, posed, Path(scale_from_depth), depth_scale)
        for s, f in zip(specs, depth_files):
            s.depth, s.depth_scale = f, 1.0 / depth_scale
        frame_info.update(metric=True, scale=scale, scale_from=how)
        notes.append(f"metric frame: COLMAP's frame scaled by {scale:.6g} ({how})")
    else:
        notes.append(NON_METRIC)
    if scale is not None:
        for s in specs:
            s.c2w = s.c2w.copy()
            s.c2w[:3, 3] *= scale

    train_idx, test_idx = holdout_split(len(specs), opts, str(root))
    loaded = load_frames(specs, opts)
    points = colors = None
    if opts.with_extras and recon.num_points3D():
        pts = recon.points3D.values()
        xyz = np.array([p.xyz for p in pts], dtype=np.float64) * (scale or 1.0)
        rgb = np.array([p.color for p in pts], dtype=np.float64) / 255.0
        points, colors = torch.from_numpy(xyz).float(), torch.from_numpy(rgb).float()
    scene = loaded.to_scene(root, specs, train_idx, test_idx, notes, points=points, point_colors=colors)
    scene.frame_info = frame_info
    return scene


def _pick_image_dir(dirs: dict[int, Path], opts: LoadOptions) -> tuple[int, Path]:
    """``images_N`` when the asked-for downscale is N (or more), so large photos are never decoded in full; else
    ``images/`` (or the sharpest folder there is)."""
    usable = [f for f in dirs if f <= opts.downscale + 1e-9]
    if usable:
        f = max(usable)
        return f, dirs[f]
    f = min(dirs)
    return f, dirs[f]


def _fit_K(K: np.ndarray, cam_size: tuple[int, int], size: tuple[int, int], file: Path, factor: int,
           model: Path) -> np.ndarray:
    """K of the model's camera for the image as stored: ``images_N`` holds the same views 1/N as large."""
    if tuple(size) == tuple(cam_size):
        return K
    sx, sy = size[0] / cam_size[0], size[1] / cam_size[1]
    # images_N are rounded to whole pixels: allow one pixel either way, and the same factor on both axes.
    plausible = factor > 1 and all(abs(c / factor - s) <= 1.0 for c, s in zip(cam_size, size))
    if not plausible:
        raise DataError(f"{file}: {size[0]}x{size[1]} pixels, but its camera in the COLMAP model {model} is "
                        f"{cam_size[0]}x{cam_size[1]}: the images folder does not match the model")
    out = K.copy()
    out[0] *= sx
    out[1] *= sy
    out[2] = [0.0, 0.0, 1.0]
    return out


def _homogeneous(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.vstack([m, [0.0, 0.0, 0.0, 1.0]]) if m.shape == (3, 4) else m
