"""COLMAP scenes: models written by pycolmap from known cameras and points, read back exactly; every camera model's
undistortion held to COLMAP's own projection and to OpenCV; metric scale only on request; bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from featurefields.data import load_scene
from featurefields.data.colmap import import_pycolmap
from featurefields.data.undistort import COLMAP_MODELS, colmap_camera, undistort_maps
from featurefields.errors import ConfigError, DataError

from .helpers import COLMAP_PARAMS, make_colmap, png
from .test_nerfstudio import _blob_image, _centroids


@pytest.mark.parametrize("text", [False, True])
def test_colmap_model_read_back_exactly(tmp_path, text):
    root, c2w, pts, names, params = make_colmap(tmp_path / "s", n=6, text=text)
    s = load_scene(root)
    assert s.frame_names == [f"images/{n}" for n in names]
    assert np.allclose(s.cameras.c2w.numpy(), c2w, atol=1e-6)  # COLMAP's axes are OpenCV's: no flip
    fx, fy, cx, cy = params
    assert torch.allclose(s.cameras.K[0], torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), atol=1e-5)
    assert np.allclose(np.sort(s.points.numpy(), 0), np.sort(pts, 0), atol=1e-6)
    assert torch.allclose(s.point_colors[0], torch.tensor([200, 100, 50]) / 255.0)
    assert s.test_idx == [0] and s.train_idx == [1, 2, 3, 4, 5]
    assert s.frame_info == {"source": "colmap", "model": "sparse/0", "metric": False}
    assert any("no metric scale" in n for n in s.notes)
    # pointing at the model folder itself finds the scene around it
    assert load_scene(root / "sparse" / "0").frame_names == s.frame_names


def test_images_n_folder_follows_downscale(tmp_path):
    root, c2w, _, names, params = make_colmap(tmp_path / "s", n=3, w=40, h=30)
    for n in names:
        img = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(root / "images" / n))
        png(root / "images_2" / n, img[::2, ::2])
    s = load_scene(root, downscale=2)
    assert s.frame_names[0] == f"images_2/{names[0]}" and s.images.shape == (3, 15, 20, 3)
    fx, fy, cx, cy = params
    assert torch.allclose(s.cameras.K[0], torch.tensor([[fx / 2, 0, cx / 2], [0, fy / 2, cy / 2], [0, 0, 1]]))
    assert any("images_2" in n for n in s.notes)
    assert load_scene(root).images.shape == (3, 30, 40, 3)


# ---- undistortion, per camera model ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(COLMAP_PARAMS))
def test_undistortion_matches_colmap_and_opencv(model):
    """Our remap tables sample, for each pinhole pixel, the source pixel where COLMAP's own camera model projects
    that pixel's ray; OpenCV's inverse (undistortPoints) takes those source pixels back to the pinhole pixels."""
    import cv2

    pycolmap = import_pycolmap()
    w, h = 80, 60
    params = COLMAP_PARAMS[model](w, h)
    K, dist = colmap_camera(model, params, model)
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        assert dist is None
        return
    cam = pycolmap.Camera.create_from_model_name(1, model, float(params[0]), w, h)
    cam.params = params
    m1, m2 = undistort_maps(K, dist, (w, h))
    v, u = np.mgrid[5:h - 5:4, 5:w - 5:4]
    pin = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], 1)  # [M, 2] pinhole pixel centres
    src = np.stack([m1[v.ravel(), u.ravel()], m2[v.ravel(), u.ravel()]], 1) + 0.5  # [M, 2] OpenCV -> ours
    rays = np.concatenate([(pin - K[:2, 2]) / np.diag(K)[:2], np.ones((len(pin), 1))], 1)
    colmap_src = cam.img_from_cam(rays)
    assert np.abs(src - colmap_src).max() < 2e-3, np.abs(src - colmap_src).max()
    assert np.abs(src - pin).max() > 1.0  # the lens matters at this size
    Kcv = K.copy()
    Kcv[:2, 2] -= 0.5
    pts = (src - 0.5)[:, None, :].astype(np.float64)
    if dist.model == "OPENCV_FISHEYE":
        back = cv2.fisheye.undistortPoints(pts, Kcv, np.array(dist.coeffs), P=Kcv)[:, 0]
    else:
        back = cv2.undistortPoints(pts, Kcv, np.array(dist.coeffs), P=Kcv)[:, 0]
    assert np.abs(back + 0.5 - pin).max() < 1e-2


@pytest.mark.parametrize("model", ["SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE"])
def test_loaded_colmap_images_are_pinhole(tmp_path, model):
    """Blobs drawn where COLMAP's camera projects known rays land where K projects them after loading."""
    pycolmap = import_pycolmap()
    w, h = 96, 72
    root, _, _, names, params = make_colmap(tmp_path / "s", n=2, w=w, h=h, model=model)
    cam = pycolmap.Camera.create_from_model_name(1, model, float(params[0]), w, h)
    cam.params = params
    rays = np.array([[x, y, 1.0] for x in (-0.3, 0.0, 0.3) for y in (-0.25, 0.0, 0.25)])
    distorted = cam.img_from_cam(rays)
    png(root / "images" / names[0], np.repeat(_blob_image(w, h, distorted)[..., None], 3, 2))
    s = load_scene(root, eval_every=0)
    K = s.cameras.K[0].double().numpy()
    pinhole = rays[:, :2] * np.diag(K)[:2] + K[:2, 2]
    got = _centroids(s.images[0, :, :, 0].numpy(), pinhole)
    assert np.abs(got - pinhole).max() < 0.15


