"""ThreadGovernor: one thread fewer per busy core that other processes take, and back when they stop."""
from __future__ import annotations

import pytest
import torch

from featurefields import threads as gov


@pytest.fixture
def machine(monkeypatch):
    """A fake 2-core machine: the test sets how much CPU time the others and this process used per period."""
    state = {"t": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(gov, "_busy_seconds", lambda: state["busy"])
    monkeypatch.setattr(gov, "_own_seconds", lambda: state["own"])
    monkeypatch.setattr(gov.time, "monotonic", lambda: state["t"])
    monkeypatch.setattr(gov.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("FF_ADAPT_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)

    def period(others: float, own: float, seconds: float = 2.0):
        state["t"] += seconds
        state["own"] += own * seconds
        state["busy"] += (own + others) * seconds

    yield period
    torch.set_num_threads(before)


def test_gives_a_thread_away_while_another_process_runs_and_takes_it_back(machine):
    g = gov.ThreadGovernor(max_threads=2)
    machine(others=0.05, own=1.9)
    assert g.update() == 2  # an idle machine: both threads
    machine(others=0.7, own=1.3)  # a 1-core job squeezed by our two threads
    assert g.update() == 1 and torch.get_num_threads() == 1
    machine(others=1.0, own=1.0)  # it now has its core: the decision holds
    assert g.update() == 1
    machine(others=0.02, own=1.0)  # it stopped
    assert g.update() == 2 and torch.get_num_threads() == 2


def test_ignores_light_background_load_and_decides_once_per_period(machine):
    g = gov.ThreadGovernor(max_threads=2, period=2.0)
    machine(others=0.3, own=1.7)  # e.g. niced jobs that get the time we leave
    assert g.update() == 2
    machine(others=1.0, own=1.0, seconds=0.5)  # too soon to re-decide
    assert g.update() == 2
    machine(others=1.0, own=1.0, seconds=2.0)
    assert g.update() == 1
    g.close()
    assert torch.get_num_threads() == 2


def test_can_be_switched_off(machine, monkeypatch):
    monkeypatch.setenv("FF_ADAPT_THREADS", "0")
    g = gov.ThreadGovernor(max_threads=2)
    machine(others=1.5, own=0.5)
    assert g.update() == 2 and not g.enabled
