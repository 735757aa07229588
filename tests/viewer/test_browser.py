"""The viewer in a real browser (headless chromium, SwiftShader WebGL), on the oracle field of a 160x120 tabletop:
what the page shows is checked against direct renders and the scene's ground truth (semantic masks, and the mesh
test of ff-eval segmentation for 3D selections)."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

import featurefields
from featurefields.viz import to_uint8
from tests.viewer.helpers import (CANVAS, Page, downsample_mask, gt_gaussians, gt_mask, iou, mean_abs_diff,
                                  save_docs_shot, upsample_mask)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

HOT = 40  # |overlay - dimmed render| summed over channels above this: a turbo-coloured (relevant) pixel


@pytest.fixture(scope="module")
def page(browser, viewer):
    p = Page(browser, viewer)
    yield p
    p.close()


@pytest.fixture(scope="module")
def page_b(browser, viewer):
    p = Page(browser, viewer)
    yield p
    p.close()


@pytest.fixture(scope="module")
def frame0(viewer):
    _, field = viewer.source.current()
    return field.views("test")[0]


def direct(viewer, view) -> np.ndarray:
    _, field = viewer.source.current()
    with torch.no_grad():
        return to_uint8(field.render(view, with_features=False).rgb)


def query_input(page: Page, label: str = "Query"):
    return page.page.locator(f"xpath=//label[normalize-space(.)='{label}']/ancestor::div[.//input][1]//input").first


def ask(page: Page, text: str) -> None:
    box = query_input(page)
    box.fill(text)
    box.press("Enter")


def hot_area(overlay: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Pixels where the relevancy overlay is drawn: it differs from the render dimmed to 75% (the rest)."""
    return np.abs(overlay.astype(np.float32) - 0.75 * rgb.astype(np.float32)).sum(-1) > HOT


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its border."""
    d = distance_transform_edt(mask)
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return int(x), int(y)


def test_the_render_appears_and_matches_a_direct_render(page, viewer, frame0):
    frame = page.goto(frame0)
    assert (frame.view.width, frame.view.height) == CANVAS and frame.mode == "RGB"
    shown = page.canvas_image()
    assert shown.shape[:2] == (CANVAS[1], CANVAS[0])
    same = mean_abs_diff(shown, direct(viewer, frame.view))
    other_view = viewer.source.current()[1].views("train")[2]
    elsewhere = frame.view.__class__("other", other_view.c2w, frame.view.K, *CANVAS)
    other = mean_abs_diff(shown, direct(viewer, elsewhere))
    assert same < 4.0, f"the page differs from a direct render of its camera by {same:.1f}/255 on average"
    assert other > 4 * same, (same, other)


def test_dragging_moves_the_camera_and_the_image_changes(page, viewer, frame0):
    page.goto(frame0)
    before, cam0 = page.canvas_image(), page.session.camera
    t0 = time.monotonic()
    x, y = CANVAS[0] / 2, CANVAS[1] / 2
    page.drag((x, y), (x + 140, y + 30), steps=12)
    frame = page.still_frame(t0)
    cam1 = page.session.camera
    turn = torch.rad2deg(torch.arccos(((cam0.c2w()[:3, :3].T @ cam1.c2w()[:3, :3]).trace() - 1).clamp(-2, 2) / 2))
    assert turn > 5, f"the camera turned by only {turn:.1f} degrees"
    moving = [f for f in page.session.frames if f.sent > t0 and f.moving]
    assert moving, "no frame was rendered while the camera moved"
    after = page.canvas_image()
    assert mean_abs_diff(after, before) > 8
    assert mean_abs_diff(after, direct(viewer, frame.view)) < 4.0


def test_typing_mug_and_enter_lays_the_relevancy_over_the_mug(page, viewer, viewer_run, frame0, tmp_path):
    page.session.set_mode("RGB")
    page.goto(frame0, mode="RGB")
    rgb = page.canvas_image()
    t0 = time.monotonic()
    ask(page, "mug")
    frame = page.still_frame(t0, mode="Relevancy")
    assert page.session.query.text == "mug"
    hot = downsample_mask(hot_area(page.canvas_image(), rgb), frame0.image.shape[:2])
    scene = viewer.source.current()[1].scene
    truth = gt_mask(scene, viewer_run.scene, frame0.index, "mug")
    score = iou(hot, truth)
    assert score >= 0.5, f"IoU of the hot area with the ground-truth mug: {score:.2f}"
    assert iou(hot, gt_mask(scene, viewer_run.scene, frame0.index, "bowl")) < 0.05
    assert frame.info["hot_pixels"] > 0
    save_docs_shot(page, "viewer_query.png", tmp_path)


def test_a_click_on_the_mug_selects_the_mugs_gaussians(page, viewer, viewer_run, frame0, tmp_path):
    page.session.clear_selection()
    page.goto(frame0)
    scene = viewer.source.current()[1].scene
    x, y = interior_pixel(gt_mask(scene, viewer_run.scene, frame0.index, "mug"))
    scale = CANVAS[0] / frame0.width
    t0 = time.monotonic()
    page.click((x + 0.5) * scale, (y + 0.5) * scale)
    page.wait(lambda s: s.selection is not None, what="a selection")
    sel = page.session.selection
    _, field = viewer.source.current()
    truth = gt_gaussians(field, viewer_run.scene, "mug")
    precision = (sel.mask & truth).sum().item() / max(sel.count, 1)
    recall = (sel.mask & truth).sum().item() / truth.sum().item()
    assert precision >= 0.8, f"{sel.count} selected, precision {precision:.2f}"
    assert recall >= 0.3, f"recall {recall:.2f}: the click selected too little of the mug"
    page.still_frame(t0, mode="Selection")
    page.wait_note("Gaussians selected")
    save_docs_shot(page, "viewer_selection.png", tmp_path)


def test_a_shift_drag_box_around_the_mug_selects_it_too(page, viewer, viewer_run, frame0):
    page.session.clear_selection()
    page.goto(frame0)
    scene = viewer.source.current()[1].scene
    ys, xs = np.nonzero(gt_mask(scene, viewer_run.scene, frame0.index, "mug"))
    scale = CANVAS[0] / frame0.width
    page.drag(((xs.min() - 1) * scale, (ys.min() - 1) * scale), ((xs.max() + 2) * scale, (ys.max() + 2) * scale),
              steps=8, shift=True)
    page.wait(lambda s: s.selection is not None, what="a box selection")
    assert page.session.selection_how.startswith("box")
    _, field = viewer.source.current()
    truth = gt_gaussians(field, viewer_run.scene, "mug")
    sel = page.session.selection
    precision = (sel.mask & truth).sum().item() / max(sel.count, 1)
    assert precision >= 0.8 and (sel.mask & truth).sum().item() >= 0.3 * truth.sum().item(), precision


def test_two_browsers_each_see_their_own_query(page, page_b, viewer, viewer_run, frame0):
    scene = viewer.source.current()[1].scene
    shots = {}
    for p, text in ((page, "mug"), (page_b, "bowl")):
        p.session.set_mode("RGB")
        p.goto(frame0, mode="RGB")
        rgb = p.canvas_image()
        t0 = time.monotonic()
        ask(p, text)
        p.still_frame(t0, mode="Relevancy")
        shots[text] = (p, rgb)
    for text, (p, rgb) in shots.items():  # after both asked: each still shows its own
        hot = downsample_mask(hot_area(p.canvas_image(), rgb), frame0.image.shape[:2])
        own = iou(hot, gt_mask(scene, viewer_run.scene, frame0.index, text))
        theirs = iou(hot, gt_mask(scene, viewer_run.scene, frame0.index, "bowl" if text == "mug" else "mug"))
        assert own >= 0.5 and theirs < 0.05, (text, own, theirs)
    assert page.session.query.text == "mug" and page_b.session.query.text == "bowl"


def test_bad_input_is_a_notification_and_the_server_keeps_running(page, viewer, frame0):
    ask(page, "   ")
    page.wait_note("empty query")
    ask(page, "a" * 400)
    page.wait_note("characters long")
    page.session.run("Point prompt", lambda: page.session.prompt(point=(1.4, 0.5)))
    page.wait_note("outside")
    page.session.run("Box prompt", lambda: page.session.prompt(box=(0.2, 0.2, 0.2, 0.6)))
    page.wait_note("is empty")
    t0 = time.monotonic()
    ask(page, "banana")
    page.still_frame(t0, mode="Relevancy")
    assert page.session.query.text == "banana"


def test_text_on_a_field_without_a_text_aligned_teacher(browser, viewer_run, tmp_path):
    from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
    from featurefields.viewer import ViewerConfig, serve
    from tests.query.helpers import save_as_checkpoint

    g = torch.Generator().manual_seed(0)
    means = torch.rand(3000, 3, generator=g) * torch.tensor([0.8, 0.6, 0.1]) - torch.tensor([0.4, 0.3, -0.72])
    field = GaussianField(means, torch.rand(3000, 3, generator=g), torch.full((3000, 3), -4.5),
                          FeatureLayout([TeacherSpec("sift", 128)]), sh_degree=0)
    ckpt = save_as_checkpoint(field, viewer_run.scene, tmp_path / "sift" / "checkpoint.pt", teachers=("sift",))
    server = serve(str(ckpt), ViewerConfig(port=0, max_side=320), out=tmp_path / "out")
    try:
        p = Page(browser, server)
        assert "Relevancy" not in p.session.panel.modes
        ask(p, "mug")
        p.wait_note("cannot answer text queries")
        assert p.session.query is None and server.session_list()
        p.close()
    finally:
        server.stop()


def test_client_side_splats_draw_while_moving_and_the_server_frame_at_rest(page_b, viewer):
    p = page_b
    t0 = time.monotonic()
    p.page.get_by_text("Splats in browser").click()
    p.wait(lambda s: s._splat_handle is not None, what="the splats")
    x, y = CANVAS[0] / 2, CANVAS[1] / 2
    p.drag((x, y), (x - 120, y), steps=10)

    def at_rest(s):  # the last camera message came before a full-size frame, and the splats are hidden again
        f = s.frames[-1]
        return f if f.sent > t0 and not f.moving and f.sent > s.clock.last() and not s._splat_handle.visible else None

    frame = p.wait(at_rest, what="a frame at rest with the splats hidden")
    assert not [f for f in p.session.frames if f.sent > t0 and f.moving]  # the browser drew the motion itself
    assert frame.mode == p.session.mode
    assert len(viewer.source.current()[1]) == p.session._splat_handle.buffer.shape[0]
    p.page.get_by_text("Splats in browser").click()
    p.wait(lambda s: s._splat_handle is None, what="the splats to go")


def test_a_browser_that_leaves_mid_render_ends_its_thread_quietly(browser, viewer, caplog):
    p = Page(browser, viewer)
    session = p.session
    x, y = CANVAS[0] / 2, CANVAS[1] / 2
    caplog.set_level(logging.WARNING, logger="featurefields.viewer")
    p.drag((x, y), (x + 200, y), steps=20, release=False)
    n = session.frame_count
    p.close()  # mid-drag: frames are being rendered
    t0 = time.monotonic()
    while session.id in viewer.sessions and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    assert session.id not in viewer.sessions
    session.loop.join(10)
    assert not session.loop.is_alive()
    assert session.loop.errors == 0 and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert session.frame_count >= n


# Last in this file: it changes the field every other test here looks at.
def test_delete_removes_the_mug_for_every_browser_and_the_checkpoint_loads(page, page_b, viewer, viewer_run):
    server = viewer
    version, field = server.source.current()
    view = field.views("test")[0]
    a, b = page, page_b
    a.session.clear_selection()
    a.session.set_mode("RGB")
    a.goto(view, mode="RGB")
    b.goto(view)
    shown_before = a.canvas_image()
    mug = gt_mask(field.scene, viewer_run.scene, view.index, "mug")
    x, y = interior_pixel(mug)
    scale = CANVAS[0] / view.width
    a.click((x + 0.5) * scale, (y + 0.5) * scale)
    sel = a.wait(lambda s: s.selection, what="a selection")
    n_mug = int(gt_gaussians(field, viewer_run.scene, "mug").sum())
    t0 = time.monotonic()
    a.page.get_by_role("button", name="Delete").click()
    a.wait(lambda s: server.source.version > version, what="the edit")
    a.wait_note("Gaussians; checkpoint and PLY")
    new_version, edited = server.source.current()
    assert len(edited) == len(field) - sel.count

    written = server.out / "edits" / "001_delete" / "checkpoint.pt"
    loaded = featurefields.load(written)
    assert len(loaded) == len(edited)
    left = int(gt_gaussians(loaded, viewer_run.scene, "mug").sum())
    assert left <= 0.2 * n_mug, f"{left} of the mug's {n_mug} Gaussians are left"

    frames = [p.still_frame(t0) for p in (a, b)]  # the edit is seen by every browser
    assert all(f.field_version == new_version for f in frames)
    shown = a.canvas_image()
    assert mean_abs_diff(shown, direct(server, frames[0].view)) < 4.0
    grown = upsample_mask(mug, (CANVAS[1], CANVAS[0]))  # the mug's pixels at canvas resolution
    changed = np.abs(shown.astype(float) - shown_before.astype(float)).sum(-1)[grown].mean()
    elsewhere = np.abs(shown.astype(float) - shown_before.astype(float)).sum(-1)[~grown].mean()
    assert changed > 60 and elsewhere < 15, (changed, elsewhere)
    assert a.session.selection is None  # selections of the old field are gone
