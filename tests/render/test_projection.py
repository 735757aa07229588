from __future__ import annotations

import pytest
import torch

from featurefields.render import project, quat_scale_to_covar
from featurefields.render.projection import quat_to_rotmat

from .helpers import camera, gsplat_torch_impl, random_gaussians_3d

W, H = 64, 48


def _need_gsplat():
    impl = gsplat_torch_impl()
    if impl is None:
        pytest.skip("gsplat's torch reference cannot be imported without compiling CUDA")
    return impl


def test_quat_scale_to_covar_matches_gsplat():
    impl = _need_gsplat()
    _, quats, scales = random_gaussians_3d(300)
    ref, _ = impl._quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    torch.testing.assert_close(quat_scale_to_covar(quats, scales), ref, atol=1e-5, rtol=1e-5)


def test_rotation_is_orthonormal_and_scale_invariant():
    _, quats, _ = random_gaussians_3d(50)
    R = quat_to_rotmat(quats)
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(50, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(50, dtype=R.dtype))
    torch.testing.assert_close(quat_to_rotmat(quats * 3.7), R)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_project_matches_gsplat(dtype):
    impl = _need_gsplat()
    means, quats, scales = random_gaussians_3d(400, dtype=dtype)
    # A few Gaussians far outside the field of view but big enough to reach the image: the Jacobian clamp matters.
    means[-5:] = torch.tensor([[6.0, 0.5, 2.0], [-5.0, 0.0, 1.5], [0.3, 4.0, 2.0], [0.0, -3.5, 1.5], [7, 5, 2.5]],
                              dtype=dtype)
    scales[-5:] = 1.5
    viewmat, K = camera(W, H, dtype=dtype)
    proj = project(means, quats, scales, viewmat, K, W, H)
    covars = quat_scale_to_covar(quats, scales)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        means, covars, viewmat[None], K[None], W, H, eps2d=0.3, near_plane=0.01, far_plane=1e10)
    ok = proj.radii > 0
    assert 200 < int(ok.sum()) < 400 and bool(ok[-5:].all())
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(proj.depths, depths[0], **tol)
    torch.testing.assert_close(proj.means2d[ok], means2d[0][ok], **tol)
    torch.testing.assert_close(proj.conics[ok], conics[0][ok], **tol)
    # gsplat's radius is per axis (3.33 sigma), ours is 3 sigma of the major axis, so only the clear cases agree:
    # behind the near plane both cull; in front with the mean inside the image both keep.
    assert bool((proj.radii[depths[0] <= 0.01] == 0).all()) and bool((radii[0][depths[0] <= 0.01] == 0).all())
    m = means2d[0]
    inside = (depths[0] > 0.01) & (m[:, 0] > 0) & (m[:, 0] < W) & (m[:, 1] > 0) & (m[:, 1] < H)
    assert int(inside.sum()) > 100 and bool((proj.radii[inside] > 0).all()) and bool((radii[0][inside] > 0).all())


def _world_to_pixel(viewmat, K):
    def f(p):  # p [3] world -> [2] pixel
        pc = viewmat[:3, :3] @ p + viewmat[:3, 3]
        return (K @ (pc / pc[2]))[:2]
    return f


def test_project_matches_finite_difference_ewa():
    """cov2d must be Jw Sigma Jw^T + 0.3 I with Jw the numerical Jacobian of the world-to-pixel map at the mean."""
    means, quats, scales = random_gaussians_3d(40, behind=0.0)
    viewmat, K = camera(W, H)
    proj = project(means, quats, scales, viewmat, K, W, H)
    f = _world_to_pixel(viewmat, K)
    covars = quat_scale_to_covar(quats, scales)
    h = 1e-6
    checked = 0
    for i in range(len(means)):
        pc = viewmat[:3, :3] @ means[i] + viewmat[:3, 3]
        u, v = pc[0] / pc[2], pc[1] / pc[2]
        if not (proj.radii[i] > 0 and abs(u) < 0.5 * W / K[0, 0] and abs(v) < 0.5 * H / K[1, 1]):
            continue  # the Jacobian clamp only acts outside the field of view
        basis = torch.eye(3, dtype=means.dtype)
        Jw = torch.stack([(f(means[i] + h * e) - f(means[i] - h * e)) / (2 * h) for e in basis], dim=1)  # [2, 3]
        cov2d = Jw @ covars[i] @ Jw.T + 0.3 * torch.eye(2, dtype=means.dtype)
        torch.testing.assert_close(proj.means2d[i], f(means[i]), atol=1e-9, rtol=0)
        inv = torch.linalg.inv(cov2d)
        torch.testing.assert_close(proj.conics[i], torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]), atol=1e-6, rtol=1e-5)
        lam = torch.linalg.eigvalsh(cov2d)[-1]
        assert int(proj.radii[i]) == int(torch.ceil(3 * lam.sqrt()))
        checked += 1
    assert checked >= 10


def test_project_culling_and_finite_gradients():
    dt = torch.float64
    viewmat, K = torch.eye(4, dtype=dt), torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], dtype=dt)
    means = torch.tensor([
        [0.0, 0.0, 2.0],  # visible
        [0.0, 0.0, -2.0],  # behind the camera
        [0.0, 0.0, 0.005],  # in front of the near plane
        [0.0, 0.0, 0.0],  # on the camera centre
        [50.0, 0.0, 2.0],  # far off-screen
        [0.0, 0.0, 500.0],  # beyond far (far=100 below)
        [float("nan"), 0.0, 2.0],  # broken
    ], dtype=dt, requires_grad=True)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 7, dtype=dt, requires_grad=True)
    scales = torch.full((7, 3), 0.05, dtype=dt, requires_grad=True)
    proj = project(means, quats, scales, viewmat, K, 64, 48, far=100.0)
    assert proj.radii.dtype == torch.int32
    assert proj.radii.tolist()[0] > 0 and proj.radii.tolist()[1:] == [0] * 6
    # Visible one: radius = ceil(3 sqrt(lambda)) with lambda = (f s / z)^2 + 0.3.
    assert proj.radii[0].item() == int(torch.ceil(3 * torch.tensor((50 * 0.05 / 2) ** 2 + 0.3).sqrt()))
    loss = proj.means2d[[0, 1, 2, 3, 4, 5]].sum() + proj.conics[[0, 1, 2, 3, 4, 5]].sum() + proj.depths[:6].sum()
    loss.backward()
    for t in (means, quats, scales):
        assert torch.isfinite(t.grad[:6]).all()
    # Zero scale and no low-pass filter: singular 2D covariance -> culled.
    p = project(means.detach()[:1], quats.detach()[:1], torch.zeros(1, 3, dtype=dt), viewmat, K, 64, 48, eps2d=0.0)
    assert p.radii.tolist() == [0]


def test_project_gradcheck():
    means, quats, scales = random_gaussians_3d(6, behind=0.0, seed=4)
    viewmat, K = camera(W, H, seed=2)
    means.requires_grad_(), quats.requires_grad_(), scales.requires_grad_()

    def f(m, q, s):
        p = project(m, q, s, viewmat, K, W, H)
        return p.means2d, p.conics, p.depths

    assert torch.autograd.gradcheck(f, (means, quats, scales))


def test_project_empty():
    e = torch.zeros(0, 3)
    p = project(e, torch.zeros(0, 4), e, torch.eye(4), torch.eye(3), 8, 8)
    assert p.means2d.shape == (0, 2) and p.conics.shape == (0, 3) and p.radii.shape == (0,)
