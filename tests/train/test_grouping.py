from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from featurefields.train.grouping import grouping_loss, sample_pixels


def intra_inter(features: torch.Tensor, ids: torch.Tensor) -> tuple[float, float]:
    f = F.normalize(features, dim=-1)
    cos = f @ f.T
    same = ids[:, None] == ids[None, :]
    off = ~torch.eye(len(ids), dtype=torch.bool)
    return float(cos[same & off].mean()), float(cos[~same].mean())


@pytest.fixture
def one_thread():
    """Tiny tensors: extra threads only contend with whatever else runs on the machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("temperature", [0.1, None])
def test_descent_groups_features(temperature, one_thread):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (300,), generator=g)
    feats = torch.randn(300, 16, generator=g).requires_grad_()
    intra0, inter0 = intra_inter(feats.detach(), ids)
    assert intra0 - inter0 < 0.1  # random: no grouping to begin with
    opt = torch.optim.Adam([feats], lr=0.05)
    losses = []
    for _ in range(150):
        loss = grouping_loss(feats, ids, margin=1.0, temperature=temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    intra, inter = intra_inter(feats.detach(), ids)
    assert intra > 0.9 and inter < 0.1 and intra > inter + 0.8, (intra, inter)
    assert losses[-1] < 0.3 * losses[0]


def test_margin_controls_separation():
    ids = torch.arange(4).repeat_interleave(10)
    base = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    # Segments tightly grouped; means at cosine ~0.9 of each other.
    means = F.normalize(torch.ones(8) * 3 + 0.5 * base, dim=-1)
    feats = means[ids]
    _, inter = intra_inter(feats, ids)
    assert inter > 0.8
    closest = float((means @ means.T - 2 * torch.eye(4)).max())  # largest cosine between two segments
    apart = 1 - closest  # their cosine distance
    assert float(grouping_loss(feats, ids, margin=0.9 * apart, temperature=None)) < 1e-5  # far enough already
    assert float(grouping_loss(feats, ids, margin=1.1 * apart, temperature=None)) > 0
    assert float(grouping_loss(feats, ids, margin=1.0, temperature=None)) > 0.5  # should be orthogonal


def test_edge_cases_are_finite():
    def check(feats, ids, **kw):
        feats = feats.clone().requires_grad_()
        loss = grouping_loss(feats, ids, **kw)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert torch.isfinite(feats.grad).all()
        return float(loss.detach())

    assert check(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == 0.0  # empty
    assert check(torch.randn(6, 5), torch.full((6,), -1)) == 0.0  # all ignored
    one = torch.randn(1, 5).expand(7, 5)
    assert check(one, torch.zeros(7, dtype=torch.long)) == pytest.approx(0, abs=1e-6)  # one segment, agreeing
    assert check(torch.randn(7, 5), torch.zeros(7, dtype=torch.long)) > 0  # one segment, disagreeing
    check(torch.randn(9, 5), torch.arange(9))  # all distinct
    check(torch.zeros(8, 5), torch.arange(8) % 3)  # zero features
    check(torch.randn(8, 5), (torch.arange(8) % 3).float())  # float ids, as read from a cache
    check(torch.randn(8, 5, dtype=torch.float64), torch.arange(8) % 2, temperature=0.01)
    with pytest.raises(ValueError, match="segment ids"):
        grouping_loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


def test_ignored_ids_do_not_count():
    g = torch.Generator().manual_seed(2)
    feats, ids = torch.randn(20, 4, generator=g), torch.arange(20) % 3
    ref = grouping_loss(feats, ids)
    more = torch.cat([feats, torch.randn(5, 4, generator=g)])
    assert torch.allclose(grouping_loss(more, torch.cat([ids, torch.full((5,), -1)])), ref)


def test_sample_pixels_is_balanced():
    ids = torch.zeros(60, 80, dtype=torch.long)  # one huge segment
    ids[:3, :4] = 1  # a 12-pixel one
    ids[10:20, 10:20] = 2
    ids[50:, 70:] = -1  # ignored
    g = torch.Generator().manual_seed(0)
    idx = sample_pixels(ids, 301, g)
    assert idx.shape == (301,) and idx.dtype == torch.long
    picked = ids.reshape(-1)[idx]
    assert (picked >= 0).all()
    counts = torch.bincount(picked, minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 301
    # within a segment, uniform-ish: the 12-pixel segment is well covered
    assert len(torch.unique(idx[picked == 1])) >= 10
    again = sample_pixels(ids, 301, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    assert sample_pixels(ids, 0, g).numel() == 0
    assert sample_pixels(torch.full((4, 4), -1), 10, g).numel() == 0
    assert sample_pixels(ids.half(), 50, g).shape == (50,)  # float16 ids from the cache
