"""A 3D selection: a boolean mask over a field's Gaussians, combined with and/or/not and cleaned up.

Selections are what every query ends in (text, click, box) and what every edit and export starts from, so they
are deliberately dumb: one ``[N]`` bool tensor plus set algebra. Clean-up steps are explicit, never implicit:
an opacity threshold (nearly transparent Gaussians carry poorly supervised features) and the largest connected
component of a k-nearest-neighbour graph cut at a radius (drops stray Gaussians far from the object).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..io import atomic_path, one_reason
from ..validate import tensor

SELECTION_FORMAT = "featurefields-selection-1"


@dataclass(frozen=True)
class Selection:
    """mask: [N] bool over the Gaussians of one field (N must match to combine)."""

    mask: Tensor

    def __post_init__(self):
        m = torch.as_tensor(self.mask)
        if m.ndim != 1:
            raise ConfigError(f"a selection is a 1-D mask over Gaussians, got shape {tuple(m.shape)}")
        object.__setattr__(self, "mask", m.to(torch.bool).detach())

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def none(cls, n: int) -> "Selection":
        return cls(torch.zeros(n, dtype=torch.bool))

    @classmethod
    def all(cls, n: int) -> "Selection":
        return cls(torch.ones(n, dtype=torch.bool))

    @classmethod
    def from_indices(cls, n: int, indices) -> "Selection":
        m = torch.zeros(n, dtype=torch.bool)
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= n):
            raise ConfigError(f"selection index out of range for {n} Gaussians")
        m[idx] = True
        return cls(m)

    # ---- set algebra ----------------------------------------------------------------------------------------
    def _other(self, other: "Selection") -> Tensor:
        if not isinstance(other, Selection):
            return NotImplemented  # type: ignore[return-value]
        if other.mask.shape != self.mask.shape:
            raise ConfigError(f"cannot combine selections over {len(self)} and {len(other)} Gaussians "
                              "(they come from different fields)")
        return other.mask.to(self.mask.device)

    def __and__(self, other: "Selection") -> "Selection":
        return Selection(self.mask & self._other(other))

    def __or__(self, other: "Selection") -> "Selection":
        return Selection(self.mask | self._other(other))

    def __sub__(self, other: "Selection") -> "Selection":  # a - b == a & ~b
        return Selection(self.mask & ~self._other(other))

    def __xor__(self, other: "Selection") -> "Selection":
        return Selection(self.mask ^ self._other(other))

    def __invert__(self) -> "Selection":
        return Selection(~self.mask)

    def __eq__(self, other) -> bool:
        return isinstance(other, Selection) and torch.equal(self.mask, other.mask)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:  # number of Gaussians the mask covers, selected or not
        return int(self.mask.shape[0])

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    @property
    def indices(self) -> Tensor:  # [count] long
        return self.mask.nonzero()[:, 0]

    def __repr__(self) -> str:
        return f"Selection({self.count} of {len(self)} Gaussians)"

    # ---- clean-up -------------------------------------------------------------------------------------------
    def opaque(self, opacities: Tensor, min_opacity: float) -> "Selection":
        """Keep Gaussians with opacity >= min_opacity; opacities [N] (activated, in [0, 1])."""
        if not 0 <= min_opacity <= 1:
            raise ConfigError(f"opacity threshold must be in [0, 1], not {min_opacity}")
        op = opacities.detach().to(self.mask.device).reshape(-1)
        if op.shape != self.mask.shape:
            raise ConfigError(f"{op.shape[0]} opacities for a selection over {len(self)} Gaussians")
        return Selection(self.mask & (op >= min_opacity))

    def largest_component(self, means: Tensor, radius: float | None = None, k: int = 8,
                          min_fraction: float = 1.0) -> "Selection":
        """Keep the largest connected component of the selected Gaussians' centres (and, with ``min_fraction``
        < 1, every component at least that fraction of its size: an object whose thin part is sparsely covered
        may fall apart into a few big pieces, while strays come in tiny clusters).

        Graph: each selected centre joined to its ``k`` nearest selected neighbours closer than ``radius`` (scene
        units; None = twice the 95th percentile of nearest-neighbour spacings in the selection, which adapts to
        density without assuming metres). means [N, 3]."""
        if not 0 < min_fraction <= 1:
            raise ConfigError(f"min_fraction must be in (0, 1], not {min_fraction}")
        labels, _ = components(means[self.mask.to(means.device)], radius, k)
        if labels.size == 0:
            return self
        sizes = np.bincount(labels)
        big = sizes >= min_fraction * sizes.max()
        keep = torch.zeros_like(self.mask)
        keep[self.indices[torch.from_numpy(big[labels])]] = True
        return Selection(keep)

    # ---- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path, **meta) -> None:
        """A small .pt file: the packed mask plus who made it (query, checkpoint), for ff-edit --selection."""
        with atomic_path(path) as tmp:
            torch.save({"format": SELECTION_FORMAT, "mask": self.mask.cpu(), "meta": meta}, tmp)

    @classmethod
    def load(cls, path: str | Path, n: int | None = None) -> "Selection":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: selection file not found")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DataError(f"{path}: not a readable selection file ({one_reason(e)})") from None
        if not isinstance(d, dict) or d.get("format") != SELECTION_FORMAT:
            raise DataError(f"{path}: not a featurefields selection (ff-query writes one as selection.pt)")
        if "mask" not in d:
            raise DataError(f"{path}: selection file holds no mask")
        sel = cls(tensor(d["mask"], f"{path}: mask", (None,), kind="bool"))
        if n is not None and len(sel) != n:
            raise DataError(f"{path}: selection covers {len(sel)} Gaussians but the field has {n}")
        return sel


def components(points: Tensor, radius: float | None = None, k: int | None = 8) -> tuple[np.ndarray, float]:
    """Connected components of a radius-cut kNN graph: points [M, 3] -> (labels [M] int, radius used).

    ``k=None``: of the radius graph itself (every pair closer than the radius is linked). A kNN graph bounds the
    cost for big point sets, but it can cut one object in two where its density jumps: a tight cluster of tiny
    Gaussians (a bottle's cap: 173 of them in 1.4 x 0.7 x 2.8 cm) has all its 8 nearest neighbours inside itself,
    and the sparser body next to it too, however close the two are."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    m = len(pts)
    if m == 0:
        return np.zeros(0, np.int64), 0.0 if radius is None else radius
    if m == 1:
        return np.zeros(1, np.int64), 0.0 if radius is None else radius
    if k is not None and k < 1:
        raise ConfigError(f"connected components need k >= 1 neighbours, not {k}")
    tree = cKDTree(pts)
    kk = 1 if k is None else min(k, m - 1)
    dist, idx = tree.query(pts, k=kk + 1)  # column 0 is the point itself
    if radius is None:
        radius = 2.0 * float(np.quantile(dist[:, 1], 0.95))
    if not radius > 0:
        raise ConfigError(f"connected-component radius must be positive, not {radius}")
    if k is None:
        pairs = tree.query_pairs(radius, output_type="ndarray")  # [E, 2]
        rows, cols = pairs[:, 0], pairs[:, 1]
    else:
        keep = dist[:, 1:] <= radius
        rows = np.repeat(np.arange(m), kk)[keep.reshape(-1)]
        cols = idx[:, 1:][keep]
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(m, m))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64), float(radius)
