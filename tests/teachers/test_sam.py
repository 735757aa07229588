from __future__ import annotations

import time

import pytest
import torch

from featurefields.errors import ConfigError, FFError, one_line
from featurefields.teachers import FeatureCache, extract_features, make_teacher

from .helpers import random_views

pytest.importorskip("segment_anything")

# Same classes as SAM ViT-B, shrunk: 256-px input, 16-px patches -> a 16x16x256 embedding map.
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,), "img_size": 256,
        "window_size": 4, "decoder_depth": 1, "decoder_mlp_dim": 64}


def tiny(**kw):
    torch.manual_seed(0)
    return make_teacher("sam", random_init=True, arch=TINY, **kw)


def test_shapes_valid_region_and_batching():
    t = tiny()
    assert t.name == "sam" and t.dim == 256 and not t.text_aligned
    views = random_views(2, h=60, w=80, seed=1) + random_views(1, h=100, w=40, seed=2)
    outs = t.extract(views)
    # 60x80 -> 192x256 input -> 12x16 cells; 100x40 -> 256x102 -> 16x7 (ceil).
    assert [tuple(o.features.shape) for o in outs] == [(12, 16, 256), (12, 16, 256), (16, 7, 256)]
    for o in outs:
        assert o.features.dtype == torch.float32 and bool(o.valid.all())
    # The output is the top-left (image) part of the padded encoder map.
    full = t.embed([views[2].image])[0]  # [256, 16, 16]
    torch.testing.assert_close(outs[2].features, full[:, :16, :7].permute(1, 2, 0))
    # Batch composition does not matter.
    torch.testing.assert_close(t.extract(views[1:2])[0].features, outs[1].features, atol=1e-4, rtol=1e-4)
    normed = tiny(normalize=True).extract(views[:1])[0].features
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(12, 16))
    assert tiny(normalize=True).config() != t.config()


def test_preprocessing_is_sams():
    t = tiny()
    view = random_views(1, h=30, w=50, seed=3)[0]
    from segment_anything.utils.transforms import ResizeLongestSide

    arr = ResizeLongestSide(256).apply_image(view.image.numpy())
    assert arr.shape[:2] == t.input_size(30, 50) == (154, 256)
    x = torch.from_numpy(arr).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        ref = t.sam.image_encoder(t.sam.preprocess(x))[0]
    out = t.extract([view])[0].features
    assert out.shape == (10, 16, 256)
    torch.testing.assert_close(out, ref[:, :10, :16].permute(1, 2, 0))
    coords = t.to_input_coords(torch.tensor([[50.0, 30.0]]), 30, 50)
    torch.testing.assert_close(coords, torch.tensor([[256.0, 154.0]]))


def test_prompt_decoder_on_64x64_embedding():
    from featurefields.teachers.sam import SamPromptDecoder, build_sam

    torch.manual_seed(0)
    sam = build_sam(embed_dim=16, depth=1, num_heads=1, global_attn_indexes=(), window_size=8,
                    decoder_depth=1, decoder_mlp_dim=64)  # 1024 input -> 64x64 embedding, as the real models
    dec = SamPromptDecoder(sam.eval())
    emb = torch.randn(1, 256, 64, 64)
    # Two prompts on one embedding (the decoder repeats it per prompt): the point matters.
    masks, iou = dec(emb, torch.tensor([[[500.0, 300.0]], [[20.0, 900.0]]]), torch.tensor([[1], [1]]))
    assert masks.shape == (2, 1, 256, 256) and iou.shape == (2, 1)
    assert torch.isfinite(masks).all()
    assert not torch.allclose(masks[0], masks[1])
    multi, _ = dec(emb, torch.tensor([[[500.0, 300.0], [10.0, 10.0]]]), torch.tensor([[1, 0]]), multimask_output=True)
    assert multi.shape == (1, 3, 256, 256)
    big = dec.upscale(masks, (768, 1024), (600, 800))
    assert big.shape == (2, 1, 600, 800)

    # The teacher's own decoder takes its own embeddings.
    t = tiny()
    e = t.embed([random_views(1, h=32, w=32)[0].image])
    m, _ = t.prompt_decoder()(e, torch.tensor([[[100.0, 100.0]]]), torch.tensor([[1]]))
    assert m.shape == (1, 1, 64, 64)


def test_cache_hit_does_not_run_the_model(tmp_path):
    t = tiny()
    calls = []
    t.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    views = random_views(3, h=20, w=20, seed=4)
    cache = FeatureCache(tmp_path)
    extract_features(t, views, cache, progress=False)
    n = len(calls)
    assert n == 2  # batch_size 2
    extract_features(t, views, cache, progress=False)
    assert len(calls) == n


def test_checkpoint_round_trip_and_missing_weights(tmp_path, no_weight_caches):
    src = tiny()
    path = tmp_path / "tiny_sam.pth"
    torch.save(src.sam.state_dict(), path)
    torch.manual_seed(7)
    loaded = make_teacher("sam", arch=TINY, checkpoint=path)
    view = random_views(1, h=24, w=24, seed=5)
    torch.testing.assert_close(loaded.extract(view)[0].features, src.extract(view)[0].features)
    assert loaded.config()["weights"] == "tiny_sam.pth"

    start = time.monotonic()
    with pytest.raises(FFError) as e:
        make_teacher("sam")
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert msg == one_line(msg)
    assert "sam_vit_b_01ec64.pth" in msg and "checkpoint=PATH" in msg
    assert str(no_weight_caches / "xdg" / "featurefields" / "sam" / "sam_vit_b_01ec64.pth") in msg

    # Put the file where the message says and it is found (a tiny model's file, so load it into the tiny arch).
    own = no_weight_caches / "xdg" / "featurefields" / "sam"
    own.mkdir(parents=True)
    (own / "sam_vit_b_01ec64.pth").write_bytes(path.read_bytes())
    found = make_teacher("sam", arch=TINY)
    assert found.weights == str(own / "sam_vit_b_01ec64.pth")
    torch.testing.assert_close(found.extract(view)[0].features, src.extract(view)[0].features)
    (own / "sam_vit_b_01ec64.pth").write_bytes(b"truncated")
    with pytest.raises(FFError, match="cannot load SAM weights from .*sam_vit_b_01ec64.pth"):
        make_teacher("sam", arch=TINY)
    with pytest.raises(ConfigError, match="model_type"):
        make_teacher("sam", model_type="vit_x")
