from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from featurefields.errors import ConfigError, FFError, one_line
from featurefields.teachers import FeatureCache, extract_features, make_teacher

from .helpers import random_views

pytest.importorskip("timm")

# vit_small_patch14_dinov2 shrunk: same class and 14-px patches, 2 blocks of width 24.
TINY = {"img_size": 56, "embed_dim": 24, "depth": 2, "num_heads": 2}


def tiny(**kw):
    torch.manual_seed(0)
    kw.setdefault("resolution", 56)
    return make_teacher("dino", random_init=True, arch=TINY, **kw)


def test_shapes_norm_and_multiples_of_14():
    t = tiny()
    assert t.name == "dino" and t.dim == 24 and t.patch == 14 and not t.text_aligned
    views = random_views(2, h=30, w=60, seed=1) + random_views(1, h=50, w=50, seed=2)
    outs = t.extract(views)
    # Longer side -> 56: 30x60 -> 28x56 px -> 2x4 patches; 50x50 -> 56x56 -> 4x4.
    assert [tuple(o.features.shape) for o in outs] == [(2, 4, 24), (2, 4, 24), (4, 4, 24)]
    for o in outs:
        assert o.features.dtype == torch.float32 and bool(o.valid.all())
        torch.testing.assert_close(o.features.norm(dim=-1), torch.ones(o.features.shape[:2]))
    torch.testing.assert_close(t.extract(views[1:2])[0].features, outs[1].features, atol=1e-5, rtol=1e-5)
    # Non-native sizes work (dynamic positional embedding).
    assert tuple(tiny(resolution=100).extract(views[:1])[0].features.shape) == (4, 7, 24)


def test_features_are_the_networks_patch_tokens():
    t = tiny(normalize=False)
    view = random_views(1, h=28, w=42, seed=3)[0]  # resolution 56 -> 37x56 -> rounded 42x56 px -> 3x4
    out = t.extract([view])[0].features
    assert out.shape == (3, 4, 24)
    x = view.image.permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(42, 56), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens = t.net.forward_features(x)  # [1, 1 + 12, 24]: cls first
    torch.testing.assert_close(out, tokens[0, 1:].reshape(3, 4, 24), atol=1e-5, rtol=1e-5)
    assert tiny().config() != t.config()


def test_cache_hit_does_not_run_the_model(tmp_path):
    t = tiny()
    calls = []
    t.net.patch_embed.register_forward_hook(lambda *a: calls.append(1))
    views = random_views(5, h=20, w=20, seed=4)
    cache = FeatureCache(tmp_path)
    extract_features(t, views, cache, progress=False)
    assert len(calls) == 2  # batch_size 4
    extract_features(t, views, cache, progress=False)
    assert len(calls) == 2


def test_checkpoints_in_both_layouts_and_hub_cache(tmp_path, no_weight_caches):
    src = tiny()
    view = random_views(1, h=28, w=28, seed=5)
    ref = src.extract(view)[0].features
    timm_file = tmp_path / "tiny_timm.pth"
    torch.save(src.net.state_dict(), timm_file)
    official = {k: v for k, v in src.net.state_dict().items()}
    official["mask_token"] = torch.zeros(1, 24)  # the official DINOv2 layout carries this extra key
    torch.save(official, tmp_path / "tiny_official.pth")
    for f in (timm_file, tmp_path / "tiny_official.pth"):
        torch.manual_seed(99)
        t = make_teacher("dino", arch=TINY, checkpoint=f, resolution=56)
        torch.testing.assert_close(t.extract(view)[0].features, ref)

    # Found in the torch hub checkpoints folder under the official name.
    hub = no_weight_caches / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "dinov2_vits14_pretrain.pth").write_bytes((tmp_path / "tiny_official.pth").read_bytes())
    t = make_teacher("dino", arch=TINY, resolution=56)
    assert t.weights == str(hub / "dinov2_vits14_pretrain.pth")
    assert t.config()["weights"] == "dinov2_vits14_pretrain.pth"
    torch.testing.assert_close(t.extract(view)[0].features, ref)


def test_missing_weights_fail_fast(no_weight_caches):
    start = time.monotonic()
    with pytest.raises(FFError) as e:
        make_teacher("dino")
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert msg == one_line(msg)
    assert "dinov2_vits14_pretrain.pth" in msg and "checkpoint=PATH" in msg
    assert "timm/vit_small_patch14_dinov2.lvd142m" in msg
    with pytest.raises(FFError, match="does not exist"):
        make_teacher("dino", checkpoint=no_weight_caches / "nope.pth")
    (no_weight_caches / "bad.pth").write_bytes(b"nope")
    with pytest.raises(FFError, match="cannot load DINOv2 weights from .*bad.pth"):
        make_teacher("dino", arch=TINY, checkpoint=no_weight_caches / "bad.pth")
    with pytest.raises(ConfigError, match="dino model 'vit_s'"):
        make_teacher("dino", model="vit_s")
