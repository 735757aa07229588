import torch

from featurefields.fields.density import DensityConfig, DensityController, quat_to_rotmat, remap, reset_opacities
from featurefields.fields.gaussians import FeatureLayout, GaussianField


def make(n=6):
    means = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    f = GaussianField(means, torch.rand(n, 3), torch.full((n, 3), -3.0), FeatureLayout([], 0), sh_degree=1)
    opt = torch.optim.Adam([{"params": [getattr(f, k)], "name": k, "lr": 0.01} for k in f.param_names])
    loss = sum(p.sum() for p in f.params().values())
    loss.backward()
    opt.step()
    opt.zero_grad()
    return f, opt


def test_remap_moves_params_and_moments():
    f, opt = make()
    old_means = f.means.detach().clone()
    old_m = opt.state[f.means]["exp_avg"].clone()
    idx = torch.tensor([0, 2, 2, 5])
    fresh = torch.tensor([False, False, True, False])
    remap(f, opt, idx, {}, fresh)
    assert len(f) == 4 and torch.equal(f.means.detach(), old_means[idx])
    m = opt.state[f.means]["exp_avg"]
    assert torch.equal(m[[0, 1, 3]], old_m[idx[[0, 1, 3]]]) and m[2].abs().sum() == 0
    assert opt.param_groups[0]["params"][0] is f.means
    # the optimiser still steps on the new tensors
    (f.means.sum() + f.opacity_logits.sum()).backward()
    opt.step()


def test_clone_small_split_large_prune_transparent():
    f, opt = make(4)
    with torch.no_grad():
        f.log_scales[0] = -6.0  # small: cloned
        f.log_scales[1] = 0.0  # large: split
        f.opacity_logits[3] = -10.0  # transparent: pruned
    ctl = DensityController(DensityConfig(refine_start=0, refine_every=1, grow_grad2d=0.1), extent=10.0)
    means2d = torch.zeros(4, 2, requires_grad=True)
    (means2d * torch.tensor([[1.0, 0], [1, 0], [0, 0], [0, 0]])).sum().backward()
    ctl.observe(means2d, torch.tensor([3, 3, 3, 3]), width=20, height=20)
    out = ctl.step(1, f, opt)
    assert out == {"cloned": 1, "split": 1, "pruned": 1}
    assert len(f) == 4 + 1 + 1 - 1
    # the split Gaussian is replaced by two smaller ones
    assert torch.isclose(f.log_scales.detach(), -torch.log(torch.tensor(1.6))).all(-1).sum() == 2


def test_reset_opacities_and_moments():
    f, opt = make()
    reset_opacities(f, opt, 0.01)
    assert f.opacities.max() <= 0.01 + 1e-6
    assert opt.state[f.opacity_logits]["exp_avg"].abs().sum() == 0


def test_quat_to_rotmat_is_rotation():
    q = torch.randn(10, 4)
    r = quat_to_rotmat(q)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(10, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(10), atol=1e-5)
