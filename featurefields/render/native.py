"""The native rasteriser (``cuda_ext/``, module ``featurefields._native``) as autograd functions.

Same contracts as the plain PyTorch reference (:func:`~featurefields.render.projection.project`,
:func:`~featurefields.render.sh.eval_sh`, :func:`~featurefields.render.rasterize.rasterize`), so either can stand in
for the other; the tests hold these to the reference, forward and gradients. The kernels run on the tensors' device
(CPU, or CUDA when the extension was built with it) in float32 or float64, for any number of channels.
"""
from __future__ import annotations

import importlib

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .projection import Projection, check_project_inputs
from .rasterize import check_inputs

_module = None
_import_error: str | None = None


def native_module():
    """The compiled extension, or None (see :func:`unavailable_reason`)."""
    global _module, _import_error
    if _module is None and _import_error is None:
        try:
            _module = importlib.import_module("featurefields._native")
        except ImportError as e:  # not built (e.g. installed without a compiler)
            _import_error = f"featurefields._native is not built ({e}); rebuild with `pip install " \
                            "--no-build-isolation -e .` (see cuda_ext/README.md)"
    return _module


def unavailable_reason(device: torch.device | str = "cpu") -> str | None:
    """None if the native kernels can run on ``device``, else why not."""
    mod = native_module()
    if mod is None:
        return _import_error
    if torch.device(device).type == "cuda" and not mod.has_cuda():
        return "featurefields._native was built without CUDA kernels (no CUDA toolkit at build time)"
    if torch.device(device).type not in ("cpu", "cuda"):
        return f"no native kernels for device {device}"
    return None


def available(device: torch.device | str = "cpu") -> bool:
    return unavailable_reason(device) is None


def _lib():
    mod = native_module()
    if mod is None:
        raise RuntimeError(_import_error)
    return mod


# ---- projection ---------------------------------------------------------------------------------------------------

class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmat, K, width, height, eps2d, near, far):
        means2d, conics, depths, radii = _lib().project_fwd(means, quats, scales, viewmat, K, width, height, eps2d,
                                                            near, far)
        ctx.save_for_backward(means, quats, scales, viewmat, K, radii)
        ctx.settings = (width, height, eps2d, near, far)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii):
        means, quats, scales, viewmat, K, radii = ctx.saved_tensors
        v_means, v_quats, v_scales, v_viewmat = _lib().project_bwd(
            means, quats, scales, viewmat, K, *ctx.settings, radii, v_means2d, v_conics, v_depths,
            ctx.needs_input_grad[3])
        need = ctx.needs_input_grad
        return (v_means if need[0] else None, v_quats if need[1] else None, v_scales if need[2] else None,
                v_viewmat if need[3] else None, None, None, None, None, None, None)


def project(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
            near: float = 0.01, far: float = 1e10, eps2d: float = 0.3) -> Projection:
    """Native :func:`featurefields.render.projection.project`; differentiable w.r.t. means, quats, scales and the
    view matrix (camera pose), not K."""
    check_project_inputs(means, quats, scales, viewmat, K)
    viewmat, K = viewmat.to(means), K.detach().to(means)
    means2d, conics, depths, radii = _Project.apply(means, quats.to(means), scales.to(means), viewmat, K, int(width),
                                                    int(height), float(eps2d), float(near), float(far))
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii)


# ---- spherical harmonics ----------------------------------------------------------------------------------------

