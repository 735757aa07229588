"""Mask-based grouping losses: rendered features should agree within a 2D segment and differ across segments.

A mask teacher (SAM, or the classical ``segments`` teacher) says which pixels belong together in one view without
giving a target vector; as in GARField and GaussianGrasper the field learns from it contrastively. Segment ids are
per view, so only pixels of the same view are ever compared: segment 3 of one frame has nothing to do with
segment 3 of another.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def grouping_loss(features: Tensor, segment_ids: Tensor, margin: float = 1.0, temperature: float | None = 0.1
                  ) -> Tensor:
    """Contrastive grouping loss of rendered features at sampled pixels of one view; a differentiable scalar.

    features: [P, F] rendered (or decoded) feature vectors; segment_ids: [P] integer ids, negative = ignore.

    Features are compared by cosine. With ``m_s`` the normalised mean direction of segment ``s``:

    * pull: ``1 - cos(f_i, m_s(i))``, averaged within each segment and then over segments (a large segment does
      not drown a small one);
    * push: for each pair of segments, ``relu(cos(m_a, m_b) - (1 - margin))``: means closer than ``margin`` in
      cosine distance are pushed apart (``margin=1`` asks for orthogonal or opposite, ``margin=2`` the impossible);
    * contrast (unless ``temperature`` is None): prototype InfoNCE, cross-entropy of ``cos(f_i, m_s) / temperature``
      over all segments against the pixel's own, averaged like pull. It sharpens boundaries pixel by pixel, where
      push only sees means.

    A single segment gives pull only; no valid pixels give a zero that still depends on ``features`` (so
    ``backward`` works and nothing is NaN).
    """
    if features.ndim != 2:
        raise ValueError(f"grouping_loss: features must be [P, F], got {tuple(features.shape)}")
    ids = segment_ids.reshape(-1).to(features.device)
    if ids.shape[0] != features.shape[0]:
        raise ValueError(f"grouping_loss: {features.shape[0]} features but {ids.shape[0]} segment ids")
    if ids.is_floating_point():
        ids = ids.round()
    ids = ids.long()
    keep = ids >= 0
    f = features[keep]
    if f.shape[0] == 0:
        return features.sum() * 0
    seg, inv = torch.unique(ids[keep], return_inverse=True)  # inv: [P'] in 0..S-1
    S = seg.shape[0]
    fn = F.normalize(f.float(), dim=-1, eps=1e-8)  # [P', F]
    counts = torch.bincount(inv, minlength=S).to(fn.dtype)  # [S]
    sums = torch.zeros(S, fn.shape[1], dtype=fn.dtype, device=fn.device).index_add_(0, inv, fn)
    means = F.normalize(sums / counts[:, None], dim=-1, eps=1e-8)  # [S, F]

    def per_segment_mean(x: Tensor) -> Tensor:  # [P'] -> scalar, each segment weighted equally
        per_seg = torch.zeros(S, dtype=x.dtype, device=x.device).index_add_(0, inv, x) / counts
        return per_seg.mean()

    sim = fn @ means.T  # [P', S]
    own = sim.gather(1, inv[:, None])[:, 0]  # [P']
    loss = per_segment_mean(1 - own)
    if S > 1:
        between = means @ means.T  # [S, S]
        off = ~torch.eye(S, dtype=torch.bool, device=fn.device)
        loss = loss + F.relu(between[off] - (1 - margin)).mean()
        if temperature is not None:
            if temperature <= 0:
                raise ValueError(f"grouping_loss: temperature must be positive, got {temperature}")
            loss = loss + per_segment_mean(F.cross_entropy(sim / temperature, inv, reduction="none"))
    return loss.to(features.dtype)


def sample_pixels(ids: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` flat pixel indices into ``ids.reshape(-1)``, balanced across segments: [n] int64.

    ids: [H, W] segment ids (negative = ignore). Each segment gets ``n // S`` or ``n // S + 1`` samples (the extra
    ones to a random subset of segments), uniformly within the segment and with replacement, so small segments
    are represented as well as the big ones (an unbalanced sample would let the background dominate the loss).
    An image without any valid pixel gives an empty tensor.
    """
    if n < 0:
        raise ValueError(f"sample_pixels: n must be >= 0, got {n}")
    flat = ids.reshape(-1)
    if flat.is_floating_point():
        flat = flat.round()
    flat = flat.long().cpu()
    pix = (flat >= 0).nonzero()[:, 0]  # [V] valid pixel indices
    if n == 0 or pix.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    _, inv = torch.unique(flat[pix], return_inverse=True)  # [V] segment rank
    order = torch.argsort(inv, stable=True)
    pix, inv = pix[order], inv[order]  # grouped by segment
    counts = torch.bincount(inv)  # [S]
    starts = torch.cumsum(counts, 0) - counts
    S = counts.shape[0]
    segs = torch.randperm(S, generator=generator)[torch.arange(n) % S]  # [n] balanced segment choice
    offs = (torch.rand(n, generator=generator) * counts[segs]).long().clamp_max(counts[segs] - 1)
    return pix[starts[segs] + offs]


@torch.no_grad()
def grouping_gap(features: Tensor, ids: Tensor, n: int = 4096, seed: int = 0) -> float:
    """Evaluation: mean cosine of pixel pairs in the same segment minus that of pairs in different segments.

    features [h, w, F], ids [h, w]; near 1 when segments are cleanly grouped, near 0 when features ignore them."""
    flat_ids = ids.reshape(-1)
    idx = sample_pixels(ids, n, torch.Generator().manual_seed(seed))
    if len(idx) < 2:
        return float("nan")
    f = torch.nn.functional.normalize(features.reshape(-1, features.shape[-1])[idx].float(), dim=-1)
    same = flat_ids[idx][:, None] == flat_ids[idx][None, :]
    cos = f @ f.T
    off_diag = ~torch.eye(len(idx), dtype=torch.bool, device=cos.device)
    intra, inter = cos[same & off_diag], cos[~same]
    if intra.numel() == 0 or inter.numel() == 0:
        return float("nan")
    return float(intra.mean() - inter.mean())
