"""Renders without gradients cull the Gaussians the projection finds off-image before colours, binning and
blending (fields/rendering.py): the image, depth, alpha, features and per-Gaussian radii stay exactly the same."""
from __future__ import annotations

import pytest
import torch

from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from featurefields.fields.rendering import _visible, render_field
from featurefields.render import native

pytestmark = pytest.mark.skipif(not native.available("cpu"), reason="featurefields._native is not built")


def wide_field(n: int = 3000, seed: int = 0, view_degree: int = 0) -> GaussianField:
    """Gaussians over a 4 m square, sizes 5 mm to 20 cm (big ones reach into the image from outside it)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([4.0, 4.0, 0.5])
    log_scales = torch.empty(n, 3).uniform_(-5.3, -1.6, generator=g)
    f = GaussianField(means, torch.rand(n, 3, generator=g), log_scales,
                      FeatureLayout([TeacherSpec("labels", 5)], latent_dim=4, view_degree=view_degree),
                      sh_degree=1)
    with torch.no_grad():
        f.quats.copy_(torch.randn(n, 4, generator=g))
        f.opacity_logits.copy_(torch.randn(n, generator=g))
        f.features.copy_(torch.randn(n, 4, generator=g))
        f.shN.copy_(torch.randn(f.shN.shape, generator=g) * 0.2)
        f.features_view.copy_(torch.randn(f.features_view.shape, generator=g) * 0.2)
    return f.requires_grad_(False)


def camera_at(height: float, fx: float):
    """Looking straight down at the origin from ``height`` metres (OpenCV axes)."""
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    c2w[2, 3] = height
    K = torch.tensor([[fx, 0, 40.0], [0, fx, 30.0], [0, 0, 1.0]])
    return c2w, K


@pytest.mark.parametrize("fx, features, view_degree", [(200.0, False, 0), (200.0, True, 0), (60.0, True, 0),
                                                       (15.0, False, 0), (200.0, True, 2)])
def test_culled_render_is_the_same_image(fx, features, view_degree):
    f = wide_field(view_degree=view_degree)
    c2w, K = camera_at(1.5, fx)
    with torch.no_grad():
        full = render_field(f, c2w, K, 80, 60, with_features=features)
        cut = render_field(f, c2w, K, 80, 60, with_features=features, cull=True)
        keep = _visible(f, torch.linalg.inv(c2w), K, 80, 60, "auto")
    if fx >= 200:  # a narrow view sees few of them: culling happens
        assert keep is not None and 0 < len(keep) < 0.3 * len(f.means)
    if fx <= 15:  # a wide one sees most: nothing to gain, the plain path runs
        assert keep is None
    if keep is not None:  # the survivors are exactly the projection's choice
        assert torch.equal(keep, (full.radii > 0).nonzero()[:, 0])
    assert float(full.alpha.max()) > 0.5
    for name in ("rgb", "depth", "alpha", "radii"):
        assert torch.equal(getattr(full, name), getattr(cut, name)), name
    if features:
        assert torch.equal(full.features, cut.features)
    drawn = full.radii > 0
    assert torch.equal(full.means2d[drawn], cut.means2d[drawn])


def test_no_culling_while_gradients_flow():
    f = wide_field(n=500)
    c2w, K = camera_at(1.5, 200.0)
    c2w.requires_grad_(True)
    out = render_field(f, c2w, K, 80, 60, with_features=False, cull=True)
    out.rgb.sum().backward()
    assert c2w.grad is not None and bool(torch.isfinite(c2w.grad).all())
    assert out.radii.shape == (500,)
