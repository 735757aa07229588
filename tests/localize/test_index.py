"""The localisation map: keypoints lifted by rendered depth, retrieval, and its disk cache."""
from __future__ import annotations

import numpy as np

from featurefields.localize.config import IndexConfig
from featurefields.localize.features import ratio_matches, sift
from featurefields.localize.index import MapIndex, get_index, lift_keypoints


def test_lifting_keeps_smooth_opaque_pixels_only():
    K = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])
    depth = np.full((24, 32), 2.0, np.float32)
    depth[:, 16:] = 4.0  # an occlusion edge down the middle
    alpha = np.ones_like(depth)
    alpha[:4] = 0.5  # the top rows are half transparent
    xy = np.array([[8.5, 12.5], [16.5, 12.5], [24.5, 12.5], [8.5, 1.5]], np.float32)
    keep, world = lift_keypoints(xy, depth * alpha, alpha, K, np.eye(4), 0.95, 0.08)
    assert keep.tolist() == [True, False, True, False]
    assert np.allclose(world[:, 2], [2.0, 4.0]) and np.allclose(world[0, :2], [(8.5 - 16) / 50 * 2, 0.5 / 50 * 2])


def test_index_points_reproject_and_retrieval_finds_the_view_itself(loc):
    index, _ = get_index(loc.field, IndexConfig())
    assert len(index) == len(loc.field.views("train")) and index.source == "scene"
    for v in (0, 7):
        c2w, K = index.c2w[v], index.K[v]
        cam = (index.xyz[v] - c2w[:3, 3]) @ c2w[:3, :3]
        uv = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
        assert np.abs(uv - index.features[v].xy).max() < 1e-3
        view = loc.field.views("train")[v]
        feats = sift(view.image.numpy())
        assert index.retrieve(feats, 1) == [v]
        qi, ri = ratio_matches(feats.desc, feats.desc)
        assert len(qi) == len(feats) and (qi == ri).all()  # every descriptor's nearest neighbour is itself


def test_index_cache_round_trip(loc, tmp_path):
    a, built = get_index(loc.field, IndexConfig(), tmp_path)  # from the field's memory: not written
    path = tmp_path / "i.npz"
    a.save(path)
    b = MapIndex.load(path)
    assert b.names == a.names and b.source == a.source and b.median_depth == a.median_depth
    for x, y in zip(a.xyz + [f.desc for f in a.features], b.xyz + [f.desc for f in b.features]):
        assert np.array_equal(x, y)
    assert np.array_equal(a.global_desc, b.global_desc)
    cfg = IndexConfig(max_keypoints=500)  # other settings: another map, built and cached on disk
    c, built = get_index(loc.field, cfg, tmp_path)
    assert built and len(list(tmp_path.glob("localize_index_*.npz"))) == 1
    loc.field.invalidate()
    d, built = get_index(loc.field, cfg, tmp_path)
    assert not built and d.names == c.names and d.num_points == c.num_points
