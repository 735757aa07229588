from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from featurefields.teachers import FeatureCache, TeacherOutput, extract_features
from featurefields.teachers.cache import default_cache_dir

from .helpers import CountingTeacher, random_views


def _leftovers(root):
    from featurefields.io import is_temporary

    return [p for p in root.rglob("*") if is_temporary(p.name)]


def test_second_call_is_served_from_cache(tmp_path):
    teacher = CountingTeacher()
    views = random_views(5)
    cache = FeatureCache(tmp_path)
    first = extract_features(teacher, views, cache, batch_size=2, progress=False)
    assert teacher.batches == [2, 2, 1]
    fresh = teacher.extract(views)
    teacher.batches.clear()

    second = extract_features(teacher, views, cache, batch_size=2, progress=False)
    assert teacher.calls == 0
    assert len(second) == len(views)
    for a, b, f in zip(first, second, fresh):
        assert a.features.shape == f.features.shape == (6, 8, 5)
        torch.testing.assert_close(b.features.float(), f.features, atol=2e-3, rtol=2e-3)
        assert torch.equal(b.valid, f.valid)
        assert torch.equal(a.features, b.features)


def test_changed_image_semantics_labels_or_config_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    views = random_views(3, labels=["a", "b"])
    teacher = CountingTeacher()
    extract_features(teacher, views, cache, progress=False)
    keys = [cache.key(teacher, v) for v in views]
    assert len(set(keys)) == 3

    changed = list(views)
    img = views[1].image.clone()
    img[0, 0, 0] ^= 1  # one bit of one pixel
    changed[1] = replace(views[1], image=img)
    teacher.batches.clear()
    out = extract_features(teacher, changed, cache, progress=False)
    assert teacher.batches == [1]  # only the changed view
    assert len(out) == 3 and len(list(tmp_path.glob("*/*/features.npy"))) == 4

    sem = views[0].semantics.clone()
    sem[0, 0] = 1 - max(sem[0, 0].item(), 0)
    assert cache.key(teacher, replace(views[0], semantics=sem)) != keys[0]
    assert cache.key(teacher, replace(views[0], label_names=["a", "c"])) != keys[0]
    assert cache.key(teacher, replace(views[0], semantics=None, label_names=None)) != keys[0]
    assert cache.key(teacher, replace(views[0], name="renamed.png")) == keys[0]  # the name is only for messages

    other = CountingTeacher(scale=2.0)
    assert [cache.key(other, v) for v in views] != keys
    extract_features(other, views, cache, progress=False)
    assert other.batches == [3]

    class Renamed(CountingTeacher):
        name = "renamed"

    assert cache.key(Renamed(), views[0]) != keys[0]
    assert FeatureCache(tmp_path / "elsewhere").key(teacher, views[0]) == keys[0]  # key is content, not location


def test_float16_storage_and_metadata(tmp_path):
    cache = FeatureCache(tmp_path)
    teacher = CountingTeacher(scale=3.0)
    view = random_views(1)[0]
    out = extract_features(teacher, [view], cache, progress=False)[0]
    key = cache.key(teacher, view)
    entry = cache.path(key)
    stored = np.load(entry / "features.npy")
    assert stored.dtype == np.float16 and stored.shape == (6, 8, 5)
    assert np.load(entry / "valid.npy").dtype == np.bool_
    assert out.features.dtype == torch.float16 and out.valid.dtype == torch.bool
    ref = teacher.extract([view])[0]
    torch.testing.assert_close(out.features.float(), ref.features, atol=3e-3, rtol=1e-3)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["teacher"] == "counting" and meta["config"] == {"scale": 3.0, "dim": 5}
    assert meta["view"] == view.name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux shared page-cache semantics")
def test_get_is_memory_mapped(tmp_path):
    cache = FeatureCache(tmp_path)
    feats = torch.randn(4, 5, 6)
    cache.put("ab" * 32, TeacherOutput(features=feats, valid=torch.ones(4, 5, dtype=torch.bool)))
    got = cache.get("ab" * 32)
    assert isinstance(np.load(cache.path("ab" * 32) / "features.npy", mmap_mode="r"), np.memmap)

    # A write to the file shows through the tensor we already hold: it is a map of the file, not a copy.
    on_disk = np.load(cache.path("ab" * 32) / "features.npy", mmap_mode="r+")
    on_disk[1, 2, 3] = 42.0
    on_disk.flush()
    del on_disk
    assert got.features[1, 2, 3].item() == 42.0

    # Writing into the tensor is copy-on-write: the cache file is untouched.
    got.features[0, 0, 0] = -7.0
    assert np.load(cache.path("ab" * 32) / "features.npy")[0, 0, 0] != -7.0


