"""Property-based tests of every loader a user's files reach: transforms.json, Blender, RGB-D sequences, PLY files,
camera files and checkpoints. Whatever the content, the only outcomes allowed are success (and then a usable
result) or a DataError/ConfigError whose message is one line. Anything else (a KeyError, a ZeroDivisionError, a
MemoryError, a hang) is a bug the user could not fix by reading the message.

Each test mutates a valid input (values replaced by hostile ones of any JSON type, keys deleted, files truncated or
overwritten, forged headers) and runs the loader. CI runs the derandomised 'ci' profile (200 examples per loader,
the same examples every run); ``FF_HYPOTHESIS=explore`` searches 2000 fresh random ones per loader.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError, DataError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .helpers import make_blender, make_nerfstudio, make_rgbd, png  # noqa: E402

_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=200, derandomize=True, **_common)
settings.register_profile("explore", max_examples=2000, **_common)
PROFILE = os.environ.get("FF_HYPOTHESIS", "ci")
EXAMPLES = settings.get_profile(PROFILE).max_examples


def clean_outcome(fn, *args, **kwargs):
    """Run a loader; a refusal must be a DataError/ConfigError with a one-line message. Returns the result or
    None when refused."""
    from hypothesis import event

    try:
        out = fn(*args, **kwargs)
    except (DataError, ConfigError) as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)
        event(f"{fn.__name__}: refused")  # (--hypothesis-show-statistics shows how often each outcome occurs)
        return None
    event(f"{fn.__name__}: accepted")
    return out


# ---- hostile values -------------------------------------------------------------------------------------------
SPECIAL_FLOATS = [0.0, -0.0, 1e-300, -1e-300, 1e300, -1.0, 3.14159, 1e30, 0.5, float("nan"), float("inf"),
                  -float("inf")]
SPECIAL_STRINGS = ["", " ", "nan", "1e999", "../../../../etc/passwd", "/etc/passwd", "\udcff", "a" * 300,
                   "images", "images/", "./images/frame_000.png", "images/frame_000", "OPENCV", "PINHOLE", "-1",
                   "images/missing.png", "images/corrupt.png", "images/bomb.png", "images/grey.png",
                   "images/rgba.png", "images/deep16.png", "images/small.png", "images/a_folder.png", "bad.ply",
                   "points.ply", "semantic/sem.png", "depth16.png", "\x00"]


def scalars():
    return st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from(SPECIAL_FLOATS),
                     st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL_STRINGS),
                     st.text(max_size=8))


def matrices():
    rows = st.integers(0, 5)
    return st.one_of(
        rows.flatmap(lambda r: st.lists(st.lists(st.sampled_from(SPECIAL_FLOATS + [1.0, 0.0]), min_size=0, max_size=5),
                                        min_size=r, max_size=r)),
        st.builds(lambda m, i, j, v: _poked(m, i, j, v), st.sampled_from(["eye4", "eye34", "rot"]),
                  st.integers(0, 3), st.integers(0, 3), st.sampled_from(SPECIAL_FLOATS + [2.0, 1.0])))


def _poked(kind, i, j, v):
    m = {"eye4": np.eye(4), "eye34": np.eye(4)[:3], "rot": np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3],
                                                                      [0, 0, 0, 1.0]])}[kind].tolist()
    m[min(i, len(m) - 1)][j] = v
    return m


def json_values():
    """Any JSON value a broken exporter could write (flat containers: deep nesting finds nothing new)."""
    return st.one_of(scalars(), matrices(), st.lists(scalars(), max_size=3),
                     st.dictionaries(st.sampled_from(["w", "h", "fl_x", "file_path", "x"]), scalars(), max_size=2))


def mutate(data, obj: dict, keys: list[str]) -> None:
    """Delete a key or set it (any of ``keys``) to a hostile value, up to three times (none: the valid input)."""
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        key = data.draw(st.sampled_from(keys), label="key")
        if key in obj and data.draw(st.booleans(), label="delete"):
            del obj[key]
        else:
            obj[key] = data.draw(json_values(), label=f"value of {key}")


def add_hostile_files(root: Path) -> None:
    """Files the mutated JSON may point at: corrupt, decompression bomb, grey, RGBA, 16-bit, other size, a
    folder named like an image, a broken PLY."""
    import struct
    import zlib

    rng = np.random.default_rng(1)
    (root / "images").mkdir(exist_ok=True)
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    (root / "images" / "bomb.png").write_bytes(bomb + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    png(root / "images" / "grey.png", rng.integers(0, 255, (6, 8), dtype=np.uint8))
    png(root / "images" / "rgba.png", rng.integers(0, 255, (6, 8, 4), dtype=np.uint8))
    png(root / "images" / "deep16.png", rng.integers(0, 60000, (6, 8)).astype(np.uint16))
    png(root / "depth16.png", rng.integers(0, 60000, (6, 8)).astype(np.uint16))
    png(root / "images" / "small.png", rng.integers(0, 255, (5, 5, 3), dtype=np.uint8))
    png(root / "semantic" / "sem.png", rng.integers(0, 4, (6, 8), dtype=np.uint8))
    (root / "images" / "a_folder.png").mkdir(exist_ok=True)
    (root / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n")
    (root / "points.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                                     "property float z\nend_header\n0 0 0\n1 1 1\n")


# ---- transforms.json ------------------------------------------------------------------------------------------
NS_TOP = ["frames", "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_model", "k1", "k2", "p1", "k4",
          "depth_unit_scale_factor", "semantic_labels", "train_filenames", "test_filenames", "ply_file_path"]
NS_FRAME = ["file_path", "transform_matrix", "fl_x", "w", "h", "cx", "depth_file_path", "mask_path",
            "semantic_path", "instance_path", "camera_model"]


@pytest.fixture(scope="module")
def ns_scene(tmp_path_factory):
    root, meta, *_ = make_nerfstudio(tmp_path_factory.mktemp("ns") / "s", n=3, semantic=True)
    add_hostile_files(root)
    return root, meta


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_transforms_json(ns_scene, data):
    from featurefields.data import load_scene

    root, base = ns_scene
    meta = copy.deepcopy(base)
    where = data.draw(st.sampled_from(["top", "frame", "both", "frames"]), label="where")
    if where in ("top", "both"):
        mutate(data, meta, NS_TOP)
    if where in ("frame", "both") and isinstance(meta.get("frames"), list) and meta["frames"]:
        frame = meta["frames"][data.draw(st.integers(0, len(meta["frames"]) - 1), label="frame")]
        if isinstance(frame, dict):
            mutate(data, frame, NS_FRAME)
    if where == "frames":
        meta["frames"] = data.draw(st.one_of(json_values(), st.lists(st.sampled_from(base["frames"]), max_size=5)))
    (root / "transforms.json").write_text(json.dumps(meta, allow_nan=True))
    scene = clean_outcome(load_scene, root)
    if scene is not None:  # accepted: then it is a sane scene
        assert torch.isfinite(scene.cameras.c2w).all() and torch.isfinite(scene.cameras.K).all()
        assert (scene.cameras.K[:, 0, 0] > 0).all() and scene.train_idx


# ---- Blender --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    root, *_ = make_blender(tmp_path_factory.mktemp("bl") / "b", n_train=2, n_test=2, test_existing=1)
    add_hostile_files(root)
    return root, {s: json.loads((root / f"transforms_{s}.json").read_text()) for s in ("train", "test")}


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_blender(blender_scene, data):
    from featurefields.data import load_scene

    root, base = blender_scene
    for split in ("train", "test"):
        meta = copy.deepcopy(base[split])
        if data.draw(st.booleans(), label=f"mutate {split}"):
            mutate(data, meta, ["camera_angle_x", "frames"])
        if isinstance(meta.get("frames"), list) and meta["frames"] and data.draw(st.booleans(), label="frame"):
            fr = meta["frames"][0]
            if isinstance(fr, dict):
                mutate(data, fr, ["file_path", "transform_matrix", "rotation"])
        (root / f"transforms_{split}.json").write_text(json.dumps(meta, allow_nan=True))
    scene = clean_outcome(load_scene, root)
    if scene is not None:
        assert torch.isfinite(scene.cameras.K).all() and scene.train_idx


# ---- RGB-D sequences ------------------------------------------------------------------------------------------
LOG_TOKENS = ["0", "1", "-1", "2", "0.5", "nan", "inf", "1e309", "abc", "1,0", "٣", "", "0 0", "1e-300"]


@pytest.fixture(scope="module")
def rgbd_scene(tmp_path_factory):
    root, *_ = make_rgbd(tmp_path_factory.mktemp("rgbd") / "r", n=2)
    return root, (root / "trajectory.log").read_text(), json.loads((root / "camera_test.json").read_text())


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_rgbd_trajectory_and_intrinsics(rgbd_scene, data):
    from featurefields.data import load_scene

    root, log, intr = rgbd_scene
    lines = [ln.split() for ln in log.splitlines()]
    for _ in range(data.draw(st.integers(0, 4), label="token edits")):
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        action = data.draw(st.sampled_from(["replace", "drop_token", "drop_line", "dup_line", "blank"]))
        if action == "replace" and lines[i]:
            lines[i][data.draw(st.integers(0, len(lines[i]) - 1))] = data.draw(st.sampled_from(LOG_TOKENS))
        elif action == "drop_token" and lines[i]:
            lines[i].pop()
        elif action == "drop_line":
            lines.pop(i)
        elif action == "dup_line":
            lines.insert(i, list(lines[i]))
        else:
            lines.insert(i, [])
        if not lines:
            lines = [[]]
    raw = "\n".join(" ".join(t) for t in lines).encode()
    if data.draw(st.booleans(), label="binary garbage"):
        raw = raw[: data.draw(st.integers(0, len(raw)))] + data.draw(st.binary(max_size=16))
    (root / "trajectory.log").write_bytes(raw)
    meta = copy.deepcopy(intr)
    if data.draw(st.booleans(), label="mutate intrinsics"):
        mutate(data, meta, ["width", "height", "intrinsic_matrix"])
    (root / "camera_test.json").write_text(json.dumps(meta, allow_nan=True))
    stride = data.draw(st.sampled_from([1, 1, 2, 0, -1]), label="stride")
    depth_scale = data.draw(st.sampled_from([1000.0, 1000.0, 0.0, -5.0, float("nan"), float("inf")]), label="scale")
    scene = clean_outcome(load_scene, root, stride=stride, depth_scale=depth_scale)
    if scene is not None:
        assert torch.isfinite(scene.depths).all() and torch.isfinite(scene.cameras.c2w).all()


# ---- PLY files ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ply_files(tmp_path_factory):
    from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
    from featurefields.fields.ply import write_ply
    from featurefields.scenegen.meshes import write_points_ply

    d = tmp_path_factory.mktemp("ply")
    layout = FeatureLayout([TeacherSpec("labels", 8)], latent_dim=3)
    field = GaussianField(torch.rand(4, 3), torch.rand(4, 3), torch.full((4, 3), -3.0), layout, sh_degree=1)
    write_ply(d / "field.ply", field)
    rng = np.random.default_rng(0)
    write_points_ply(d / "points.ply", rng.random((5, 3)), rng.normal(size=(5, 3)), rng.random((5, 3)))
    ascii_ply = ("ply\nformat ascii 1.0\ncomment featurefields {\"sh_degree\": 0}\nelement vertex 2\nproperty float x\n"
                 "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
                 "end_header\n0 0 0 255 0 0\n1 2 3 0 255 0\n").encode()
    return d, {"field": (d / "field.ply").read_bytes(), "points": (d / "points.ply").read_bytes(), "ascii": ascii_ply}


HEADER_EDITS = [(b"element vertex 4", b"element vertex 4000000000000"), (b"element vertex 5", b"element vertex 9"),
                (b"element vertex 4", b"element vertex -4"), (b"binary_little_endian", b"ascii"),
                (b"binary_little_endian", b"binary_big_endian"), (b"property float x", b"property list uchar int x"),
                (b"property float x", b"property double x"), (b"end_header", b"end_headr"),
                (b"\"sh_degree\": 1", b"\"sh_degree\": 9"), (b"\"sh_degree\"", b"\"sh\\u00ff\""),
                (b"\"latent_dim\": 3", b"\"latent_dim\": -3"), (b"comment featurefields {", b"comment featurefields ["),
                (b"comment featurefields {", b"comment featurefields {{"), (b"ply\n", b"ply\r\n"),
                (b"element vertex 2", b"element vertex 2000")]


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_ply_files(ply_files, data):
    from featurefields.data.nerfstudio import read_ply_points
    from featurefields.fields.ply import field_from_ply

    d, originals = ply_files
    raw = originals[data.draw(st.sampled_from(sorted(originals)), label="file")]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        kind = data.draw(st.sampled_from(["header", "truncate", "overwrite", "append"]), label="edit")
        if kind == "header":
            old, new = data.draw(st.sampled_from(HEADER_EDITS), label="header edit")
            raw = raw.replace(old, new, 1)
        elif kind == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw)), label="keep")]
        elif kind == "overwrite" and raw:
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + raw[at + 8:]
        else:
            raw = raw + data.draw(st.binary(max_size=16), label="tail")
    path = d / "mutated.ply"
    path.write_bytes(raw)
    points = clean_outcome(read_ply_points, path)
    if points is not None:
        assert torch.isfinite(points[0]).all() and points[0].shape[1] == 3
    field = clean_outcome(field_from_ply, path)
    if field is not None:
        assert len(field) >= 0 and field.means.shape[1] == 3


# ---- camera files ---------------------------------------------------------------------------------------------
CAM_KEYS = ["c2w", "transform_matrix", "K", "fl_x", "fl_y", "cx", "cy", "width", "height", "w", "h", "name"]


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_camera_files(tmp_path_factory, data):
    from featurefields.fields.base import View
    from featurefields.fields.views import views_from_camera_file

    d = tmp_path_factory.getbasetemp() / "cams"
    d.mkdir(exist_ok=True)
    cam = {"c2w": np.eye(4).tolist(), "fl_x": 50.0, "width": 64, "height": 48}
    if data.draw(st.booleans(), label="K instead"):
        cam = {"transform_matrix": np.eye(4).tolist(), "K": [[50, 0, 32], [0, 50, 24], [0, 0, 1]], "w": 64, "h": 48}
    mutate(data, cam, CAM_KEYS)
    shape = data.draw(st.sampled_from(["one", "list", "frames", "value"]), label="file shape")
    content = {"one": cam, "list": [cam, cam], "frames": {"frames": [cam]}}.get(shape)
    if content is None:
        content = data.draw(json_values(), label="file content")
    (d / "cam.json").write_text(json.dumps(content, allow_nan=True))
    default = View("frame", torch.eye(4), torch.tensor([[40.0, 0, 32], [0, 40, 24], [0, 0, 1]]), 64, 48) \
        if data.draw(st.booleans(), label="default frame") else None
    views = clean_outcome(views_from_camera_file, d / "cam.json", default)
    for v in views or []:
        assert 1 <= v.width <= 16384 and 1 <= v.height <= 16384 and v.K[0, 0] > 0 and torch.isfinite(v.c2w).all()


# ---- checkpoints ----------------------------------------------------------------------------------------------
def _tensor_values():
    return st.one_of(
        st.builds(lambda s, kind: {"f": torch.zeros, "nan": lambda *s: torch.full(s, float("nan")),
                                   "i": lambda *s: torch.zeros(s, dtype=torch.long),
                                   "b": lambda *s: torch.zeros(s, dtype=torch.bool)}[kind](*s),
                  st.lists(st.integers(0, 5), max_size=3), st.sampled_from(["f", "nan", "i", "b"])),
        scalars(), st.lists(scalars(), max_size=3))


@pytest.fixture(scope="module")
def checkpoint_state():
    from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec

    layout = FeatureLayout([TeacherSpec("labels", 8)], latent_dim=3, view_degree=1)
    field = GaussianField(torch.rand(6, 3), torch.rand(6, 3), torch.full((6, 3), -3.0), layout, sh_degree=1)
    opt = torch.optim.Adam([{"params": [p], "name": n} for n, p in field.params().items()] +
                           [{"params": list(field.decoder.parameters()), "name": "decoder"}])
    sum((p ** 2).sum() for p in field.parameters()).backward()
    opt.step()
    return {"version": 1, "step": 3, "config": {"scene": "s"}, "field": field.state(), "optimizer": opt.state_dict(),
            "teachers": [{"name": "labels", "dim": 8, "config": {}}],
            "scene": {"name": "s", "root": "/nowhere", "world_from_scene": np.eye(4).tolist()}, "history": [],
            "train_seconds": 1.0}


def _paths(obj, prefix=()):
    """Every (path, container) into nested dicts/lists, for picking what to break."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list) and obj and not isinstance(obj[0], float):
        for i, v in enumerate(obj[:3]):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_checkpoints(checkpoint_state, tmp_path_factory, data):
    from featurefields.fields.gaussians import GaussianField
    from featurefields.train.checkpoint import load_checkpoint

    state = copy.deepcopy(checkpoint_state)
    paths = _paths(state)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(paths), label="entry")
        parent = state
        try:
            for k in path[:-1]:
                parent = parent[k]
            if isinstance(parent, dict) and data.draw(st.booleans(), label="delete"):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(_tensor_values(), label=f"value of {path}")
        except (KeyError, IndexError, TypeError):  # an earlier edit removed or replaced the container
            pass
    f = tmp_path_factory.getbasetemp() / "ck.pt"
    torch.save(state, f)
    if data.draw(st.integers(0, 9), label="truncate") == 0:
        f.write_bytes(f.read_bytes()[: data.draw(st.integers(0, 2000), label="keep")])
    loaded = clean_outcome(load_checkpoint, f)
    if loaded is not None:  # accepted: every consumer can use it
        field = GaussianField.from_state(loaded["field"])
        assert torch.isfinite(field.means).all()
        if loaded.get("optimizer") is not None:
            opt = torch.optim.Adam([{"params": [p], "name": n} for n, p in field.params().items()] +
                                   [{"params": list(field.decoder.parameters()), "name": "decoder"}])
            try:
                opt.load_state_dict(loaded["optimizer"])
            except (ValueError, KeyError, RuntimeError, TypeError):
                pass  # the trainer turns this into a DataError naming the checkpoint


def test_the_profile_runs_enough_examples():
    assert EXAMPLES >= 200
