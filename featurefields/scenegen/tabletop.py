"""The bundled ``tabletop`` demo scene: everyday objects on a wooden table in a small room, in nerfstudio format.

World frame: metres, z up, floor at z = 0, table top at z = 0.75 (``TABLE_HEIGHT``), table centred on the origin.
Everything (object placement, camera orbit, surface point samples) follows from ``seed``; the same arguments give
byte-identical files.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import clean_stale_temporaries, read_json, temp_dir, write_json
from .meshes import (
    OBJECT_BUILDERS,
    PART_LABELS,
    ROOM_SIZE,
    TABLE_HEIGHT,
    TABLE_SIZE,
    Mesh,
    make_room,
    make_table,
    part_masks,
    sample_surface,
    submesh,
    write_mesh_ply,
    write_points_ply,
)
from .raycast import Part, Renderer

GENERATOR_NAME = "tabletop"
GENERATOR_VERSION = 2  # 2: named parts (mug handle, bottle neck) get classes of their own
OBJECT_LABELS = list(OBJECT_BUILDERS)  # mug, bowl, box, ball, bottle, can, banana, book
SEMANTIC_LABELS = ["background", "table"] + OBJECT_LABELS + PART_LABELS  # parts last: object ids never move
# ``labels="descriptive"``: the same objects named by multi-word phrases, as people describe them, so queries can
# be tested on words that are not the training labels ("mug" for a "blue coffee mug"). Parts stay part of their
# object there (a descriptive scene names whole objects only).
DESCRIPTIVE_LABELS = {
    "mug": "blue coffee mug", "bowl": "ceramic bowl", "box": "yellow cereal box", "ball": "orange toy ball",
    "bottle": "green glass bottle", "can": "red soda can", "banana": "yellow banana", "book": "blue hardcover book",
}
LABEL_STYLES = ("plain", "descriptive")
HFOV_DEG = 62.0
LIGHT_DIR = (-0.35, 0.45, 1.0)  # towards the light


@dataclass
class PlacedObject:
    label: str  # the scene's name for it (the builder's key, or its descriptive phrase)
    semantic_id: int  # index into SEMANTIC_LABELS
    instance_id: int  # value in the instance masks
    mesh: Mesh  # local frame: z up, origin on the table under the object's centre
    pose: np.ndarray  # [4, 4] object-to-world, metres
    kind: str = ""  # the mesh builder's key ("mug"); empty: same as label
    labels: tuple[str, ...] = tuple(SEMANTIC_LABELS)  # the scene's semantic label list

    @property
    def world_mesh(self) -> Mesh:
        return self.mesh.transformed(self.pose)

    def triangle_classes(self) -> np.ndarray:
        """[F] semantic id per triangle: the object's, or a named part's ("mug handle")."""
        cls = np.full(len(self.mesh.triangles), self.semantic_id, np.int64)
        for part, mask in self.part_masks():
            cls[mask] = self.labels.index(part)
        return cls

    def part_masks(self) -> list[tuple[str, np.ndarray]]:
        """The named parts that have classes of their own in this scene (none with descriptive labels)."""
        if (self.kind or self.label) != self.label:
            return []
        return part_masks(self.label, self.mesh)


@dataclass
class Tabletop:
    seed: int
    table: Mesh  # world frame
    room: Mesh  # world frame, normals inward
    objects: list[PlacedObject]

    def parts(self) -> list[Part]:
        parts = [Part("room", self.room, 0, 0, casts_shadow=False), Part("table", self.table, 1, 1)]
        parts += [Part(o.label, o.world_mesh, o.semantic_id, o.instance_id, tri_semantic=o.triangle_classes())
                  for o in self.objects]
        return parts

    @property
    def instance_labels(self) -> list[str]:  # index = instance id
        labels = ["background", "table"] + [""] * len(self.objects)
        for o in self.objects:
            labels[o.instance_id] = o.label
        return labels


def _yaw_pose(yaw: float, x: float, y: float, z: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = [x, y, z]
    return T


def _footprint(mesh: Mesh, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """xy bounding box ([2], [2]) of the mesh rotated by ``yaw`` about its local origin."""
    xy = mesh.vertices[:, :2]
    c, s = np.cos(yaw), np.sin(yaw)
    r = xy @ np.array([[c, s], [-s, c]])
    return r.min(0), r.max(0)


def place_objects(meshes: dict[str, Mesh], rng: np.random.Generator, margin: float = 0.04, gap: float = 0.025,
                  tries: int = 400, restarts: int = 100) -> dict[str, np.ndarray]:
    """Random yaw and position per object on the table top, xy bounding boxes apart by ``gap`` and inside the top.

    Largest footprints go first. Rejection sampling, restarted from scratch if an object finds no room.
    """
    hx, hy = TABLE_SIZE[0] / 2 - margin, TABLE_SIZE[1] / 2 - margin
    order = sorted(meshes, key=lambda k: -float(np.prod(np.ptp(meshes[k].vertices[:, :2], axis=0))))
    for _ in range(restarts):
        boxes: list[tuple[np.ndarray, np.ndarray]] = []
        poses: dict[str, np.ndarray] = {}
        for label in order:
            for _ in range(tries):
                yaw = float(rng.uniform(0.0, 2 * np.pi))
                lo, hi = _footprint(meshes[label], yaw)
                xmin, xmax = -hx - lo[0], hx - hi[0]
                ymin, ymax = -hy - lo[1], hy - hi[1]
                if xmin > xmax or ymin > ymax:
                    continue
                x, y = float(rng.uniform(xmin, xmax)), float(rng.uniform(ymin, ymax))
                blo, bhi = lo + (x, y), hi + (x, y)
                if all(np.any(blo > qhi + gap) or np.any(bhi < qlo - gap) for qlo, qhi in boxes):
                    boxes.append((blo, bhi))
                    poses[label] = _yaw_pose(yaw, x, y, TABLE_HEIGHT)
                    break
            else:
                break
        if len(poses) == len(meshes):
            return poses
    raise RuntimeError("could not place the objects on the table without overlap")  # pragma: no cover


def semantic_labels(labels: str = "plain") -> list[str]:
    """The scene's semantic label list for a label style: 'plain' (mug, bowl, ..., parts) or 'descriptive' (blue
    coffee mug, ceramic bowl, ...; no part classes). Object ids are the same in both."""
    if labels not in LABEL_STYLES:
        raise ConfigError(f"labels must be one of {', '.join(LABEL_STYLES)}, not {labels!r}")
    if labels == "plain":
        return list(SEMANTIC_LABELS)
    return ["background", "table"] + [DESCRIPTIVE_LABELS[k] for k in OBJECT_LABELS]


def build_tabletop(seed: int = 0, labels: str = "plain") -> Tabletop:
    """Meshes and poses of the scene for ``seed`` (the layout does not depend on ``labels``). Instance ids: 0
    background, 1 table, 2.. in placement order."""
    names = semantic_labels(labels)
    rng = np.random.default_rng([seed, 1])
    meshes = {label: build() for label, build in OBJECT_BUILDERS.items()}
    poses = place_objects(meshes, rng)
    objects = []
    for inst, kind in enumerate(poses, start=2):
        name = names[SEMANTIC_LABELS.index(kind)]
        objects.append(PlacedObject(name, names.index(name), inst, meshes[kind], poses[kind], kind, tuple(names)))
    return Tabletop(seed, make_table(), make_room(), objects)


def look_at_gl(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world [4, 4] in OpenGL axes (x right, y up, z backward) looking from ``eye`` at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    f = target - eye
    f /= np.linalg.norm(f)
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, f)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, cam_up, -f, eye
    return T


def orbit_cameras(n: int, seed: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cameras orbiting the table: (c2w_gl [n, 4, 4], K [3, 3]).

    Azimuth steps evenly (jittered), elevation waves between 25 and 55 degrees and radius between 1.0 and 1.3 m
    around a point just above the table centre, so every view sees the whole table top.
    """
    rng = np.random.default_rng([seed, 2])
    i = np.arange(n)
    az = rng.uniform(0.0, 2 * np.pi) + 2 * np.pi * (i + rng.uniform(-0.3, 0.3, n)) / n
    el = np.deg2rad(40.0 + 13.5 * np.sin(2 * np.pi * 3 * i / n + rng.uniform(0, 2 * np.pi)) + rng.uniform(-1.5, 1.5, n))
    r = 1.15 + 0.13 * np.cos(2 * np.pi * 2 * i / n + rng.uniform(0, 2 * np.pi)) + rng.uniform(-0.02, 0.02, n)
    target = np.array([0.0, 0.0, TABLE_HEIGHT + 0.04])
    c2w = np.stack(
        [
            look_at_gl(target + r[k] * np.array([np.cos(el[k]) * np.cos(az[k]), np.cos(el[k]) * np.sin(az[k]), np.sin(el[k])]), target)
            for k in range(n)
        ]
    ) if n else np.zeros((0, 4, 4))
    fl = 0.5 * width / np.tan(np.deg2rad(HFOV_DEG) / 2)
    K = np.array([[fl, 0.0, width / 2], [0.0, fl, height / 2], [0.0, 0.0, 1.0]])
    return c2w, K


GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _r(x, nd: int = 9):
    """Round for JSON; turns -0.0 into 0.0 so the text is stable."""
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        return [_r(v, nd) for v in x]
    v = round(float(x), nd)
    return 0.0 if v == 0 else v


def _check_args(seed: int, views: int, width: int, height: int, supersample: int) -> None:
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if not 1 <= views <= 10000:
        raise ConfigError(f"--views must be between 1 and 10000, got {views}")
    for name, v in (("--width", width), ("--height", height)):
        if not 8 <= v <= 4096:
            raise ConfigError(f"{name} must be between 8 and 4096 pixels, got {v}")
    if not 1 <= supersample <= 8:
        raise ConfigError(f"supersample must be between 1 and 8, got {supersample}")


def _replaceable(out: Path) -> bool:
    """Only an empty folder or a scene this generator wrote may be replaced."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    tf = out / "transforms.json"
    try:
        return tf.is_file() and isinstance(read_json(tf).get("generator"), dict)
    except (DataError, AttributeError):
        return False


README_TEMPLATE = """# `{name}` synthetic scene (seed {seed})

A deterministic, offline synthetic scene made by `featurefields.scenegen` (generator `{name}`, version {version}):
{n_obj} everyday objects ({labels}) on a 1.0 x 0.7 m wooden table inside a small room, seen by {views} cameras
orbiting the table at {width}x{height} pixels.

