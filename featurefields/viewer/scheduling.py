"""When and how big each browser's next frame is: a render thread per browser, the newest camera always wins, a
lower resolution while the camera moves, full resolution once it rests, and renders that take turns.

Every browser has its own :class:`RenderLoop` thread. A camera message only marks the browser *dirty*; the thread
reads the newest camera when it starts a frame, so cameras that arrived in between are never rendered (stale
frames are dropped, not queued). While the camera moves, a feedback controller (:class:`MotionScale`) picks the
resolution from the measured frame times so motion stays at the target rate; once the camera rests (no message
for a while, see :class:`CameraClock`) the frame is redone at full resolution.

Renders of all browsers go through one :class:`FairLock` (first come, first served): on a CPU each render already
uses every core, and two at once would only make both late. A :class:`RenderBudget` caps the share of wall time
spent rendering, so a viewer attached to a training run costs the training a bounded fraction of its time.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import Callable

log = logging.getLogger("featurefields.viewer")

REST_SECONDS = 0.25  # no camera message for this long: the camera rests, render at full resolution


class FairLock:
    """A lock granted in arrival order, so one busy browser cannot starve the others (threading.Lock makes no
    such promise)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: collections.deque = collections.deque()

    def __enter__(self) -> "FairLock":
        me = object()
        with self._cond:
            self._queue.append(me)
            while self._queue[0] is not me:
                self._cond.wait()
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._queue.popleft()
            self._cond.notify_all()


class RenderBudget:
    """At most ``fraction`` of wall time goes to rendering (1: no limit). After a render of r seconds the next one
    may start only r (1/fraction - 1) seconds later; shared by all browsers."""

    def __init__(self, fraction: float = 1.0):
        self.fraction = fraction
        self._next = 0.0
        self._lock = threading.Lock()
        self.spent = 0.0  # seconds rendered since start (for reports)

    def wait(self, stop: threading.Event) -> None:
        while True:
            with self._lock:
                delay = self._next - time.monotonic() if self.fraction < 1 else 0.0
            if delay <= 0 or stop.wait(min(delay, 0.1)):
                return

    def charge(self, seconds: float) -> None:
        with self._lock:
            self.spent += seconds
            if self.fraction < 1:
                self._next = time.monotonic() + seconds * (1.0 / max(self.fraction, 1e-3) - 1.0)


class MotionScale:
    """Resolution scale for frames of a moving camera, per mode, steered by the frame times actually measured:
    a frame slower than the target shrinks the next one, a faster one lets it grow (area ~ time)."""

    def __init__(self, target_fps: float = 15.0, lo: float = 0.05):
        self.target = 1.0 / target_fps
        self.lo = lo
        self._scale: dict[str, float] = {}

    def scale(self, mode: str) -> float:
        return self._scale.get(mode, 0.5)

    def record(self, mode: str, seconds: float, scale: float, moving: bool) -> None:
        if seconds <= 0:
            return
        # the scale that would have taken 85% of the target time (pixels ~ time; the margin absorbs jitter)
        ratio = math.sqrt(0.85 * self.target / seconds)
        if moving:
            new = scale * min(max(ratio, 0.5), 1.5)  # damped: one odd frame does not swing the resolution
        elif mode not in self._scale:
            new = scale * ratio  # first full-resolution frame: a good starting guess
        else:
            return
        self._scale[mode] = min(1.0, max(self.lo, new))


class CameraClock:
    """When a browser's camera last moved, and how long a pause means it has come to rest. A browser whose page
    draws slowly (software WebGL on a busy machine) sends a camera message only every few hundred milliseconds
    while dragging; it is still moving between them, so the rest window stretches to 2.5 message intervals."""

    def __init__(self, rest: float = REST_SECONDS, longest: float = 1.0):
        self.base, self.longest = rest, longest
        self._times: collections.deque[float] = collections.deque(maxlen=9)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
        return now

    def last(self) -> float | None:
        with self._lock:
            return self._times[-1] if self._times else None

    def rest(self) -> float:
        with self._lock:
            t = list(self._times)
        gaps = sorted(b - a for a, b in zip(t, t[1:]) if b - a < self.longest)
        if not gaps:
            return self.base
        return min(max(self.base, 2.5 * gaps[len(gaps) // 2]), self.longest)

    def moving(self, now: float | None = None) -> bool:
        last = self.last()
        now = time.monotonic() if now is None else now
        return last is not None and now - last < self.rest()


class RenderLoop(threading.Thread):
    """The render thread of one browser. ``frame(moving)`` renders and sends one frame for the newest camera (at
    ``motion.scale(mode)`` while moving) and returns (mode, seconds, scale used), or None if there was nothing to
    render; ``clock`` knows when the camera last moved; ``tidy()`` runs after each frame, before the lock is
    released (the viewer trims the heaps there, see :mod:`featurefields.allocator`)."""

    def __init__(self, name: str, frame: Callable[[bool], tuple[str, float, float] | None], clock: CameraClock,
                 lock: FairLock, budget: RenderBudget, motion: MotionScale, tidy: Callable[[], object] | None = None):
        super().__init__(name=name, daemon=True)
        self._frame, self._clock, self._tidy = frame, clock, tidy
        self._lock, self._budget, self._motion = lock, budget, motion
        self.busy = False  # a frame is being rendered
        self._cond = threading.Condition()
        self._dirty = False
        self._camera_moved = False
        self._refine_at: float | None = None
        self.stopped = threading.Event()
        self.errors = 0

    def poke(self, camera_moved: bool = False) -> None:
        """Something changed (camera, mode, query, field): render again soon."""
        with self._cond:
            self._dirty = True
            self._camera_moved |= camera_moved
            self._cond.notify()

    def stop(self) -> None:
        self.stopped.set()
        with self._cond:
            self._cond.notify()

    def run(self) -> None:
        while not self.stopped.is_set():
            with self._cond:
                while not self.stopped.is_set() and not self._dirty:
                    timeout = None if self._refine_at is None else self._refine_at - time.monotonic()
                    if timeout is not None and timeout <= 0:
                        break
                    self._cond.wait(timeout)
                if self.stopped.is_set():
                    return
                refine = not self._dirty
                moved, self._dirty, self._camera_moved = self._camera_moved, False, False
            moving = moved and not refine and self._clock.moving()
            self._budget.wait(self.stopped)
            if self.stopped.is_set():
                return
            try:
                with self._lock:
                    if self.stopped.is_set():
                        return
                    self.busy = True
                    t0 = time.perf_counter()
                    try:
                        done = self._frame(moving)
                    finally:
                        self.busy = False
                    seconds = time.perf_counter() - t0
                    if self._tidy is not None:  # still holding the lock: no other render is allocating
                        self._tidy()
                self._budget.charge(seconds)
            except Exception:  # noqa: BLE001 - one bad frame must not kill the browser's render thread
                if self.stopped.is_set():
                    return
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.exception("render failed (%d so far on %s)", self.errors, self.name)
                time.sleep(0.2)
                continue
            with self._cond:  # a moving frame (drawn or skipped) is redone at full size once the camera rests
                self._refine_at = (time.monotonic() + self._clock.rest()) if moving else None
            if done is not None:
                mode, seconds, used = done
                self._motion.record(mode, seconds, used, moving)
