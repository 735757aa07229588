"""glibc's allocator, set for large tensors that come and go (``tune``), and freed memory given back (``HeapTrim``).

Why ``tune``: a training step or a render allocates the same large buffers again and again (gradients [N, D], the
image [H, W, D]). glibc serves a request of at least its mmap threshold with a fresh ``mmap`` and unmaps it when
freed, and its dynamic threshold keeps a buffer that is exactly as large as the last one freed on that path, so
every step pays a page fault for every 4 kB of every such buffer (measured: 5,000 faults, 20 MB, per native
forward + backward at N=100k, D=32; ``torch.zeros(100_000, 32)`` took 12 ms here, 50x an 8 MB one served from the
heap). A fixed threshold of 256 MB keeps them in the heap, where freed memory is reused without faults; the trim
threshold (512 MB, twice it as glibc's own rule has it) bounds what an idle heap keeps. It is set once, when
featurefields is imported, unless the user set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` themselves
or ``FF_MALLOC=default``; elsewhere than glibc nothing is done.

Why ``HeapTrim``: every browser's render thread in the viewer allocates frame-sized buffers whose size changes with
each moving frame's resolution. glibc keeps what is freed in per-thread heaps; with sizes that never repeat, the
free space fragments and the server's resident memory climbs (measured: in-use memory flat at ~185 MB while the
heaps' free space grew by 320 MB over 60 s of four dragging browsers). ``malloc_trim`` returns the free pages of
every heap; the viewer calls it between renders (holding the render lock, so no render is allocating) and at most
every ``interval`` seconds.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

MMAP_THRESHOLD = 256 << 20  # bytes
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_SET = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_settings: dict | None = None


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def tune() -> dict:
    """Fix glibc's mmap and trim thresholds (see the module docstring), once; what was done, for the records."""
    global _settings
    if _settings is not None:
        return _settings
    libc = _libc()
    if libc is None:
        _settings = {"malloc": "not glibc: left as it is"}
    elif os.environ.get("FF_MALLOC") == "default" or any(v in os.environ for v in _USER_SET):
        _settings = {"malloc": "left as the environment says",
                     **{v: os.environ[v] for v in _USER_SET if v in os.environ}}
    else:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                   TRIM_THRESHOLD) == 1
        _settings = {"malloc": "fixed thresholds" if ok else "mallopt refused: glibc's defaults",
                     "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    return _settings


class HeapTrim:
    """``maybe()`` trims the process' heaps if ``interval`` seconds have passed since the last trim."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        libc = _libc()
        self._trim = libc.malloc_trim if libc is not None else None
        self._last = 0.0
        self._lock = threading.Lock()
        self.count, self.seconds = 0, 0.0  # trims done and the time they took (for tests and reports)

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe(self) -> bool:
        if self._trim is None:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return False
            self._last = now
        t0 = time.perf_counter()
        self._trim(0)
        self.count += 1
        self.seconds += time.perf_counter() - t0
        return True