Regenerate it (byte-identical) with:

    ff-scene {name} --seed {seed} --out {out_hint}{extra}

Contents (nerfstudio layout):

- `transforms.json`: shared PINHOLE intrinsics, camera-to-world `transform_matrix` per frame in OpenGL axes
  (x right, y up, z backward), world frame in metres with z up, floor at z = 0 and the table top at z = {table_z}.
- `images/`: RGB, Lambert + ambient shading with one fixed soft light (no view-dependent effects), 2x2 supersampled.
- `depth/`: uint16 z-depth in millimetres (`depth_unit_scale_factor` 0.001), 0 = no hit.
- `normals/`: world-frame normals encoded as (n + 1) / 2 * 255, facing the camera.
- `semantics/`: uint8 index into `semantic_labels`; named parts of objects (the mug's handle, the bottle's neck)
  have classes of their own ("mug handle", "bottle neck"), so an object's pixels are its class plus its parts';
  `instances/`: uint8 instance id (0 background, 1 table, objects from 2, parts included; names in
  `instance_labels`).
- `points.ply`: {n_points} coloured surface points sampled from the meshes, for initialisation.
- `objects.json` and `meshes/`: each object's label, ids, vertex-coloured mesh in its local frame (z up, origin on
  the table under the object's centre, e.g. the mug's axis), 4x4 object-to-world pose and bounding box; objects
  with named parts list them (`parts`: label, semantic id, the part's own mesh) plus `rest_mesh`, the object
  without its parts.
"""


def generate_tabletop(out: str | os.PathLike, seed: int = 0, views: int = 48, width: int = 200, height: int = 150,
                      supersample: int = 2, n_points: int = 5000, progress: bool = True, labels: str = "plain") -> Path:
    """Render the scene into ``out`` (replaced atomically: a failed run leaves the old folder or nothing).
    ``labels``: 'plain' (the demo's one-word labels) or 'descriptive' (multi-word phrases, see
    ``DESCRIPTIVE_LABELS``)."""
    from tqdm import tqdm

    _check_args(seed, views, width, height, supersample)
    out = Path(out)
    if out.exists() and not _replaceable(out):
        raise DataError(f"{out}: exists and is not a scene written by ff-scene (no transforms.json with 'generator'); "
                        "refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = build_tabletop(seed, labels)
    renderer = Renderer(scene.parts(), light_dir=LIGHT_DIR)
    c2w_gl, K = orbit_cameras(views, seed, width, height)
    generator = {"name": GENERATOR_NAME, "seed": seed, "version": GENERATOR_VERSION}
    if labels != "plain":  # the demo scene's files stay byte-identical
        generator["labels"] = labels

    clean_stale_temporaries(out.parent, depth=0, prefix=f".{out.name}.")  # what a killed run left beside it
    tmp = temp_dir(out.parent, out.name)
    try:
        for sub in ("images", "depth", "normals", "semantics", "instances", "meshes"):
            (tmp / sub).mkdir()
        frames = []
        for i in tqdm(range(views), desc=f"ff-scene {GENERATOR_NAME}", unit="view", disable=not progress):
            view = renderer.render(c2w_gl[i] @ GL_TO_CV, K, width, height, supersample)
            name = f"frame_{i:05d}.png"
            _png(tmp / "images" / name, view.rgb)
            _png(tmp / "depth" / name, view.depth_mm)
            _png(tmp / "normals" / name, view.normals)
            _png(tmp / "semantics" / name, view.semantic)
            _png(tmp / "instances" / name, view.instance)
            frames.append({
                "file_path": f"images/{name}",
                "transform_matrix": [_r(row) for row in c2w_gl[i]],
                "depth_file_path": f"depth/{name}",
                "normal_path": f"normals/{name}",
                "semantic_path": f"semantics/{name}",
                "instance_path": f"instances/{name}",
            })

        points, colors, normals = _sample_points(scene, renderer, n_points, seed)
        write_points_ply(tmp / "points.ply", points, normals, colors, comment=f"ff-scene {GENERATOR_NAME} seed {seed}")
        transforms = {
            "camera_model": "PINHOLE",
            "fl_x": _r(K[0, 0]), "fl_y": _r(K[1, 1]), "cx": _r(K[0, 2]), "cy": _r(K[1, 2]), "w": width, "h": height,
            "depth_unit_scale_factor": 0.001,
            "ply_file_path": "points.ply",
            "semantic_labels": semantic_labels(labels),
            "instance_labels": scene.instance_labels,
            "generator": generator,
            "frames": frames,
        }
        write_json(tmp / "transforms.json", transforms)
        write_json(tmp / "objects.json", _objects_json(scene, tmp, generator))
        (tmp / "README.md").write_text(README_TEMPLATE.format(
            name=GENERATOR_NAME, seed=seed, version=GENERATOR_VERSION, n_obj=len(scene.objects),
            labels=", ".join(o.label for o in scene.objects), views=views, width=width, height=height,
            out_hint="scenes/tabletop" if (seed, views, width, height, labels) == (0, 48, 200, 150, "plain") else "DIR",
            extra=("" if (views, width, height) == (48, 200, 150) else
                   f" --views {views} --width {width} --height {height}") + (
                "" if labels == "plain" else f" --labels {labels}"),
            table_z=TABLE_HEIGHT, n_points=len(points)))
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=9)


def _sample_points(scene: Tabletop, renderer: Renderer, n: int, seed: int):
    """Surface samples coloured as the cameras see them (shaded), ~45% objects, 25% table, 30% floor and walls."""
    rng = np.random.default_rng([seed, 3])
    room = scene.room
    keep = ~(room.normals[room.triangles].mean(1)[:, 2] < -0.5)  # drop the ceiling: never in view
    room = Mesh(room.vertices, room.triangles[keep], room.colors, room.normals)
    n_obj = int(0.45 * n) // max(len(scene.objects), 1)
    n_table = int(0.25 * n)
    groups = [(o.world_mesh, n_obj) for o in scene.objects] + [(scene.table, n_table)]
    groups.append((room, n - n_obj * len(scene.objects) - n_table))
    P, N, A = zip(*[sample_surface(m, k, rng) for m, k in groups])
    P, N, A = np.concatenate(P), np.concatenate(N), np.concatenate(A)
    return P, renderer.shade(P, N, A), N


def _objects_json(scene: Tabletop, root: Path, generator: dict) -> dict:
    def entry(label, sem, inst, mesh, pose, fname):
        write_mesh_ply(root / "meshes" / fname, mesh, comment=f"{label}: local frame, metres, z up")
        lo, hi = mesh.bounds
        return {
            "label": label, "semantic_id": sem, "instance_id": inst, "mesh": f"meshes/{fname}",
            "pose": [_r(row) for row in pose], "size": _r(hi - lo, 6), "bbox_min": _r(lo, 6), "bbox_max": _r(hi, 6),
        }

    def with_parts(o: PlacedObject) -> dict:
        e = entry(o.label, o.semantic_id, o.instance_id, o.mesh, o.pose, f"{o.label.replace(' ', '_')}.ply")
        masks = o.part_masks()
        if masks:
            e["parts"] = []
            for part, mask in masks:
                fname = part.replace(" ", "_") + ".ply"
                write_mesh_ply(root / "meshes" / fname, submesh(o.mesh, mask), comment=f"{part}: {o.label}'s local frame")
                e["parts"].append({"label": part, "semantic_id": o.labels.index(part), "mesh": f"meshes/{fname}"})
            rest = ~np.any([m for _, m in masks], axis=0)
            write_mesh_ply(root / "meshes" / f"{o.label}_rest.ply", submesh(o.mesh, rest),
                           comment=f"{o.label} without its named parts: local frame")
            e["rest_mesh"] = f"meshes/{o.label}_rest.ply"
        return e

    objs = [with_parts(o) for o in scene.objects]
    return {
        "generator": generator,
        "frame": "world: metres, z up, floor at z = 0, table centred on the origin; poses are object-to-world",
        "table_top_z": TABLE_HEIGHT,
        "light_dir": _r(np.asarray(LIGHT_DIR) / np.linalg.norm(LIGHT_DIR), 6),
        "table": entry("table", 1, 1, scene.table, np.eye(4), "table.ply"),
        "room": {**entry("background", 0, 0, scene.room, np.eye(4), "room.ply"), "size": list(ROOM_SIZE)},
        "objects": objs,
    }


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = temp_dir(out.parent, f"{out.name}.old")
        os.rmdir(old)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