def test_undistorted_images_are_cached(tmp_path, monkeypatch):
    root, *_ = make_colmap(tmp_path / "s", n=2, model="OPENCV")
    cache = tmp_path / "cache"
    first = load_scene(root, undistort_cache=cache)
    entries = sorted(cache.rglob("*.png"))
    assert len(entries) == 2
    import featurefields.data.undistort as und

    monkeypatch.setattr(und, "undistort", lambda *a, **k: pytest.fail("a cached image was undistorted again"))
    again = load_scene(root, undistort_cache=cache)
    assert torch.equal(first.images, again.images)
    monkeypatch.undo()
    png(root / "images" / "frame_000.png", np.zeros((30, 40, 3), np.uint8))  # new content: a miss, not stale
    assert load_scene(root, undistort_cache=cache).images[0].max() == 0
    assert len(sorted(cache.rglob("*.png"))) == 3


# ---- metric scale, only on request -------------------------------------------------------------------------------

def _write_metric_depth(root, names, c2w, pts, scale, w, h):
    """mm depth maps holding each point's metric z at its pixel (the rest unknown)."""
    pycolmap = import_pycolmap()
    recon = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    cam = recon.camera(1)
    for i, n in enumerate(names):
        w2c = np.linalg.inv(c2w[i])
        pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
        uv = cam.img_from_cam(pc)
        d = np.zeros((h, w), np.uint16)
        d[np.floor(uv[:, 1]).astype(int), np.floor(uv[:, 0]).astype(int)] = np.round(pc[:, 2] / scale * 1000)
        png(root / "depth" / n, d)


def test_scale_from_depth_makes_the_frame_metric(tmp_path):
    scale = 0.25  # COLMAP units per metre
    w, h = 40, 30
    root, c2w, pts, names, _ = make_colmap(tmp_path / "s", n=6, w=w, h=h, scale=scale)
    _write_metric_depth(root, names, c2w, pts, scale, w, h)
    s = load_scene(root, scale_from_depth=root / "depth")
    assert s.frame_info["metric"] and abs(s.frame_info["scale"] * scale - 1) < 2e-3
    assert "median ratio" in s.frame_info["scale_from"]
    assert np.allclose(s.cameras.c2w[:, :3, 3].numpy(), c2w[:, :3, 3] / scale, atol=1e-2)
    assert np.allclose(s.cameras.c2w[:, :3, :3].numpy(), c2w[:, :3, :3], atol=1e-6)  # rotations untouched
    assert s.depths is not None and s.depths.max() > 0  # the depth maps come along (and feed the depth loss)
    with pytest.raises(DataError, match="no depth map for image frame_002.png"):
        (root / "depth" / "frame_002.png").unlink()
        load_scene(root, scale_from_depth=root / "depth")


