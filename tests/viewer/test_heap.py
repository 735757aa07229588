"""The viewer's heap trim: freed frame buffers go back to the system, at most once per interval."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from featurefields.viewer.heap import HeapTrim


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_trim_returns_fragmented_free_memory_to_the_system():
    trim = HeapTrim(interval=0.0)
    if not trim.available:
        pytest.skip("not glibc: malloc_trim is not there")
    trim.maybe()
    # 100 kB blocks (below glibc's mmap threshold: they come from the heap), every 16th kept: the free space lies
    # between live blocks, where freeing alone cannot give it back
    blocks = [np.ones(100_000 // 8) for _ in range(2400)]
    keep = blocks[::16]
    del blocks
    before = rss_mb()
    assert trim.maybe()
    after = rss_mb()
    assert before - after > 100, (before, after)  # of the ~225 MB freed
    assert float(sum(b.sum() for b in keep)) == len(keep) * 12_500


def test_trim_at_most_once_per_interval():
    trim = HeapTrim(interval=60.0)
    if not trim.available:
        pytest.skip("not glibc: malloc_trim is not there")
    assert trim.maybe() and not trim.maybe() and trim.count == 1
    trim._last = time.monotonic() - 61
    assert trim.maybe() and trim.count == 2
