"""ff-process's work: input (photos or a video) -> frames -> COLMAP model -> a scene folder every loader reads.

The scene folder holds ``images/``, the COLMAP model in ``sparse/0/`` (binary), a nerfstudio ``transforms.json``
of the same cameras (OpenGL axes, COLMAP's world frame untouched: no recentring, rescaling or axis swap, so both
files describe identical poses), the sparse points as ``sparse_pc.ply`` and ``process.json`` (what was done and
how well it went). It is built in a temporary folder beside ``--out`` and renamed into place only when
everything succeeded, so a failed run never leaves a half-made scene.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data.cameras import GL_TO_CV
from ..data.undistort import colmap_camera
from ..errors import ConfigError, DataError
from ..guard import check_writable_folder
from ..io import clean_stale_temporaries, temp_dir, write_json
from .frames import copy_images, is_video, list_images, sample_video
from .sfm import SfmOptions, SfmResult, run_sfm

MIN_REGISTERED_FRACTION = 0.5


def process(input_path: str | Path, out: str | Path, *, sfm: SfmOptions | None = None, fps: float = 2.0,
            max_frames: int = 300, blur_ratio: float = 0.4, max_size: int | None = None,
            overwrite: bool = False) -> dict:
    """Pose ``input_path`` (a folder of images or a video file) into the scene folder ``out``; returns the
    report also written to ``out/process.json``."""
    sfm = sfm or SfmOptions()
    src, out = Path(input_path), Path(out)
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise ConfigError(f"--out {out} must not hold the input {src} (choose a new folder)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    video = src.is_file()
    if video and not is_video(src):
        raise DataError(f"{src}: not a folder of images or a video file (.mp4, .mov, .avi, ...)")
    files = None if video else list_images(src)
    check_writable_folder(out, "--out")  # a file, a read-only folder, /proc: refused before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built under the shared temporary-name grammar (featurefields.io), so the folder a killed run leaves behind is
    # removed by the next run here, and one of a live run is left alone.
    clean_stale_temporaries(out.parent, depth=0, prefix=f".{out.name}.")
    tmp = temp_dir(out.parent, out.name)
    t0 = time.perf_counter()
    try:
        report: dict = {"input": str(src.resolve()), "kind": "video" if video else "images"}
        images = tmp / "images"
        if video:
            frames = sample_video(src, images, fps=fps, max_frames=max_frames, blur_ratio=blur_ratio,
                                  max_size=max_size, progress=sfm.progress)
            names = frames.names
            report["video"] = frames.report()
            print(f"video: {frames.frames_read} frames at {frames.video_fps:g} fps -> {len(names)} kept "
                  f"({frames.skipped_blurry} blurry skipped)")
        else:
            names = copy_images(files, images, max_size=max_size, progress=sfm.progress)
        result = run_sfm(images, names, tmp / ".work", sfm, video=video)
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        need = int(np.ceil(MIN_REGISTERED_FRACTION * result.num_images))
        if result.registered < need:
            raise DataError(f"{src}: only {result.registered} of {result.num_images} images registered (need at "
                            f"least half); more overlap between views, more texture or sharper images help")
        report.update(write_scene(tmp, result))
        report["options"] = {**asdict(sfm), "fps": fps, "max_frames": max_frames, "blur_ratio": blur_ratio,
                             "max_size": max_size}
        report["seconds"] = {**{k: round(v, 1) for k, v in result.seconds.items()},
                             "total": round(time.perf_counter() - t0, 1)}
        write_json(tmp / "process.json", report)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def write_scene(root: Path, result: SfmResult) -> dict:
    """sparse/0, transforms.json and sparse_pc.ply for the model; the report's numbers."""
    recon = result.reconstruction
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    recon.write_binary(str(model))
    recon.export_PLY(str(root / "sparse_pc.ply"))
    cams = {cid: _nerfstudio_camera(cam) for cid, cam in recon.cameras.items()}
    frames = []
    flip = GL_TO_CV.double().numpy()  # its own inverse: c2w_gl = c2w_cv @ flip
    for im in sorted(recon.images.values(), key=lambda im: im.name):
        if not im.has_pose:
            continue
        w2c = np.vstack([np.asarray(im.cam_from_world().matrix(), dtype=np.float64), [0.0, 0.0, 0.0, 1.0]])
        frame = {"file_path": f"images/{im.name}", "transform_matrix": (np.linalg.inv(w2c) @ flip).tolist(),
                 "colmap_im_id": int(im.image_id)}
        if len(cams) > 1:
            frame.update(cams[im.camera_id])
        frames.append(frame)
    meta = dict(next(iter(cams.values()))) if len(cams) == 1 else {}
    meta.update(frames=frames, ply_file_path="sparse_pc.ply", metric_scale=False,
                world_frame="COLMAP's, as reconstructed: no metric scale (see ff-train --scale-from-depth)")
    write_json(root / "transforms.json", meta)
    cam = next(iter(recon.cameras.values()))
    return {"images": result.num_images, "registered": result.registered,
            "mean_reprojection_error_px": round(result.mean_reprojection_error, 4),
            "points3D": int(recon.num_points3D()), "matcher": result.matcher,
            "feature_upsample": result.upsample,
            "camera": {"model": cam.model.name, "width": int(cam.width), "height": int(cam.height),
                       "params": [float(v) for v in cam.params]},
            "metric": False}


def _nerfstudio_camera(cam) -> dict:
    """nerfstudio's intrinsics keys for a COLMAP camera (same equations: see featurefields.data.undistort)."""
    K, dist = colmap_camera(cam.model.name, cam.params, f"camera {cam.camera_id}")
    out = {"w": int(cam.width), "h": int(cam.height), "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]),
           "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    if dist is None:
        out["camera_model"] = "PINHOLE" if cam.model.name.endswith("PINHOLE") else "OPENCV"
    elif dist.model == "OPENCV_FISHEYE":
        out.update(camera_model="OPENCV_FISHEYE", **dict(zip(("k1", "k2", "k3", "k4"), dist.coeffs)))
    else:
        k1, k2, p1, p2 = dist.coeffs[:4]
        out.update(camera_model="OPENCV", k1=k1, k2=k2, p1=p1, p2=p2)
    return out


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished scene at ``out``; an existing one (--overwrite) is removed only after that worked."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
