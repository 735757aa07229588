from __future__ import annotations

import sys

import pytest
import torch

import featurefields.render.brute as brute_mod
from featurefields.render import Projection, project, rasterize, rasterize_brute, render
from featurefields.render.rasterize import bin_gaussians, pixel_bounds, reach_bounds

from .helpers import camera, random_colors, random_gaussians_3d, random_projection

R = sys.modules["featurefields.render.rasterize"]  # the module (the package exports the function of that name)


def _run(fn, proj, opac, colors, W, H, bg, gi, ga, **kw):
    """Image, alpha and gradients w.r.t. (means2d, conics, opacities, colors, background) of a fixed linear loss."""
    leaves = [proj.means2d.detach().clone().requires_grad_(), proj.conics.detach().clone().requires_grad_(),
              opac.detach().clone().requires_grad_(), colors.detach().clone().requires_grad_(),
              bg.detach().clone().requires_grad_()]
    p = Projection(leaves[0], leaves[1], proj.depths, proj.radii)
    img, alpha = fn(p, leaves[2], leaves[3], W, H, leaves[4], **kw)
    loss = (img * gi).sum() + (alpha * ga).sum()
    return img.detach(), alpha.detach(), torch.autograd.grad(loss, leaves)


def _compare(a, b, rtol=1e-9):
    for x, y in zip(a, b):
        scale = y.abs().max().item() if y.numel() else 0.0
        torch.testing.assert_close(x, y, atol=rtol * max(scale, 1e-30), rtol=0)


def _scene(n, W, H, C, dtype=torch.float64, seed=0, **kw):
    proj, opac = random_projection(n, W, H, dtype=dtype, seed=seed, **kw)
    colors = random_colors(n, C, dtype=dtype, seed=seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    bg = torch.rand(C, generator=g, dtype=dtype)
    gi = torch.randn(H, W, C, generator=g, dtype=dtype)
    ga = torch.randn(H, W, 1, generator=g, dtype=dtype)
    return proj, opac, colors, bg, gi, ga


@pytest.mark.parametrize("C,tile", [(1, 16), (3, 8), (16, 5), (33, 16), (128, 8)])
def test_matches_brute_force(C, tile):
    W, H = 37, 29
    proj, opac, colors, bg, gi, ga = _scene(150, W, H, C, seed=C)
    ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=tile)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    assert ours[0].shape == (H, W, C) and ours[1].shape == (H, W, 1)
    assert 0.2 < ref[1].mean() < 0.99  # a real mix of covered and uncovered pixels
    _compare(ours[:2], ref[:2], rtol=1e-12)
    _compare(ours[2], ref[2], rtol=1e-9)


def test_dense_scene_with_termination_and_clamp(monkeypatch):
    """Opaque, heavily overlapping Gaussians: pixels stop at T < 1e-4 and alphas hit the 0.99 clamp."""
    W, H, C = 24, 19, 5
    proj, opac, colors, bg, gi, ga = _scene(300, W, H, C, seed=7, sigma_px=(1.5, 5.0), opacity=(0.6, 0.9995),
                                            margin=2.0)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    for tile in (16, 4):
        _compare(_run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=tile)[:2], ref[:2], rtol=1e-12)
        _compare(_run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=tile)[2], ref[2], rtol=1e-9)
    # Both rules really are exercised: without them the result changes.
    for name, value in (("T_MIN", 0.0), ("ALPHA_MAX", 1.0)):
        with monkeypatch.context() as m:
            m.setattr(R, name, value)
            m.setattr(brute_mod, name, value)
            other = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
            assert (other[0] - ref[0]).abs().max() > 1e-6, name


