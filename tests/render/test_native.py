"""The native kernels (cuda_ext/) held to the plain PyTorch reference: forward and every gradient, any channel count.

Each test runs on the CPU and, where a GPU is present, on CUDA (marked ``cuda``). "Relative error" is
max |native - reference| / max |reference| per tensor.
"""
from __future__ import annotations

import pytest
import torch

from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from featurefields.fields.rendering import render_field
from featurefields.render import Projection, eval_sh, native, project, rasterize, render

from .helpers import camera, random_colors, random_gaussians_3d, random_projection

pytestmark = pytest.mark.skipif(not native.available("cpu"), reason=str(native.unavailable_reason("cpu")))

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available() or not native.available("cuda"), reason="needs a CUDA GPU and the CUDA kernels")])]
DIMS = [1, 3, 4, 16, 31, 33, 64, 128, 512, 1000]
LEAVES = ("means", "quats", "scales", "opacities", "colors", "background", "viewmat")


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().cpu().double(), ref.detach().cpu().double()
    assert a.shape == ref.shape
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return (a - ref).abs().max().item() / scale if scale > 0 else (a - ref).abs().max().item() if a.numel() else 0.0


def assert_rel(a, ref, tol, what=""):
    err = rel_err(a, ref)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"


def scene_3d(n, D, W, H, dtype=torch.float32, seed=0, behind=0.1, opacity=(0.05, 0.95)):
    means, quats, scales = random_gaussians_3d(n, dtype=dtype, seed=seed, behind=behind)
    viewmat, K = camera(W, H, dtype=dtype, seed=seed)
    g = torch.Generator().manual_seed(seed + 5)
    opac = opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=g, dtype=dtype)
    colors = random_colors(n, D, dtype=dtype, seed=seed + 1)
    bg = torch.rand(D, generator=g, dtype=dtype)
    return {"means": means, "quats": quats, "scales": scales, "opacities": opac, "colors": colors, "background": bg,
            "viewmat": viewmat, "K": K}


def run_render(s, W, H, backend, device="cpu", dtype=None, weights_seed=3, **kw):
    """Image, alpha and the gradients of a fixed random linear loss w.r.t. every leaf (pose included)."""
    dtype = dtype or s["means"].dtype
    leaves = {k: s[k].detach().to(device, dtype).clone().requires_grad_() for k in LEAVES}
    out = render(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                 leaves["viewmat"], s["K"].to(device, dtype), W, H, background=leaves["background"], backend=backend,
                 **kw)
    g = torch.Generator().manual_seed(weights_seed)
    wi = torch.randn(out.image.shape, generator=g, dtype=dtype).to(device)
    wa = torch.randn(out.alpha.shape, generator=g, dtype=dtype).to(device)
    loss = (out.image * wi).sum() + (out.alpha * wa).sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in LEAVES], allow_unused=True)
    grads = {k: (v if v is not None else torch.zeros_like(leaves[k])) for k, v in zip(LEAVES, grads)}
    return out.image.detach(), out.alpha.detach(), out.radii, grads


def compare_render(s, W, H, device, tol=1e-4, **kw):
    ref_img, ref_alpha, ref_radii, ref_grads = run_render(s, W, H, "torch", **kw)
    img, alpha, radii, grads = run_render(s, W, H, "native", device=device, **kw)
    assert torch.equal(radii.cpu(), ref_radii)
    assert_rel(img, ref_img, tol, "image")
    assert_rel(alpha, ref_alpha, tol, "alpha")
    for k in LEAVES:
        assert_rel(grads[k], ref_grads[k], tol, f"d/d{k}")
    return ref_img, ref_alpha, ref_grads


# ---- the whole pipeline, every channel count --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D", DIMS)
def test_render_matches_reference_float32(D, device):
    W, H = 37, 29
    s = scene_3d(250, D, W, H, seed=D)
    _, alpha, grads = compare_render(s, W, H, device)
    assert 0.2 < alpha.mean() < 0.99  # a real mix of covered and uncovered pixels
    assert all(grads[k].abs().max() > 0 for k in LEAVES)  # every gradient is really exercised


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D", [1, 3, 16, 33])
def test_gradcheck_float64(D, device):
    W, H = 11, 9
    s = scene_3d(6, D, W, H, dtype=torch.float64, seed=10 + D, behind=0.0, opacity=(0.3, 0.8))
    s["scales"] = s["scales"] * 3  # footprints of a few pixels on this small image
    K = s["K"].to(device)
    leaves = [s[k].to(device).clone().requires_grad_() for k in LEAVES]

    def f(means, quats, scales, opac, colors, bg, viewmat):
        out = render(means, quats, scales, opac, colors, viewmat, K, W, H, background=bg, backend="native")
        return out.image, out.alpha

    assert f(*leaves)[1].max() > 0.3
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_tile_size_does_not_change_the_result(device):
    W, H = 45, 31
    s = scene_3d(300, 7, W, H, dtype=torch.float64, seed=4)
    ref = run_render(s, W, H, "native", device=device, tile_size=16)
    for ts in (1, 3, 8, 32) if device == "cpu" else (8,):  # CUDA: a tile is a block of threads, 8x8 or 16x16
        other = run_render(s, W, H, "native", device=device, tile_size=ts)
        assert_rel(other[0], ref[0], 1e-12, f"image ts={ts}")
        for k in LEAVES:
            assert_rel(other[3][k], ref[3][k], 1e-10, f"d/d{k} ts={ts}")