def test_known_distance(tmp_path):
    root, c2w, *_ = make_colmap(tmp_path / "s", n=6, scale=0.5)
    s = load_scene(root, known_distance=["frame_000", "frame_003", "5.0"])  # opposite cameras, 5 m apart
    assert abs(s.frame_info["scale"] - 2.0) < 1e-6 and s.frame_info["metric"]
    assert np.allclose(s.cameras.c2w[:, :3, 3].numpy(), c2w[:, :3, 3] * 2, atol=1e-5)
    s = load_scene(root, known_distance=["0,0,0", "1,0,0", "2"])
    assert abs(s.frame_info["scale"] - 2.0) < 1e-9
    with pytest.raises(ConfigError, match="frame name"):
        load_scene(root, known_distance=["nope", "frame_003", "5"])
    with pytest.raises(ConfigError, match="positive"):
        load_scene(root, known_distance=["frame_000", "frame_003", "-1"])


def test_metric_frames_are_never_rescaled(tmp_path):
    from .helpers import make_nerfstudio

    ns, *_ = make_nerfstudio(tmp_path / "ns", n=3)
    with pytest.raises(ConfigError, match="metric already"):
        load_scene(ns, known_distance=["frame_000", "frame_001", "1"])
    with pytest.raises(ConfigError, match="metric already"):
        load_scene(ns, scale_from_depth=tmp_path)


# ---- bad input: one error line naming the culprit, exit code 2 ---------------------------------------------------

def _train_error(capsys, *argv) -> str:
    from featurefields.cli.train import main

    with pytest.raises(SystemExit) as e:
        main([*map(str, argv), "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_colmap_inputs(tmp_path, capsys):
    root, _, _, names, _ = make_colmap(tmp_path / "s", n=4, text=True)
    out = tmp_path / "out"
    # missing sparse/
    bare = tmp_path / "bare"
    shutil.copytree(root / "images", bare / "images")
    assert "no sparse/ folder" in _train_error(capsys, bare, "--out", out)
    (bare / "sparse").mkdir()
    assert "holds no COLMAP model" in _train_error(capsys, bare, "--out", out)
    # images folder not matching the model: a missing image, then images of another size
    (root / "images" / names[2]).rename(tmp_path / "aside.png")
    msg = _train_error(capsys, root, "--out", out)
    assert "does not match the COLMAP model" in msg and names[2] in msg
    png(root / "images" / names[2], np.zeros((10, 12, 3), np.uint8))
    msg = _train_error(capsys, root, "--out", out)
    assert "12x10" in msg and "does not match the model" in msg
    (tmp_path / "aside.png").replace(root / "images" / names[2])
    # unknown camera model (not COLMAP's), and a COLMAP model we cannot undistort
    cams = root / "sparse" / "0" / "cameras.txt"
    good = cams.read_text()
    cams.write_text(good.replace(" PINHOLE ", " FOOBAR "))
    assert "unknown camera model 'FOOBAR'" in _train_error(capsys, root, "--out", out)
    line = [ln for ln in good.splitlines() if ln and not ln.startswith("#")][0].split()
    cams.write_text(good.replace(" ".join(line), " ".join(line[:4] + ["36", "20.3", "14.8", "0.1", "0.1"])
                                 ).replace(" PINHOLE ", " RADIAL_FISHEYE "))
    assert "RADIAL_FISHEYE is not supported" in _train_error(capsys, root, "--out", out)
    assert not out.exists()


def test_supported_models_listed():
    assert set(COLMAP_PARAMS) <= set(COLMAP_MODELS)
    with pytest.raises(DataError, match="takes 4 parameters"):
        colmap_camera("PINHOLE", [1, 2, 3], "cam")

