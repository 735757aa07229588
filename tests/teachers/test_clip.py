from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from featurefields.errors import ConfigError, FFError, one_line
from featurefields.teachers import (
    FeatureCache,
    TeacherInput,
    extract_features,
    make_teacher,
)

from .helpers import random_views

pytest.importorskip("open_clip")

# A two-layer ViT of the CLIP family: 32x32 native input, 8-pixel patches, 24-D joint embedding.
TINY = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny(**kw):
    torch.manual_seed(0)
    kw.setdefault("pretrained", None)
    kw.setdefault("resolution", 32)
    return make_teacher("clip", arch=TINY, **kw)


def test_maskclip_shapes_norm_and_valid():
    t = tiny()
    assert t.name == "clip" and t.text_aligned and t.dim == 24
    views = random_views(3, h=20, w=40, seed=1) + random_views(1, h=32, w=32, seed=2)
    outs = t.extract(views)
    # Longer side -> 32 px: 20x40 -> 16x32 px -> 2x4 patches; 32x32 -> 4x4.
    assert [tuple(o.features.shape) for o in outs] == [(2, 4, 24)] * 3 + [(4, 4, 24)]
    for o in outs:
        assert o.features.dtype == torch.float32 and o.valid.dtype == torch.bool and bool(o.valid.all())
        torch.testing.assert_close(o.features.norm(dim=-1), torch.ones(o.features.shape[:2]))
    # Batching does not change the answer.
    one = t.extract(views[1:2])[0]
    torch.testing.assert_close(one.features, outs[1].features, atol=1e-5, rtol=1e-5)
    # Larger resolution -> denser grid (positional embedding resampled).
    big = tiny(resolution=64).extract(views[:1])[0]
    assert tuple(big.features.shape) == (4, 8, 24)


def test_maskclip_equals_hand_computed_value_path():
    t = tiny()
    view = random_views(1, h=32, w=32, seed=5)[0]  # native size: no resize, no positional resampling
    got = t.extract([view])[0].features  # [4, 4, 24]

    visual = t.model.visual
    x = (view.image.permute(2, 0, 1).float() / 255.0)[None]
    x = (x - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
    seen = {}
    last = visual.transformer.resblocks[-1]
    hook = last.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0].detach().clone()))
    with torch.no_grad():
        visual(x)  # the normal forward; we only capture what enters the last block
    hook.remove()
    tokens = seen["x"]  # [1, 1 + 16, 32]
    i, j = 2, 3
    tok = tokens[0, 1 + i * 4 + j]
    width = tok.shape[-1]
    wv = last.attn.in_proj_weight[2 * width :]
    bv = last.attn.in_proj_bias[2 * width :]
    with torch.no_grad():
        v = last.ln_1(tok) @ wv.T + bv
        o = last.attn.out_proj(v)
        ref = F.normalize(visual.ln_post(o) @ visual.proj, dim=-1)
    torch.testing.assert_close(got[i, j], ref, atol=1e-5, rtol=1e-4)
    # ... and it is not the full block's output (the query-key mixing really is skipped).
    with torch.no_grad():
        full = F.normalize(visual.ln_post(last(tokens)[0, 1 + i * 4 + j]) @ visual.proj, dim=-1)
    assert (full - got[i, j]).abs().max() > 1e-3


def test_crop_boxes_cover_and_honour_scale():
    from featurefields.teachers.clip import crop_boxes

    for (h, w), scale, overlap in [((30, 50), 0.5, 0.5), ((64, 48), 0.25, 0.0), ((17, 91), 0.3, 0.75), ((20, 20), 1.0, 0.5)]:
        boxes = crop_boxes(h, w, scale, overlap)
        side = round(scale * min(h, w))
        assert boxes.dtype == torch.long and boxes.shape[1] == 4
        assert torch.all(boxes[:, 2] - boxes[:, 0] == side) and torch.all(boxes[:, 3] - boxes[:, 1] == side)
        assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
        covered = torch.zeros(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in boxes.tolist():
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        # Neighbouring starts are no further apart than the stride allows.
        xs = boxes[:, 0].unique().sort().values
        if len(xs) > 1:
            assert (xs.diff().float() <= max(1.0, side * (1 - overlap)) + 1).all()
    assert len(crop_boxes(40, 40, 0.25, 0.5)) > len(crop_boxes(40, 40, 0.5, 0.5)) > len(crop_boxes(40, 40, 1.0, 0.5))
    with pytest.raises(ConfigError):
        crop_boxes(10, 10, 1.5)


def test_multiscale_mode():
    t = tiny(mode="multiscale", scales=(0.5, 1.0), overlap=0.5)
    view = random_views(1, h=24, w=48, seed=3)[0]
    out = t.extract([view])[0]
    assert tuple(out.features.shape) == (2, 4, 24) and bool(out.valid.all())
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(2, 4))

    # With a single full-image scale every cell is that one crop's normal CLIP image embedding.
    whole = tiny(mode="multiscale", scales=(1.0,))
    feats = whole.extract([view])[0].features
    from featurefields.teachers.clip import crop_boxes, to_model_input

    boxes = crop_boxes(24, 48, 1.0, 0.5)  # 24x24 crops: starts 0, 12, 24 along x
    assert boxes[:, 0].tolist() == [0, 12, 24]
    crops = torch.stack([to_model_input(view.image[y0:y1, x0:x1], (32, 32), whole.mean, whole.std)
                         for x0, y0, x1, y1 in boxes.tolist()])
    with torch.no_grad():
        emb = F.normalize(whole.model.encode_image(crops), dim=-1)  # [3, 24]
    # Cell centres x = 6, 18, 30, 42: covered by {0}, {0, 1}, {1, 2}, {2}.
    expect = [emb[0], emb[0] + emb[1], emb[1] + emb[2], emb[2]]
    for j, e in enumerate(expect):
        torch.testing.assert_close(feats[0, j], F.normalize(e, dim=-1), atol=2e-3, rtol=1e-3)
    assert not torch.allclose(feats, tiny().extract([view])[0].features, atol=1e-2)


