from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.teachers import (
    FeatureCache,
    TeacherInput,
    extract_features,
    make_teacher,
)
from featurefields.teachers.sift import SiftTeacher


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smoothed colour noise: texture everywhere, no repeated structure. [h, w, 3] uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)


def view(a: np.ndarray, name: str = "v") -> TeacherInput:
    return TeacherInput(image=torch.from_numpy(np.ascontiguousarray(a)), name=name)


def test_shape_dtype_norm_and_registry():
    t = make_teacher("sift")
    assert isinstance(t, SiftTeacher) and t.dim == 128 and not t.text_aligned
    assert getattr(t, "kind", "features") == "features"
    out = t.extract([view(textured(150, 201))])[0]
    assert out.features.shape == (math.ceil(150 / 4), math.ceil(201 / 4), 128) == (38, 51, 128)
    assert out.features.dtype == torch.float32 and out.valid.dtype == torch.bool
    norms = out.features.norm(dim=-1)
    assert out.valid.float().mean() > 0.5
    torch.testing.assert_close(norms[out.valid], torch.ones(int(out.valid.sum())))
    assert torch.all(norms[~out.valid] == 0)
    f = out.features[out.valid]
    assert abs(float((f @ f.T).mean())) < 0.2  # centred: unrelated points are near-orthogonal on average
    raw = SiftTeacher(center=False).extract([view(textured(150, 201))])[0].features
    assert torch.all(raw >= 0) and float((raw[out.valid] @ raw[out.valid].T).mean()) > 0.4
    # Cells within one spatial bin (1.5 * size px) of the border have half a descriptor: invalid.
    rows, cols = t.grid(150, 201)
    assert not out.valid[rows < 9].any() and not out.valid[:, cols > 200 - 9].any()
    assert out.valid[(rows > 20) & (rows < 130)][:, (cols > 20) & (cols < 180)].all()


def test_grid_points_are_cell_centres():
    t = SiftTeacher(step=4)
    rows, cols = t.grid(12, 10)
    assert rows.tolist() == [2, 6, 10]  # cells [0,4), [4,8), [8,12) centred at 2, 6, 10 (continuous coords)
    assert cols.tolist() == [1, 5, 8]  # 3 cells of 10/3 px: centres at 1.67, 5, 8.33


def test_textureless_patches_are_invalid():
    img = textured(96, 128)
    img[:, 64:] = 128  # flat right half
    img[:, 64:] += np.random.default_rng(1).integers(0, 2, img[:, 64:].shape, dtype=np.uint8)  # +-1 grey "noise"
    out = SiftTeacher(step=4).extract([view(img)])[0]
    assert not out.valid[:, 16 + 6:].any()  # well inside the flat half
    assert out.valid[10:14, 6:12].all()  # textured half


def test_deterministic():
    img = textured(64, 80, seed=3)
    a = SiftTeacher().extract([view(img)])[0]
    b = SiftTeacher().extract([view(img.copy())])[0]
    assert torch.equal(a.features, b.features) and torch.equal(a.valid, b.valid)


@pytest.mark.parametrize("root_sift", [True, False])
def test_shifted_crops_match(root_sift):
    """The same physical point in two overlapping crops (shifted by a non-whole number of cells, with a gain,
    offset and noise between them) is the nearest neighbour of itself, far more often than chance."""
    img = textured(150, 200, seed=5)
    step, dy, dx = 4, 14, 22
    a = img[:120, :160]
    rng = np.random.default_rng(7)
    b = img[dy:dy + 120, dx:dx + 160].astype(np.float32) * 0.85 + 10 + rng.normal(0, 3, (120, 160, 3))
    b = b.clip(0, 255).astype(np.uint8)
    t = SiftTeacher(step=step, root_sift=root_sift)
    oa, ob = t.extract([view(a, "a"), view(b, "b")])
    h, w = oa.features.shape[:2]
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ai = ((ii + 0.5) * step + dy) / step - 0.5  # b's cell centre, in a's cell coordinates
    aj = ((jj + 0.5) * step + dx) / step - 0.5
    ok = ob.valid & (ai <= h - 1) & (aj <= w - 1)
    assert ok.sum() > 300
    sim = ob.features[ok] @ oa.features.reshape(h * w, -1).T  # [Q, h*w]
    sim[:, ~oa.valid.reshape(-1)] = -2
    best = sim.argmax(1)
    err = torch.maximum((best // w - ai[ok]).abs(), (best % w - aj[ok]).abs())
    acc = (err <= 1).float().mean()  # within one cell (the true point lies between cells)
    assert acc > 0.75, acc
    # The true correspondence (nearest cell) is also far more similar than an average other point.
    true_idx = (ai[ok].round().long() * w + aj[ok].round().long())
    has_true = oa.valid.reshape(-1)[true_idx]
    true_sim = sim.gather(1, true_idx[:, None])[:, 0][has_true]
    other = sim[has_true][:, oa.valid.reshape(-1)].mean(1)
    assert (true_sim - other).mean() > 0.5


def test_config_changes_with_options_and_bad_options():
    cfgs = [SiftTeacher().config(), SiftTeacher(step=8).config(), SiftTeacher(size=10).config(),
            SiftTeacher(root_sift=False).config(), SiftTeacher(center=False).config(),
            SiftTeacher(min_gradient=3).config()]
    assert len({str(sorted(c.items())) for c in cfgs}) == len(cfgs)
    assert make_teacher("sift", step=8).extract([view(textured(64, 64))])[0].features.shape == (8, 8, 128)
    with pytest.raises(ConfigError, match="step"):
        SiftTeacher(step=0)
    with pytest.raises(ConfigError, match="does not take option"):
        make_teacher("sift", stride=4)
    with pytest.raises(DataError, match="bad.png"):
        SiftTeacher().extract([TeacherInput(image=torch.zeros(8, 8, 3), name="bad.png")])


def test_cache_hit(tmp_path):
    t = SiftTeacher(step=8)
    views = [view(textured(48, 64, seed=s), f"f{s}") for s in range(3)]
    first = extract_features(t, views, FeatureCache(tmp_path), progress=False)
    calls = []
    real = t.extract
    t.extract = lambda vs: calls.append(len(vs)) or real(vs)
    second = extract_features(t, views, FeatureCache(tmp_path), progress=False)
    assert calls == []
    fresh = real(views)
    for s, f in zip(second, fresh):
        torch.testing.assert_close(s.features.float(), f.features, atol=1e-3, rtol=1e-3)
        assert torch.equal(s.valid, f.valid)
    t2 = SiftTeacher(step=8, size=10)
    t2.extract = lambda vs: calls.append(len(vs)) or SiftTeacher.extract(t2, vs)
    extract_features(t2, views, FeatureCache(tmp_path), progress=False)
    assert calls == [3]  # another option is another cache entry
    assert len(first) == 3
