"""ff-process end to end on real pixels: frames of the bundled scene posed by COLMAP from the images alone, checked
against the scene's true poses after a similarity alignment; and the failures a user meets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurefields.data import load_scene

from .test_frames import write_video

TABLETOP = Path(__file__).resolve().parents[2] / "scenes" / "tabletop"


def aligned_errors(c2w: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    """(centre RMS after Umeyama, mean rotation error in degrees, scale) -- COLMAP's Sim3 estimator."""
    from featurefields.data.colmap import import_pycolmap

    sim = import_pycolmap().estimate_sim3d(c2w[:, :3, 3], true[:, :3, 3])
    M = np.asarray(sim.matrix())
    centres = c2w[:, :3, 3] @ M[:3, :3].T + M[:3, 3]
    R = M[:3, :3] / sim.scale
    rel = np.einsum("nji,njk->nik", true[:, :3, :3], R @ c2w[:, :3, :3])
    rot = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return float(np.sqrt(((centres - true[:, :3, 3]) ** 2).sum(1).mean())), float(rot.mean()), float(sim.scale)


def run_process(*argv, capsys):
    from featurefields.cli.process import main

    with pytest.raises(SystemExit) as e:
        main([*map(str, argv), "--no-progress"])
    return e.value.code, capsys.readouterr()


@pytest.mark.slow
@pytest.mark.xfail(reason="issue 16, open: COLMAP's rotation error on these 8 views varies from run to run "
                          "(1.01, 1.25, 1.52 degrees measured) around the 1 degree bound", strict=False)
def test_process_photos(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"frame_{i:05d}.png" for i in range(0, 8)]
    for n in names:
        shutil.copy(TABLETOP / "images" / n, photos / n)
    code, io = run_process(photos, "--out", tmp_path / "scene", "--camera-model", "SIMPLE_PINHOLE", capsys=capsys)
    assert code == 0, io.err
    assert "registered 8 of 8 images" in io.out
    report = json.loads((tmp_path / "scene" / "process.json").read_text())
    assert report["registered"] == 8 and report["mean_reprojection_error_px"] < 1.0
    assert report["matcher"] == "exhaustive" and report["feature_upsample"] == 3 and report["metric"] is False
    scene = load_scene(tmp_path / "scene", eval_every=0)
    assert scene.frame_info["source"] == "colmap" and not scene.frame_info["metric"]
    true = load_scene(TABLETOP, eval_every=0, with_extras=False)
    t = true.cameras.c2w.double().numpy()[[true.frame_names.index(f"images/{n}") for n in names]]
    ate, rot, _ = aligned_errors(scene.cameras.c2w.double().numpy(), t)
    assert ate < 0.02 and rot < 1.0, (ate, rot)
    # transforms.json describes exactly the same cameras, in the same frame
    ns = load_scene(tmp_path / "scene" / "transforms.json", eval_every=0)
    assert np.allclose(ns.cameras.c2w.numpy(), scene.cameras.c2w.numpy(), atol=1e-5)
    assert np.allclose(ns.cameras.K.numpy(), scene.cameras.K.numpy(), atol=1e-4)
    assert ns.points is not None and len(ns.points) == report["points3D"]
    assert ns.frame_info == {"source": "nerfstudio", "metric": False}


@pytest.mark.slow
def test_process_video(tmp_path, capsys):
    import cv2

    frames = [cv2.imread(str(TABLETOP / "images" / f"frame_{i:05d}.png")) for i in range(8)]
    video = write_video(tmp_path / "orbit.avi", [f for f in frames for _ in range(2)], fps=4.0)  # 2 copies each
    code, io = run_process(video, "--out", tmp_path / "scene", "--fps", "2", "--camera-model", "SIMPLE_PINHOLE",
                           capsys=capsys)
    assert code == 0, io.err
    report = json.loads((tmp_path / "scene" / "process.json").read_text())
    assert report["video"]["frames_read"] == 16 and report["video"]["kept"] == 8
    assert report["matcher"] == "sequential" and report["registered"] == 8


def test_too_few_registered(tmp_path, capsys):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise"
    noise.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(noise / f"{i}.png")
    code, io = run_process(noise, "--out", tmp_path / "scene", "--camera-model", "SIMPLE_PINHOLE", capsys=capsys)
    err = io.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), io.err
    assert "register" in err[0]
    assert not (tmp_path / "scene").exists() and not list(tmp_path.glob(".scene.*"))
    code, io = run_process(noise, "--out", tmp_path, "--overwrite", capsys=capsys)  # would delete the input
    assert code == 2 and "must not hold the input" in io.err and len(list(noise.iterdir())) == 4
