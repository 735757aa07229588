"""Selection algebra, opacity threshold, connected components and persistence on hand-made tensors."""
from __future__ import annotations

import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.query.selection import Selection, components


def sel(*bits):
    return Selection(torch.tensor(bits, dtype=torch.bool))


def test_and_or_not_sub_xor():
    a, b = sel(1, 1, 0, 0), sel(1, 0, 1, 0)
    assert (a & b) == sel(1, 0, 0, 0)
    assert (a | b) == sel(1, 1, 1, 0)
    assert (~a) == sel(0, 0, 1, 1)
    assert (a - b) == sel(0, 1, 0, 0)
    assert (a ^ b) == sel(0, 1, 1, 0)
    assert (a & ~a).count == 0 and (a | ~a).count == 4  # laws hold
    assert (~(a & b)) == (~a | ~b)  # de Morgan
    assert a.count == 2 and len(a) == 4 and a.indices.tolist() == [0, 1]
    assert Selection.from_indices(4, [3, 1]) == sel(0, 1, 0, 1)
    assert Selection.all(3).count == 3 and Selection.none(3).count == 0


def test_mismatched_sizes_and_bad_input_are_config_errors():
    with pytest.raises(ConfigError, match="different fields"):
        _ = sel(1, 0) & sel(1, 0, 1)
    with pytest.raises(ConfigError, match="1-D"):
        Selection(torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ConfigError, match="out of range"):
        Selection.from_indices(3, [3])
    with pytest.raises(ConfigError, match="opacity threshold"):
        sel(1, 1).opaque(torch.tensor([0.1, 0.9]), 1.5)


def test_opacity_threshold():
    s = sel(1, 1, 1, 0).opaque(torch.tensor([0.05, 0.5, 0.9, 0.99]), 0.5)
    assert s == sel(0, 1, 1, 0)


def _blobs(gen, centres, n, radius):
    """n points on a sphere around each centre: a surface, like the Gaussians of an object."""
    out = []
    for c in centres:
        d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
        out.append(torch.tensor(c) + radius * d)
    return torch.cat(out)


def test_largest_component_drops_far_strays_and_small_clusters():
    g = torch.Generator().manual_seed(0)
    big = _blobs(g, [(0.0, 0.0, 0.0)], 400, 0.05)
    small = _blobs(g, [(1.0, 0.0, 0.0)], 60, 0.01)
    strays = torch.tensor([[0.5, 0.5, 0.5], [-0.6, 0.2, 0.9]])
    unselected = _blobs(g, [(0.2, 0.0, 0.0)], 50, 0.03)  # nearby but not selected: must not join anything
    means = torch.cat([big, small, strays, unselected])
    mask = torch.zeros(len(means), dtype=torch.bool)
    mask[:462] = True
    out = Selection(mask).largest_component(means)
    assert out.count == 400 and bool(out.mask[:400].all()) and not out.mask[400:].any()
    labels, radius = components(means[:462])
    assert labels.max() + 1 == 4 and radius > 0  # big, small, two strays
    # an explicit radius large enough bridges the clusters
    assert Selection(mask).largest_component(means, radius=2.0, k=500).count == 462


def test_components_of_a_chain_are_transitive():
    pts = torch.tensor([[i * 0.1, 0.0, 0.0] for i in range(20)] + [[10.0, 0, 0]])
    labels, _ = components(pts, radius=0.15, k=2)
    assert len(set(labels[:20].tolist())) == 1 and labels[20] != labels[0]
    assert components(pts[:0])[0].size == 0 and components(pts[:1])[0].tolist() == [0]


def test_save_and_load(tmp_path):
    s = sel(1, 0, 1)
    s.save(tmp_path / "s.pt", query="mug")
    assert Selection.load(tmp_path / "s.pt", 3) == s
    with pytest.raises(DataError, match="field has 4"):
        Selection.load(tmp_path / "s.pt", 4)
    with pytest.raises(DataError, match="not found"):
        Selection.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("nope")
    with pytest.raises(DataError, match="selection"):
        Selection.load(tmp_path / "junk.pt")


def test_the_radius_graph_keeps_an_object_whose_density_jumps_in_one_piece():
    g = torch.arange(6, dtype=torch.float32) * 0.006
    h = torch.arange(20, dtype=torch.float32) * 0.006
    body = torch.stack(torch.meshgrid(g, g, h, indexing="ij"), -1).reshape(-1, 3)  # [720] 6 mm apart, 11.4 cm tall
    c = torch.arange(5, dtype=torch.float32) * 0.0015
    cap = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3) + torch.tensor([0.01, 0.01, 0.124])
    pts = torch.cat([body, cap])  # a tight cluster of 125 points 1 cm above the body's top
    knn, radius = components(pts)
    assert len(set(knn.tolist())) == 2 and radius > 0.01  # the kNN graph: each cluster's 8 nearest are its own
    one, _ = components(pts, radius=radius, k=None)
    assert len(set(one.tolist())) == 1
    apart, _ = components(torch.cat([body, cap + torch.tensor([0.0, 0.0, 0.05])]), radius=radius, k=None)
    assert len(set(apart.tolist())) == 2  # 6 cm apart: two pieces still
