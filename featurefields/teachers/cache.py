"""On-disk cache of teacher outputs: float16 .npy files read back memory-mapped.

Teachers are slow (a ViT per view) and their maps big (a 384-D full-resolution map of an 800x800 view is ~0.5 GB in
float16), so each output is computed once, written as ``<root>/<key[:2]>/<key>/{features,valid}.npy`` and then only
paged in as training samples it. The key hashes everything the output depends on, so a changed image, mask, label
list, teacher or teacher option is a miss, never a stale hit. Entries are written into a temporary folder and
renamed into place, so an interrupted run leaves no half-written entry (and the next run removes the temporary
folder it left: :meth:`FeatureCache.clean_stale`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import clean_stale_temporaries, temp_dir
from .base import Teacher, TeacherInput, TeacherOutput, check_outputs

CACHE_VERSION = 1
_FEATURES = "features.npy"
_VALID = "valid.npy"
_META = "meta.json"


def default_cache_dir() -> Path:
    """``$FF_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/featurefields/features`` (``~/.cache/...``)."""
    if os.environ.get("FF_CACHE_DIR"):
        return Path(os.environ["FF_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "featurefields" / "features"


class FeatureCache:
    """Teacher outputs keyed by content; safe to share between scenes, runs and (for reading) processes."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def clean_stale(self) -> list[Path]:
        """Remove the temporary entry folders of runs that were killed while writing them."""
        return clean_stale_temporaries(self.root, depth=1)

    def key(self, teacher: Teacher, view: TeacherInput) -> str:
        h = hashlib.sha256()
        h.update(f"featurefields-teacher-cache-v{CACHE_VERSION}\0".encode())
        h.update(teacher.name.encode() + b"\0")
        h.update(json.dumps(teacher.config(), sort_keys=True, default=str).encode() + b"\0")
        _hash_tensor(h, "image", view.image)
        if view.semantics is not None:
            _hash_tensor(h, "semantics", view.semantics)
        if view.label_names is not None:
            h.update(b"labels\0" + json.dumps(list(view.label_names)).encode() + b"\0")
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> TeacherOutput | None:
        """The cached output, memory-mapped (float16 features, bool mask), or None on a miss or unreadable entry."""
        d = self.path(key)
        if not (d / _FEATURES).is_file() or not (d / _VALID).is_file():
            return None
        try:
            # Copy-on-write maps: nothing is read until used, and a consumer writing into a tensor cannot corrupt
            # the cache (a read-only map would also make torch warn about non-writable arrays).
            f = np.load(d / _FEATURES, mmap_mode="c", allow_pickle=False)
            v = np.load(d / _VALID, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if f.ndim != 3 or f.dtype != np.float16 or v.dtype != np.bool_ or v.shape != f.shape[:2]:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TeacherOutput(features=torch.from_numpy(f), valid=torch.from_numpy(v))

    def put(self, key: str, out: TeacherOutput, meta: dict | None = None) -> None:
        """Store ``out`` (features as float16) atomically; an existing entry for ``key`` is replaced."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir(final.parent, key[:16])  # (a killed run's are removed by the next one, see guard.py)
        try:
            feats = out.features.detach().to("cpu", torch.float16).numpy()
            valid = out.valid.detach().to("cpu", torch.bool).numpy()
            np.save(tmp / _FEATURES, np.ascontiguousarray(feats), allow_pickle=False)
            np.save(tmp / _VALID, np.ascontiguousarray(valid), allow_pickle=False)
            info = {"version": CACHE_VERSION, "shape": list(feats.shape), **(meta or {})}
            (tmp / _META).write_text(json.dumps(info, indent=2, default=str) + "\n")
            if final.exists():
                # Move the old entry aside first: a folder cannot be renamed onto a non-empty one.
                old = temp_dir(final.parent, f"{key[:16]}.old")
                try:
                    os.replace(final, old / "entry")
                except FileNotFoundError:
                    pass
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / _FEATURES).is_file():  # not just a concurrent writer that got there first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _hash_tensor(h, tag: str, t: Tensor) -> None:
    a = np.ascontiguousarray(t.detach().cpu().numpy())
    h.update(f"{tag}:{a.dtype.str}:{a.shape}\0".encode())
    h.update(memoryview(a).cast("B"))


def extract_features(
    teacher: Teacher,
    views: list[TeacherInput],
    cache: FeatureCache | None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[TeacherOutput]:
    """Teacher outputs for every view, in order: cache hits read back, misses extracted in batches and cached.

    Batches are at most ``batch_size`` views (and at most ``teacher.max_batch_size``); each batch is written to the
    cache and dropped before the next is extracted.

    With a cache every returned output is the memory-mapped cache entry (float16), so a scene's worth of maps costs
    disk, not RAM; without one they are the teacher's own float32 tensors.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if teacher.max_batch_size:
        batch_size = min(batch_size, teacher.max_batch_size)
    outs: list[TeacherOutput | None] = [None] * len(views)
    keys: list[str | None] = [None] * len(views)
    if cache is not None:
        for i, view in enumerate(views):
            keys[i] = cache.key(teacher, view)
            outs[i] = cache.get(keys[i])
    todo = [i for i, o in enumerate(outs) if o is None]
    hits = len(views) - len(todo)
    bar = tqdm(
        total=len(todo),
        desc=f"{teacher.name} features",
        unit="view",
        disable=not progress or not todo,
        postfix=f"{hits} cached" if hits else None,
    )
    with bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            batch = [views[i] for i in idx]
            got = teacher.extract(batch)
            check_outputs(teacher, batch, got)
            for i, out in zip(idx, got):
                if cache is not None:
                    meta = {"teacher": teacher.name, "config": teacher.config(), "view": views[i].name}
                    cache.put(keys[i], out, meta=meta)
                    back = cache.get(keys[i])
                    if back is None:
                        raise RuntimeError(f"feature cache entry for {views[i].name} unreadable right after writing it")
                    out = back
                outs[i] = out
            bar.update(len(idx))
    return outs  # type: ignore[return-value]
