"""The native Gaussian-mixture kernel (cuda_ext/cpu/mixture.cpp) held to the PyTorch reference of
``gaussian_mixture_at`` (scipy's trees + PyTorch): density, opacity and the weighted values, for several value
widths, with and without blur, on thin splats, huge ones, far ones and degenerate input."""
from __future__ import annotations

import math

import pytest
import torch

from featurefields.fields.density import quat_to_rotmat
from featurefields.fields.splats import _native_mixture, gaussian_mixture_at

pytestmark = pytest.mark.skipif(_native_mixture(torch.device("cpu")) is None,
                                reason="featurefields._native is not built (or predates mixture_at)")


def scene(n: int = 400, seed: int = 0, dtype=torch.float32):
    """Gaussians of sizes from 0.5 mm to 5 cm in a 30 cm box, a fifth of them thin splats (one axis 20 um), two
    huge background ones and a few far away; points on and around them."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * 0.3
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(5e-4), math.log(5e-2), generator=g))
    scales[: n // 5, 2] = 2e-5
    scales[-2:] = torch.tensor([[0.5, 0.4, 0.3], [0.3, 0.6, 0.2]])
    means[-6:-2] += 5.0  # out of everyone's reach
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    opac = torch.rand(n, generator=g) * 0.98 + 0.01
    # points: on the thin splats' planes (where their weight is largest), near centres, and anywhere
    on = means[: n // 5] + (quat_to_rotmat(quats[: n // 5])[:, :, :2] @ (torch.randn(n // 5, 2, 1, generator=g)
                                                                         * 0.002))[..., 0]
    near = means[: n // 2] + torch.randn(n // 2, 3, generator=g) * 0.01
    anywhere = torch.rand(300, 3, generator=g) * 0.4 - 0.05
    pts = torch.cat([on, near, anywhere])
    return [t.to(dtype) for t in (pts, means, quats, scales, opac)]


def values_of(n: int, c: int, dtype=torch.float32):
    return torch.randn(n, c, generator=torch.Generator().manual_seed(c)).to(dtype)


@pytest.mark.parametrize("c", [3, 19, 67])
@pytest.mark.parametrize("blur", [0.0, 0.0025])
def test_native_matches_reference(c, blur):
    pts, means, quats, scales, opac = scene()
    vals = values_of(len(means), c)
    nd, no, nv = gaussian_mixture_at(pts, means, quats, scales, opac, vals, blur=blur, backend="native")
    rd, ro, rv = gaussian_mixture_at(pts, means, quats, scales, opac, vals, blur=blur, backend="torch")
    assert (rd > 1e-3).float().mean() > 0.5  # most points see some Gaussian: the comparison means something
    torch.testing.assert_close(nd, rd, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(no, ro, atol=1e-5, rtol=1e-4)
    hit = rd > 1e-4
    torch.testing.assert_close(nv[hit], rv[hit], atol=1e-4, rtol=1e-3)
    assert nv.shape == (len(pts), c) and bool(torch.isfinite(nv).all())


def test_thin_splats_are_seen_by_the_native_kernel():
    """Points on a thin splat's plane get its full weight (the R^T d form keeps 20 um axes exact)."""
    pts, means, quats, scales, opac = scene()
    k = len(means) // 5
    d, _, _ = gaussian_mixture_at(pts[:k], means[:k], quats[:k], scales[:k], opac[:k], values_of(k, 3),
                                  backend="native")
    rd, _, _ = gaussian_mixture_at(pts[:k], means[:k], quats[:k], scales[:k], opac[:k], values_of(k, 3),
                                   backend="torch")
    assert float(d.max()) > 0.1
    torch.testing.assert_close(d, rd, atol=1e-5, rtol=1e-4)


def test_native_float64_and_thread_count_do_not_change_the_result():
    pts, means, quats, scales, opac = scene(seed=3, dtype=torch.float64)
    vals = values_of(len(means), 19, torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gaussian_mixture_at(pts, means, quats, scales, opac, vals, blur=0.001, backend="native")
        torch.set_num_threads(2)
        two = gaussian_mixture_at(pts, means, quats, scales, opac, vals, blur=0.001, backend="native")
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):  # a fixed summation order per point, whatever the threads
        assert a.dtype == torch.float64
        assert torch.equal(a, b)
    ref = gaussian_mixture_at(*(t.float() for t in (pts, means, quats, scales, opac, vals)), blur=0.001,
                              backend="torch")  # (the reference computes in float32)
    torch.testing.assert_close(one[0], ref[0].double(), atol=1e-5, rtol=1e-4)


def test_native_degenerate_input():
    pts, means, quats, scales, opac = scene(n=50)
    vals = values_of(50, 3)
    d, o, v = gaussian_mixture_at(pts[:0], means, quats, scales, opac, vals, backend="native")
    assert d.shape == (0,) and v.shape == (0, 3)
    d, o, v = gaussian_mixture_at(pts, means[:0], quats[:0], scales[:0], opac[:0], vals[:0], backend="native")
    assert float(d.abs().sum()) == 0 and float(o.abs().sum()) == 0
    d, o, v = gaussian_mixture_at(pts, means, quats, scales, opac, vals[:, :0], backend="native")
    rd, ro, _ = gaussian_mixture_at(pts, means, quats, scales, opac, vals[:, :0], backend="torch")
    assert v.shape == (len(pts), 0)
    torch.testing.assert_close(d, rd, atol=1e-5, rtol=1e-4)
    # one point, far from everything; all points identical
    d, _, _ = gaussian_mixture_at(torch.full((1, 3), 100.0), means, quats, scales, opac, vals, backend="native")
    assert float(d[0]) == 0
    same = means[:1].repeat(5, 1)
    d, _, _ = gaussian_mixture_at(same, means, quats, scales, opac, vals, backend="native")
    rd, _, _ = gaussian_mixture_at(same, means, quats, scales, opac, vals, backend="torch")
    torch.testing.assert_close(d, rd, atol=1e-5, rtol=1e-4)


def test_kernel_leaves_non_finite_points_empty():
    """(query_points rejects NaN before; the kernel itself neither crashes nor lets them touch the grid)"""
    pts, means, quats, scales, opac = scene(n=60)
    lib = _native_mixture(torch.device("cpu"))
    args = (means, quats, scales, opac, values_of(60, 3))
    bad = pts.clone()
    bad[0, 1] = math.nan
    bad[1, 0] = math.inf
    d, lt, acc = lib.mixture_at(bad, *args, 0.0, 3.0)
    assert float(d[0]) == 0 and float(d[1]) == 0 and bool(torch.isfinite(d).all())
    good, _, _ = lib.mixture_at(pts[2:], *args, 0.0, 3.0)
    torch.testing.assert_close(d[2:], good)
    with pytest.raises(RuntimeError, match="quats"):
        lib.mixture_at(pts, means, torch.zeros(60, 3), *args[2:], 0.0, 3.0)
    with pytest.raises(ValueError, match="backend"):
        gaussian_mixture_at(pts, means, quats, scales, opac, values_of(60, 3), backend="gpu")
