"""The field interface (featurefields.load -> FeatureField): point queries against a brute-force mixture, the world
frame under a similarity world_from_scene, checkpoint and PLY loading, fused surfaces and point relevancy on the
oracle field (Gaussians on the tiny tabletop's meshes)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import featurefields as ff
from featurefields.errors import ConfigError, DataError
from featurefields.fields.density import quat_to_rotmat
from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec, sh0_to_rgb
from featurefields.fields.ply import write_ply
from featurefields.fields.splats import GaussianFeatureField, gaussian_mixture_at


def random_field(n=60, latent=4, seed=0) -> GaussianField:
    g = torch.Generator().manual_seed(seed)
    layout = FeatureLayout([TeacherSpec("labels", 6)], latent_dim=latent)
    f = GaussianField(torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g),
                      torch.log(0.02 + 0.08 * torch.rand(n, 3, generator=g)), layout, sh_degree=0)
    with torch.no_grad():
        f.quats.copy_(torch.randn(n, 4, generator=g))
        f.opacity_logits.copy_(torch.randn(n, generator=g))
        f.features.copy_(torch.randn(n, latent, generator=g))
    return f.requires_grad_(False)


def brute_mixture(points, f: GaussianField, values, blur=0.0):
    """Every Gaussian at every point, with the covariance written out: the definition the fast path must meet."""
    rot = quat_to_rotmat(f.quats)
    var = f.scales ** 2 + blur ** 2
    cov = rot @ torch.diag_embed(var) @ rot.transpose(1, 2)  # [N, 3, 3]
    amp = f.opacities * torch.sqrt(f.scales ** 2 / var).prod(-1)
    d = points[:, None, :] - f.means[None]  # [P, N, 3]
    m2 = torch.einsum("pni,nij,pnj->pn", d, torch.linalg.inv(cov), d)
    w = amp[None] * torch.exp(-0.5 * m2) * (m2 <= 9.0)
    density = w.sum(1)
    return density, 1 - torch.prod(1 - w, 1), (w @ values) / density.clamp_min(1e-12)[:, None]


@pytest.mark.parametrize("blur", [0.0, 0.01])
def test_point_queries_are_the_gaussian_mixture(blur):
    f = random_field()
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(300, 3, generator=g) * 1.2 - 0.1
    values = torch.cat([sh0_to_rgb(f.sh0[:, 0]).clamp(0, 1), f.features], 1)
    d, o, v = gaussian_mixture_at(pts, f.means, f.quats, f.scales, f.opacities, values, blur=blur)
    bd, bo, bv = brute_mixture(pts, f, values, blur)
    torch.testing.assert_close(d, bd, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(o, bo, atol=1e-5, rtol=1e-4)
    hit = bd > 1e-4
    assert hit.float().mean() > 0.3
    torch.testing.assert_close(v[hit], bv[hit], atol=1e-4, rtol=1e-3)
    q = GaussianFeatureField(f).query_points(pts, blur=blur)
    torch.testing.assert_close(q.density, bd, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(q.features["labels"][hit], f.decoder(bv[hit, 3:], "labels"), atol=1e-4, rtol=1e-3)
    with pytest.raises(ConfigError, match=r"\[P, 3\]"):
        GaussianFeatureField(f).query_points(torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="NaN"):
        GaussianFeatureField(f).query_points(torch.tensor([[0.0, math.nan, 0.0]]))


def test_world_frame_under_a_similarity_world_from_scene():
    """A field stored in a scaled, rotated, shifted frame answers in world coordinates exactly like the same
    Gaussians moved into the world (colour and features are view-independent here, so moving them is exact)."""
    f = random_field()
    s, ang = 2.0, 0.7
    W = torch.eye(4)
    W[:3, :3] = s * torch.tensor([[math.cos(ang), -math.sin(ang), 0.0], [math.sin(ang), math.cos(ang), 0.0],
                                  [0.0, 0.0, 1.0]])
    W[:3, 3] = torch.tensor([0.5, -1.0, 0.25])
    moved = GaussianField.from_state(f.state())
    rz = W[:3, :3] / s
    qz = torch.tensor([math.cos(ang / 2), 0.0, 0.0, math.sin(ang / 2)])  # the same rotation, wxyz
    q = torch.nn.functional.normalize(f.quats, dim=-1)
    qw = torch.stack([qz[0] * q[:, 0] - qz[3] * q[:, 3], qz[0] * q[:, 1] - qz[3] * q[:, 2],
                      qz[0] * q[:, 2] + qz[3] * q[:, 1], qz[0] * q[:, 3] + qz[3] * q[:, 0]], -1)  # qz * q
    moved.replace_params({**f.params(), "means": f.means @ W[:3, :3].T + W[:3, 3], "quats": qw,
                          "log_scales": f.log_scales + math.log(s)})
    torch.testing.assert_close(quat_to_rotmat(qw), rz @ quat_to_rotmat(q), atol=1e-5, rtol=0)
    a, b = GaussianFeatureField(f, world_from_scene=W), GaussianFeatureField(moved)
    torch.testing.assert_close(a.element_positions(), b.element_positions())
    pts = torch.rand(200, 3) * 2.0 - 0.5
    qa, qb = a.query_points(pts), b.query_points(pts)
    torch.testing.assert_close(qa.density, qb.density, atol=1e-5, rtol=1e-4)
    eye = torch.tensor([0.5, -4.0, 2.5])
    view = ff.View("v", look_at(eye, torch.tensor([0.5, 0.0, 0.5])), torch.tensor(
        [[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]]), 64, 48)
    ra, rb = a.render(view), b.render(view)
    assert float(rb.alpha.max()) > 0.5
    torch.testing.assert_close(ra.rgb, rb.rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(ra.depth, rb.depth, atol=1e-4, rtol=1e-4)  # depth in world units
    torch.testing.assert_close(ra.features, rb.features, atol=1e-4, rtol=0)


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world looking from eye at target, z up."""
    fwd = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0])), dim=0)
    down = torch.linalg.cross(fwd, right)
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return c2w


