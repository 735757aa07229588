"""Watching a field while it trains (``ff-train SCENE --view``).

The trainer calls :meth:`LiveSource.on_step` between two steps, when the optimiser step and density control are
both done: the only moment its parameters are a consistent field. If a browser is watching and the last snapshot
is older than ``refresh`` seconds, the hook copies the Gaussians there (a deep copy: a few ms for 100k
Gaussians) and publishes the copy; browsers render copies only, so they never see a half-updated or densifying
field, and training never waits for a render. Renders run beside training under a
:class:`~.scheduling.RenderBudget`: at most ``share`` of wall time, so a step slows by a bounded few percent
(measured in ``benchmarks/viewer.py``). The pause button blocks the hook; while paused the budget is lifted.
"""
from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import torch

from ..fields.splats import GaussianFeatureField
from .source import FieldSource

DEFAULT_SHARE = 0.05  # of wall time for rendering while training runs (measured: see benchmarks/viewer.py)
DEFAULT_REFRESH = 1.0  # seconds between snapshots while someone watches


def snapshot(trainer) -> GaussianFeatureField:
    """A copy of the trainer's field behind the field interface (its scene, teachers and frame)."""
    with torch.no_grad():
        gaussians = copy.deepcopy(trainer.field).eval().requires_grad_(False)
    cfg = trainer.cfg
    teachers = {t.teacher.name: t.teacher for t in trainer.targets}
    records = [{"name": t.teacher.name, "dim": t.teacher.dim, "config": t.teacher.config()} for t in trainer.targets]
    return GaussianFeatureField(gaussians, world_from_scene=trainer.scene.world_from_scene, teachers=teachers,
                                teacher_records=records, train_config=cfg.to_dict(), scene=trainer.scene,
                                background=list(cfg.background), source=f"{cfg.out} (training)")


class LiveSource(FieldSource):
    """The field of a training run in progress, as snapshots; editable once training has finished."""

    live = True

    def __init__(self, trainer, share: float = DEFAULT_SHARE, refresh: float = DEFAULT_REFRESH):
        super().__init__(snapshot(trainer))
        self.trainer = trainer
        self.share = share
        self.budget.fraction = share
        self.refresh = refresh
        self.total = trainer.cfg.iterations
        self.step = trainer.step
        self.finished = False
        self.paused = False
        self._resume = threading.Event()
        self._resume.set()
        self._last = time.monotonic()
        self._rate = (self.step, time.monotonic(), 0.0)  # (step, time, steps/s) at the last snapshot
        self.watchers = lambda: 0  # how many browsers are connected (set by the server)
        self.snapshots = 0
        self.snapshot_seconds = 0.0
        self.paused_seconds = 0.0

    @property
    def editable(self) -> bool:
        return self.finished and self.checkpoint is not None

    def on_step(self, trainer) -> None:
        """The trainer's step callback (see the module docstring)."""
        if self.watchers() and time.monotonic() - self._last >= self.refresh:
            self._publish(trainer)
        if self.paused:
            t0 = time.monotonic()
            self._publish(trainer)
            while self.paused:
                self._resume.wait(0.2)
            # A pause is not training time: keep it out of the run's reported wall time.
            self.paused_seconds += time.monotonic() - t0
            trainer.train_seconds -= time.monotonic() - t0

    def _publish(self, trainer) -> None:
        t0 = time.perf_counter()
        field = snapshot(trainer)
        took = time.perf_counter() - t0
        self.snapshots += 1
        self.snapshot_seconds += took
        # Copies must stay a small share of training: at most ~2% of wall time however big the field grows.
        self.refresh = max(self.refresh, 50 * took)
        now = time.monotonic()
        step0, t_prev, rate = self._rate
        if trainer.step > step0 and now > t_prev:
            rate = (trainer.step - step0) / (now - t_prev)
        self._rate = (trainer.step, now, rate)
        self.step = trainer.step
        self._last = now
        self.replace(field, "")

    def toggle_pause(self) -> None:
        if self.finished:
            return
        self.paused = not self.paused
        self.budget.fraction = 1.0 if self.paused else self.share
        if self.paused:
            self._resume.clear()
        else:
            self._resume.set()
        for listener in list(self._listeners):  # the panels show the new button label
            listener(self.version, "training paused" if self.paused else "training resumed")

    def finish(self, trainer, checkpoint: str | Path | None = None) -> None:
        """Training is over: show the final field, lift the render budget, allow edits of its checkpoint."""
        self.finished, self.paused = True, False
        self._resume.set()
        self.budget.fraction = 1.0
        self.step = trainer.step
        field = snapshot(trainer)
        field.source = str(checkpoint) if checkpoint is not None else field.source
        self.replace(field, f"training finished at step {trainer.step}", checkpoint=checkpoint)

    def status(self) -> str:
        _, field = self.current()
        if self.finished:
            return f"training finished: step {self.step:,}, {len(field):,} Gaussians"
        state = "paused" if self.paused else f"{self._rate[2]:.1f} steps/s"
        return f"step {self.step:,} / {self.total:,}, {len(field):,} Gaussians ({state})"


def watch(trainer, host: str = "127.0.0.1", port: int = 8080, share: float = DEFAULT_SHARE):
    """Start a viewer on a trainer (before ``trainer.train()``): returns (server, source)."""
    from .server import ViewerConfig, ViewerServer

    source = LiveSource(trainer, share=share)
    server = ViewerServer(source, ViewerConfig(host=host, port=port, title=f"featurefields: training "
                                                                            f"{Path(trainer.cfg.out).name}"),
                          out=Path(trainer.cfg.out) / "view")
    source.watchers = lambda: len(server.sessions)
    trainer.step_callbacks.append(source.on_step)
    return server, source
