"""Builders for tiny on-disk scenes in every supported format (8x6 images unless a test asks otherwise)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from featurefields.data.cameras import GL_TO_CV

FLIP = GL_TO_CV.double().numpy()


def png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path)
    return path


def random_image(rng: np.random.Generator, w: int = 8, h: int = 6, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def random_pose(rng: np.random.Generator) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation(rng)
    m[:3, 3] = rng.normal(size=3)
    return m


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def make_nerfstudio(root: Path, n: int = 10, w: int = 8, h: int = 6, seed: int = 0, *, depth: bool = False,
                    mask: bool = False, semantic: bool = False, instance: bool = False, extra: dict | None = None):
    """Returns (root, meta, images [n,h,w,3], poses_gl [n,4,4]); images/frame_{i:03d}.png etc."""
    rng = np.random.default_rng(seed)
    frames, images, poses = [], [], []
    for i in range(n):
        img = random_image(rng, w, h)
        png(root / "images" / f"frame_{i:03d}.png", img)
        pose = random_pose(rng)
        fr = {"file_path": f"images/frame_{i:03d}.png", "transform_matrix": pose.tolist()}
        if depth:
            d = rng.integers(500, 5000, (h, w)).astype(np.uint16)
            d[0, 0] = 0
            png(root / "depth" / f"frame_{i:03d}.png", d)
            fr["depth_file_path"] = f"depth/frame_{i:03d}.png"
        if mask:
            m = np.full((h, w), 255, np.uint8)
            m[:, : w // 2] = 0
            png(root / "masks" / f"frame_{i:03d}.png", m)
            fr["mask_path"] = f"masks/frame_{i:03d}.png"
        if semantic:
            s = (np.arange(w)[None, :] % 3 + np.zeros((h, 1), int)).astype(np.uint8)
            s[0, :] = 255
            png(root / "semantic" / f"frame_{i:03d}.png", s)
            fr["semantic_path"] = f"semantic/frame_{i:03d}.png"
        if instance:
            s = (np.arange(h)[:, None] * 1000 + np.zeros((1, w), int)).astype(np.uint16)
            s[:, 0] = 65535
            png(root / "instance" / f"frame_{i:03d}.png", s)
            fr["instance_path"] = f"instance/frame_{i:03d}.png"
        frames.append(fr)
        images.append(img)
        poses.append(pose)
    meta = {"camera_model": "PINHOLE", "fl_x": 10.0, "fl_y": 11.0, "cx": 4.2, "cy": 2.9, "w": w, "h": h,
            "frames": frames}
    if semantic:
        meta["semantic_labels"] = ["wall", "floor", "chair"]
    meta.update(extra or {})
    write_json(root / "transforms.json", meta)
    return root, meta, np.stack(images), np.stack(poses)


def look_at_gl(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def make_blender(root: Path, n_train: int = 3, n_test: int = 4, test_existing: int | None = 2, w: int = 8,
                 h: int = 6, seed: int = 0):
    """RGBA renders; the test json lists ``n_test`` frames of which only ``test_existing`` have images."""
    rng = np.random.default_rng(seed)
    angle = 0.7
    out = {}
    for split, n, existing in (("train", n_train, n_train), ("test", n_test, test_existing)):
        frames, imgs = [], []
        for i in range(n):
            a = 2 * math.pi * i / n
            pose = look_at_gl([4 * math.cos(a), 4 * math.sin(a), 1.5])
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.1, "transform_matrix": pose.tolist()})
            if existing is None or i < existing:
                img = random_image(rng, w, h, 4)
                img[0, 0, 3] = 0
                img[0, 1, 3] = 255
                png(root / split / f"r_{i}.png", img)
                png(root / split / f"r_{i}_depth_0000.png", np.zeros((h, w), np.uint8))
                imgs.append(img)
        write_json(root / f"transforms_{split}.json", {"camera_angle_x": angle, "frames": frames})
        out[split] = (frames, imgs)
    return root, angle, out


def make_rgbd(root: Path, n: int = 6, w: int = 8, h: int = 6, seed: int = 0, *, intrinsics: bool = True,
              log_in_subfolder: bool = False, color_dir: str = "color", ext: str = ".png"):
    """Returns (root, poses [n,4,4], depths_mm [n,h,w] uint16, K_open3d [3,3])."""
    rng = np.random.default_rng(seed)
    poses, depths = [], []
    for i in range(n):
        img = random_image(rng, w, h)
        png(root / color_dir / f"{i:05d}{ext}", img)
        d = rng.integers(400, 4000, (h, w)).astype(np.uint16)
        d[1, 1] = 0
        png(root / "depth" / f"{i:05d}.png", d)
        depths.append(d)
        poses.append(random_pose(rng))
    log = root / ("scene" if log_in_subfolder else "") / "trajectory.log"
    write_log(log, poses)
    K = np.array([[9.0, 0.0, 3.5], [0.0, 9.5, 2.5], [0.0, 0.0, 1.0]])
    if intrinsics:
        write_json(root / "camera_test.json", {"width": w, "height": h, "intrinsic_matrix": K.T.ravel().tolist()})
    return root, np.stack(poses), np.stack(depths), K


def write_log(path: Path, poses) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, p in enumerate(poses):
        lines.append(f"{i} {i} {i + 1}")
        lines += [" ".join(f"{v:.12f}" for v in row) for row in np.asarray(p)]
    path.write_text("\n".join(lines) + "\n")
    return path


# Camera parameters per COLMAP model for a w x h fixture (focal, principal point, then the model's distortion).
COLMAP_PARAMS = {
    "SIMPLE_PINHOLE": lambda w, h: [0.9 * w, w / 2 + 0.3, h / 2 - 0.2],
    "PINHOLE": lambda w, h: [0.9 * w, 0.95 * w, w / 2 + 0.3, h / 2 - 0.2],
    "SIMPLE_RADIAL": lambda w, h: [0.9 * w, w / 2 + 0.3, h / 2 - 0.2, -0.12],
    "RADIAL": lambda w, h: [0.9 * w, w / 2 + 0.3, h / 2 - 0.2, -0.12, 0.03],
    "OPENCV": lambda w, h: [0.9 * w, 0.95 * w, w / 2 + 0.3, h / 2 - 0.2, -0.15, 0.04, 0.003, -0.002],
    "OPENCV_FISHEYE": lambda w, h: [0.9 * w, 0.95 * w, w / 2 + 0.3, h / 2 - 0.2, 0.05, -0.02, 0.01, -0.004],
}


def make_colmap(root: Path, n: int = 6, w: int = 40, h: int = 30, *, model: str = "PINHOLE", params=None,
                text: bool = False, n_points: int = 60, seed: int = 0, image_dir: str = "images",
                scale: float = 1.0):
    """A COLMAP scene written with pycolmap: n cameras on a circle looking at random points near the origin, each
    point observed where the camera model projects it. ``scale`` multiplies the metric world (COLMAP units =
    metres * scale). Returns (root, c2w [n,4,4] in COLMAP units, points [P,3] in COLMAP units, names, params)."""
    from featurefields.data.colmap import import_pycolmap

    pycolmap = import_pycolmap()
    rng = np.random.default_rng(seed)
    params = COLMAP_PARAMS[model](w, h) if params is None else params
    recon = pycolmap.Reconstruction()
    cam = pycolmap.Camera.create_from_model_name(1, model, float(params[0]), w, h)
    cam.params = params
    recon.add_camera_with_trivial_rig(cam)
    pts = rng.uniform(-0.4, 0.4, (n_points, 3)) * scale
    c2ws, names = [], []
    tracks = [pycolmap.Track() for _ in range(n_points)]
    for i in range(n):
        a = 2 * math.pi * i / n
        c2w = look_at_gl([2.5 * math.cos(a), 2.5 * math.sin(a), 1.0]) @ FLIP
        c2w[:3, 3] *= scale
        w2c = np.linalg.inv(c2w)
        uv = cam.img_from_cam((pts @ w2c[:3, :3].T + w2c[:3, 3]))  # [P, 2]
        name = f"frame_{i:03d}.png"
        im = pycolmap.Image(name=name, keypoints=uv, camera_id=1, image_id=i + 1)
        recon.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
        for j in range(n_points):
            tracks[j].add_element(i + 1, j)
        png(root / image_dir / name, random_image(rng, w, h))
        c2ws.append(c2w)
        names.append(name)
    for j in range(n_points):
        recon.add_point3D(pts[j], tracks[j], np.array([200, 100, 50], np.uint8))
    model_dir = root / "sparse" / "0"
    model_dir.mkdir(parents=True, exist_ok=True)
    (recon.write_text if text else recon.write_binary)(str(model_dir))
    return root, np.stack(c2ws), pts, names, params
