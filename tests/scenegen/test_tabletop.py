"""The tabletop generator on a tiny config (4 views at 40x30): files, conventions, geometry, masks, determinism."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
from plyfile import PlyData

from featurefields.errors import ConfigError, DataError
from featurefields.io import read_image, read_json
from featurefields.scenegen import build_tabletop, generate_tabletop, orbit_cameras
from featurefields.scenegen.meshes import TABLE_HEIGHT, TABLE_SIZE, Mesh, concat
from featurefields.scenegen.raycast import Part, Renderer

TINY = dict(seed=0, views=4, width=40, height=30, progress=False)
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    return generate_tabletop(tmp_path_factory.mktemp("tt") / "scene", **TINY)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = o3d.io.read_triangle_mesh(str(path))
    return np.asarray(m.vertices), np.asarray(m.triangles), np.asarray(m.vertex_colors)


def _world_meshes(root: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(instance id, world vertices, triangles) for room, table and objects, from objects.json and meshes/."""
    objs = read_json(root / "objects.json")
    out = []
    for e in [objs["room"], objs["table"]] + objs["objects"]:
        V, F, _ = _load_mesh(root / e["mesh"])
        T = np.asarray(e["pose"])
        out.append((e["instance_id"], V @ T[:3, :3].T + T[:3, 3], F))
    return out


def test_files_exist_and_parse(scene_dir):
    tf = read_json(scene_dir / "transforms.json")
    assert len(tf["frames"]) == 4
    for f in tf["frames"]:
        rgb = read_image(scene_dir / f["file_path"])
        assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
        assert rgb.std() > 10, "image is nearly constant"
        depth = read_image(scene_dir / f["depth_file_path"])
        assert depth.shape == (30, 40) and depth.dtype == np.uint16
        assert read_image(scene_dir / f["normal_path"]).shape == (30, 40, 3)
        for key in ("semantic_path", "instance_path"):
            m = read_image(scene_dir / f[key])
            assert m.shape == (30, 40) and m.dtype == np.uint8
    ply = PlyData.read(str(scene_dir / tf["ply_file_path"]))
    v = ply["vertex"]
    assert len(v) == 5000
    assert {"x", "y", "z", "red", "green", "blue"} <= {p.name for p in v.properties}
    pcd = o3d.io.read_point_cloud(str(scene_dir / "points.ply"))
    assert len(pcd.points) == 5000 and pcd.has_colors()
    objs = read_json(scene_dir / "objects.json")
    assert len(objs["objects"]) >= 6
    for e in objs["objects"] + [objs["table"], objs["room"]]:
        V, F, C = _load_mesh(scene_dir / e["mesh"])
        assert len(V) > 100 and len(F) > 100 and C.shape == V.shape
    readme = (scene_dir / "README.md").read_text()
    assert "ff-scene tabletop --seed 0" in readme
    assert not list(scene_dir.parent.glob(".scene.*")), "temporary folders left behind"


def test_transforms_keys_and_poses(scene_dir):
    tf = read_json(scene_dir / "transforms.json")
    assert tf["camera_model"] == "PINHOLE"
    for k in ("fl_x", "fl_y", "cx", "cy"):
        assert isinstance(tf[k], float) and tf[k] > 0
    assert (tf["w"], tf["h"]) == (40, 30)
    assert (tf["cx"], tf["cy"]) == (20.0, 15.0)
    assert tf["depth_unit_scale_factor"] == 0.001
    assert tf["ply_file_path"] == "points.ply"
    assert tf["generator"] == {"name": "tabletop", "seed": 0, "version": 2}
    labels = tf["semantic_labels"]
    assert labels[:2] == ["background", "table"]
    assert {"mug", "bowl", "box", "ball", "bottle"} <= set(labels) and len(labels) == len(set(labels))
    target = np.array([0.0, 0.0, TABLE_HEIGHT])
    for i, f in enumerate(tf["frames"]):
        name = f"frame_{i:05d}.png"
        assert f["file_path"] == f"images/{name}" and f["depth_file_path"] == f"depth/{name}"
        assert f["normal_path"] == f"normals/{name}"
        assert f["semantic_path"] == f"semantics/{name}" and f["instance_path"] == f"instances/{name}"
        T = np.asarray(f["transform_matrix"])
        assert T.shape == (4, 4) and np.allclose(T[3], [0, 0, 0, 1])
        R = T[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(R), 1.0, atol=1e-6)
        # OpenGL axes: the camera looks along -z, its y axis points up in the world (not upside down).
        to_target = target - T[:3, 3]
        assert (-R[:, 2]) @ to_target / np.linalg.norm(to_target) > 0.99
        assert R[2, 1] > 0.3


