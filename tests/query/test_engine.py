"""QueryEngine on an oracle field (Gaussians on the scene's meshes with exact label features): text relevancy in
2D and 3D, several positives, prompts (similarity and SAM's decoder), views, and fields that cannot answer."""
from __future__ import annotations

import json

import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from featurefields.query import QueryEngine, QueryError, Selection
from featurefields.query.engine import project_points


def test_3d_text_selection_is_exactly_the_objects_gaussians(oracle, engine):
    for label in ("mug", "banana", "book"):
        sel = engine.select(label, negatives="scene")
        assert torch.equal(sel.mask, oracle.truth(label)), label
    # LERF's canonical negatives alone: the object still scores > 0.5, and more Gaussians than the object do
    rel = engine.relevancy_3d("mug", negatives="canonical")
    assert rel.negatives == ["object", "things", "stuff", "texture"]
    assert bool((rel.combined[oracle.truth("mug")] > 0.9).all())


def test_several_positives_select_the_union(oracle, engine):
    sel = engine.select("mug; bowl", negatives="scene")
    assert torch.equal(sel.mask, oracle.truth("mug", "bowl"))
    rel = engine.relevancy_3d("mug;bowl", negatives="scene")
    assert rel.positives == ["mug", "bowl"] and rel.relevancy.shape == (2, len(oracle.labels))
    # 'auto' negatives: the scene's labels minus the positives, plus the canonical ones
    assert "mug" not in rel.negatives and "table" in rel.negatives


def test_2d_mask_matches_ground_truth_pixels(oracle, engine):
    scene = engine.scene
    for v in engine.views("test"):
        gt = scene.semantics[v.index] == scene.label_names.index("box")
        rel = engine.relevancy_2d("box", v, negatives="scene")
        assert rel.relevancy.shape == (1, v.height, v.width)
        mask = rel.mask()
        if gt.sum() > 10:
            iou = (mask & gt).sum() / (mask | gt).sum()
            assert iou > 0.4, (v.name, float(iou))


def test_point_prompt_selects_the_clicked_object(oracle, engine):
    scene = engine.scene
    mug = scene.label_names.index("mug")
    view = max(engine.views("all"), key=lambda v: int((scene.semantics[v.index] == mug).sum()))
    ys, xs = (scene.semantics[view.index] == mug).nonzero(as_tuple=True)
    k = len(ys) // 2
    res = engine.prompt(view, point=(float(xs[k]) + 0.5, float(ys[k]) + 0.5))
    assert res.method == "similarity" and res.teacher == "labels" and res.mask.shape == (view.height, view.width)
    assert res.mask[ys[k], xs[k]]
    want = oracle.truth("mug", parts=False)  # the click is on the body; the handle's features say "mug handle"
    tp = (res.selection.mask & want).sum()
    assert tp / res.selection.count > 0.95 and tp / want.sum() > 0.95
    # a box around the mug's pixels picks the mug, not the table filling most of the box
    box = (float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1)
    res_box = engine.prompt(view, box=box)
    tp = (res_box.selection.mask & want).sum()
    assert tp / max(res_box.selection.count, 1) > 0.95 and tp > 0.3 * want.sum()
    uv, z = project_points(engine.field.element_positions()[res_box.selection.mask], view)
    assert bool(((uv[:, 0] >= box[0]) & (uv[:, 0] < box[2]) & (z > 0)).all())


@pytest.mark.parametrize("prompt, match", [
    ({"point": (64.0, 10.0)}, "outside"), ({"point": (-1.0, 3.0)}, "outside"), ({"box": (5, 5, 80, 20)}, "outside"),
    ({"box": (10, 10, 5, 20)}, "empty"), ({}, "exactly one"), ({"point": (1, 1), "box": (0, 0, 5, 5)}, "exactly one"),
])
def test_bad_prompts_are_query_errors(engine, prompt, match):
    view = engine.views("0")[0]
    with pytest.raises(QueryError, match=match):
        engine.prompt(view, **prompt)


def test_fields_without_a_text_encoder_say_which_teachers_they_have(tmp_path):
    layout = FeatureLayout([TeacherSpec("sift", 128)], latent_dim=0)
    field = GaussianField(torch.rand(20, 3), torch.rand(20, 3), torch.full((20, 3), -3.0), layout, sh_degree=0)
    eng = QueryEngine(field, teacher_records=[{"name": "sift"}])
    with pytest.raises(ConfigError, match="sift"):
        eng.relevancy_3d("mug")
    with pytest.raises(ConfigError, match="no 'labels' teacher; it has sift"):
        eng.text_teacher("labels")
    colour_only = GaussianField(torch.rand(5, 3), torch.rand(5, 3), torch.zeros(5, 3), FeatureLayout([], 0), 0)
    with pytest.raises(ConfigError, match="colour only"):
        QueryEngine(colour_only).select("mug")


def test_bad_queries(engine):
    for q in ("", " ; ", "a" * 400):
        with pytest.raises(QueryError):
            engine.relevancy_3d(q)
    with pytest.raises(ConfigError, match="threshold"):
        engine.select("mug", threshold=2.0)


