from __future__ import annotations

import pytest
import torch

from featurefields.errors import DataError
from featurefields.teachers import FeatureCache, TeacherInput, extract_features, make_teacher

LABELS = ["mug", "table", "coffee_mug", "potted plant"]


def _view(h=10, w=14, name="frame_007.png"):
    sem = torch.full((h, w), -1, dtype=torch.int16)
    sem[: h // 2, : w // 2] = 0  # mug
    sem[: h // 2, w // 2 :] = 1  # table
    sem[h // 2 :, : w // 2] = 2  # coffee mug; bottom right stays unknown
    sem[-1, -1] = 3  # one potted plant pixel
    image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return TeacherInput(image=image, semantics=sem, label_names=list(LABELS), name=name)


def test_shapes_dtypes_normalisation(labels_teacher):
    view = _view()
    out = labels_teacher.extract([view, _view(6, 4)])
    assert len(out) == 2
    f, v = out[0].features, out[0].valid
    assert labels_teacher.dim == 384 and labels_teacher.name == "labels" and labels_teacher.text_aligned
    assert f.shape == (10, 14, 384) and f.dtype == torch.float32
    assert v.shape == (10, 14) and v.dtype == torch.bool
    assert torch.equal(v, view.semantics >= 0)
    torch.testing.assert_close(f[v].norm(dim=-1), torch.ones(int(v.sum())), atol=1e-5, rtol=0)
    assert torch.all(f[~v] == 0)
    assert out[1].features.shape == (6, 4, 384)
    # Same label -> the same vector wherever it appears, in any frame.
    torch.testing.assert_close(out[0].features[0, 0], out[1].features[0, 0])


def test_labels_differ_and_queries_match_their_pixels(labels_teacher):
    view = _view()
    out = labels_teacher.extract([view])[0]
    sem, f = view.semantics.long(), out.features
    per_label = torch.stack([f[sem == i][0] for i in range(len(LABELS))])  # [L, 384]
    sims = per_label @ per_label.T
    off_diag = sims[~torch.eye(len(LABELS), dtype=torch.bool)]
    assert off_diag.max() < 0.95, sims  # even "mug" and "coffee mug" are distinguishable

    queries = labels_teacher.encode_text(["mug", "table", "coffee mug", "potted_plant"])
    assert queries.shape == (4, 384) and queries.dtype == torch.float32
    torch.testing.assert_close(queries.norm(dim=-1), torch.ones(4), atol=1e-5, rtol=0)
    cos = torch.einsum("hwd,qd->hwq", f, queries)  # [H, W, Q]
    valid = out.valid
    assert torch.equal(cos.argmax(-1)[valid], sem[valid])  # every pixel's best query is its own label
    for i in range(len(LABELS)):
        assert cos[..., i][sem == i].min() > 0.999
        assert cos[..., i][(sem != i) & valid].max() < 0.95


def test_encode_text_forms(labels_teacher):
    a = labels_teacher.encode_text("coffee_mug")
    b = labels_teacher.encode_text(["coffee   mug"])
    assert a.shape == (1, 384)
    torch.testing.assert_close(a, b)
    assert labels_teacher.encode_text([]).shape == (0, 384)
    # Raw sentence encoder distinguishes phrases the teacher would normalise.
    raw = labels_teacher.encoder.encode(["a red chair", "chair"])
    assert (raw[0] @ raw[1]).item() < 0.999


def test_empty_label_name_is_invalid(labels_teacher):
    view = _view()
    names = list(LABELS)
    names[1] = " _ "
    out = labels_teacher.extract([TeacherInput(view.image, view.semantics, names, view.name)])[0]
    assert torch.equal(out.valid, (view.semantics >= 0) & (view.semantics != 1))


def test_bad_views_raise_data_errors_naming_the_frame(labels_teacher):
    view = _view(name="kitchen/0042.png")
    with pytest.raises(DataError, match=r"kitchen/0042\.png: the labels teacher needs semantic masks"):
        labels_teacher.extract([TeacherInput(view.image, None, None, view.name)])
    with pytest.raises(DataError, match=r"kitchen/0042\.png: .*label names"):
        labels_teacher.extract([TeacherInput(view.image, view.semantics, None, view.name)])
    sem = view.semantics.clone()
    sem[2, 3] = 9
    with pytest.raises(DataError, match=r"kitchen/0042\.png: semantic index 9 is out of range for 4"):
        labels_teacher.extract([TeacherInput(view.image, sem, view.label_names, view.name)])
    sem[2, 3] = -5
    with pytest.raises(DataError, match=r"semantic index -5"):
        labels_teacher.extract([TeacherInput(view.image, sem, view.label_names, view.name)])
    with pytest.raises(DataError, match=r"kitchen/0042\.png: semantic mask is \(10, 13\)"):
        labels_teacher.extract([TeacherInput(view.image, view.semantics[:, :13], view.label_names, view.name)])
    # Through the cached path too (the error is not swallowed, nothing is cached).
    with pytest.raises(DataError, match="needs semantic masks"):
        extract_features(labels_teacher, [TeacherInput(view.image, None, None, view.name)], None, progress=False)


def test_cached_labels_round_trip(labels_teacher, tmp_path):
    views = [_view(), _view(8, 6, name="b.png")]
    cache = FeatureCache(tmp_path)
    fresh = labels_teacher.extract(views)
    cached = extract_features(labels_teacher, views, cache, progress=False)
    for a, b in zip(fresh, cached):
        assert b.features.dtype == torch.float16
        torch.testing.assert_close(b.features.float(), a.features, atol=1e-3, rtol=1e-3)
        assert torch.equal(a.valid, b.valid)
    # Renaming a label changes what the pixels mean, so it must not hit the old entry.
    renamed = TeacherInput(views[0].image, views[0].semantics, ["cup", *LABELS[1:]], views[0].name)
    assert cache.key(labels_teacher, renamed) != cache.key(labels_teacher, views[0])


def test_config_is_json_and_tracks_model_path(labels_teacher, tmp_path):
    import json

    cfg = labels_teacher.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert "all-MiniLM-L6-v2" in cfg["model"]
    from featurefields.teachers.text import default_model_path

    explicit = make_teacher("labels", model_path=default_model_path())
    assert explicit.config() != cfg
    assert explicit.config()["model_path"] == str(default_model_path())
    assert explicit.encoder is labels_teacher.encoder  # one model per process, not one per teacher
