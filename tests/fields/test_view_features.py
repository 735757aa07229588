"""View-dependent features: SH coefficients added along the viewing direction, averaging out to ``features``."""
from __future__ import annotations

import math

import pytest
import torch

from featurefields.fields.gaussians import SH_C0, FeatureLayout, GaussianField, TeacherSpec
from featurefields.fields.rendering import render_field
from featurefields.render.sh import eval_sh


def make_field(n: int, width: int, view_degree: int, seed: int = 0) -> GaussianField:
    g = torch.Generator().manual_seed(seed)
    layout = FeatureLayout([TeacherSpec("t", width)], 0, view_degree=view_degree)
    f = GaussianField(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.full((n, 3), -2.5),
                      layout, sh_degree=0)
    with torch.no_grad():
        f.features.copy_(torch.randn(f.features.shape, generator=g))
        f.features_view.copy_(torch.randn(f.features_view.shape, generator=g))
    return f


@pytest.mark.parametrize("degree,width", [(1, 3), (2, 16), (3, 7)])
def test_matches_an_sh_sum_with_the_features_as_dc(degree, width):
    f = make_field(11, width, degree)
    assert f.features_view.shape == (11, (degree + 1) ** 2 - 1, width)
    dirs = torch.randn(11, 3) * 5  # any length: only the direction counts
    coeffs = torch.cat([f.features[:, None] / SH_C0, f.features_view], 1)  # DC coefficient so that Y_0 c_0 = features
    assert torch.allclose(f.features_from(dirs), eval_sh(degree, dirs / dirs.norm(dim=-1, keepdim=True), coeffs),
                          atol=1e-5)


def test_degree_zero_is_the_plain_feature_and_the_sphere_average_is_the_feature():
    f0 = make_field(5, 4, 0)
    assert f0.features_view.numel() == 0 and f0.features_from(torch.randn(5, 3)) is f0.features
    f = make_field(5, 4, 2)
    # Fibonacci sphere: higher SH bands integrate to zero, so what 3D queries read is the average over directions.
    k = torch.arange(4000, dtype=torch.float64) + 0.5
    z, phi = 1 - 2 * k / 4000, math.pi * (1 + 5 ** 0.5) * k
    d = torch.stack([(1 - z * z).sqrt() * phi.cos(), (1 - z * z).sqrt() * phi.sin(), z], -1).float()
    mean = torch.stack([f.features_from(di.expand(5, 3)) for di in d]).mean(0)
    assert torch.allclose(mean, f.features, atol=2e-3)


def test_rendered_features_change_with_the_viewpoint_only_when_view_dependent():
    """Two cameras looking at one Gaussian from opposite sides see different features iff view_degree > 0."""
    seen = {}
    for degree in (0, 1):
        f = make_field(1, 3, degree)
        with torch.no_grad():
            f.means.zero_()
            f.log_scales.fill_(math.log(0.05))
            f.opacity_logits.fill_(5.0)
        K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
        views = []
        for side in (1.0, -1.0):  # camera on +z / -z looking at the origin (OpenCV: +z forward)
            c2w = torch.eye(4)
            c2w[2, 3] = -side
            c2w[:3, :3] = torch.diag(torch.tensor([1.0, side, side]))
            out = render_field(f, c2w, K, 32, 32, backend="torch")
            views.append(out.features[16, 16] / out.alpha[16, 16])
        seen[degree] = views
    assert torch.allclose(seen[0][0], seen[0][1], atol=1e-5)
    assert not torch.allclose(seen[1][0], seen[1][1], atol=1e-2)