def test_load_checkpoint_folder_and_ply_give_the_same_field(oracle, tmp_path):
    a = ff.load(oracle.checkpoint)
    b = ff.load(oracle.checkpoint.parent)
    write_ply(tmp_path / "f.ply", oracle.field)
    c = ff.load(tmp_path / "f.ply", scene_root=oracle.scene)
    assert isinstance(a, ff.FeatureField) and a.kind == "gaussians" and len(a) == len(b) == len(c)
    torch.testing.assert_close(a.element_positions(), c.element_positions())
    assert a.teacher_names == c.teacher_names == ["labels"]
    v = a.views("test")[0]
    torch.testing.assert_close(a.render(v).rgb, c.render(c.views("test")[0]).rgb)
    pts = a.element_positions()[:50]
    torch.testing.assert_close(a.relevancy("mug", pts), c.relevancy("mug", pts))
    with pytest.raises(DataError, match="not found"):
        ff.load(tmp_path / "missing.pt")


def disc_field(points: np.ndarray, normals: np.ndarray, size: float) -> GaussianField:
    """Opaque flat discs of radius ~``size`` tangent to a surface (colour only)."""
    from tests.query.helpers import flat_frames, rotmat_to_quat

    n = len(points)
    f = GaussianField(torch.tensor(points).float(), torch.full((n, 3), 0.6),
                      torch.log(torch.tensor([[size, size, 0.05 * size]])).expand(n, 3).clone(), FeatureLayout([], 0),
                      sh_degree=0)
    q = torch.from_numpy(rotmat_to_quat(flat_frames(np.asarray(normals, float)))).float()
    f.replace_params({**{k: v.detach() for k, v in f.params().items()}, "quats": q,
                      "opacity_logits": torch.full((n,), 4.0)})
    return f.requires_grad_(False)