def test_small_blocks_and_chunks_match(monkeypatch):
    """Many blocks per tile, several chunks per block, recomputation in the backward: same answer."""
    W, H, C = 30, 22, 4
    proj, opac, colors, bg, gi, ga = _scene(200, W, H, C, seed=3, opacity=(0.3, 0.999))
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    monkeypatch.setattr(R, "BLOCK", 7)
    monkeypatch.setattr(R, "CHUNK_ELEMS", 500)
    for budget in (0, 1 << 30, 20_000):  # recompute all, keep all, keep some
        monkeypatch.setattr(R, "SAVE_BUDGET_BYTES", budget)
        ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=8)
        _compare(ours[:2], ref[:2], rtol=1e-12)
        _compare(ours[2], ref[2], rtol=1e-9)


def test_tile_size_does_not_change_the_result():
    W, H, C = 21, 17, 3
    proj, opac, colors, bg, gi, ga = _scene(80, W, H, C, seed=11)
    ref = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=16)
    for tile in (1, 3, 8, 64):
        ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=tile)
        _compare(ours[:2], ref[:2], rtol=1e-12)
        _compare(ours[2], ref[2], rtol=1e-9)


def test_float32_matches_brute_force():
    W, H, C = 40, 30, 20
    proj, opac, colors, bg, gi, ga = _scene(300, W, H, C, dtype=torch.float32, seed=5)
    ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=8)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    assert ours[0].dtype == torch.float32
    _compare(ours[:2], ref[:2], rtol=1e-5)
    _compare(ours[2], ref[2], rtol=1e-4)


def test_gradcheck():
    """Finite differences in float64 on a tiny case placed away from every threshold: all alphas well inside
    (1/255, 0.99), transmittance far above 1e-4, bounding squares covering the whole 8x6 image."""
    W, H = 8, 6
    dt = torch.float64
    means2d = torch.tensor([[2.3, 1.7], [5.6, 3.9], [4.1, 2.2], [6.9, 0.8]], dtype=dt, requires_grad=True)
    conics = torch.tensor([[0.030, 0.004, 0.025], [0.020, -0.006, 0.035], [0.045, 0.010, 0.030],
                           [0.025, 0.000, 0.020]], dtype=dt, requires_grad=True)
    opac = torch.tensor([0.55, 0.35, 0.7, 0.45], dtype=dt, requires_grad=True)
    colors = torch.tensor([[0.2, 0.9, -0.3], [0.8, 0.1, 0.5], [0.4, 0.4, 1.2], [-0.1, 0.6, 0.3]], dtype=dt,
                          requires_grad=True)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=dt, requires_grad=True)
    depths = torch.tensor([2.0, 1.0, 3.0, 1.5], dtype=dt)
    radii = torch.full((4,), 20, dtype=torch.int32)

    def fn(m, c, o, col, b):
        img, alpha = rasterize(Projection(m, c, depths, radii), o, col, W, H, b, tile_size=4)
        return img, alpha

    img, alpha = fn(means2d, conics, opac, colors, bg)
    assert 0.3 < alpha.min() and alpha.max() < 0.99
    assert torch.autograd.gradcheck(fn, (means2d, conics, opac, colors, bg), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_empty_and_degenerate_scenes():
    W, H, C = 9, 7, 4
    bg = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    gi = torch.randn(H, W, C, dtype=torch.float64)
    e2 = torch.zeros(0, 2, dtype=torch.float64)
    empty = Projection(e2, torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.float64),
                       torch.zeros(0, dtype=torch.int32))
    img, alpha = rasterize(empty, torch.zeros(0, dtype=torch.float64), torch.zeros(0, C, dtype=torch.float64), W, H, bg)
    assert torch.equal(img.detach(), bg.detach().expand(H, W, C))
    assert torch.equal(alpha, torch.zeros(H, W, 1, dtype=torch.float64))
    (img * gi).sum().backward()
    torch.testing.assert_close(bg.grad, gi.sum((0, 1)))
    # No background: zeros.
    img, _ = rasterize(empty, torch.zeros(0), torch.zeros(0, C), W, H)
    assert torch.equal(img, torch.zeros(H, W, C))

    proj, opac, colors, bg2, gi, ga = _scene(30, W, H, C, seed=2)
    cases = {
        "culled": (Projection(proj.means2d, proj.conics, proj.depths, torch.zeros_like(proj.radii)), opac),
        "zero opacity": (proj, torch.zeros_like(opac)),
        "off screen": (Projection(proj.means2d + 1000, proj.conics, proj.depths, proj.radii), opac),
    }
    for name, (p, o) in cases.items():
        img, alpha, grads = _run(rasterize, p, o, colors, W, H, bg2, gi, ga)
        assert torch.equal(img, bg2.expand(H, W, C)) and torch.equal(alpha, torch.zeros_like(alpha)), name
        for g in grads[:4]:
            assert torch.equal(g, torch.zeros_like(g)), name
        torch.testing.assert_close(grads[4], gi.sum((0, 1)))


