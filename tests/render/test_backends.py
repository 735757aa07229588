"""Choosing a render backend, and the build that provides the native one."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from featurefields.errors import ConfigError
from featurefields.render import available_backends, native, render, resolve_backend

from .helpers import camera, random_gaussians_3d


def test_auto_prefers_native_and_falls_back_to_the_reference():
    expected = "native" if native.available("cpu") else "torch"
    assert resolve_backend("auto", "cpu") == expected
    assert available_backends("cpu")[-1] == "torch" and "gsplat" not in available_backends("cpu")


def test_unavailable_or_unknown_backends_are_config_errors():
    with pytest.raises(ConfigError, match="CUDA devices only"):
        resolve_backend("gsplat", "cpu")
    with pytest.raises(ConfigError, match="unknown render backend 'vulkan'"):
        resolve_backend("vulkan", "cpu")


def test_native_reports_why_it_is_missing(monkeypatch):
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_import_error", "featurefields._native is not built (test)")
    assert not native.available("cpu")
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ConfigError, match="not built"):
        resolve_backend("native", "cpu")


@pytest.mark.skipif(not native.available("cpu"), reason="native extension not built")
def test_cuda_kernels_are_compiled_wherever_a_cuda_toolkit_is():
    """The build compiles the .cu files whenever nvcc and a CUDA PyTorch exist, GPU or not (setup.py), so that a
    CUDA syntax error cannot land unnoticed on a machine without a GPU."""
    if os.environ.get("FF_BUILD_CUDA", "auto").lower() in ("0", "false", "no"):
        pytest.skip("FF_BUILD_CUDA=0: CUDA kernels deliberately not built")
    has_toolkit = shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc")
    if not (has_toolkit and torch.version.cuda):
        pytest.skip("no CUDA toolkit or CPU-only PyTorch: nothing to compile")
    assert native.native_module().has_cuda()


@pytest.mark.skipif(not native.available("cpu"), reason="native extension not built")
def test_native_input_errors_are_clear():
    means, quats, scales = random_gaussians_3d(10, dtype=torch.float32)
    viewmat, K = camera(8, 6, dtype=torch.float32)
    with pytest.raises(ValueError, match="tile_size"):
        render(means, quats, scales, torch.ones(10), torch.ones(10, 3), viewmat, K, 8, 6, backend="native",
               tile_size=0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        native.project(means.half(), quats.half(), scales.half(), viewmat.half(), K.half(), 8, 6)