def test_fused_surface_of_a_ball_on_a_plane():
    """Discs tiling a plane z = 0 and a ball of radius 10 cm on it, seen by a ring of 8 cameras: the fused points
    lie on both (within the few millimetres by which centre-depth splat renders sit in front of flat discs) and
    their normals point out of the surface."""
    from featurefields.fields.surface import fuse_surface

    xs = np.arange(-0.3, 0.3, 0.004) + 0.002
    plane = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    plane = np.concatenate([plane, np.zeros((len(plane), 1))], 1)
    k, radius, centre = 8000, 0.1, np.array([0.0, 0.0, 0.1])
    i = np.arange(k) + 0.5
    phi, th = np.arccos(1 - 2 * i / k), math.pi * (1 + 5 ** 0.5) * i
    dirs = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
    dirs = dirs[(centre + radius * dirs)[:, 2] > 0]
    f = disc_field(np.concatenate([plane, centre + radius * dirs]),
                   np.concatenate([np.tile([0.0, 0.0, 1.0], (len(plane), 1)), dirs]), 0.003)
    views = []
    for j in range(8):
        a = 2 * math.pi * j / 8
        eye = 1.2 * torch.tensor([math.cos(a) * math.cos(0.7), math.sin(a) * math.cos(0.7), math.sin(0.7)])
        views.append(ff.View(f"v{j}", look_at(eye, torch.tensor([0.0, 0.0, 0.05])),
                             torch.tensor([[110.0, 0, 64], [0, 110.0, 48], [0, 0, 1]]), 128, 96))
    surf = fuse_surface(GaussianFeatureField(f), views, voxel=0.004, region=([-0.2, -0.2, -0.05], [0.2, 0.2, 0.25]))
    p, n = surf.points, surf.normals
    assert len(surf) > 5000 and surf.voxel == pytest.approx(0.004)
    on_plane = (p[:, 2] < 0.015) & (p[:, :2].norm(dim=1) > 0.12)
    assert float(p[on_plane, 2].abs().median()) < 0.004  # within a voxel
    assert float((n[on_plane, 2] > 0.95).float().mean()) > 0.9
    rel = p - torch.tensor(centre).float()
    on_ball = p[:, 2] > 0.03
    dist = rel[on_ball].norm(dim=1)
    assert float((dist - radius).abs().median()) < 0.004
    assert float((((n[on_ball] * rel[on_ball]).sum(1) / dist) > 0.95).float().mean()) > 0.9
    with pytest.raises(ConfigError, match="lo < hi"):
        fuse_surface(GaussianFeatureField(f), views, region=([0, 0, 0], [0, -1, 1]))


def test_surface_points_of_the_oracle_lie_on_its_meshes(oracle):
    import open3d as o3d

    from featurefields.scenegen.tabletop import build_tabletop

    field = ff.load(oracle.checkpoint)
    region = ([-0.5, -0.35, 0.74], [0.5, 0.35, 1.05])
    surf = field.surface_points(views="all", region=region, voxel=0.005)
    assert bool(((surf.points >= torch.tensor(region[0])) & (surf.points <= torch.tensor(region[1]))).all())
    scene = build_tabletop(0)
    rc = o3d.t.geometry.RaycastingScene()
    for m in [scene.table] + [o.world_mesh for o in scene.objects]:
        rc.add_triangles(o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.triangles.astype(np.uint32)))
    dist = torch.from_numpy(rc.compute_distance(o3d.core.Tensor(surf.points.numpy())).numpy())
    # the oracle's discs are a centimetre wide at 64x48 pixels: a coarse surface, still within millimetres
    assert len(surf) > 5000 and float(dist.median()) < 0.005 and float((dist < 0.012).float().mean()) > 0.9
    assert field.surface_points(views="all", region=region, voxel=0.005) is surf  # cached


def test_point_relevancy_on_the_oracle(oracle):
    from featurefields.scenegen.meshes import sample_surface
    from featurefields.scenegen.tabletop import build_tabletop

    field = ff.load(oracle.checkpoint)
    scene = build_tabletop(0)
    rng = np.random.default_rng(3)
    mug = next(o for o in scene.objects if o.label == "mug").world_mesh
    book = next(o for o in scene.objects if o.label == "book").world_mesh
    on_mug = torch.from_numpy(sample_surface(mug, 200, rng)[0]).float()
    on_book = torch.from_numpy(sample_surface(book, 200, rng)[0]).float()
    r_mug = field.relevancy("mug", torch.cat([on_mug, on_book]), negatives="scene")
    assert float((r_mug[:200] > 0.5).float().mean()) > 0.8
    assert float((r_mug[200:] > 0.5).float().mean()) < 0.05
    far = torch.tensor([[5.0, 5.0, 5.0]])
    assert float(field.relevancy("mug", far)) == 0.0  # nothing there