def test_indefinite_conics_skip_negative_sigma():
    """3DGS skips a Gaussian at pixels where sigma < 0 (only possible for a non-positive-definite conic)."""
    W, H, C = 20, 15, 3
    proj, opac, colors, bg, gi, ga = _scene(40, W, H, C, seed=21)
    conics = proj.conics.clone()
    conics[::2, 1] = 2.5 * (conics[::2, 0] * conics[::2, 2]).sqrt()  # b^2 > a c: a saddle
    proj = Projection(proj.means2d, conics, proj.depths, proj.radii)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    _compare(_run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=8)[:2], ref[:2], rtol=1e-12)
    _compare(_run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=8)[2], ref[2], rtol=1e-9)


@pytest.mark.parametrize("W,H", [(1, 1), (1, 9), (13, 1), (17, 3), (33, 31)])
def test_tiny_and_odd_images(W, H):
    C = 2
    proj, opac, colors, bg, gi, ga = _scene(25, W, H, C, seed=W * 100 + H, margin=1.0)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    for tile in (16, 2):
        ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=tile)
        _compare(ours[:2], ref[:2], rtol=1e-12)
        _compare(ours[2], ref[2], rtol=1e-9)


def test_footprint_is_the_bounding_square():
    """A single Gaussian touches exactly the pixels whose centre is within its radius on both axes."""
    W, H = 20, 16
    m = torch.tensor([[9.3, 7.8]], dtype=torch.float64)
    p = Projection(m, torch.tensor([[0.02, 0.0, 0.02]], dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                   torch.tensor([3], dtype=torch.int32))
    _, alpha = rasterize(p, torch.tensor([0.9], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64), W, H)
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    inside = ((u + 0.5 - 9.3).abs() <= 3) & ((v + 0.5 - 7.8).abs() <= 3)
    assert torch.equal(alpha[..., 0] > 0, inside)
    assert pixel_bounds(m, p.radii, W, H).tolist() == [[6, 11, 5, 10]]
    bins = bin_gaussians(pixel_bounds(m, p.radii, W, H), p.depths, W, H, 4)
    assert bins.counts.view(4, 5)[1:3, 1:3].tolist() == [[1, 1], [1, 1]] and int(bins.counts.sum()) == 4


def test_tile_culling_drops_pairs_but_not_pixels():
    """Gaussians are only listed in tiles where they can reach alpha 1/255 (their footprint stays the square)."""
    W, H, C = 48, 40, 3
    proj, opac, colors, bg, gi, ga = _scene(300, W, H, C, seed=17, sigma_px=(0.7, 6.0), opacity=(0.003, 0.3))
    bounds = pixel_bounds(proj.means2d, proj.radii, W, H)
    reach = reach_bounds(bounds, proj.means2d, proj.conics, opac)
    assert bool((reach[:, 0] >= bounds[:, 0]).all() and (reach[:, 1] <= bounds[:, 1]).all())
    faint = opac < 0.99 / 255  # can never reach 1/255: listed nowhere
    assert int(faint.sum()) > 0 and bool((reach[faint, 0] > reach[faint, 1]).all())
    all_pairs = bin_gaussians(bounds, proj.depths, W, H, 4)
    needed = bin_gaussians(reach, proj.depths, W, H, 4)
    assert int(needed.counts.sum()) < 0.8 * int(all_pairs.counts.sum())
    # Nothing visible was left out (brute force evaluates every pixel against every Gaussian).
    ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, tile_size=4)
    ref = _run(rasterize_brute, proj, opac, colors, W, H, bg, gi, ga)
    _compare(ours[:2], ref[:2], rtol=1e-12)
    _compare(ours[2], ref[2], rtol=1e-9)