def test_depth_backprojects_onto_meshes(scene_dir):
    """Every depth pixel, back-projected with the stored intrinsics and OpenGL pose, lies on a stored mesh,
    and on the mesh of the instance its instance mask names."""
    tf = read_json(scene_dir / "transforms.json")
    meshes = _world_meshes(scene_dir)
    rc = o3d.t.geometry.RaycastingScene()
    gid_to_inst = {}
    for inst, V, F in meshes:
        gid = rc.add_triangles(o3d.core.Tensor(V.astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))
        gid_to_inst[gid] = inst
    fx, fy, cx, cy = tf["fl_x"], tf["fl_y"], tf["cx"], tf["cy"]
    vv, uu = np.mgrid[0 : tf["h"], 0 : tf["w"]]
    agree = total = 0
    for f in tf["frames"]:
        z = read_image(scene_dir / f["depth_file_path"]).astype(np.float64) * tf["depth_unit_scale_factor"]
        inst = read_image(scene_dir / f["instance_path"])
        valid = z > 0
        assert valid.mean() > 0.99  # the room is closed: every ray hits something
        pc = np.stack([(uu + 0.5 - cx) / fx * z, (vv + 0.5 - cy) / fy * z, z], -1)[valid]  # [M, 3] OpenCV camera
        c2w = np.asarray(f["transform_matrix"]) @ GL_TO_CV
        pw = pc @ c2w[:3, :3].T + c2w[:3, 3]
        res = rc.compute_closest_points(o3d.core.Tensor(pw.astype(np.float32)))
        dist = np.linalg.norm(res["points"].numpy() - pw, axis=1)
        assert dist.max() < 0.01, f"{f['depth_file_path']}: back-projected depth is {dist.max():.3f} m off the meshes"
        near_inst = np.array([gid_to_inst[g] for g in res["geometry_ids"].numpy()])
        agree += int((near_inst == inst[valid]).sum())
        total += int(valid.sum())
    assert agree / total > 0.97, f"instance masks disagree with geometry on {1 - agree / total:.1%} of pixels"


def test_semantics_agree_with_instances(scene_dir):
    tf = read_json(scene_dir / "transforms.json")
    objs = read_json(scene_dir / "objects.json")
    sem_labels, inst_labels = tf["semantic_labels"], tf["instance_labels"]
    assert objs["table"]["instance_id"] == 1 and inst_labels[1] == "table"
    classes = {"background": [0], "table": [1]}
    for e in objs["objects"]:
        assert inst_labels[e["instance_id"]] == e["label"]
        assert sem_labels[e["semantic_id"]] == e["label"]
        classes[e["label"]] = [e["semantic_id"]] + [p["semantic_id"] for p in e.get("parts", [])]
        for p in e.get("parts", []):
            assert sem_labels[p["semantic_id"]] == p["label"] and (scene_dir / p["mesh"]).is_file()
    assert {p["label"] for e in objs["objects"] for p in e.get("parts", [])} == {"mug handle", "bottle neck"}
    assert sorted(e["instance_id"] for e in objs["objects"]) == list(range(2, 2 + len(objs["objects"])))
    seen = set()
    for f in tf["frames"]:
        sem = read_image(scene_dir / f["semantic_path"])
        inst = read_image(scene_dir / f["instance_path"])
        assert 255 not in inst
        for i in np.unique(inst):
            vals = np.unique(sem[inst == i])  # an object's own class, or one of its named parts'
            assert sem_labels.index(inst_labels[i]) in vals, f"{f['instance_path']}: instance {i}"
            assert set(vals.tolist()) <= set(classes[inst_labels[i]]), f"{f['instance_path']}: instance {i}"
            seen.add(int(i))
    assert {0, 1} <= seen and len(seen) >= 6, f"too few instances visible: {sorted(seen)}"


