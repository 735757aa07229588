from __future__ import annotations

import pytest
import torch

from featurefields.render.sh import eval_sh, num_sh_bases

from .helpers import gsplat_torch_impl


def test_num_sh_bases():
    assert [num_sh_bases(d) for d in range(4)] == [1, 4, 9, 16]
    with pytest.raises(ValueError):
        num_sh_bases(4)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_gsplat(degree):
    impl = gsplat_torch_impl()
    if impl is None:
        pytest.skip("gsplat's torch reference cannot be imported without compiling CUDA")
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=torch.float64) * 3  # not unit: both normalise
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=torch.float64)
    ours = eval_sh(degree, dirs, coeffs)
    ref = impl._spherical_harmonics(degree, dirs, coeffs)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # float32 as well
    torch.testing.assert_close(eval_sh(degree, dirs.float(), coeffs.float()), ref.float(), atol=1e-5, rtol=1e-5)


def test_eval_sh_known_values():
    # Degree 0 is a constant; degree 1 along +z picks coefficient 2 with C1 = sqrt(3 / (4 pi)).
    coeffs = torch.zeros(1, 4, 1, dtype=torch.float64)
    coeffs[0, 0, 0] = 1.0
    assert eval_sh(1, torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64), coeffs).item() == pytest.approx(
        0.28209479177387814)
    coeffs = torch.zeros(1, 4, 1, dtype=torch.float64)
    coeffs[0, 2, 0] = 1.0
    c1 = (3 / (4 * torch.pi)) ** 0.5
    assert eval_sh(1, torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64), coeffs).item() == pytest.approx(c1)
    assert eval_sh(1, torch.tensor([[0.0, 0.0, -2.0]], dtype=torch.float64), coeffs).item() == pytest.approx(-c1)


def test_eval_sh_orthonormal():
    # Real SH bases are orthonormal on the sphere: Monte Carlo estimate of the Gram matrix ~ identity.
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    eye = torch.eye(16, dtype=torch.float64)
    bases = torch.stack([eval_sh(3, dirs, eye[i].expand(len(dirs), 16)[..., None])[:, 0] for i in range(16)], -1)
    gram = bases.T @ bases * (4 * torch.pi / len(dirs))
    torch.testing.assert_close(gram, eye, atol=0.03, rtol=0)


def test_eval_sh_any_channels_and_extra_coeffs():
    g = torch.Generator().manual_seed(3)
    dirs = torch.randn(7, 5, 3, generator=g)
    coeffs = torch.randn(7, 5, 16, 40, generator=g)
    out = eval_sh(2, dirs, coeffs)
    assert out.shape == (7, 5, 40)
    # Channels are independent, and coefficients beyond degree 2 are ignored.
    torch.testing.assert_close(out[..., 11:12], eval_sh(2, dirs, coeffs[..., :9, 11:12]))
    with pytest.raises(ValueError):
        eval_sh(3, dirs, coeffs[..., :9, :])