def test_depth_order_and_ties():
    """Front-to-back by depth; equal depths keep index order (stable)."""
    W, H = 4, 4
    m = torch.full((3, 2), 2.0, dtype=torch.float64)
    c = torch.tensor([[0.01, 0.0, 0.01]] * 3, dtype=torch.float64)
    colors = torch.eye(3, dtype=torch.float64)
    o = torch.full((3,), 0.98, dtype=torch.float64)
    r = torch.full((3,), 10, dtype=torch.int32)
    img, _ = rasterize(Projection(m, c, torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64), r), o, colors, W, H)
    assert img[2, 2].argmax().item() == 1  # nearest in front
    img, _ = rasterize(Projection(m, c, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), r), o, colors, W, H)
    assert img[2, 2].argmax().item() == 0
    ref, _ = rasterize_brute(Projection(m, c, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), r), o, colors, W, H)
    torch.testing.assert_close(img, ref)


def test_backward_twice_and_no_grad():
    W, H, C = 16, 12, 3
    proj, opac, colors, bg, gi, ga = _scene(60, W, H, C, seed=9)
    colors = colors.clone().requires_grad_()
    img, alpha = rasterize(proj, opac, colors, W, H, bg)
    loss = (img * gi).sum() + (alpha * ga).sum()
    (g1,) = torch.autograd.grad(loss, colors, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, colors)  # the first backward released the kept values: recomputed
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        img2, _ = rasterize(proj, opac, colors, W, H, bg)
    torch.testing.assert_close(img2, img.detach())


def test_no_grad_keeps_nothing(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("kept per-pair values although no gradient can be asked for")

    proj, opac, colors, bg, _, _ = _scene(40, 12, 10, 3, seed=2)
    colors.requires_grad_()
    monkeypatch.setattr(R, "_SavedPairs", fail)
    with torch.no_grad():
        rasterize(proj, opac, colors, 12, 10, bg)
    with pytest.raises(AssertionError):
        rasterize(proj, opac, colors, 12, 10, bg)


def test_partial_requires_grad():
    """Only colours (features behind detached geometry) or only geometry: the same gradients as the full case."""
    W, H, C = 23, 17, 6
    proj, opac, colors, bg, gi, ga = _scene(90, W, H, C, seed=13)
    full = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga)[2]
    col = colors.clone().requires_grad_()
    img, alpha = rasterize(proj, opac, col, W, H, bg)
    ((img * gi).sum() + (alpha * ga).sum()).backward()
    _compare([col.grad], [full[3]], rtol=1e-12)
    m = proj.means2d.clone().requires_grad_()
    o = opac.clone().requires_grad_()
    img, alpha = rasterize(Projection(m, proj.conics, proj.depths, proj.radii), o, colors, W, H, bg)
    ((img * gi).sum() + (alpha * ga).sum()).backward()
    _compare([m.grad, o.grad], [full[0], full[2]], rtol=1e-12)


