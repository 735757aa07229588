"""Tile-based alpha compositing of projected 2D Gaussians in plain PyTorch, with a hand-written backward.

This is the correctness reference for a native rasteriser *and* the CPU trainer's renderer, so it is vectorised
(no Python loop over Gaussians or pixels) and keeps memory bounded by working on chunks of tiles.

Compositing rule (per pixel, front to back over Gaussians sorted by depth), as in 3DGS:

* ``sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy`` with ``(dx, dy) = pixel centre - mean``;
  ``alpha = min(0.99, o * exp(-sigma))``; a Gaussian is skipped where ``alpha < 1/255`` or ``sigma < 0``;
* a pixel stops at the first Gaussian that would take its transmittance below 1e-4 (that Gaussian is not applied);
* ``image = sum_i c_i alpha_i T_i + T_final * background`` and ``alpha_out = 1 - T_final``.

Footprint: a Gaussian only touches pixels whose centre lies inside its 3-sigma bounding square
(``|dx| <= r`` and ``|dy| <= r`` with ``r`` = its integer radius). Tiles are only an acceleration structure: a
Gaussian is listed for every tile its square overlaps, except tiles where it provably stays below alpha 1/255
(:func:`reach_bounds`), so the result does not depend on ``tile_size`` and
:func:`featurefields.render.brute.rasterize_brute` (no tiles) gives the same image.

Layout of the work: Gaussians are sorted once by depth and grouped by tile (stable, so each tile's list stays in depth
order). Each tile's list is cut into blocks of ``BLOCK`` Gaussians; block ``b`` of all still-active tiles is
evaluated together, a chunk of tiles at a time, as dense ``[tiles, pixels, BLOCK]`` tensors. Tiles whose pixels
have all terminated are dropped before the next block (early termination, as in the CUDA rasterisers). The backward
replays the same blocks in the same order, front to back, using per-pixel totals from the forward so it never needs
the lists in reverse. It reuses each block's alpha and transmittance, kept by the forward in recycled memory up to
``SAVE_BUDGET_BYTES`` per call, and recomputes any block beyond that, so memory stays bounded. The 5 per-Gaussian
geometric gradients come out of one small matmul of the per-pair ``dL/dsigma`` with the pixel moments
``(1, x, y, x^2, xy, y^2)``.

Speed notes (CPU): the dense passes run in place on a few scratch buffers that live as long as the thread, because
first-touching fresh multi-megabyte allocations (page faults) costs more than the arithmetic; exp2 of a sigma
pre-scaled by log2(e) replaces exp; F.threshold_ replaces comparison + masked_fill; gathered columns are contiguous;
the channel width is padded to a multiple of 8 for the batched matmuls.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .projection import Projection

ALPHA_MIN = 1.0 / 255.0  # skip Gaussians fainter than this at a pixel
ALPHA_MAX = 0.99  # clamp, so that one Gaussian never makes a pixel fully opaque (keeps 1/(1-alpha) finite)
T_MIN = 1e-4  # stop a pixel once its transmittance would drop below this

BLOCK = 128  # Gaussians per tile evaluated together (depth granularity of early termination)
CHUNK_ELEMS = 1 << 20  # elements per dense chunk tensor: large enough to vectorise, small enough to stay in cache
SAVE_BUDGET_BYTES = 1 << 30  # per call: per-pair values kept for the backward; beyond this, it recomputes them


# ----------------------------------------------------------------------------------------------------------------
# Footprints and tile binning (shared with the brute-force reference)
# ----------------------------------------------------------------------------------------------------------------

def pixel_bounds(means2d: Tensor, radii: Tensor, width: int, height: int) -> Tensor:
    """Inclusive pixel index ranges covered by each Gaussian's bounding square -> [N, 4] int64 (u0, u1, v0, v1).

    Pixel (u, v) is covered iff ``u0 <= u <= u1 and v0 <= v <= v1``, i.e. its centre is within ``r`` of the mean
    along both axes. Culled Gaussians (radius 0, non-finite mean) get an empty range (u0 > u1).
    """
    m = means2d.detach()
    r = radii.to(m.dtype)
    lo = torch.ceil(m - r[:, None] - 0.5)  # [N, 2] first covered pixel index (x, y)
    hi = torch.floor(m + r[:, None] - 0.5)  # [N, 2] last covered pixel index
    size = torch.tensor([width, height], dtype=m.dtype, device=m.device)
    ok = (radii > 0) & torch.isfinite(m).all(-1)
    lo = torch.where(ok[:, None], lo, torch.zeros_like(lo)).clamp(min=0)
    hi = torch.where(ok[:, None], hi, torch.full_like(hi, -1.0))
    hi = torch.minimum(hi, size - 1).clamp(min=-1)
    lo = torch.minimum(lo, size)  # far right/below: empty, and small enough for int64
    return torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], dim=-1).to(torch.int64)


def depth_order(depths: Tensor, bounds: Tensor) -> Tensor:
    """Indices of the Gaussians that cover at least one pixel, sorted front to back (stable: ties keep index order)."""
    visible = (bounds[:, 0] <= bounds[:, 1]) & (bounds[:, 2] <= bounds[:, 3])
    ids = torch.nonzero(visible).squeeze(1)
    return ids[torch.sort(depths.detach()[ids], stable=True).indices]


@dataclass
class TileBins:
    tile_size: int
    tiles_x: int
    tiles_y: int
    gauss_ids: Tensor  # [M] int64 Gaussian index per (tile, Gaussian) pair, grouped by tile, depth order inside
    starts: Tensor  # [tiles] int64 offset of each tile's list in gauss_ids
    counts: Tensor  # [tiles] int64 length of each tile's list

    @property
    def num_tiles(self) -> int:
        return self.tiles_x * self.tiles_y


def reach_bounds(bounds: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor) -> Tensor:
    """Pixel ranges [N, 4] (as pixel_bounds) shrunk to where each Gaussian can reach alpha >= 1/255.

    That region is the ellipse sigma <= log(255 o); outside its bounding box every pixel would be skipped anyway,
    so binning with these ranges gives the same image while listing a Gaussian in fewer tiles (a fifth to a third
    fewer pairs for typical anisotropic, semi-transparent splats). Computed in float64 with a 1% margin so rounding
    in the per-pixel evaluation can never make a left-out pixel visible; non-positive-definite conics keep their
    whole square.
    """
    dt = torch.float64
    m, (a, b, c), o = means2d.detach().to(dt), conics.detach().to(dt).unbind(-1), opacities.detach().to(dt)
    det = a * c - b * b
    pd = (a > 0) & (c > 0) & (det > 0)
    level = (1.01 * torch.log(255.0 * o) + 0.01).clamp(min=0)  # alpha < 1/255 where sigma > level
    det = torch.where(pd, det, torch.ones_like(det))
    ex, ey = torch.sqrt(2 * level * c / det), torch.sqrt(2 * level * a / det)  # half extents of the ellipse box
    lo = torch.ceil(torch.stack([m[:, 0] - ex, m[:, 1] - ey], -1) - 0.5).clamp(-1, 2**40)
    hi = torch.floor(torch.stack([m[:, 0] + ex, m[:, 1] + ey], -1) - 0.5).clamp(-1, 2**40)
    ok = pd & torch.isfinite(lo).all(-1) & torch.isfinite(hi).all(-1)
    out = bounds.clone()
    out[:, 0::2] = torch.where(ok[:, None], torch.maximum(bounds[:, 0::2], lo.to(bounds.dtype)), bounds[:, 0::2])
    out[:, 1::2] = torch.where(ok[:, None], torch.minimum(bounds[:, 1::2], hi.to(bounds.dtype)), bounds[:, 1::2])
    return out


def bin_gaussians(bounds: Tensor, depths: Tensor, width: int, height: int, tile_size: int) -> TileBins:
    """List, for every tile, the Gaussians whose pixel range ``bounds`` [N, 4] overlaps it, front to back."""
    dev = bounds.device
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    ids = depth_order(depths, bounds)  # [V]
    tx0, tx1, ty0, ty1 = (bounds.index_select(0, ids) // tile_size).T  # tile rectangle of each Gaussian
    nx = tx1 - tx0 + 1
    n = nx * (ty1 - ty0 + 1)  # tiles per Gaussian
    # One entry per (Gaussian, tile) pair, Gaussians in depth order: entry k is the local-th tile of its rectangle.
    owner = torch.repeat_interleave(torch.arange(len(ids), device=dev), n)  # [M]
    local = torch.arange(len(owner), device=dev) - (torch.cumsum(n, 0) - n).index_select(0, owner)
    nx_o = nx.index_select(0, owner)
    row = torch.div(local, nx_o, rounding_mode="floor")
    tile = (ty0 * tiles_x + tx0).index_select(0, owner) + local + row * (tiles_x - nx_o)
    order = torch.sort(tile.to(torch.int32), stable=True).indices  # group by tile, keeping depth order
    counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    return TileBins(tile_size, tiles_x, tiles_y, gauss_ids=ids.index_select(0, owner.index_select(0, order)),
                    starts=torch.cumsum(counts, 0) - counts, counts=counts)


# ----------------------------------------------------------------------------------------------------------------
# Dense evaluation of one block: a chunk of tiles x the next (up to) BLOCK Gaussians of each
# ----------------------------------------------------------------------------------------------------------------

class _Workspace:
    """Named scratch buffers, reused across chunks and calls (one set per thread, dtype and device)."""

    def __init__(self):
        self.buffers: dict = {}

    def get(self, name: str, shape: tuple, like: Tensor) -> Tensor:
        n, key = math.prod(shape), (name, like.dtype, like.device)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self.buffers[key] = torch.empty(max(n, CHUNK_ELEMS), dtype=like.dtype, device=like.device)
        return buf[:n].view(shape)


_local = threading.local()


def _workspace() -> _Workspace:
    if not hasattr(_local, "ws"):
        _local.ws = _Workspace()
    return _local.ws


class _SegmentPool:
    """Large flat buffers recycled between calls, so that the per-pair values saved for the backward do not land
    on freshly allocated pages every iteration. Idle segments beyond ``max_idle_bytes`` are released."""

    SEGMENT_ELEMS = 1 << 24

    def __init__(self, max_idle_bytes: int = 1 << 30):
        self.idle: list[Tensor] = []
        self.max_idle_bytes = max_idle_bytes
        self.lock = threading.Lock()

    def take(self, n: int, like: Tensor) -> Tensor:
        with self.lock:
            for i, seg in enumerate(self.idle):
                if seg.dtype == like.dtype and seg.device == like.device and seg.numel() >= n:
                    return self.idle.pop(i)
        return torch.empty(max(n, self.SEGMENT_ELEMS), dtype=like.dtype, device=like.device)

    def give(self, seg: Tensor) -> None:
        with self.lock:
            self.idle.append(seg)
            while sum(s.numel() * s.element_size() for s in self.idle) > self.max_idle_bytes:
                self.idle.pop(0)


_pool = _SegmentPool()


class _SavedPairs:
    """Storage for one call's per-block forward values (gathered parameters, alpha, T_before), carved out of pool
    segments and given back after the backward (or when the autograd graph is freed without one)."""

    def __init__(self, like: Tensor, budget_bytes: int):
        self.like, self.segments, self.used = like.new_empty(0), [], 0
        self.left = budget_bytes // like.element_size()

    def keep(self, *tensors: Tensor) -> tuple[Tensor, ...] | None:
        """Copies of the tensors, or None once the budget is spent (the backward then recomputes)."""
        if sum(t.numel() for t in tensors) > self.left:
            return None
        return tuple(self._take(t.shape).copy_(t) for t in tensors)

    def _take(self, shape: tuple) -> Tensor:
        n = math.prod(shape)
        if not self.segments or self.used + n > self.segments[-1].numel():
            self.segments.append(_pool.take(n, self.like))
            self.used = 0
        out = self.segments[-1][self.used:self.used + n].view(shape)
        self.used, self.left = self.used + n, self.left - n
        return out

    def release(self) -> None:
        """Give the memory back (the backward has consumed it; a second backward recomputes)."""
        segments, self.segments, self.left = self.segments, [], 0
        if _pool is not None:  # (None during interpreter shutdown)
            for seg in segments:
                _pool.give(seg)

    def __del__(self):
        self.release()


class _Scene:
    """Per-Gaussian tables for the dense passes, padded with a dummy Gaussian at index N (zero opacity, empty
    footprint) that fills the ragged ends of the per-tile lists."""

    def __init__(self, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, bounds: Tensor,
                 bins: TileBins, width: int, height: int):
        dt, dev = means2d.dtype, means2d.device
        self.N, self.C, self.bins, self.ws = means2d.shape[0], colors.shape[1], bins, _workspace()
        # One gather table: mx, my, a, b, c, o and the covered pixel-centre range x0, x1, y0, y1 (exact in floats).
        # Stored transposed so that gathered columns are contiguous (strided operands defeat vectorisation).
        table = torch.cat([means2d, conics, opacities[:, None], bounds.to(dt) + 0.5], dim=1)  # [N, 10]
        dummy = table.new_tensor([[0.0] * 6 + [1.0, 0.0, 1.0, 0.0]])  # empty range: x0 > x1
        self.table = torch.cat([table, dummy]).T.contiguous()  # [10, N+1]
        # Alpha is composited like one more channel whose colour is 1: acc[..., C] = sum_i w_i = 1 - T_final.
        # Zero channels pad the width to a multiple of 8 (at least 16): CPU batched matmuls are much faster then.
        self.K = max(16, -(-(self.C + 1) // 8) * 8)
        self.colors = colors.new_zeros(self.N + 1, self.K)  # [N+1, K]
        self.colors[:self.N, :self.C] = colors
        self.colors[:self.N, self.C] = 1.0
        ts = bins.tile_size
        self.ts, self.P = ts, ts * ts
        tile = torch.arange(bins.num_tiles, device=dev)
        self.ox = (tile % bins.tiles_x) * ts  # [tiles] first pixel column of each tile
        self.oy = (tile // bins.tiles_x) * ts
        self.lane = torch.arange(ts, device=dev).to(dt) + 0.5  # pixel-centre offsets inside a tile
        # Pixel moments (1, x, y, x^2, xy, y^2) relative to the tile centre, as [6, P], for the backward.
        x = (self.lane - 0.5 * ts).repeat(ts)  # row-major pixels
        y = (self.lane - 0.5 * ts).repeat_interleave(ts)
        self.moments = torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y])
        col, row = self.ox[:, None] + self.lane.repeat(ts), self.oy[:, None] + self.lane.repeat_interleave(ts)
        self.in_image = (col < width) & (row < height)  # [tiles, P]

    def blocks(self, T: Tensor):
        """Yield (tiles [t], ids [t, B]): block after block of every tile's depth-ordered list, a chunk of tiles at a
        time, skipping tiles whose pixels have all finished (T == 0). T [tiles, P] is updated by the caller between
        yields. Tiles are sorted by how many Gaussians they have left so a chunk is padded only to its own longest.
        """
        counts = self.bins.counts
        for start in range(0, int(counts.max()), BLOCK):
            live = torch.nonzero((counts > start) & (T > 0).any(-1)).squeeze(1)
            left = (counts[live] - start).clamp(max=BLOCK)
            order = torch.sort(left, descending=True, stable=True).indices
            live, left = live[order], left[order].tolist()
            i = 0
            while i < len(left):
                n = max(1, CHUNK_ELEMS // (self.P * max(left[i], self.K)))
                tiles = live[i:i + n]
                yield tiles, self.block_ids(tiles, start, left[i])
                i += n

    def block_ids(self, tiles: Tensor, start: int, size: int) -> Tensor:
        """Gaussian ids [t, size] at list positions start..start+size of each tile, padded with the dummy N."""
        pos = self.bins.starts[tiles, None] + start + torch.arange(size, device=tiles.device)
        valid = pos < (self.bins.starts + self.bins.counts)[tiles, None]
        ids = self.bins.gauss_ids.take(pos.clamp(max=len(self.bins.gauss_ids) - 1))
        return ids.masked_fill_(~valid, self.N)

    def gather(self, ids: Tensor) -> Tensor:
        """Table entries [10, t, B] (mx, my, a, b, c, o, x0, x1, y0, y1) of Gaussians ids [t, B]."""
        return self.table.index_select(1, ids.reshape(-1)).view(10, *ids.shape)

    def block_colors(self, ids: Tensor) -> Tensor:
        """Padded colour rows [t, B, K] of Gaussians ids [t, B], in a scratch buffer."""
        out = self.ws.get("colors", (ids.numel(), self.K), self.colors)
        return torch.index_select(self.colors, 0, ids.reshape(-1), out=out).view(*ids.shape, self.K)

    def alphas(self, tiles: Tensor, g: Tensor) -> Tensor:
        """Clamped alphas [t, P, B] at every pixel of tiles [t] of the Gaussians with table entries g [10, t, B];
        0 where skipped.

        sigma is separable apart from its cross term, so it is assembled from per-column and per-row parts, scaled
        by log2(e) so that exp2 gives exp(-sigma); everything after that is in place.
        """
        (t, B), ts, dt = g.shape[1:], self.ts, g.dtype
        mx, my, a, b, c, o, x0, x1, y0, y1 = (v[:, None, :] for v in g)  # each [t, 1, B]
        px = (self.ox[tiles, None] + self.lane)[:, :, None]  # [t, ts, 1] pixel-centre x of each column
        py = (self.oy[tiles, None] + self.lane)[:, :, None]
        dx, dy = px - mx, py - my  # [t, ts, B]
        inf = float("inf")
        # Outside the bounding square sigma is +inf, i.e. alpha 0.
        sx = (_HALF_LOG2E * a * dx * dx).masked_fill_((px < x0) | (px > x1), inf)
        sy = (_HALF_LOG2E * c * dy * dy).masked_fill_((py < y0) | (py > y1), inf)
        sigma = self.ws.get("alpha", (t, ts, ts, B), g)  # [t, y, x, B]
        torch.add(sy[:, :, None, :], sx[:, None, :, :], out=sigma)
        sigma.addcmul_((_LOG2E * b * dx)[:, None, :, :], dy[:, :, None, :])
        sigma = sigma.view(t, ts * ts, B)
        F.threshold_(sigma, -torch.finfo(dt).tiny, inf)  # 3DGS skips sigma < 0 (non-positive-definite conics)
        # Anything beyond 2^-64 is skipped anyway; clamping there keeps exp2 away from (very slow) denormals.
        alpha = sigma.clamp_(max=64.0).neg_().exp2_().mul_(o)
        return F.threshold_(alpha, _below(ALPHA_MIN, dt), 0.0).clamp_(max=ALPHA_MAX)  # skip alpha < 1/255

    def composite(self, tiles: Tensor, g: Tensor, T0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Front-to-back compositing of one block given the transmittance T0 [t, P] in front of it.

        Returns alpha [t, P, B] (0 where skipped or after termination) and T_before [t, P, B] (transmittance in
        front of each Gaussian), both in scratch buffers valid until the next call, and the transmittance behind
        the block [t, P], set to 0 for pixels that have terminated so that later blocks contribute nothing there.
        """
        alpha = self.alphas(tiles, g)
        t, P, B = alpha.shape
        # One exclusive scan: Ts[..., 0] = T0, Ts[..., i+1] = Ts[..., i] (1 - alpha_i).
        Ts = self.ws.get("T", (t, P, B + 1), alpha)
        Ts[:, :, 0] = T0
        _one_minus(alpha, out=Ts[:, :, 1:])
        Ts.cumprod_(-1)
        T_before, T = Ts[:, :, :B], Ts[:, :, 1:]  # transmittance in front of / behind each Gaussian
        T_after = T[:, :, -1].clone()
        finished = T_after < T_MIN
        if bool((finished & (T0 > 0)).any()):  # some pixel stops inside this block:
            F.threshold_(T, _below(T_MIN, T.dtype), 0.0)  # the Gaussian that would take T below T_MIN ...
            alpha.mul_(torch.sign(T))  # ... and all behind it get alpha = 0
        return alpha, T_before, T_after.masked_fill_(finished, 0.0)


