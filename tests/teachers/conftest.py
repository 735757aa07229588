"""Shared fixtures: the sentence model (loaded once per test session: several seconds on CPU) and empty weight
caches."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def labels_teacher():
    from featurefields.teachers import make_teacher

    teacher = make_teacher("labels")
    teacher.encode_text(["warm up"])  # load the model here, not inside the first test's timing
    return teacher


@pytest.fixture
def no_weight_caches(tmp_path, monkeypatch):
    """Point every weights cache we look in at empty folders, so the tests hold on machines that have weights."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FF_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path
