"""The viewer's parts without a browser: browser cameras as views, frame scheduling (fair turns, budget, newest
camera wins, motion resolution), pictures per mode, client-side splats, live-training snapshots and pause, and
edits that swap the field for everyone."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError
from featurefields.fields.base import View
from featurefields.viz import to_uint8
from featurefields.viewer.camera import (BrowserCamera, fit_size, look_at_for_view, orbit_focus, scene_up,
                                         vertical_fov)
from featurefields.viewer.scheduling import CameraClock, FairLock, MotionScale, RenderBudget, RenderLoop


def camera_at(view: View, canvas=(640, 480)) -> BrowserCamera:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(view.c2w[:3, :3].double().numpy()).as_quat()
    return BrowserCamera((w, x, y, z), tuple(view.center.tolist()), vertical_fov(view), canvas, time.monotonic())


@pytest.fixture(scope="module")
def field(viewer_run):
    import featurefields

    return featurefields.load(viewer_run.checkpoint)


# ---- cameras --------------------------------------------------------------------------------------------------
def test_a_browser_camera_at_a_scene_frame_is_that_frame(field):
    view = field.views("test")[0]
    cam = camera_at(view, (view.width * 4, view.height * 4))
    again = cam.view(view.width, view.height)
    assert torch.allclose(again.c2w, view.c2w, atol=1e-5)
    assert torch.allclose(again.K, view.K.float(), atol=1e-3)
    with torch.no_grad():  # and renders the same picture
        assert torch.allclose(field.render(again, with_features=False).rgb, field.render(view, with_features=False).rgb,
                              atol=1e-4)


def test_look_at_for_view_keeps_pose_and_roll(field):
    focus = orbit_focus(torch.stack([v.c2w for v in field.views("all")]))
    for view in field.views("all")[:3]:
        pos, look, up = look_at_for_view(view, focus)
        z = (look - pos) / np.linalg.norm(look - pos)
        y = -(up - np.dot(up, z) * z)
        y /= np.linalg.norm(y)
        rebuilt = np.stack([np.cross(y, z), y, z], 1)
        assert np.allclose(rebuilt, view.c2w[:3, :3].double().numpy(), atol=1e-6)


def test_orbit_focus_and_up_of_an_orbit():
    c2ws = []
    for a in np.linspace(0, 2 * math.pi, 8, endpoint=False):
        eye = np.array([2 * math.cos(a), 2 * math.sin(a), 1.0]) + [0.3, -0.2, 0.5]
        target = np.array([0.3, -0.2, 0.5])
        z = (target - eye) / np.linalg.norm(target - eye)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        m[:3, 3] = eye
        c2ws.append(m)
    c2ws = torch.tensor(np.stack(c2ws))
    assert np.allclose(orbit_focus(c2ws), [0.3, -0.2, 0.5], atol=1e-6)
    assert scene_up(c2ws)[2] > 0.9


def test_fit_size_keeps_aspect_caps_and_floors():
    assert fit_size((1600, 1200), 800) == (800, 600)
    assert fit_size((640, 480), 800) == (640, 480)
    assert fit_size((640, 480), 800, 0.5) == (320, 240)
    assert max(fit_size((640, 480), 800, 0.01)) == 128  # moving frames stop shrinking at 128 pixels
    assert fit_size((100, 50), 800, 0.01) == (100, 50)  # a canvas below the floor stays as it is


# ---- scheduling -----------------------------------------------------------------------------------------------
def test_fair_lock_serves_in_arrival_order():
    lock, order = FairLock(), []
    lock.__enter__()
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (lock.__enter__(), order.append(i), lock.__exit__()))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # arrive one after the other
    lock.__exit__()
    for t in threads:
        t.join(5)
    assert order == list(range(5))


def test_render_budget_caps_the_share_of_time():
    budget, stop = RenderBudget(0.25), threading.Event()
    t0 = time.monotonic()
    for _ in range(4):
        budget.wait(stop)
        time.sleep(0.02)
        budget.charge(0.02)
    assert time.monotonic() - t0 >= 3 * 0.02 * 3  # each 20 ms render is followed by 60 ms of nothing
    free = RenderBudget(1.0)
    t0 = time.monotonic()
    for _ in range(4):
        free.wait(stop)
        free.charge(0.02)
    assert time.monotonic() - t0 < 0.05


def test_motion_scale_follows_measured_frame_times():
    m = MotionScale(target_fps=10)
    m.record("RGB", 0.4, 1.0, moving=False)  # a 0.4 s full frame: start near sqrt(0.85 * 0.1 / 0.4) = 0.46
    assert 0.4 < m.scale("RGB") < 0.5
    for _ in range(10):  # frames at that scale still take 0.2 s: shrink
        m.record("RGB", 0.2, m.scale("RGB"), moving=True)
    small = m.scale("RGB")
    assert small < 0.2
    for _ in range(20):  # much faster than the target: grow back, never past full size
        m.record("RGB", 0.01, m.scale("RGB"), moving=True)
    assert m.scale("RGB") == 1.0 and m.scale("Depth") == 0.5  # per mode


def test_camera_clock_stretches_rest_for_slow_browsers():
    c = CameraClock(rest=0.25)
    for t in (0.0, 0.3, 0.6, 0.9):  # a page that sends a camera every 300 ms
        c.tick(t)
    assert c.rest() == pytest.approx(0.75)
    assert c.moving(1.5) and not c.moving(1.7)
    fast = CameraClock(rest=0.25)
    for t in (0.0, 0.016, 0.033, 0.05):
        fast.tick(t)
    assert fast.rest() == 0.25


def test_render_loop_renders_the_newest_camera_and_drops_the_rest():
    seen, cameras = [], {"now": 0}
    started = threading.Event()

    def frame(moving):
        seen.append(cameras["now"])
        started.set()
        time.sleep(0.1)
        return "RGB", 0.1, 1.0

    lock = FairLock()
    tidied = []  # whether the render lock was held when tidy ran
    loop = RenderLoop("test", frame, CameraClock(), lock, RenderBudget(), MotionScale(),
                      tidy=lambda: tidied.append(bool(lock._queue)))
    loop.start()
    try:
        loop.poke(camera_moved=True)
        started.wait(2)
        for i in range(1, 20):  # 19 cameras arrive during one 100 ms render
            cameras["now"] = i
            loop.poke(camera_moved=True)
        time.sleep(0.5)
    finally:
        loop.stop()
        loop.join(2)
    assert seen[0] == 0 and seen[1] == 19 and len(seen) <= 3, seen  # one more frame, for the newest camera
    assert not loop.is_alive()
    assert len(tidied) == len(seen) and all(tidied)  # after every frame, before the lock is let go


# ---- pictures -------------------------------------------------------------------------------------------------
def test_pictures_per_mode_come_from_the_engine(field):
    from featurefields.query.edit import recolour
    from featurefields.query.export import heatmap_overlay
    from featurefields.viewer.paint import DEPTH, FEATURES, RELEVANCY, RGB, SELECTION, Painter, QuerySpec, modes_for

    view = field.views("test")[0]
    painter = Painter()
    assert modes_for(field) == [RGB, DEPTH, FEATURES + "labels", RELEVANCY, SELECTION]
    rgb, _ = painter.paint(field, view, RGB)
    assert rgb.shape == (view.height, view.width, 3) and rgb.dtype == np.uint8
    q = QuerySpec("mug", "scene", 0.5)
    rel, info = painter.paint(field, view, RELEVANCY, query=q)
    expected = field.engine.relevancy_2d("mug", view, negatives="scene")
    assert np.array_equal(rel, heatmap_overlay(expected.render.rgb, expected.combined, 0.5))
    assert info["hot_pixels"] == int(expected.mask(0.5).sum()) > 0
    depth, info = painter.paint(field, view, DEPTH)
    again, _ = painter.paint(field, field.views("train")[1], DEPTH, depth_range=info["depth_range"])
    assert depth.shape == rgb.shape and info["depth_range"][0] < info["depth_range"][1]
    pca1, _ = painter.paint(field, view, FEATURES + "labels")
    pca2, _ = Painter().paint(field, view, FEATURES + "labels")
    assert np.array_equal(pca1, pca2)  # one basis per session, fitted on a training view: no flicker
    # the folded projection against the plain one: every pixel decoded to the teacher's width, normalised, projected
    with torch.no_grad():
        out = field.render(view)
        decoded = torch.nn.functional.normalize(field.decode(out.features, "labels").float(), dim=-1)
    pca = painter.pca(field, "labels", view)
    a = out.alpha.clamp(0, 1).cpu().numpy()[..., None]
    plain = (pca(decoded) * a + to_uint8(out.rgb) * (1 - a) + 0.5).astype(np.uint8)
    assert np.abs(pca1.astype(int) - plain.astype(int)).max() <= 1
    sel = field.engine.select("mug", negatives="scene")
    marked, _ = painter.paint(field, view, SELECTION, highlight=recolour(field, sel, (1.0, 0.42, 0.0)))
    changed = np.abs(marked.astype(int) - rgb.astype(int)).sum(-1) > 30
    mug = field.engine.relevancy_2d("mug", view, negatives="scene").mask(0.5).numpy()
    assert changed[mug].mean() > 0.8 and changed[~mug].mean() < 0.05


def test_splats_carry_the_gaussians(field):
    from featurefields.fields.density import quat_to_rotmat
    from featurefields.viewer.splats import splat_arrays

    s = splat_arrays(field)
    g = field.gaussians
    n = len(g)
    assert s["centers"].shape == (n, 3) and s["covariances"].shape == (n, 3, 3) and s["opacities"].shape == (n, 1)
    r = quat_to_rotmat(g.quats[:1].detach())[0]
    cov = r @ torch.diag(g.scales[0].detach() ** 2) @ r.T
    assert np.allclose(s["covariances"][0], cov.numpy(), atol=1e-9)
    assert np.allclose(s["centers"], g.means.detach().numpy())


# ---- edits ----------------------------------------------------------------------------------------------------
def test_an_edit_swaps_the_field_and_refuses_stale_selections(field, viewer_run, tmp_path):
    import featurefields
    from featurefields.viewer import FieldSource
    from featurefields.viewer.outputs import Outputs

    source = FieldSource(field, viewer_run.checkpoint)
    seen = []
    source.listen(lambda version, why: seen.append((version, why)))
    out = Outputs(tmp_path)
    sel = field.engine.select("banana", negatives="scene")
    folder, info = out.edit(source, sel, 0, "delete", what="'banana'", by="test")
    assert source.version == 1 and seen and seen[0][0] == 1 and "delete" in seen[0][1]
    assert len(source.current()[1]) == len(field) - sel.count == info["num_gaussians_after"]
    assert len(featurefields.load(folder / "checkpoint.pt")) == len(field) - sel.count
    with pytest.raises(ConfigError, match="changed since this selection"):
        out.edit(source, sel, 0, "delete")
    sel2 = source.current()[1].engine.select("mug", negatives="scene")
    folder2, _ = out.edit(source, sel2, 1, "recolour", rgb=(0.0, 1.0, 0.0))
    assert folder2.name == "002_recolour" and source.checkpoint == folder2 / "checkpoint.pt"
    points = out.points(source.current()[1], sel2)
    assert points.name == "003_points.ply" and points.is_file()
    import open3d as o3d
    from plyfile import PlyData

    from featurefields.io import read_image
    from featurefields.viewer.paint import QuerySpec

    assert len(o3d.io.read_point_cloud(str(points)).points) == sel2.count
    rel = out.relevancy(source.current()[1], QuerySpec("mug", "scene"))
    values = PlyData.read(str(rel))["vertex"].data["relevancy"]
    assert rel.name == "004_relevancy.ply" and len(values) == len(source.current()[1])
    assert (values > 0.5).sum() == sel2.count  # the mug (recoloured, same features) is what is relevant
    img = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    shot, png = out.screenshot(img)
    assert np.array_equal(read_image(shot), img) and png[:4] == b"\x89PNG"
    nope = FieldSource(field)
    with pytest.raises(ConfigError, match="cannot be edited"):
        out.edit(nope, sel, 0, "delete")


# ---- live training --------------------------------------------------------------------------------------------
def test_live_snapshots_are_copies_and_pause_blocks_the_step(viewer_run, tmp_path):
    from featurefields.train.config import TrainConfig
    from featurefields.train.trainer import Trainer
    from featurefields.viewer.live import LiveSource

    trainer = Trainer(TrainConfig(scene=str(viewer_run.scene), out=str(tmp_path / "run"), iterations=10,
                                  progress=False, init_points=500, save_every=0))
    source = LiveSource(trainer, refresh=0.0)
    source.watchers = lambda: 1
    trainer.train_step(trainer.scene.train_idx[0], 0)
    trainer.step = 1
    source.on_step(trainer)
    snap = source.current()[1].gaussians
    assert source.version == 1 and source.step == 1
    assert all(torch.equal(a, b) for a, b in zip(snap.params().values(), trainer.field.params().values()))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(snap.params().values(), trainer.field.params().values())
               if a.numel())
    trainer.train_step(trainer.scene.train_idx[1], 1)  # training moves on; the snapshot does not
    assert not torch.equal(snap.means, trainer.field.means)
    assert not source.editable and source.budget.fraction == source.share

    source.toggle_pause()
    assert source.paused and source.budget.fraction == 1.0
    done = threading.Event()
    before = trainer.train_seconds
    worker = threading.Thread(target=lambda: (source.on_step(trainer), done.set()))
    worker.start()
    time.sleep(0.4)
    assert not done.is_set()  # the step callback (so the training loop) waits while paused
    source.toggle_pause()
    worker.join(5)
    assert done.is_set() and source.budget.fraction == source.share
    assert trainer.train_seconds <= before - 0.35  # paused time is not training time
    source.finish(trainer, tmp_path / "run" / "checkpoint.pt")
    assert source.finished and source.editable and source.budget.fraction == 1.0