# ---- degenerate inputs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_gaussians(device):
    """Behind the camera, off-screen, zero opacity, huge and tiny scales, all in one scene."""
    W, H, D = 23, 17, 5
    s = scene_3d(200, D, W, H, seed=2, behind=0.3)
    s["means"][:20, :2] += 40.0  # far off-screen
    s["opacities"][20:40] = 0.0
    s["scales"][40:45] = 50.0  # huge: cover the whole image, radius clamped to the image
    s["scales"][45:50] = 1e-6  # sub-pixel: the 0.3 px low-pass keeps them visible
    s["means"][50:60, 2] = 0.005  # in front of the camera but closer than the near plane
    img, alpha, grads = compare_render(s, W, H, device)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["opacities"][:20].abs().max() == 0  # off-screen: no gradient


@pytest.mark.parametrize("device", DEVICES)
def test_empty_scene_and_everything_culled(device):
    W, H, D = 9, 7, 4
    s = scene_3d(0, D, W, H)
    img, alpha, _ = compare_render(s, W, H, device)
    assert img.shape == (H, W, D) and alpha.abs().max() == 0
    torch.testing.assert_close(img, s["background"].expand(H, W, D))
    s = scene_3d(30, D, W, H, behind=1.0)  # all behind the camera
    _, alpha, _ = compare_render(s, W, H, device)
    assert alpha.abs().max() == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("W,H", [(1, 1), (1, 9), (13, 1), (17, 3), (33, 31)])
def test_tiny_and_odd_images(W, H, device):
    s = scene_3d(80, 3, W, H, seed=W * 31 + H)
    compare_render(s, W, H, device)


@pytest.mark.parametrize("device", DEVICES)
def test_dense_scene_terminates_and_clamps(device):
    """Opaque, heavily overlapping Gaussians: pixels stop at T < 1e-4, alphas hit the 0.99 clamp."""
    W, H, D = 24, 19, 6
    s = scene_3d(800, D, W, H, dtype=torch.float64, seed=7, behind=0.0, opacity=(0.6, 0.9999))
    s["scales"] = s["scales"] * 3
    _, alpha, _ = compare_render(s, W, H, device, tol=1e-9)  # float64: 1 - alpha ~ 1e-4 is too coarse in float32
    # Most pixels ran out of transmittance (a pixel stops just before T < 1e-4, so alpha_out <= 1 - 1e-4).
    assert (alpha > 0.999).float().mean() > 0.5 and alpha.max() <= 1 - 1e-4 + 1e-12


# ---- kernels one by one ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_matches_reference(dtype, device):
    W, H = 64, 48
    means, quats, scales = random_gaussians_3d(500, dtype=dtype, seed=1)
    viewmat, K = camera(W, H, dtype=dtype, seed=1)
    K[0, 1] = 0.7  # skew is honoured in the means
    leaves = [t.clone().requires_grad_() for t in (means, quats, scales, viewmat)]
    outs = []
    for fn, dev in ((project, "cpu"), (native.project, device)):
        ls = [t.detach().to(dev).clone().requires_grad_() for t in leaves]
        p = fn(ls[0], ls[1], ls[2], ls[3], K.to(dev), W, H)
        g = torch.Generator().manual_seed(0)
        keep = (p.radii > 0).to(dtype)[:, None]
        loss = sum((getattr(p, f) * keep * torch.randn(getattr(p, f).shape, generator=g, dtype=dtype).to(dev)).sum()
                   for f in ("means2d", "conics"))
        outs.append((p, torch.autograd.grad(loss, ls)))
    (p0, g0), (p1, g1) = outs
    assert torch.equal(p0.radii, p1.radii.cpu()) and (p0.radii > 0).sum() > 300
    m = p0.radii > 0
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for f in ("means2d", "conics", "depths"):
        assert_rel(getattr(p1, f)[m.to(device)], getattr(p0, f)[m], tol, f)
    for name, a, b in zip(("means", "quats", "scales", "viewmat"), g1, g0):
        assert_rel(a, b, 10 * tol, f"d/d{name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("C", [1, 3, 16])
def test_sh_matches_reference(degree, C, device):
    g = torch.Generator().manual_seed(degree * 10 + C)
    dirs = torch.randn(200, 3, generator=g, dtype=torch.float64) * 3
    coeffs = torch.randn(200, 16, C, generator=g, dtype=torch.float64)  # extra bases beyond the degree are ignored
    v = torch.randn(200, C, generator=g, dtype=torch.float64)
    outs = []
    for fn, dev in ((eval_sh, "cpu"), (native.eval_sh, device)):
        d, c = dirs.to(dev).requires_grad_(), coeffs.to(dev).requires_grad_()
        out = fn(degree, d, c)
        outs.append((out, torch.autograd.grad((out * v.to(dev)).sum(), [d, c], allow_unused=True)))
    (o0, (gd0, gc0)), (o1, (gd1, gc1)) = outs
    assert_rel(o1, o0, 1e-12, "sh")
    assert_rel(gc1, gc0, 1e-12, "d/dcoeffs")
    if degree > 0:
        assert_rel(gd1, gd0, 1e-12, "d/ddirs")
    d = dirs[:5].to(device).requires_grad_()
    c = coeffs[:5, :, :2].to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda d, c: native.eval_sh(degree, d, c), [d, c])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D", [1, 4, 33, 512])