_LOG2E = 1.4426950408889634
_HALF_LOG2E = 0.5 * _LOG2E


def _one_minus(x: Tensor, out: Tensor) -> Tensor:
    return torch.sub(x.new_ones(()), x, out=out)


def _below(x: float, dtype: torch.dtype) -> float:
    """Largest value of dtype below x, so that F.threshold (keeps v > th) keeps exactly v >= x."""
    t = torch.tensor(x, dtype=dtype)
    return torch.nextafter(t, torch.zeros_like(t)).item()


# ----------------------------------------------------------------------------------------------------------------
# Autograd function
# ----------------------------------------------------------------------------------------------------------------

class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, bounds, bins, width, height, grad_needed,
                geometry_channels):
        ctx.geometry_channels = geometry_channels
        scene = _Scene(means2d, conics, opacities, colors, bounds, bins, width, height)
        n_tiles, P, C, K, ws = bins.num_tiles, scene.P, scene.C, scene.K, scene.ws

        T = scene.in_image.to(means2d.dtype)  # [tiles, P] transmittance; 0 = finished (or outside the image)
        acc = means2d.new_zeros(n_tiles, P, K)  # sum_i w_i (c_i, 1, 0...) with w_i = alpha_i T_i
        # The backward needs alpha and T_before of every block: keep them (in recycled memory) up to a budget,
        # beyond which it recomputes them.
        saved = _SavedPairs(means2d, SAVE_BUDGET_BYTES) if grad_needed else None
        steps = []  # (tiles, ids, T0, kept) per block, replayed in the same order by the backward
        for tiles, ids in scene.blocks(T):
            T0, g = T[tiles], scene.gather(ids)
            alpha, T_before, T[tiles] = scene.composite(tiles, g, T0)
            w = torch.mul(alpha, T_before, out=ws.get("w", alpha.shape, alpha))
            contrib = torch.bmm(w, scene.block_colors(ids), out=ws.get("out", (len(tiles), P, K), acc))
            acc.index_add_(0, tiles, contrib)
            steps.append((tiles, ids, T0, saved.keep(g, alpha, T_before) if saved is not None else None))

        acc_alpha = acc[:, :, C]  # = 1 - T_final
        image_t = torch.addcmul(acc[:, :, :C], (1.0 - acc_alpha)[:, :, None], background)
        ctx.scene, ctx.steps, ctx.saved = scene, steps, saved
        ctx.save_for_backward(acc, background)
        return _untile(image_t, bins, width, height), _untile(acc[:, :, C:C + 1], bins, width, height)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image, grad_alpha):
        scene, bins, ws = ctx.scene, ctx.scene.bins, ctx.scene.ws
        acc, background = ctx.saved_tensors
        n_tiles, P, C, K, N = bins.num_tiles, scene.P, scene.C, scene.K, scene.N
        G = acc.new_zeros(n_tiles, P, K)  # dL/d(image channels, alpha channel, padding) per tile pixel
        if grad_image is not None:
            G[:, :, :C] = _tile(grad_image, bins)
        if grad_alpha is not None:
            G[:, :, C] = _tile(grad_alpha, bins)[..., 0]
        # The alpha channel also carries T_final * background = (1 - alpha_out) * background.
        G[:, :, C] -= G[:, :, :C] @ background
        # Channels from geometry_channels on train their colours only: the geometry sees G without them.
        k = ctx.geometry_channels
        G_geo = G
        if k < C:
            G_geo = G.clone()
            G_geo[:, :, k:C] = 0
            G_geo[:, :, C] += G[:, :, k:C] @ background[k:]
        # Now dL/dw_i = G . (c_i, 1, 0...), and dL/dalpha_i = dL/dw_i T_i - (sum_{j>i} dL/dw_j w_j) / (1 - alpha_i).
        # The suffix sum starts from its per-pixel total G . acc and shrinks block by block, front to back.
        rest = (G_geo * acc).sum(-1)  # [tiles, P]

        dt = acc.dtype
        need_geometry, need_colors = any(ctx.needs_input_grad[:3]), ctx.needs_input_grad[3]
        g_table = acc.new_zeros(N + 1, 6)  # mx, my, a, b, c, o
        g_color = acc.new_zeros(N + 1, K)
        for tiles, ids, T0, kept in ctx.steps:
            (t, B), flat = ids.shape, ids.reshape(-1)
            if kept is not None:
                g, alpha, T_before = kept
            else:  # recompute
                g = scene.gather(ids)
                alpha, T_before, _ = scene.composite(tiles, g, T0)
            Gt = torch.index_select(G, 0, tiles, out=ws.get("G", (t, P, K), G))  # [t, P, K]
            w = torch.mul(alpha, T_before, out=ws.get("w", alpha.shape, alpha))  # [t, P, B]
            if need_colors:
                g_col = torch.bmm(w.transpose(1, 2), Gt, out=ws.get("g_col", (t, B, K), G))  # [t, B, K]
                g_color.index_add_(0, flat, g_col.view(-1, K))
            if not need_geometry:
                continue
            if G_geo is not G:
                Gt = torch.index_select(G_geo, 0, tiles, out=ws.get("G", (t, P, K), G))
            cols_t = scene.block_colors(ids).transpose(1, 2)  # [t, K, B]
            g_w = torch.bmm(Gt, cols_t, out=ws.get("g_w", alpha.shape, alpha))  # [t, P, B] dL/dw
            rest_t = rest[tiles] * (T0 > 0)  # exactly 0 for pixels that finished in an earlier block
            after = w.mul_(g_w).cumsum_(-1)
            torch.sub(rest_t[:, :, None], after, out=after)  # sum_{j>i} dL/dw_j w_j
            rest[tiles] = after[:, :, -1]
            scratch = ws.get("scratch", alpha.shape, alpha)
            g_alpha = g_w.mul_(T_before).sub_(after.div_(_one_minus(alpha, out=scratch)))  # dL/dalpha_i
            # dL/dsigma = -dL/dalpha * alpha_raw where the clamp at ALPHA_MAX is inactive (alpha is 0 if skipped).
            g_sigma = g_alpha.mul_(F.threshold_(torch.neg(alpha, out=scratch), -ALPHA_MAX, 0.0))
            # Per Gaussian: sums over pixels of g_sigma * (1, x, y, x^2, xy, y^2), x, y relative to the tile centre.
            s0, sx, sy, sxx, sxy, syy = torch.matmul(scene.moments, g_sigma).unbind(1)  # each [t, B]
            mx, my, a, b, c, o = g[:6]
            mx = mx - (scene.ox[tiles, None] + 0.5 * scene.ts).to(dt)  # means relative to the tile centre
            my = my - (scene.oy[tiles, None] + 0.5 * scene.ts).to(dt)
            gdx, gdy = sx - mx * s0, sy - my * s0  # sum g_sigma dx, with dx = x - mx; same for dy
            gdxx = sxx - 2 * mx * sx + mx * mx * s0
            gdxy = sxy - mx * sy - my * sx + mx * my * s0
            gdyy = syy - 2 * my * sy + my * my * s0
            # sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2, so d sigma / d mean = -(a dx + b dy, b dx + c dy);
            # alpha_raw = o exp(-sigma), so dL/do = dL/dalpha alpha_raw / o = -sum g_sigma / o.
            o_safe = torch.where(o > 0, o, torch.ones_like(o))
            grads = torch.stack([-(a * gdx + b * gdy), -(b * gdx + c * gdy), 0.5 * gdxx, gdxy, 0.5 * gdyy,
                                 -s0 / o_safe], dim=-1)
            g_table.index_add_(0, flat, grads.view(-1, 6))

        if ctx.saved is not None:  # free for the next forward even while the caller still holds this graph
            ctx.steps = [(tiles, ids, T0, None) for tiles, ids, T0, _ in ctx.steps]
            ctx.saved.release()
        g_bg = (G[:, :, :C] * (1.0 - acc[:, :, C:C + 1])).sum((0, 1)) if ctx.needs_input_grad[4] else None
        if not need_geometry:
            return None, None, None, g_color[:N, :C] if need_colors else None, g_bg, None, None, None, None, None, None
        return (g_table[:N, 0:2], g_table[:N, 2:5], g_table[:N, 5], g_color[:N, :C] if need_colors else None, g_bg,
                None, None, None, None, None, None)