class _SH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, dirs, coeffs, rest):
        ctx.degree = degree
        ctx.save_for_backward(dirs, coeffs, rest)
        return _lib().sh_fwd(degree, dirs, coeffs, rest)

    @staticmethod
    @once_differentiable
    def backward(ctx, v_out):
        dirs, coeffs, rest = ctx.saved_tensors
        need = ctx.needs_input_grad
        v_coeffs, v_rest, v_dirs = _lib().sh_bwd(ctx.degree, dirs, coeffs, rest, v_out, need[2] or need[3], need[1])
        return None, v_dirs, v_coeffs if need[2] else None, v_rest if need[3] else None


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor, rest: Tensor | None = None) -> Tensor:
    """Native :func:`featurefields.render.sh.eval_sh` for dirs [N, 3] and coeffs [N, K, C] -> [N, C].

    ``rest`` [N, K', C]: the coefficients may come in two blocks (3DGS keeps the DC term apart from the others), as if
    concatenated along dim 1, which saves the copy.
    """
    from .sh import num_sh_bases

    n = num_sh_bases(degree)
    K = coeffs.shape[1] + (rest.shape[1] if rest is not None else 0) if coeffs.ndim == 3 else 0
    if dirs.ndim != 2 or dirs.shape[-1] != 3:
        raise ValueError(f"dirs must be [N, 3], got {tuple(dirs.shape)}")
    if coeffs.ndim != 3 or coeffs.shape[0] != dirs.shape[0] or K < n:
        raise ValueError(f"coeffs must be [N={dirs.shape[0]}, K>={n}, C] for degree {degree}, "
                         f"got {tuple(coeffs.shape)}")
    if rest is not None and (rest.ndim != 3 or rest.shape[0] != coeffs.shape[0] or rest.shape[2] != coeffs.shape[2]):
        raise ValueError(f"rest must be [N, K', C={coeffs.shape[2]}], got {tuple(rest.shape)}")
    return _SH.apply(int(degree), dirs.to(coeffs), coeffs, rest.to(coeffs) if rest is not None else None)


# ---- rasterisation ------------------------------------------------------------------------------------------------

class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, radii, depths, width, height, tile_size,
                geometry_channels):
        lib = _lib()
        rects, offsets, ids = lib.bin_tiles(means2d, radii, conics, opacities, depths, width, height, tile_size)
        binning = (rects, offsets, ids)
        image, alpha, last = lib.rasterize_fwd(means2d, conics, opacities, colors, background, *binning, width,
                                               height, tile_size)
        ctx.save_for_backward(means2d, conics, opacities, colors, background, *binning, image, alpha, last)
        ctx.settings = (width, height, tile_size)
        ctx.geometry_channels = geometry_channels
        return image, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, v_image, v_alpha):
        (means2d, conics, opacities, colors, background, rects, offsets, ids, image, alpha,
         last) = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_geometry, need_colors = any(need[:3]), need[3]
        if v_image is None:
            v_image = torch.zeros_like(image)
        # (dL/dbackground, the sum over pixels of (1 - alpha) dL/dimage, comes from the kernel's read of dL/dimage)
        v_means2d, v_conics, v_opac, v_colors, v_background = _lib().rasterize_bwd(
            means2d, conics, opacities, colors, background, rects, offsets, ids, *ctx.settings, image, alpha, last,
            v_image, v_alpha, ctx.geometry_channels, need_geometry, need_colors, need[4])
        return (v_means2d if need[0] else None, v_conics if need[1] else None, v_opac if need[2] else None,
                v_colors if need_colors else None, v_background if need[4] else None, None, None, None, None, None,
                None)


def rasterize(proj: Projection, opacities: Tensor, colors: Tensor, width: int, height: int,
              background: Tensor | None = None, tile_size: int = 16,
              geometry_channels: int | None = None) -> tuple[Tensor, Tensor]:
    """Native :func:`featurefields.render.rasterize.rasterize` (same arguments, same result for any tile size)."""
    opacities, colors, background = check_inputs(proj, opacities, colors, width, height, background)
    C = colors.shape[1]
    k = C if geometry_channels is None else geometry_channels
    if not 0 <= k <= C:
        raise ValueError(f"rasterize: geometry_channels must be in [0, {C}], got {geometry_channels}")
    if not 1 <= tile_size <= 32:
        raise ValueError(f"rasterize: tile_size must be in 1..32, got {tile_size}")
    return _Rasterize.apply(proj.means2d, proj.conics, opacities, colors, background, proj.radii.to(torch.int32),
                            proj.depths.detach(), int(width), int(height), int(tile_size), int(k))
