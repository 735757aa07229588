"""How many threads a long CPU job should use while it shares the machine.

PyTorch's and the native kernels' OpenMP regions split their work across ``torch.get_num_threads()`` threads and end
with a barrier. When another CPU-bound process runs beside a 2-thread training on a 2-core machine, one of the two
threads is descheduled most of the time, and every region (a training step has hundreds: each elementwise op, the
optimizer, the rasteriser) waits for it at the barrier, up to a scheduler time slice each: a 0.18 s step took 1.3 s.
With one thread fewer than the busy cores would need, nothing waits, and the step costs what a fair share costs.

:class:`ThreadGovernor` measures, every few seconds, how much CPU time the *other* processes took (the machine's
busy time in ``/proc/stat`` minus this process's own) and sets ``torch.set_num_threads`` (which the native kernels
follow too) to the cores they leave idle, at least one. Where ``/proc/stat`` is unreadable, or with the environment
variable ``FF_ADAPT_THREADS=0``, it does nothing.
"""
from __future__ import annotations

import os
import resource
import time

import torch


def _busy_seconds() -> float | None:
    """Seconds of CPU time all processes have used (user, nice, system, irq, softirq), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ThreadGovernor:
    """Call :meth:`update` often (every training step); it re-decides at most every ``period`` seconds.

    ``max_threads``: the most it will use (default: the threads PyTorch had when the governor was made). Each 0.4 cores
    and more that the others took (rounded: 0.4 -> 1, 1.4 -> 2) costs one thread. Beside a 2-thread run a 1-core job
    gets only part of its core and is measured at ~0.7; once the run is down to one thread it takes its whole core
    (1.0) and the decision stays; when it stops, the measure drops to ~0 and the thread comes back. Processes with a
    higher nice value mostly get the time this one leaves and barely count."""

    def __init__(self, max_threads: int | None = None, period: float = 2.0, enabled: bool | None = None):
        if enabled is None:
            enabled = os.environ.get("FF_ADAPT_THREADS", "1") != "0"
        self.max_threads = max_threads or torch.get_num_threads()
        self.period = period
        self.enabled = enabled and self.max_threads > 1 and _busy_seconds() is not None
        self.threads = torch.get_num_threads()
        self.others = 0.0  # cores the other processes used in the last period
        self._mark = self._sample() if self.enabled else None

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        return time.monotonic(), _busy_seconds() or 0.0, _own_seconds()

    def update(self) -> int:
        """The thread count to use now (set in torch when it changes)."""
        if not self.enabled or time.monotonic() - self._mark[0] < self.period:
            return self.threads
        t, busy, own = self._sample()
        self.others = max(0.0, ((busy - self._mark[1]) - (own - self._mark[2])) / (t - self._mark[0]))
        self._mark = (t, busy, own)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        want = max(1, min(self.max_threads, cores - int(self.others + 0.6)))
        if want != self.threads:
            torch.set_num_threads(want)
            self.threads = want
        return self.threads

    def close(self) -> None:
        """Back to the thread count it started from."""
        if self.enabled and self.threads != self.max_threads:
            torch.set_num_threads(self.max_threads)
            self.threads = self.max_threads
