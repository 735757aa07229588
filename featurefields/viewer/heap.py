"""Give the memory of finished frames back to the operating system.

Every browser's render thread allocates frame-sized buffers (features, depth, JPEG) whose size changes with each
moving frame's resolution. glibc serves them from per-thread heaps and keeps what is freed for reuse; with sizes
that never repeat, the free space fragments and the server's resident memory climbs (measured: in-use memory flat
at ~185 MB while the heaps' free space grew by 320 MB over 60 s of four dragging browsers). ``malloc_trim`` returns
the free pages of every heap. It is called between renders (holding the render lock, so no render is allocating)
and at most every ``interval`` seconds; elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrim:
    """``maybe()`` trims the process' heaps if ``interval`` seconds have passed since the last trim."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self._trim = _malloc_trim()
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
