"""Which rasteriser renders: ``native`` (cuda_ext/, CPU or CUDA), ``torch`` (the plain PyTorch reference) or
``gsplat`` (gsplat's CUDA rasteriser, GPU only); ``auto`` picks the fastest one available for the device.

The native kernels and the reference follow the same rules and agree to float precision (the tests check it); gsplat
follows the same projection and blending rules but tiles without the reference's 3-sigma pixel square, so its images
differ slightly at the rim of large splats. gsplat is never chosen by ``auto``: its first call JIT-compiles CUDA code
for tens of minutes.
"""
from __future__ import annotations

import importlib.util

import torch

from ..errors import ConfigError
from . import native

BACKENDS = ("auto", "native", "torch", "gsplat")
DEFAULT_TILE_SIZE = {"native": 16, "torch": 8, "gsplat": 16}


def gsplat_unavailable_reason(device: torch.device | str) -> str | None:
    if torch.device(device).type != "cuda":
        return "the gsplat backend renders on CUDA devices only"
    if importlib.util.find_spec("gsplat") is None:
        return "the gsplat backend needs the gsplat package (pip install gsplat)"
    return None


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Concrete backends that can render on ``device``, fastest first."""
    out = ["native"] if native.available(device) else []
    if gsplat_unavailable_reason(device) is None:
        out.append("gsplat")
    return out + ["torch"]


def resolve_backend(name: str, device: torch.device | str = "cpu") -> str:
    """``name`` as a concrete backend for ``device``; ConfigError (naming the fix) if it cannot run there."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown render backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "native" if native.available(device) else "torch"
    reason = {"native": native.unavailable_reason, "gsplat": gsplat_unavailable_reason}.get(name, lambda d: None)(
        device)
    if reason:
        raise ConfigError(f"render backend {name!r} is not available: {reason}")
    return name