def _untile(x: Tensor, bins: TileBins, width: int, height: int) -> Tensor:
    """[tiles, P, C] -> [H, W, C]."""
    ts, C = bins.tile_size, x.shape[-1]
    img = x.view(bins.tiles_y, bins.tiles_x, ts, ts, C).permute(0, 2, 1, 3, 4)
    return img.reshape(bins.tiles_y * ts, bins.tiles_x * ts, C)[:height, :width].contiguous()


def _tile(img: Tensor, bins: TileBins) -> Tensor:
    """[H, W, C] -> [tiles, P, C], zero outside the image."""
    ts, (H, W, C) = bins.tile_size, img.shape
    full = img.new_zeros(bins.tiles_y * ts, bins.tiles_x * ts, C)
    full[:H, :W] = img
    return full.view(bins.tiles_y, ts, bins.tiles_x, ts, C).permute(0, 2, 1, 3, 4).reshape(bins.num_tiles, ts * ts, C)


# ----------------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------------

def check_inputs(proj: Projection, opacities: Tensor, colors: Tensor, width: int, height: int,
                 background: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Validate shapes; return (opacities, colors, background) in the dtype/device of means2d."""
    N = proj.means2d.shape[0]
    if width < 1 or height < 1:
        raise ValueError(f"rasterize: image size must be positive, got {width}x{height}")
    if proj.means2d.shape != (N, 2) or proj.conics.shape != (N, 3) or proj.depths.shape != (N,) \
            or proj.radii.shape != (N,):
        raise ValueError("rasterize: projection fields must be means2d [N,2], conics [N,3], depths [N], radii [N]")
    if opacities.shape != (N,):
        raise ValueError(f"rasterize: opacities must be [N]={N}, got {tuple(opacities.shape)}")
    if colors.ndim != 2 or colors.shape[0] != N or colors.shape[1] < 1:
        raise ValueError(f"rasterize: colors must be [N={N}, C>=1], got {tuple(colors.shape)}")
    C = colors.shape[1]
    like = proj.means2d
    if background is None:
        background = like.new_zeros(C)
    if background.shape != (C,):
        raise ValueError(f"rasterize: background must be [C]={C}, got {tuple(background.shape)}")
    return opacities.to(like), colors.to(like), background.to(like)


def rasterize(proj: Projection, opacities: Tensor, colors: Tensor, width: int, height: int,
              background: Tensor | None = None, tile_size: int = 8,
              geometry_channels: int | None = None) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians into an image of any channel count.

    opacities [N] in (0, 1), colors [N, C] (RGB, features, depth: all just channels), background [C] or None (0).
    Returns (image [H, W, C] including T_final * background, alpha [H, W, 1]). Differentiable w.r.t.
    proj.means2d, proj.conics, opacities, colors and background. ``tile_size`` only affects speed (8 is fastest
    on CPU; the result is the same for any value). ``geometry_channels = k``: only channels [0, k) and the alpha
    output send gradients to the geometry (means2d, conics, opacities); later channels train their colours only,
    as if rendered a second time with detached geometry, at no extra cost.
    """
    opacities, colors, background = check_inputs(proj, opacities, colors, width, height, background)
    if tile_size < 1:
        raise ValueError(f"rasterize: tile_size must be >= 1, got {tile_size}")
    bounds = pixel_bounds(proj.means2d, proj.radii, width, height)
    reach = reach_bounds(bounds, proj.means2d, proj.conics, opacities)  # tiles: only where alpha can be >= 1/255
    bins = bin_gaussians(reach, proj.depths, width, height, tile_size)
    inputs = (proj.means2d, proj.conics, opacities, colors, background)
    grad_needed = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)  # (no_grad: keep nothing)
    C = colors.shape[1]
    k = C if geometry_channels is None else geometry_channels
    if not 0 <= k <= C:
        raise ValueError(f"rasterize: geometry_channels must be in [0, {C}], got {geometry_channels}")
    return _Rasterize.apply(*inputs, bounds, bins, width, height, grad_needed, k)
