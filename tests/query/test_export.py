"""Exports: turbo colours, heatmap overlay, relevancy PLY property, point clouds with oriented normals in world
coordinates."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError
from featurefields.fields.gaussians import FeatureLayout, GaussianField
from featurefields.fields.ply import read_ply
from featurefields.fields.splats import GaussianFeatureField
from featurefields.query import Selection
from featurefields.query.export import (
    heatmap_overlay,
    selection_point_cloud,
    turbo,
    write_point_cloud,
    write_relevancy_ply,
)


def test_turbo_follows_the_published_map():
    # entries of Google's 256-entry turbo table (index: rgb), between and on the anchors the map interpolates
    lut = {0: (0.18995, 0.07176, 0.23217), 37: (0.27680, 0.47151, 0.94214), 100: (0.24797, 0.96423, 0.54303),
           128: (0.64362, 0.98999, 0.23356), 201: (0.95398, 0.38836, 0.08362), 255: (0.47960, 0.01583, 0.01055)}
    for i, rgb in lut.items():
        np.testing.assert_allclose(turbo(np.array(i / 255)), rgb, atol=0.01)
    out = turbo(torch.linspace(-1, 2, 50))
    assert out.shape == (50, 3) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out[0], turbo(np.array(0.0)))  # clipped


def test_heatmap_overlay_only_colours_relevant_pixels():
    rgb = torch.rand(6, 8, 3)
    rel = torch.zeros(6, 8)
    rel[2:4, 2:5] = torch.tensor([0.6, 0.8, 1.0])
    img = heatmap_overlay(rgb, rel)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    dimmed = (np.clip(0.75 * rgb.numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
    outside = (rel <= 0.5).numpy()
    np.testing.assert_array_equal(img[outside], dimmed[outside])
    assert np.abs(img[2, 4].astype(int) - dimmed[2, 4].astype(int)).sum() > 30


def flat_field(normals_world: torch.Tensor, means: torch.Tensor) -> GaussianField:
    from tests.query.helpers import flat_frames, rotmat_to_quat

    n = len(means)
    f = GaussianField(means, torch.full((n, 3), 0.5), torch.log(torch.tensor([[0.02, 0.02, 0.001]])).expand(n, 3),
                      FeatureLayout([], 0), sh_degree=0)
    q = torch.from_numpy(rotmat_to_quat(flat_frames(normals_world.numpy().astype(np.float64)))).float()
    f.replace_params({**{k: v.detach() for k, v in f.params().items()}, "quats": q})
    return f


def test_normals_are_the_shortest_axis_and_face_the_cameras():
    normals = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, -1.0, 0.2]]), dim=-1)
    means = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    f = flat_field(-normals, means)  # stored facing away: export must flip them towards the camera
    est = GaussianFeatureField(f).element_normals()
    assert torch.allclose((est * normals).sum(-1).abs(), torch.ones(3), atol=1e-5)
    world = torch.eye(4)
    world[:3, 3] = torch.tensor([10.0, 0.0, 0.0])  # world_from_scene: a translation moves points, not normals
    cam_pos = means + 0.2 * normals + world[:3, 3]  # each surface seen from close by, on the side it faces
    pcd = selection_point_cloud(GaussianFeatureField(f, world_from_scene=world), Selection.all(3), cam_pos)
    pts, nrm = torch.from_numpy(np.asarray(pcd.points)), torch.from_numpy(np.asarray(pcd.normals))
    torch.testing.assert_close(pts.float(), means + world[:3, 3])
    torch.testing.assert_close(nrm.float(), normals, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="empty"):
        selection_point_cloud(f, Selection.none(3))


def test_normals_of_a_ball_seen_from_a_ring_of_cameras_point_outwards():
    from featurefields.query.export import orient_normals

    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(800, 3, generator=g), dim=-1)
    pts = 0.1 * dirs + torch.tensor([1.0, 2.0, 0.5])
    flips = torch.where(torch.rand(800, generator=g) < 0.5, -1.0, 1.0)[:, None]
    a = torch.linspace(0, 6.28, 9)[:-1]
    ring = torch.stack([1 + 2 * a.cos(), 2 + 2 * a.sin(), torch.full_like(a, 0.5)], -1)  # cameras at the equator
    out = orient_normals(pts, dirs * flips, ring)
    assert (out * dirs).sum(-1).gt(0.99).float().mean() > 0.99  # the poles too, not just what faces a camera


def test_point_cloud_and_relevancy_ply_files(tmp_path):
    import open3d as o3d

    means = torch.rand(30, 3)
    f = flat_field(torch.tensor([[0.0, 0.0, 1.0]]).expand(30, 3), means)
    write_point_cloud(tmp_path / "obj.ply", selection_point_cloud(f, Selection(torch.arange(30) < 12)))
    back = o3d.io.read_point_cloud(str(tmp_path / "obj.ply"))
    assert len(back.points) == 12 and back.has_normals() and back.has_colors()
    rel = torch.linspace(0, 1, 30)
    write_relevancy_ply(tmp_path / "rel.ply", f, rel)
    params, meta = read_ply(tmp_path / "rel.ply")
    from plyfile import PlyData

    v = PlyData.read(str(tmp_path / "rel.ply"))["vertex"].data
    np.testing.assert_allclose(v["relevancy"], rel.numpy(), atol=1e-7)
    torch.testing.assert_close(params["means"], means)
    write_relevancy_ply(tmp_path / "rel2.ply", f, torch.stack([rel, 1 - rel]))
    v2 = PlyData.read(str(tmp_path / "rel2.ply"))["vertex"].data
    assert {"relevancy_0", "relevancy_1"} <= set(v2.dtype.names)
    with pytest.raises(ConfigError, match="29"):
        write_relevancy_ply(tmp_path / "bad.ply", f, rel[:29])
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
    assert math.isfinite(float(rel.sum()))
