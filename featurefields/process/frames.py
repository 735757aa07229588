"""Frames for structure-from-motion: the images of a folder, or a video sampled at a chosen rate without its blurry
frames.

A hand-held video has motion blur in bursts; SIFT finds few, badly placed keypoints on a blurred frame and the
splat trained on it is soft. Within each sampling interval the sharpest frame is kept (variance of the Laplacian
of the grey image, measured at a common size so that resolution does not change the score), then kept frames much
blurrier than the sequence's median are dropped as well (a whole interval can be blurred).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SHARPNESS_SIZE = 480  # longest side (pixels) at which sharpness is measured


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def list_images(folder: Path) -> list[Path]:
    from ..data.load import natural_key

    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return files


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image at SHARPNESS_SIZE (higher = sharper)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    s = SHARPNESS_SIZE / max(h, w)
    if s < 1:
        grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass
class VideoFrames:
    names: list[str] = field(default_factory=list)  # written files, in time order
    video_fps: float = 0.0
    frames_read: int = 0
    candidates: int = 0  # one per sampling interval
    skipped_blurry: int = 0

    def report(self) -> dict:
        return {"video_fps": self.video_fps, "frames_read": self.frames_read, "intervals": self.candidates,
                "kept": len(self.names), "skipped_blurry": self.skipped_blurry}


def sample_video(path: Path, out_dir: Path, *, fps: float = 2.0, max_frames: int = 300, blur_ratio: float = 0.4,
                 max_size: int | None = None, progress: bool = True) -> VideoFrames:
    """Write the sharpest frame of every 1/fps seconds (at most ``max_frames``, spread over the video) as JPEG
    into ``out_dir``, minus frames with less than ``blur_ratio`` times the median sharpness."""
    import cv2
    from tqdm import tqdm

    if not fps > 0:
        raise ConfigError(f"--fps must be positive, not {fps}")
    if not 0 <= blur_ratio < 1:
        raise ConfigError(f"--blur-ratio must be in [0, 1), not {blur_ratio}")
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            raise DataError(f"{path}: cannot decode the video (not a video, or a codec OpenCV lacks)")
        video_fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
        step = max(1.0, video_fps / fps)
        if total and total / step > max_frames:  # a long video: widen the intervals, still covering all of it
            step = total / max_frames
        out = VideoFrames(video_fps=video_fps)
        out_dir.mkdir(parents=True, exist_ok=True)
        # Each interval's best frame is written as soon as the interval ends (memory stays at one frame); the
        # blurry ones are deleted at the end, once the median is known.
        picks: list[tuple[float, str]] = []
        best: tuple[float, int, np.ndarray] | None = None
        bar = tqdm(total=total or None, desc="read video", unit="frame", disable=not progress, dynamic_ncols=True)
        i = 0
        while ok:
            if best is not None and math.floor(i / step) != math.floor(best[1] / step):
                picks.append(_write_frame(out_dir, best, max_size))
                best = None
            s = sharpness(frame)
            if best is None or s > best[0]:
                best = (s, i, frame)
            i += 1
            bar.update(1)
            ok, frame = cap.read()
        bar.close()
    finally:
        cap.release()
    if best is not None:
        picks.append(_write_frame(out_dir, best, max_size))
    out.frames_read, out.candidates = i, len(picks)
    median = float(np.median([p[0] for p in picks]))
    for s, name in picks:
        if s >= blur_ratio * median:
            out.names.append(name)
        else:
            (out_dir / name).unlink()
            out.skipped_blurry += 1
    return out


def _write_frame(out_dir: Path, pick: tuple[float, int, np.ndarray], max_size: int | None = None
                 ) -> tuple[float, str]:
    import cv2

    s, idx, img = pick
    name = f"frame_{idx:06d}.jpg"
    if not cv2.imwrite(str(out_dir / name), _fit(img, max_size), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise DataError(f"{out_dir}: cannot write frames")
    return s, name


def copy_images(files: list[Path], out_dir: Path, *, max_size: int | None = None,
                progress: bool = True) -> list[str]:
    """The input photos into the scene's images/ (re-encoded only when --max-size shrinks them)."""
    import shutil

    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for f in tqdm(files, desc="copy images", unit="img", disable=not progress, dynamic_ncols=True):
        target = out_dir / f.name
        if max_size is None:
            shutil.copyfile(f, target)
        else:
            import cv2

            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"{f}: corrupt or unreadable image")
            if not cv2.imwrite(str(target), _fit(img, max_size)):
                raise DataError(f"{target}: cannot write")
        names.append(f.name)
    return names


def _fit(img: np.ndarray, max_size: int | None) -> np.ndarray:
    import cv2

    if max_size is None or max(img.shape[:2]) <= max_size:
        return img
    s = max_size / max(img.shape[:2])
    return cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