def test_objects_apart_and_resting_on_table(scene_dir):
    objs = read_json(scene_dir / "objects.json")
    assert objs["table_top_z"] == TABLE_HEIGHT
    boxes = []
    for e in objs["objects"]:
        V, _, _ = _load_mesh(scene_dir / e["mesh"])
        assert np.allclose(V.max(0) - V.min(0), e["size"], atol=1e-5)
        T = np.asarray(e["pose"])
        assert np.allclose(T[:3, :3].T @ T[:3, :3], np.eye(3), atol=1e-6)
        W = V @ T[:3, :3].T + T[:3, 3]
        lo, hi = W.min(0), W.max(0)
        assert abs(lo[2] - TABLE_HEIGHT) < 1e-3, f"{e['label']} floats or sinks: bottom at {lo[2]:.4f} m"
        assert lo[0] >= -TABLE_SIZE[0] / 2 and hi[0] <= TABLE_SIZE[0] / 2, e["label"]
        assert lo[1] >= -TABLE_SIZE[1] / 2 and hi[1] <= TABLE_SIZE[1] / 2, e["label"]
        boxes.append((e["label"], lo[:2], hi[:2]))
    for i, (a, alo, ahi) in enumerate(boxes):
        for b, blo, bhi in boxes[i + 1 :]:
            assert np.any(alo > bhi) or np.any(ahi < blo), f"{a} and {b} overlap in xy"
    mug = next(e for e in objs["objects"] if e["label"] == "mug")
    assert 0.09 <= mug["size"][2] <= 0.1  # real sizes, metres


def test_points_lie_on_surfaces(scene_dir):
    pcd = o3d.io.read_point_cloud(str(scene_dir / "points.ply"))
    P = np.asarray(pcd.points)
    rc = o3d.t.geometry.RaycastingScene()
    for _, V, F in _world_meshes(scene_dir):
        rc.add_triangles(o3d.core.Tensor(V.astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))
    d = np.abs(rc.compute_distance(o3d.core.Tensor(P.astype(np.float32))).numpy())
    assert d.max() < 1e-3
    assert np.asarray(pcd.colors).std(0).min() > 0.05


def test_deterministic_bytes(scene_dir, tmp_path):
    again = generate_tabletop(tmp_path / "again", **TINY)
    a, b = _files(scene_dir), _files(again)
    assert a.keys() == b.keys()
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, f"files differ between runs: {diff[:5]}"


def test_seed_changes_layout():
    p0 = {o.label: o.pose for o in build_tabletop(0).objects}
    p1 = {o.label: o.pose for o in build_tabletop(1).objects}
    assert any(not np.allclose(p0[k], p1[k]) for k in p0)


def test_orbit_cameras_ranges():
    c2w, K = orbit_cameras(48, 0, 200, 150)
    target = np.array([0.0, 0.0, TABLE_HEIGHT])
    off = c2w[:, :3, 3] - target
    r = np.linalg.norm(off, axis=1)
    el = np.degrees(np.arcsin(off[:, 2] / r))
    assert r.min() > 0.95 and r.max() < 1.35
    assert el.min() > 22 and el.max() < 58 and el.max() - el.min() > 20
    az = np.sort(np.arctan2(off[:, 1], off[:, 0]))
    assert np.diff(np.concatenate([az, az[:1] + 2 * np.pi])).max() < np.radians(20)  # all the way round
    assert K[0, 2] == 100 and K[1, 2] == 75