def test_view_specs_and_camera_files(engine, tmp_path):
    s = engine.scene
    assert [v.index for v in engine.views("test")] == s.test_idx
    assert len(engine.views("all")) == len(s)
    assert [v.stem for v in engine.views("1,frame_00002")] == ["frame_00001", "frame_00002"]
    novel = engine.views("novel:3")
    assert len(novel) == 3 and all(v.index is None for v in novel)
    rel = engine.relevancy_2d("table", novel[0])
    assert rel.mask().float().mean() > 0.2  # a novel view of a tabletop sees mostly table
    for bad in ("frame_99999", "novel:0", "99"):
        with pytest.raises(QueryError):
            engine.views(bad)
    from featurefields.data.cameras import GL_TO_CV
    from featurefields.query.engine import views_from_camera_file

    c2w_gl = (s.cameras.c2w[0] @ GL_TO_CV).tolist()  # back to nerfstudio's OpenGL axes
    (tmp_path / "cams.json").write_text(json.dumps({"frames": [
        {"transform_matrix": c2w_gl, "name": "gl"},
        {"c2w": s.cameras.c2w[0].tolist(), "K": s.cameras.K[0].tolist(), "width": s.width, "height": s.height}]}))
    views = views_from_camera_file(tmp_path / "cams.json", engine.frame_view(0))
    torch.testing.assert_close(views[0].c2w, s.cameras.c2w[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(engine.render(views[1]).rgb, engine.render(engine.frame_view(0)).rgb)
    (tmp_path / "bad.json").write_text(json.dumps({"c2w": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}))
    with pytest.raises(DataError, match="orthonormal"):
        views_from_camera_file(tmp_path / "bad.json", engine.frame_view(0))


def test_latent_fields_fold_the_linear_head_exactly():
    torch.manual_seed(0)
    layout = FeatureLayout([TeacherSpec("labels", 384)], latent_dim=16)
    field = GaussianField(torch.rand(500, 3), torch.rand(500, 3), torch.full((500, 3), -3.0), layout, sh_degree=0)
    eng = QueryEngine(field, teacher_records=[{"name": "labels"}])
    a = eng.relevancy_3d("red mug", negatives="canonical")
    b = eng.relevancy_3d("red mug", negatives="canonical", exact=True, chunk=77)
    torch.testing.assert_close(a.relevancy, b.relevancy, atol=1e-5, rtol=1e-5)


TINY_SAM = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,), "img_size": 256,
            "window_size": 4, "decoder_depth": 1, "decoder_mlp_dim": 64}


def test_sam_prompts_feed_the_rendered_embedding_to_sams_decoder(engine):
    pytest.importorskip("segment_anything")
    from featurefields.teachers import make_teacher

    torch.manual_seed(0)
    sam = make_teacher("sam", random_init=True, arch=TINY_SAM)
    base = engine.field.gaussians
    layout = FeatureLayout([TeacherSpec("sam", 256)], latent_dim=8)
    field = GaussianField(base.means.detach(), torch.rand(len(base), 3), base.log_scales.detach(), layout, 0)
    field.replace_params({**{k: v.detach() for k, v in base.params().items() if k != "features"},
                          "features": torch.randn(len(base), 8)})
    eng = QueryEngine(field, teachers={"sam": sam}, scene=engine.scene)
    view = eng.views("0")[0]
    seen = {}
    decoder = sam.sam.mask_decoder
    original = decoder.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    decoder.forward = spy
    try:
        res = eng.prompt(view, point=(30.0, 20.0))  # sam is the only teacher: SAM's decoder answers
        res_box = eng.prompt(view, box=(10, 8, 40, 30), teacher="sam")
    finally:
        del decoder.forward
    assert res.method == "sam" and res.mask.shape == (view.height, view.width) and res.mask.dtype == torch.bool
    assert res.score.shape == (view.height, view.width) and len(res.selection) == len(field)
    assert res_box.method == "sam" and res_box.mask.shape == (view.height, view.width)
    emb = seen["image_embeddings"]
    assert emb.shape == (1, 256, 16, 16)  # SAM's grid for a 256-px encoder
    # 64x48 -> 256x192 input -> a 12x16 image part at the top-left, zero padding below
    rendered = eng.decoded(eng.render(view), "sam")
    small = torch.nn.functional.interpolate(rendered.permute(2, 0, 1)[None], size=(12, 16), mode="bilinear",
                                            align_corners=False, antialias=True)
    torch.testing.assert_close(emb[..., :12, :16], small, atol=1e-4, rtol=1e-4)
    assert float(emb[..., 12:, :].abs().max()) == 0.0
    sel = res.selection
    assert isinstance(sel, Selection) and sel.count <= len(field)


def test_element_weights_are_the_blending_weights(engine):
    """Rendering is linear in the colours with the blending weights as coefficients: sum(image * mask) for any
    colours equals colours . element_weights."""
    from featurefields.render import render

    f, v = engine.field.gaussians, engine.views("test")[0]
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(v.height, v.width, 2, generator=g) > 0.5).float()
    w = engine.field.element_weights(v, masks)  # [N, 2]
    colors = torch.rand(len(f), 1, generator=g)
    img = render(f.means.detach(), f.quats.detach(), f.scales.detach(), f.opacities.detach(), colors,
                 torch.linalg.inv(v.c2w), v.K, v.width, v.height).image[..., 0]
    for k in range(2):
        assert torch.allclose((img * masks[..., k]).sum(), (colors[:, 0] * w[:, k]).sum(), rtol=1e-4)
    assert (w >= 0).all() and bool(w[:, 1].sum() > 0)


def test_selection_by_views_follows_what_gaussians_render_as(oracle, engine):
    views = engine.views("all")
    seen = sum(engine.field.element_weights(v, torch.ones(v.height, v.width, 1))[:, 0] for v in views) >= 0.5
    for label in ("mug", "book"):
        sel = engine.select_by_views(label, views="all", negatives="scene")
        t = Selection(oracle.truth(label))
        assert (sel & t).count / sel.count >= 0.9, label  # 64x48 views: object edges blur into the table
        visible = t & Selection(seen)  # undersides and insides are seen in no view, so never selected
        assert (sel & visible).count / visible.count >= 0.5, label
        assert (sel - Selection(seen)).count == 0
    with pytest.raises(ConfigError, match="threshold"):
        engine.select_by_views("mug", threshold=2.0)
