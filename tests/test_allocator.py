"""glibc's allocator: fixed thresholds for large tensors, and the viewer's heap trim (freed frame buffers back to the
system, at most once per interval)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from featurefields.allocator import HeapTrim


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


def test_tune_keeps_large_buffers_in_the_heap(tmp_path):
    """In a fresh process: importing featurefields fixes the thresholds, and a 40 MB buffer made again and again
    (above the 32 MB where glibc's dynamic threshold stops rising: always mapped anew at its defaults) no longer
    page-faults in every time; FF_MALLOC=default leaves the defaults."""
    import subprocess
    import sys

    code = ("import resource, torch, featurefields, featurefields.allocator as a\n"
            "for _ in range(3):\n    x = torch.zeros(10_000_000); del x\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(10):\n    x = torch.zeros(10_000_000); del x\n"
            "print(a.tune()['malloc'], (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) // 10)\n")
    out = {}
    for how in ("", "default"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env["FF_MALLOC"] = how
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        words = res.stdout.split()
        out[how] = (" ".join(words[:-1]), int(words[-1]))
    if out[""][0] == "not glibc: left as it is":
        pytest.skip("not glibc")
    assert out[""][0] == "fixed thresholds" and out["default"][0] == "left as the environment says"
    pages = 10_000_000 * 4 // 4096
    assert out[""][1] < 0.05 * pages, out  # reused
    assert out["default"][1] > 0.5 * pages, out  # faulted in anew each time (what the tuning is for)
