"""Balanced feature-loss samples: a feature a few pixels wide gets its share of every step's sample."""
from __future__ import annotations

import torch

from featurefields.teachers.base import TeacherOutput
from featurefields.train.balance import FeatureCodes, balanced_sample


def _views(n_views: int = 4, h: int = 40, w: int = 50) -> list[TeacherOutput]:
    """Three feature directions: background (most), an object (a block), a rare part (a 2 x 3 patch)."""
    dirs = torch.eye(8)[:3]
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n_views):
        cls = torch.zeros(h, w, dtype=torch.long)
        cls[10:30, 10:30] = 1
        cls[12:14, 31:34] = 2
        feats = dirs[cls] + 0.01 * torch.randn(h, w, 8, generator=gen)
        valid = torch.ones(h, w, dtype=torch.bool)
        valid[:, :2] = False
        out.append(TeacherOutput(feats.half(), valid))
    return out


def test_codes_separate_the_rare_feature_and_skip_invalid_pixels():
    views = _views()
    codes = FeatureCodes(views, frames=[0, 1, 2], clusters=3).codes(3).reshape(40, 50)
    assert bool((codes[:, :2] == -1).all())
    part, obj, bg = int(codes[12, 32]), int(codes[20, 20]), int(codes[35, 40])
    assert len({part, obj, bg}) == 3
    assert bool((codes[12:14, 31:34] == part).all()) and int((codes == part).sum()) == 6


def test_balanced_sample_gives_the_rare_feature_its_share_and_uniform_keeps_the_rest():
    views = _views()
    codes = FeatureCodes(views, frames=[0, 1], clusters=3).codes(0)
    valid = views[0].valid.reshape(-1).nonzero()[:, 0]
    gen = torch.Generator().manual_seed(0)
    part = int(codes.reshape(40, 50)[12, 32])
    uniform = balanced_sample(valid, codes, 3000, 0.0, gen)
    half = balanced_sample(valid, codes, 3000, 0.5, gen)
    assert len(uniform) == len(half) == 3000
    assert bool(torch.isin(half, valid).all())  # never an invalid pixel
    share = lambda idx: float((codes[idx] == part).float().mean())  # noqa: E731
    assert share(uniform) < 0.01 < 0.15 < share(half)  # 6 of 1920 pixels: ~0.3% uniformly, ~1/6 balanced


def test_fewer_distinct_features_than_clusters_gives_one_cluster_each(recwarn):
    """A labels teacher's features are one embedding per class: the codebook shrinks to them, without warnings."""
    views = _views()
    exact = [TeacherOutput(v.features.float().round(decimals=0).half(), v.valid) for v in views]
    fc = FeatureCodes(exact, frames=[0, 1, 2, 3])  # default: 16 clusters asked for
    assert len(fc.centres) == 3
    assert set(fc.codes(0)[views[0].valid.reshape(-1)].tolist()) == {0, 1, 2}
    assert not [w for w in recwarn if "cluster" in str(w.message) or "invalid value" in str(w.message)]
