"""Feature-loss pixels that give rare features their share.

A uniform sample of a view's pixels is mostly table and background: a mug's handle, a few pixels per view at the
demo's resolution, gets under one sample per step and the field never learns that it differs from the mug. So part
of each step's sample is balanced across the teacher's feature *clusters* (a k-means codebook of its features,
built once per teacher), as ``sample_pixels`` balances mask segments: every cluster present in the view gets an
equal share, whatever its area. The rest stays uniform, so big regions keep their expected weight.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from .grouping import sample_pixels

CLUSTERS = 16  # codebook size: more than a tabletop's classes, few enough that each cluster has pixels
FIT_SAMPLES = 20_000  # pixels the codebook is fitted on


class FeatureCodes:
    """A k-means codebook over one teacher's features and every view's pixel codes (computed once, cached)."""

    def __init__(self, outputs, frames: list[int], clusters: int = CLUSTERS, seed: int = 0):
        from scipy.cluster.vq import kmeans2

        rng = np.random.default_rng(seed)
        pool = []
        per = max(1, FIT_SAMPLES // max(len(frames), 1))
        for i in frames:
            feats, valid = _flat(outputs[i])
            idx = np.flatnonzero(valid)
            if len(idx):
                pool.append(feats[rng.choice(idx, size=min(per, len(idx)), replace=False)])
        self.outputs = outputs
        self._codes: dict[int, Tensor] = {}
        if not pool:
            self.centres = None
            return
        data = _normalised(np.concatenate(pool))
        # no more clusters than distinct features (a labels teacher has one per class): k-means++ would divide by
        # zero seeding the rest, and leave them empty
        k = min(clusters, len(np.unique(np.round(data, 3), axis=0)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "one of the clusters is empty": dropped below
            centres, labels = kmeans2(data, k, minit="++", seed=seed)  # [K, D] (scipy: maintained k-means)
        self.centres = centres[np.unique(labels)]

    def codes(self, i: int) -> Tensor:
        """[h*w] cluster index of every pixel of view i, -1 where the teacher has no valid feature."""
        if i not in self._codes:
            feats, valid = _flat(self.outputs[i])
            codes = np.full(len(feats), -1, dtype=np.int64)
            if self.centres is not None and valid.any():
                x = _normalised(feats[valid])
                d = (x * x).sum(1, keepdims=True) - 2 * x @ self.centres.T + (self.centres ** 2).sum(1)
                codes[valid] = d.argmin(1)
            self._codes[i] = torch.from_numpy(codes)
        return self._codes[i]


def balanced_sample(valid: Tensor, codes: Tensor, n: int, balance: float, generator: torch.Generator) -> Tensor:
    """``n`` flat pixel indices: ``balance`` of them spread evenly over the clusters in ``codes`` [h*w], the rest
    uniform over ``valid`` [V] (with replacement, as the uniform sample always was)."""
    n_bal = int(round(n * balance))
    uniform = valid[torch.randint(len(valid), (n - n_bal,), generator=generator)]
    if n_bal == 0:
        return uniform
    return torch.cat([uniform, sample_pixels(codes, n_bal, generator)])


def _flat(output) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(output.features, dtype=np.float32)
    return feats.reshape(-1, feats.shape[-1]), np.asarray(output.valid).reshape(-1).astype(bool)


def _normalised(x: np.ndarray) -> np.ndarray:
    """Unit rows: teachers are compared by cosine, so cluster directions, not magnitudes."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