def test_put_is_atomic(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = "cd" * 32
    out = TeacherOutput(features=torch.randn(3, 4, 2), valid=torch.rand(3, 4) > 0.5)
    cache.put(key, out)
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in cache.path(key).iterdir()) == ["features.npy", "meta.json", "valid.npy"]

    # Replacing an entry leaves only the new one.
    out2 = TeacherOutput(features=torch.full((2, 2, 2), 0.5), valid=torch.ones(2, 2, dtype=torch.bool))
    cache.put(key, out2)
    assert torch.equal(cache.get(key).features.float(), out2.features)
    assert _leftovers(tmp_path) == []

    # A crash half-way through a write leaves neither a visible entry nor temporary files.
    real_save = np.save
    calls = []

    def failing_save(path, arr, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(path, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        cache.put("ef" * 32, out)
    monkeypatch.setattr(np, "save", real_save)
    assert cache.get("ef" * 32) is None
    assert not cache.path("ef" * 32).exists()
    assert _leftovers(tmp_path) == []


def test_corrupt_entry_is_a_miss_and_gets_rewritten(tmp_path):
    cache = FeatureCache(tmp_path)
    teacher = CountingTeacher()
    views = random_views(2)
    extract_features(teacher, views, cache, progress=False)
    entry = cache.path(cache.key(teacher, views[0]))
    (entry / "features.npy").write_bytes(b"not a numpy file")
    assert cache.get(cache.key(teacher, views[0])) is None
    teacher.batches.clear()
    outs = extract_features(teacher, views, cache, progress=False)
    assert teacher.batches == [1]
    assert cache.get(cache.key(teacher, views[0])) is not None
    torch.testing.assert_close(outs[0].features.float(), teacher.extract(views[:1])[0].features, atol=3e-3, rtol=1e-3)
    assert _leftovers(tmp_path) == []


def test_without_cache_teacher_runs_every_time(tmp_path):
    teacher = CountingTeacher()
    views = random_views(3)
    a = extract_features(teacher, views, None, batch_size=8, progress=False)
    b = extract_features(teacher, views, None, batch_size=8, progress=False)
    assert teacher.batches == [3, 3]
    assert a[0].features.dtype == torch.float32
    assert all(torch.equal(x.features, y.features) for x, y in zip(a, b))
    assert not list(tmp_path.iterdir())


def test_order_preserved_with_mixed_hits_and_progress_bar(tmp_path, capsys):
    cache = FeatureCache(tmp_path)
    teacher = CountingTeacher()
    views = random_views(7, seed=3)
    extract_features(teacher, [views[i] for i in (1, 4, 5)], cache, progress=False)
    teacher.batches.clear()
    outs = extract_features(teacher, views, cache, batch_size=3, progress=True)
    assert teacher.batches == [3, 1]
    ref = teacher.extract(views)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o.features.float(), r.features, atol=3e-3, rtol=1e-3)
    assert "counting features" in capsys.readouterr().err


def test_teacher_batch_cap(tmp_path):
    class OneAtATime(CountingTeacher):
        max_batch_size = 2

    teacher = OneAtATime()
    extract_features(teacher, random_views(5), FeatureCache(tmp_path), batch_size=8, progress=False)
    assert teacher.batches == [2, 2, 1]


def test_broken_teacher_is_caught(tmp_path):
    class WrongDim(CountingTeacher):
        def extract(self, views):
            outs = super().extract(views)
            return [TeacherOutput(o.features[..., :2], o.valid) for o in outs]

    with pytest.raises(RuntimeError, match=r"expected \[h, w, 5\]"):
        extract_features(WrongDim(), random_views(1), FeatureCache(tmp_path), progress=False)

    class TooFew(CountingTeacher):
        def extract(self, views):
            return super().extract(views)[:-1]

    with pytest.raises(RuntimeError, match="2 outputs for 3 views"):
        extract_features(TooFew(), random_views(3), None, progress=False)
    assert _leftovers(tmp_path) == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FF_CACHE_DIR", str(tmp_path / "ff"))
    assert default_cache_dir() == tmp_path / "ff"
    monkeypatch.delenv("FF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "featurefields" / "features"
