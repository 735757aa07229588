"""The map the coarse stage matches against, built from the field: for each index view (the training cameras by
default), SIFT keypoints of its image lifted to world points by the field's *rendered* depth, and a VLAD descriptor
for retrieval. Built once per field and configuration (seconds), kept in memory on the field and, given a cache
folder, on disk (keyed by the field file and the settings)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError
from .config import IndexConfig
from .features import Features, sift, train_vocabulary, vlad

if TYPE_CHECKING:
    from ..fields.base import FeatureField

INDEX_VERSION = 1  # bump when what an index holds changes, so old disk caches are not read


@dataclass
class MapIndex:
    names: list[str]
    c2w: np.ndarray  # [V, 4, 4] float64, world frame
    K: np.ndarray  # [V, 3, 3] float64
    sizes: np.ndarray  # [V, 2] (width, height)
    features: list[Features]  # per view: the keypoints that could be lifted
    xyz: list[np.ndarray]  # per view: [n_v, 3] float32 world points of those keypoints
    vocab: np.ndarray  # [k, 128] visual words
    global_desc: np.ndarray  # [V, k * 128] VLAD of every keypoint of each view
    median_depth: float  # typical distance to the scene (metres): sets the fine stage's translation steps
    build_seconds: float = 0.0
    source: str = "scene"  # where the indexed images came from: scene images or renders

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_points(self) -> int:
        return int(sum(len(x) for x in self.xyz))

    def retrieve(self, feats: Features, k: int) -> list[int]:
        """The k index views whose global descriptors are most similar to the query's, best first."""
        q = vlad(feats.desc, self.vocab)
        sims = self.global_desc @ q
        return [int(i) for i in np.argsort(-sims)[:k]]

    # ---- disk form: plain arrays (no pickle) -------------------------------------------------------------
    def save(self, path: Path) -> None:
        from ..io import atomic_path

        counts = np.array([len(f) for f in self.features], np.int64)
        arrays = dict(names=np.array(self.names), c2w=self.c2w, K=self.K, sizes=self.sizes, counts=counts,
                      xy=_cat([f.xy for f in self.features], 2), desc=_cat([f.desc for f in self.features], 128),
                      xyz=_cat(self.xyz, 3), vocab=self.vocab, global_desc=self.global_desc,
                      meta=np.array(json.dumps({"median_depth": self.median_depth, "source": self.source,
                                                "build_seconds": self.build_seconds})))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "MapIndex":
        with np.load(path, allow_pickle=False) as z:
            counts = z["counts"]
            cuts = np.cumsum(counts)[:-1]
            xy, desc, xyz = (np.split(z[k], cuts) for k in ("xy", "desc", "xyz"))
            meta = json.loads(str(z["meta"]))
            return cls([str(n) for n in z["names"]], z["c2w"], z["K"], z["sizes"],
                       [Features(a, b) for a, b in zip(xy, desc)], list(xyz), z["vocab"], z["global_desc"],
                       float(meta["median_depth"]), float(meta["build_seconds"]), str(meta["source"]))