def test_rasterize_matches_reference_on_screen_space_gaussians(D, device):
    W, H = 40, 26
    proj, opac = random_projection(250, W, H, dtype=torch.float32, seed=D, opacity=(0.05, 0.99))
    colors = random_colors(250, D, dtype=torch.float32)
    bg = torch.rand(D)
    res = []
    for fn, dev in ((rasterize, "cpu"), (native.rasterize, device)):
        leaves = [t.to(dev).clone().requires_grad_() for t in (proj.means2d, proj.conics, opac, colors, bg)]
        p = Projection(leaves[0], leaves[1], proj.depths.to(dev), proj.radii.to(dev))
        img, alpha = fn(p, leaves[2], leaves[3], W, H, background=leaves[4], geometry_channels=min(D, 3))
        g = torch.Generator().manual_seed(1)
        loss = (img * torch.randn(img.shape, generator=g).to(dev)).sum() + (alpha * torch.randn(
            alpha.shape, generator=g).to(dev)).sum()
        res.append((img, alpha, torch.autograd.grad(loss, leaves)))
    for a, b in zip(res[1][:2], res[0][:2]):
        assert_rel(a, b, 1e-5, "image")
    for name, a, b in zip(("means2d", "conics", "opacities", "colors", "background"), res[1][2], res[0][2]):
        assert_rel(a, b, 1e-4, f"d/d{name}")


# ---- through a GaussianField: latent + decoder, or full width -----------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("latent,D,view", [(0, 1, 0), (0, 33, 2), (0, 128, 0), (16, 512, 0), (8, 1000, 1),
                                           (4, 3, 3)])
def test_field_render_matches_reference(latent, D, view, device):
    W, H = 30, 22
    means, _, _ = random_gaussians_3d(300, dtype=torch.float32, seed=5, behind=0.0)
    g = torch.Generator().manual_seed(6)
    layout = FeatureLayout([TeacherSpec("t", D)], latent_dim=latent, view_degree=view)
    log_scales = -2.5 + 0.5 * torch.randn(300, 3, generator=g)  # anisotropic, so rotations matter
    field = GaussianField(means, torch.rand(300, 3, generator=g), log_scales, layout, sh_degree=2)
    with torch.no_grad():
        field.shN.normal_(0, 0.2, generator=g)
        field.quats.normal_(generator=g)
        field.opacity_logits.normal_(0, 1, generator=g)
        field.features_view.normal_(0, 0.3, generator=g)
    viewmat, K = camera(W, H, dtype=torch.float32, seed=5)
    c2w = torch.linalg.inv(viewmat)
    target = torch.randn(H, W, D, generator=g)
    results = []
    for backend, dev in (("torch", "cpu"), ("native", device)):
        f = GaussianField.from_state(field.state()).to(dev)
        pose = c2w.to(dev).clone().requires_grad_()
        out = render_field(f, pose, K.to(dev), W, H, background=torch.tensor([0.2, 0.3, 0.4], device=dev),
                           backend=backend)
        decoded = f.decoder(out.features, "t")
        loss = (decoded * target.to(dev)).mean() + out.rgb.square().mean() + out.depth.mean() + out.alpha.mean()
        params = [p for p in f.params().values() if p.numel()] + list(f.decoder.parameters())
        grads = torch.autograd.grad(loss, params + [pose])
        results.append((decoded.detach(), out.rgb.detach(), out.depth.detach(), grads))
    (d0, r0, z0, g0), (d1, r1, z1, g1) = results
    assert_rel(d1, d0, 1e-4, "decoded features")
    assert_rel(r1, r0, 1e-4, "rgb")
    assert_rel(z1, z0, 1e-4, "depth")
    names = ([n for n, p in field.params().items() if p.numel()]
             + [f"decoder.{n}" for n, _ in field.decoder.named_parameters()] + ["pose"])
    for name, a, b in zip(names, g1, g0):
        assert_rel(a, b, 1e-4, name)