def test_render_end_to_end_against_brute_force():
    """render() = project + rasterize; gradients reach means, quats, scales, and means2d.grad is kept."""
    W, H, C = 32, 24, 3
    means, quats, scales = random_gaussians_3d(80, seed=6)
    scales = scales * 2
    viewmat, K = camera(W, H, seed=1)
    opac = torch.rand(80, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    colors = random_colors(80, C)
    gi = torch.randn(H, W, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    out = render(*leaves, viewmat, K, W, H, tile_size=8)
    (out.image * gi).sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (80, 2)
    assert out.radii.dtype == torch.int32 and int((out.radii > 0).sum()) > 20
    ours = [t.grad for t in leaves]

    leaves2 = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    p = project(*leaves2[:3], viewmat, K, W, H)
    img, _ = rasterize_brute(p, leaves2[3], leaves2[4], W, H)
    (img * gi).sum().backward()
    torch.testing.assert_close(out.image.detach(), img.detach(), rtol=0, atol=1e-12)
    _compare(ours, [t.grad for t in leaves2], rtol=1e-9)
    for g in ours:
        assert torch.isfinite(g).all()


def test_render_everything_behind_camera():
    means, quats, scales = random_gaussians_3d(20)
    means[:, 2] = -means[:, 2].abs() - 0.1
    bg = torch.tensor([0.5, 0.25], dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (means, quats, scales)]
    out = render(*leaves, torch.ones(20, dtype=torch.float64) * 0.5, torch.ones(20, 2, dtype=torch.float64),
                 torch.eye(4, dtype=torch.float64), torch.tensor([[20.0, 0, 5], [0, 20, 4], [0, 0, 1]]), 10, 8,
                 background=bg)
    assert torch.equal(out.image, bg.expand(8, 10, 2)) and (out.radii == 0).all()
    out.image.sum().backward()
    for t in leaves:
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_bad_inputs():
    proj, opac, colors, bg, _, _ = _scene(5, 8, 8, 3)
    with pytest.raises(ValueError):
        rasterize(proj, opac[:4], colors, 8, 8)
    with pytest.raises(ValueError):
        rasterize(proj, opac, colors[:, 0], 8, 8)
    with pytest.raises(ValueError):
        rasterize(proj, opac, colors, 8, 8, background=bg[:2])
    with pytest.raises(ValueError):
        rasterize(proj, opac, colors, 0, 8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    W, H, C = 40, 30, 6
    proj, opac, colors, bg, gi, ga = _scene(200, W, H, C, seed=4)
    cpu = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga)
    dev = torch.device("cuda")
    pc = Projection(*(t.to(dev) for t in (proj.means2d, proj.conics, proj.depths, proj.radii)))
    gpu = _run(rasterize, pc, opac.to(dev), colors.to(dev), W, H, bg.to(dev), gi.to(dev), ga.to(dev))
    _compare([t.cpu() for t in gpu[:2]], cpu[:2], rtol=1e-10)
    _compare([t.cpu() for t in gpu[2]], cpu[2], rtol=1e-8)


@pytest.mark.parametrize("C,k", [(4, 3), (20, 4), (33, 1)])
def test_geometry_channels_equal_a_second_pass_with_detached_geometry(C, k):
    """Channels past k train their colours only: same image and gradients as rendering them again with the
    geometry detached (the brute-force reference, twice)."""
    W, H = 23, 17
    proj, opac, colors, bg, gi, ga = _scene(60, W, H, C, seed=7)
    ours = _run(rasterize, proj, opac, colors, W, H, bg, gi, ga, geometry_channels=k)

    def two_passes(p, o, c, W, H, b):
        img_a, alpha = rasterize_brute(p, o, c[:, :k], W, H, b[:k])
        detached = Projection(p.means2d.detach(), p.conics.detach(), p.depths, p.radii)
        img_b, _ = rasterize_brute(detached, o.detach(), c[:, k:], W, H, b[k:])
        return torch.cat([img_a, img_b], -1), alpha

    ref = _run(two_passes, proj, opac, colors, W, H, bg, gi, ga)
    _compare(ours[:2], ref[:2], rtol=1e-12)
    _compare(ours[2], ref[2], rtol=1e-9)
    with pytest.raises(ValueError, match="geometry_channels"):
        rasterize(proj, opac, colors, W, H, bg, geometry_channels=C + 1)