def test_encode_text_and_config():
    t = tiny()
    q = t.encode_text(["a red mug", "a table", "a red mug"])
    assert q.shape == (3, 24) and q.dtype == torch.float32
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(q[0], q[2])
    assert not torch.allclose(q[0], q[1])
    assert t.encode_text([]).shape == (0, 24)
    ms = tiny(mode="multiscale", scales=(0.5,))
    assert t.config() != ms.config() and ms.config()["scales"] == [0.5]
    assert t.config()["weights"] == "random-init"
    assert tiny(resolution=64).config() != t.config()
    with pytest.raises(ConfigError, match="mode"):
        tiny(mode="dense")


def test_cache_hit_does_not_run_the_model(tmp_path):
    t = tiny()
    calls = []
    t.model.visual.conv1.register_forward_hook(lambda *a: calls.append(1))
    views = random_views(3, h=16, w=24, seed=7)
    cache = FeatureCache(tmp_path)
    first = extract_features(t, views, cache, batch_size=2, progress=False)
    assert len(calls) == 2  # batches of 2 and 1
    second = extract_features(t, views, cache, batch_size=2, progress=False)
    assert len(calls) == 2
    for a, b in zip(first, second):
        assert torch.equal(a.features, b.features) and a.features.dtype == torch.float16


def test_checkpoint_file_round_trip(tmp_path):
    src = tiny()
    path = tmp_path / "tiny_clip.pt"
    torch.save(src.model.state_dict(), path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = make_teacher("clip", arch=TINY, checkpoint=path, resolution=32)
    view = random_views(1, h=32, w=32, seed=9)
    torch.testing.assert_close(loaded.extract(view)[0].features, src.extract(view)[0].features)
    assert loaded.config()["weights"] == str(path)
    with pytest.raises(FFError, match="does not exist"):
        make_teacher("clip", arch=TINY, checkpoint=tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(FFError, match="cannot load CLIP weights from .*bad.pt"):
        make_teacher("clip", arch=TINY, checkpoint=tmp_path / "bad.pt")


def test_missing_pretrained_weights_fail_fast(no_weight_caches):
    start = time.monotonic()
    with pytest.raises(FFError) as e:
        make_teacher("clip")  # ViT-B-16 / openai, nothing cached
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert msg == one_line(msg)
    assert "ViT-B-16/openai" in msg and "checkpoint=PATH" in msg and "timm/vit_base_patch16_clip_224.openai" in msg
    with pytest.raises(ConfigError, match="unknown for ViT-B-16; known tags: .*openai"):
        make_teacher("clip", pretrained="no-such-tag")


def test_pretrained_found_in_hf_cache(no_weight_caches):
    from featurefields.teachers.weights import Candidate, find_weights

    snap = no_weight_caches / "hf" / "models--org--repo" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "weights.safetensors").write_bytes(b"x")
    (no_weight_caches / "hf" / "models--org--repo" / "refs").mkdir()
    (no_weight_caches / "hf" / "models--org--repo" / "refs" / "main").write_text("abc123")
    got = find_weights("X", [Candidate(hf_repo="org/repo", hf_file="missing.bin"),
                             Candidate(hf_repo="org/repo", hf_file="weights.safetensors")], "hint")
    assert got == snap / "weights.safetensors"
    with pytest.raises(FFError, match="X weights not found locally .*hf-hub org/repo/missing.bin.*hint"):
        find_weights("X", [Candidate(hf_repo="org/repo", hf_file="missing.bin")], "hint")


def test_teacher_input_of_other_types_not_needed():
    # The teacher reads only the image; semantics and label names are ignored.
    t = tiny()
    v = random_views(1, h=16, w=16, seed=4, labels=["a"])[0]
    plain = TeacherInput(image=v.image, name=v.name)
    torch.testing.assert_close(t.extract([v])[0].features, t.extract([plain])[0].features)
