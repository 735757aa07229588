import numpy as np
import pytest
import torch

from featurefields.errors import DataError
from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from featurefields.fields.ply import field_from_ply, read_ply, write_ply


def make_field(n=50, sh_degree=3, latent=8, teachers=(("labels", 384),), seed=0, view_degree=0):
    g = torch.Generator().manual_seed(seed)
    layout = FeatureLayout([TeacherSpec(*t) for t in teachers], latent, view_degree=view_degree)
    f = GaussianField(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g),
                      torch.randn(n, 3, generator=g) - 3, layout, sh_degree)
    with torch.no_grad():  # make every parameter distinctive
        for p in f.params().values():
            p.copy_(torch.randn(p.shape, generator=g))
    return f


@pytest.mark.parametrize("sh_degree,latent,view_degree", [(0, 0, 0), (1, 4, 0), (3, 16, 0), (3, 0, 2), (1, 4, 1)])
def test_round_trip(tmp_path, sh_degree, latent, view_degree):
    f = make_field(sh_degree=sh_degree, latent=latent, teachers=(("labels", 6), ("sift", 5)), view_degree=view_degree)
    path = tmp_path / "f.ply"
    write_ply(path, f)
    params, meta = read_ply(path)
    for name, p in f.params().items():
        assert torch.equal(params[name], p.detach()), name
    assert meta["sh_degree"] == sh_degree
    g = field_from_ply(path)
    assert g.layout == f.layout
    for name, p in f.params().items():
        assert torch.equal(getattr(g, name).detach(), p.detach()), name


def test_standard_3dgs_properties(tmp_path):
    from plyfile import PlyData

    f = make_field(n=7, sh_degree=3, latent=5)
    write_ply(tmp_path / "f.ply", f, extra={"relevancy": np.arange(7)})
    ply = PlyData.read(str(tmp_path / "f.ply"))
    names = ply["vertex"].data.dtype.names
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert list(names[:len(expected)]) == expected
    assert [n for n in names if n.startswith("feat_")] == [f"feat_{i}" for i in range(5)]
    assert np.array_equal(ply["vertex"]["relevancy"], np.arange(7, dtype=np.float32))
    # f_rest is channel-major as in 3DGS: f_rest_0..14 are the red coefficients of bands 1-3.
    assert np.allclose(ply["vertex"]["f_rest_1"], f.shN[:, 1, 0].detach().numpy())
    assert np.allclose(ply["vertex"]["f_rest_15"], f.shN[:, 0, 1].detach().numpy())


def test_corrupt_and_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_ply(tmp_path / "nope.ply")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    with pytest.raises(DataError, match="bad.ply"):
        read_ply(bad)


def test_write_is_atomic(tmp_path, monkeypatch):
    f = make_field(n=5)
    path = tmp_path / "f.ply"
    write_ply(path, f)
    before = path.read_bytes()
    import plyfile

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plyfile.PlyData, "write", boom)
    with pytest.raises(RuntimeError):
        write_ply(path, make_field(n=9, seed=1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.ply"]