def _cat(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def lift_keypoints(xy: np.ndarray, depth: np.ndarray, alpha: np.ndarray, K: np.ndarray, c2w: np.ndarray,
                   min_alpha: float, max_step: float) -> tuple[np.ndarray, np.ndarray]:
    """(keep [N] bool, world points [kept, 3]) of keypoints ``xy`` [N, 2] through a rendered depth map.

    Rendered depth is the alpha-weighted mean along the ray, so it is only trusted where the render is opaque and
    the 3x3 neighbourhood is smooth: at an occlusion edge it mixes the two surfaces and lands in free space."""
    import cv2

    h, w = depth.shape
    d = np.where(alpha > min_alpha, depth / np.maximum(alpha, 1e-6), 0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    dmax, dmin = cv2.dilate(d, kernel), cv2.erode(d, kernel)
    px = np.clip(np.floor(xy).astype(np.int64), 0, [w - 1, h - 1])
    z = d[px[:, 1], px[:, 0]]
    keep = (z > 0) & (dmin[px[:, 1], px[:, 0]] > 0) & (dmax[px[:, 1], px[:, 0]] - dmin[px[:, 1], px[:, 0]]
                                                       < max_step * np.maximum(z, 1e-6))
    uv1 = np.concatenate([xy[keep], np.ones((int(keep.sum()), 1), np.float32)], 1).astype(np.float64)
    cam = (uv1 @ np.linalg.inv(K).T) * z[keep, None]
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    return keep, world.astype(np.float32)


def build_index(field: "FeatureField", cfg: IndexConfig, progress: bool = False) -> MapIndex:
    from tqdm import tqdm

    t0 = time.perf_counter()
    if cfg.images not in ("auto", "scene", "render"):
        raise ConfigError(f"index images must be auto, scene or render, not {cfg.images!r}")
    views = field.views(cfg.views)
    use_scene = cfg.images == "scene" or (cfg.images == "auto" and all(v.image is not None for v in views))
    if use_scene and any(v.image is None for v in views):
        raise ConfigError("the index views have no images to index (use images='render')")
    feats, pts, allf, depths = [], [], [], []
    for v in tqdm(views, desc="localisation index", unit="view", disable=not progress, leave=False):
        with torch.no_grad():
            out = field.render(v, with_features=False)
        depth, alpha = out.depth.float().cpu().numpy(), out.alpha.float().cpu().numpy()
        img = v.image.numpy() if use_scene else out.rgb.clamp(0, 1).cpu().numpy()
        f = sift(img, cfg.max_keypoints, cfg.contrast_threshold)
        keep, xyz = lift_keypoints(f.xy, depth, alpha, v.K.double().numpy(), v.c2w.double().numpy(),
                                   cfg.min_alpha, cfg.max_depth_step)
        allf.append(f)
        feats.append(f.subset(keep))
        pts.append(xyz)
        ok = alpha > cfg.min_alpha
        if ok.any():
            depths.append(np.median(depth[ok] / alpha[ok]))
    if sum(len(p) for p in pts) < 3 * cfg.vocabulary:
        raise ConfigError(f"{field.source}: only {sum(len(p) for p in pts)} keypoints of the index views could be "
                          "placed in 3D; the field is too empty or featureless to localise in")
    vocab = train_vocabulary([f.desc for f in allf], cfg.vocabulary)
    glob = np.stack([vlad(f.desc, vocab) for f in allf]).astype(np.float32)
    return MapIndex([v.name for v in views], np.stack([v.c2w.double().numpy() for v in views]),
                    np.stack([v.K.double().numpy() for v in views]),
                    np.array([[v.width, v.height] for v in views], np.int64), feats, pts, vocab, glob,
                    float(np.median(depths)) if depths else 1.0, time.perf_counter() - t0,
                    "scene" if use_scene else "render")


def index_key(field: "FeatureField", cfg: IndexConfig) -> str:
    """Cache key: the field's file (path, size, modification time), the field's size and the settings."""
    src = Path(str(field.source))
    if src.is_dir():
        src = src / "checkpoint.pt"
    stat = src.stat() if src.is_file() else None
    ident = {"version": INDEX_VERSION, "source": str(src.resolve()) if stat else str(src), "elements": len(field),
             "size": stat.st_size if stat else None, "mtime": stat.st_mtime_ns if stat else None,
             "scene": str(field.scene_root), "config": asdict(cfg)}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def get_index(field: "FeatureField", cfg: IndexConfig, cache_dir: str | os.PathLike | None = None,
              progress: bool = False) -> tuple[MapIndex, bool]:
    """(index, whether it was built now): from the field's memory, the disk cache, or built (and cached)."""
    key = index_key(field, cfg)
    memo = field._localize_indexes
    if key in memo:
        return memo[key], False
    path = Path(cache_dir) / f"localize_index_{key}.npz" if cache_dir is not None else None
    index = None
    if path is not None and path.is_file():
        try:
            index = MapIndex.load(path)
        except (OSError, ValueError, KeyError):  # a damaged cache is rebuilt, not fatal
            index = None
    built = index is None
    if built:
        index = build_index(field, cfg, progress)
        if path is not None:
            index.save(path)
    memo[key] = index
    return index, built
