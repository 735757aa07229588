"""ff-train --view: a browser watches a training run. Snapshots are exact copies of the parameters between two
steps (never half-updated), frames keep coming, the pause button stops and resumes the steps, and once training
is done the field can be edited."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from tests.viewer.helpers import Page

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_watching_a_training_run(browser, viewer_run, tmp_path):
    from featurefields.train.config import TrainConfig
    from featurefields.train.trainer import CHECKPOINT, Trainer
    from featurefields.viewer.live import watch

    cfg = TrainConfig(scene=str(viewer_run.scene), out=str(tmp_path / "run"), iterations=5000, progress=False,
                      init_points=3000, save_every=0)
    trainer = Trainer(cfg)
    server, source = watch(trainer, port=0)
    source.refresh = 0.3
    checked = []

    def compare(tr) -> None:  # runs right after the source's hook, still between the same two steps
        if source.step == tr.step and source.snapshots > len(checked):
            snap = source.current()[1].gaussians
            checked.append(all(torch.equal(a, b) for a, b in zip(snap.params().values(), tr.field.params().values()))
                           and len(snap) == len(tr.field))

    trainer.step_callbacks.append(compare)
    errors = []

    def train() -> None:
        try:
            trainer.train()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=train, daemon=True)
    try:
        p = Page(browser, server)
        thread.start()
        p.wait(lambda s: len({f.field_version for f in s.frames}) >= 3, 120, "frames of three snapshots")
        assert "steps/s" in p.session.panel.training.content
        p.page.get_by_role("button", name="Pause training").click()
        p.wait(lambda s: source.paused, what="the pause")
        time.sleep(0.5)
        step = trainer.step
        t0 = time.monotonic()
        p.session.goto_view(p.session.server.train_views[1])
        p.still_frame(t0)  # frames are still served while paused
        assert trainer.step == step, "training went on while paused"
        assert "paused" in p.session.panel.training.content
        p.page.get_by_role("button", name="Resume training").click()
        p.wait(lambda s: trainer.step > step, what="training to resume")
        cfg.iterations = trainer.step + 20  # seen: end the run soon (its loop reads the budget every step)
        thread.join(180)
        assert not thread.is_alive() and not errors, errors
        assert checked and all(checked), f"{checked.count(False)} of {len(checked)} snapshots differ from the field"
        source.finish(trainer, tmp_path / "run" / CHECKPOINT)
        p.wait(lambda s: not s.panel.delete.disabled, what="edits to become available")
        assert source.editable and p.session.frames[-1].field_version <= source.version
    finally:
        if source.paused:  # a failed check must not leave the training thread waiting
            source.toggle_pause()
        server.stop()
