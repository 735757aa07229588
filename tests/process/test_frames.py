"""Video input: frames sampled at a chosen rate, the sharpest of each interval, blurry stretches skipped."""
from __future__ import annotations

import numpy as np
import pytest

from featurefields.errors import DataError
from featurefields.process.frames import sample_video, sharpness


def write_video(path, frames, fps=10.0):
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def textured(rng, w=96, h=72, shift=0):
    base = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    return np.roll(base, shift, axis=1)


def test_sharpness_ranks_blur():
    import cv2

    img = textured(np.random.default_rng(0))
    assert sharpness(img) > 5 * sharpness(cv2.GaussianBlur(img, (0, 0), 3))


def test_video_sampling_skips_blurry_frames(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    base = textured(rng)
    frames = []
    for i in range(40):
        f = np.roll(base, i, axis=1)
        if i % 4 == 1:  # a blurred frame inside each interval: never the sharpest
            f = cv2.GaussianBlur(f, (0, 0), 2)
        if 20 <= i < 24:  # a whole interval blurred: dropped by the median rule
            f = cv2.GaussianBlur(f, (0, 0), 4)
        frames.append(f)
    video = write_video(tmp_path / "walk.avi", frames, fps=20.0)
    out = sample_video(video, tmp_path / "frames", fps=5.0, progress=False)  # intervals of 4 frames
    assert out.frames_read == 40 and out.candidates == 10
    assert out.skipped_blurry == 1 and len(out.names) == 9
    kept = [int(n[6:12]) for n in out.names]
    assert all(k % 4 != 1 and not 20 <= k < 24 for k in kept), kept
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == out.names  # the skipped one is not left
    few = sample_video(video, tmp_path / "few", fps=20.0, max_frames=5, blur_ratio=0.0, progress=False)
    assert few.candidates == 5 and len(few.names) == 5  # spread over the whole video


def test_undecodable_video(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DataError, match="cannot decode the video"):
        sample_video(bad, tmp_path / "f", progress=False)
    from featurefields.cli.process import main

    with pytest.raises(SystemExit) as e:
        main([str(bad), "--out", str(tmp_path / "scene"), "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "broken.mp4" in err[0]
    assert not (tmp_path / "scene").exists() and not list(tmp_path.glob(".scene.*"))