def test_replace_previous_scene_and_refuse_foreign_folder(tmp_path):
    out = tmp_path / "s"
    generate_tabletop(out, seed=1, views=2, width=16, height=12, n_points=100, progress=False)
    generate_tabletop(out, seed=2, views=3, width=16, height=12, n_points=100, progress=False)
    assert read_json(out / "transforms.json")["generator"]["seed"] == 2
    assert len(list((out / "images").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        generate_tabletop(foreign, views=1, width=16, height=12, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    orig = Renderer.render

    def flaky(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(Renderer, "render", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_tabletop(tmp_path / "s", views=3, width=16, height=12, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw", [dict(views=0), dict(width=4), dict(height=100000), dict(seed=-1)])
def test_bad_config_raises(kw, tmp_path):
    with pytest.raises(ConfigError):
        generate_tabletop(tmp_path / "s", **{**TINY, **kw})
    assert not (tmp_path / "s").exists()


def test_shading_lambert_and_shadow():
    """A lit floor patch gets albedo * (ambient + sky + diffuse * cos); under an occluder only the ambient part."""
    def quad(z, half, normal_up=True):
        V = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], float)
        return Mesh(V, np.array([[0, 1, 2], [0, 2, 3]]), np.full((4, 3), 0.5), np.tile([0.0, 0.0, 1.0], (4, 1)))

    floor = Part("floor", quad(0.0, 2.0), 0, 0, casts_shadow=False)
    roof = Part("roof", quad(1.0, 0.3), 1, 1)
    r = Renderer([floor, roof], light_dir=(0, 0, 1), ambient=0.3, sky=0.1, diffuse=0.5, light_radius_deg=1.0)
    pts = np.array([[0.0, 0.0, 0.0], [1.5, 1.5, 0.0]])
    nrm = np.tile([0.0, 0.0, 1.0], (2, 1))
    c = r.shade(pts, nrm, np.full((2, 3), 0.5))
    cos = r.light_dirs[:, 2].mean()
    assert np.allclose(c[0], 0.5 * 0.4, atol=1e-6)  # shadowed
    assert np.allclose(c[1], 0.5 * (0.4 + 0.5 * cos), atol=1e-6)  # lit
    assert concat([floor.mesh, roof.mesh]).triangles.max() == 7


def test_descriptive_labels_name_the_same_objects_in_the_same_places(scene_dir, tmp_path):
    from featurefields.scenegen.tabletop import DESCRIPTIVE_LABELS, SEMANTIC_LABELS, semantic_labels

    out = generate_tabletop(tmp_path / "desc", **TINY, labels="descriptive")
    tf = read_json(out / "transforms.json")
    assert tf["semantic_labels"] == semantic_labels("descriptive") and "blue coffee mug" in tf["semantic_labels"]
    # the plain scene's files stay as they were
    assert tf["generator"]["labels"] == "descriptive" and "labels" not in read_json(scene_dir / "transforms.json")[
        "generator"]
    objs = read_json(out / "objects.json")["objects"]
    plain = {o["label"]: o for o in read_json(scene_dir / "objects.json")["objects"]}
    for o in objs:  # same pose and ids, the descriptive name, whole objects (no part classes)
        kind = next(k for k, v in DESCRIPTIVE_LABELS.items() if v == o["label"])
        assert o["pose"] == plain[kind]["pose"] and o["semantic_id"] == plain[kind]["semantic_id"]
        assert "parts" not in o and (out / o["mesh"]).is_file()
    sem_plain = np.asarray(read_image(scene_dir / "semantics" / "frame_00000.png")).astype(int)
    sem = np.asarray(read_image(out / "semantics" / "frame_00000.png")).astype(int)
    parts = [SEMANTIC_LABELS.index(p) for p in ("mug handle", "bottle neck")]
    mug, bottle = SEMANTIC_LABELS.index("mug"), SEMANTIC_LABELS.index("bottle")
    folded = np.where(sem_plain == parts[0], mug, np.where(sem_plain == parts[1], bottle, sem_plain))
    assert np.array_equal(sem, folded) and sem.max() < len(tf["semantic_labels"])
    with pytest.raises(ConfigError, match="labels"):
        semantic_labels("fancy")
