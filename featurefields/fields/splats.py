"""The Gaussian-splat implementation of the field interface (:class:`GaussianFeatureField`).

The Gaussians stay in the frame they were trained in (the scene's; ``world_from_scene`` is the identity for every
loader so far, a similarity where a scene was made metric afterwards). The interface speaks world coordinates, so
poses and points are converted at this boundary, never by rewriting the Gaussians (rotating SH coefficients of a
view-dependent field would be lossy work for nothing).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import math

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError
from .base import FeatureField, PointQuery, View, check_points
from .density import quat_to_rotmat
from .gaussians import GaussianField, TeacherSpec, sh0_to_rgb
from .rendering import FieldRender, render_field

CUTOFF_SIGMA = 3.0  # a Gaussian's influence is ignored beyond 3 standard deviations (weight < 1.1%)
QUERY_CHUNK = 16_384  # query points per batch of neighbour pairs (bounds memory; < 32768: rows are sorted as int16)


class GaussianFeatureField(FeatureField):
    """A trained Gaussian feature field behind the :class:`FeatureField` interface; ``gaussians`` is the
    :class:`~.gaussians.GaussianField` module itself (what edits and PLY export work on)."""

    kind = "gaussians"

    def __init__(self, gaussians: GaussianField, *, world_from_scene: Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.gaussians = gaussians.eval()
        wfs = torch.eye(4) if world_from_scene is None else torch.as_tensor(world_from_scene, dtype=torch.float32)
        if wfs.shape != (4, 4) or not bool(torch.isfinite(wfs).all()):
            raise DataError(f"{self.source}: world_from_scene must be a finite 4x4 matrix")
        self._wfs = wfs.float()
        self._index = None  # (the means it was built for, MixtureIndex): point queries reuse the trees

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu", **kwargs
                        ) -> "GaussianFeatureField":
        from ..train.checkpoint import load_checkpoint

        state = load_checkpoint(path)  # validated: shapes agree, values finite, decoder fits the layout
        try:
            gaussians = GaussianField.from_state(state["field"]).to(device)
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise DataError(f"{path}: checkpoint holds no usable field ({type(e).__name__}: {e})") from None
        info = state.get("scene") or {}
        given = kwargs.get("scene_root") is not None
        kwargs.setdefault("scene_root", info.get("root"))
        field = cls(gaussians, teacher_records=state.get("teachers") or [], train_config=state.get("config") or {},
                    world_from_scene=torch.tensor(info.get("world_from_scene", np.eye(4).tolist())),
                    source=str(path), cameras=state.get("cameras"), frame_info=info.get("frame_info"), **kwargs)
        field.scene_given = given
        return field

    @classmethod
    def from_ply(cls, path: str | Path, *, device: str | torch.device = "cpu", **kwargs) -> "GaussianFeatureField":
        """A 3DGS PLY with ``feat_*`` properties (ours, or any splat file: then colour only). Text queries work
        when its layout names a text-aligned teacher whose encoder needs no weights from training (labels)."""
        from .ply import field_from_ply, read_ply

        gaussians = field_from_ply(path).to(device)
        meta = read_ply(path)[1]
        records = [{"name": t.name, "dim": t.dim} for t in gaussians.layout.teachers]
        return cls(gaussians, teacher_records=records, world_from_scene=torch.tensor(
            meta.get("world_from_scene", np.eye(4).tolist())), source=str(path), **kwargs)

    def with_gaussians(self, gaussians: GaussianField) -> "GaussianFeatureField":
        """The same field (scene, teachers, frame) with other Gaussians: what an edit produces."""
        return GaussianFeatureField(gaussians, world_from_scene=self._wfs, teachers=self._teachers,
                                    teacher_records=list(self._records.values()), train_config=self.train_config,
                                    scene=self._scene, scene_root=self.scene_root,
                                    background=self.background.tolist(), source=self.source)

    # ---- what it is -----------------------------------------------------------------------------------------
    @property
    def teacher_specs(self) -> list[TeacherSpec]:
        return list(self.gaussians.layout.teachers)

    @property
    def device(self) -> torch.device:
        return self.gaussians.means.device

    @property
    def world_from_scene(self) -> Tensor:
        return self._wfs

    def _is_identity(self) -> bool:
        return torch.equal(self._wfs, torch.eye(4))

    def __len__(self) -> int:
        return len(self.gaussians)

    # ---- rendering ------------------------------------------------------------------------------------------
    def render(self, view: View, *, with_features: bool = True, c2w: Tensor | None = None) -> FieldRender:
        pose = (view.c2w if c2w is None else c2w).to(self.device).float()
        if not self._is_identity():  # world camera -> the Gaussians' frame (a similarity: scale stays in the pose)
            pose = torch.linalg.inv(self._wfs.to(pose)) @ pose
        bg = self.background.to(self.device)
        with torch.set_grad_enabled(pose.requires_grad), constant_parameters(self.gaussians):
            return render_field(self.gaussians, pose, view.K.to(self.device).float(), view.width, view.height,
                                background=bg, with_features=with_features, cull=True)  # (only without grad)

    def decode(self, features: Tensor, teacher: str) -> Tensor:
        return self.gaussians.decoder(features, teacher)

    def scores(self, rows: Tensor, texts: Tensor, teacher: str, exact: bool = False,
               chunk: int | None = None) -> Tensor:
        """A linear decoder head is folded into the texts (see :func:`~featurefields.query.relevancy.
        linear_cosine_scores`) unless ``exact``, which decodes every row chunk by chunk; both give the same
        numbers."""
        from ..query.relevancy import DEFAULT_CHUNK, linear_cosine_scores

        head = self.gaussians.decoder.linear_head(teacher)
        if head is not None and not exact:
            return linear_cosine_scores(rows, head.weight.detach(), None if head.bias is None else head.bias.detach(),
                                        texts, chunk or DEFAULT_CHUNK)
        return super().scores(rows, texts, teacher, exact, chunk)

    # ---- points ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def query_points(self, xyz: Tensor, *, teachers: Sequence[str] | None = None, blur: float = 0.0) -> PointQuery:
        pts = check_points(xyz, "query points").to(self.device)
        if not self._is_identity():
            inv = torch.linalg.inv(self._wfs.to(pts))
            pts = pts @ inv[:3, :3].T + inv[:3, 3]
        g = self.gaussians
        colors = sh0_to_rgb(g.sh0[:, 0]).clamp(0, 1)
        feats = g.features.detach()
        index = None
        if _native_mixture(pts.device) is None:  # the reference's trees, built once per set of Gaussians
            if self._index is None or self._index[0] is not g.means:
                self._index = (g.means, MixtureIndex(g.means, g.scales))
            index = self._index[1]
        density, opacity, blend = gaussian_mixture_at(pts, g.means.detach(), g.quats.detach(), g.scales.detach(),
                                                      g.opacities.detach(), torch.cat([colors, feats], 1), blur=blur,
                                                      index=index)
        latent = blend[:, 3:]
        names = self.teacher_names if teachers is None else list(teachers)
        decoded = {t: self.decode(latent, t) for t in names} if latent.shape[1] else {}
        return PointQuery(density=density, opacity=opacity, rgb=blend[:, :3], latent=latent, features=decoded)

    # ---- elements -------------------------------------------------------------------------------------------
    def element_positions(self) -> Tensor:
        m = self.gaussians.means.detach()
        if self._is_identity():
            return m
        w = self._wfs.to(m)
        return m @ w[:3, :3].T + w[:3, 3]

    def element_opacities(self) -> Tensor:
        return self.gaussians.opacities.detach()

    def element_features(self) -> Tensor:
        return self.gaussians.features.detach()

    def element_weights(self, view: View, masks: Tensor) -> Tensor:
        """The rendered image is linear in the per-Gaussian colours with the blending weights as coefficients, so
        the gradient of sum(image * masks) with respect to M colour channels that are all zero is exactly these
        sums (one forward and one backward pass, on any backend)."""
        from ..render import render

        g = self.gaussians
        dev = self.device
        pose = view.c2w.to(dev).float()
        if not self._is_identity():
            pose = torch.linalg.inv(self._wfs.to(pose)) @ pose
        colors = torch.zeros(len(g), masks.shape[-1], device=dev, requires_grad=True)
        with torch.enable_grad():
            out = render(g.means.detach(), g.quats.detach(), g.scales.detach(), g.opacities.detach(), colors,
                         torch.linalg.inv(pose), view.K.to(dev).float(), view.width, view.height)
            (out.image * masks.to(out.image)).sum().backward()
        return colors.grad

    def element_normals(self) -> Tensor:
        """[N, 3] each Gaussian's shortest axis in the world frame (the normal of a flat splat), unoriented."""
        g = self.gaussians
        rot = quat_to_rotmat(g.quats.detach())
        axis = g.scales.detach().argmin(dim=-1)
        n = rot[torch.arange(len(axis)), :, axis]
        if not self._is_identity():
            n = n @ self._wfs[:3, :3].to(n).T
        return nn.functional.normalize(n, dim=-1)


class MixtureIndex:
    """k-d trees over Gaussian centres grouped by size (see :func:`gaussian_mixture_at`), built once per set of
    Gaussians and reused by every point query."""

    def __init__(self, means: Tensor, scales: Tensor):
        from scipy.spatial import cKDTree

        size = scales.detach().float().max(dim=1).values.cpu().numpy()  # [N] largest standard deviation
        group = np.floor(np.log2(np.maximum(CUTOFF_SIGMA * size, 1e-6))).astype(np.int64)
        means_np = means.detach().cpu().double().numpy()
        self.groups = []
        for gid in np.unique(group):
            members = np.nonzero(group == gid)[0]
            self.groups.append((members, cKDTree(means_np[members]), float(size[members].max())))


@contextlib.contextmanager
def constant_parameters(module: nn.Module):
    """Treat ``module``'s parameters as constants while the block builds a graph: a render differentiated for the
    camera pose (localisation) must not pay for, or accumulate, gradients of every Gaussian."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def gaussian_mixture_at(points: Tensor, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                        values: Tensor, blur: float = 0.0, cutoff: float = CUTOFF_SIGMA,
                        index: MixtureIndex | None = None, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """Evaluate N Gaussians at P points: (density [P] = sum o_i G_i, opacity [P] = 1 - prod (1 - o_i G_i),
    weighted mean of ``values`` [N, C] -> [P, C] with weights o_i G_i).

    ``blur`` > 0 evaluates the mixture convolved with an isotropic Gaussian of that standard deviation (each
    covariance grows by blur^2 I, amplitudes shrink to keep its mass): surface points fused at a few millimetres
    then still find the thin splats they lie on. A pair counts while its Mahalanobis distance is within ``cutoff``.

    ``backend``: "native" (the compiled kernel, ``cuda_ext/cpu/mixture.cpp``: its own grid search and the pair
    maths in one walk; CPU tensors), "torch" (the reference below: scipy's k-d trees and PyTorch, any device) or
    "auto" (native where it can run). ``index``: the reference's trees, reusable across calls."""
    p, c = points.shape[0], values.shape[1]
    if p == 0 or means.shape[0] == 0:
        return points.new_zeros(p), points.new_zeros(p), points.new_zeros(p, c)
    if backend == "auto":
        backend = "native" if _native_mixture(points.device) else "torch"
    if backend == "native":  # the per-Gaussian parameters too are the kernel's (mixture.h), for those it needs
        lib = _native_mixture(points.device)
        if lib is None:
            raise RuntimeError("the native mixture kernel needs featurefields._native and CPU tensors")
        dt = points.dtype if points.dtype == torch.float64 else torch.float32
        density, log_transmit, acc = lib.mixture_at(*(t.detach().to(dt).contiguous() for t in (
            points, means, quats, scales, opacities.reshape(-1), values)), float(blur), float(cutoff))
    elif backend == "torch":
        var = scales.float() ** 2 + blur * blur  # [N, 3] along each Gaussian's own axes
        amp = opacities * torch.sqrt(scales.float() ** 2 / var).prod(-1) if blur > 0 else opacities
        rot = quat_to_rotmat(quats)  # [N, 3, 3]
        inv_var = 1.0 / var.clamp_min(1e-18)
        reach = cutoff * var.max(-1).values.sqrt()  # [N] each Gaussian's own: m2 <= cutoff^2 lies within it
        density, log_transmit, acc = _mixture_torch(points, means, rot, inv_var, amp, reach, values, blur, cutoff,
                                                    index if index is not None else MixtureIndex(means, scales))
    else:
        raise ValueError(f"backend must be auto, native or torch, not {backend!r}")
    mean = acc / density.clamp_min(1e-12)[:, None]
    return density, 1 - log_transmit.exp(), mean


def _native_mixture(device: torch.device):
    """The compiled extension if it can evaluate a mixture on ``device`` (CPU only so far), else None."""
    from ..render.native import native_module

    mod = native_module() if torch.device(device).type == "cpu" else None
    return mod if mod is not None and hasattr(mod, "mixture_at") else None


def _mixture_torch(points, means, rot, inv_var, amp, reach, values, blur, cutoff, index: MixtureIndex):
    """The reference: Gaussians grouped by their cut-off radius (``cutoff`` standard deviations along their
    longest axis, doubling per group), each group's centres in a k-d tree queried with that group's largest
    radius, so a few huge background splats never force a huge search radius on the many small ones. scipy's
    trees do the search; pairs beyond a Gaussian's own reach (the group's radius is up to twice as far) and past
    the cut-off are dropped before any further maths. (density [P], log_transmit [P], acc [P, C])."""
    from scipy.spatial import cKDTree

    dev = points.device
    p, c = points.shape[0], values.shape[1]
    density = torch.zeros(p, device=dev)
    log_transmit = torch.zeros(p, device=dev)
    acc = torch.zeros(p, c, device=dev)
    reach = reach.cpu().double().numpy()
    trees = [(m, tree, cutoff * math.sqrt(size * size + blur * blur)) for m, tree, size in index.groups]
    pts_np = points.detach().cpu().double().numpy()
    for s in range(0, p, QUERY_CHUNK):
        e = min(p, s + QUERY_CHUNK)
        qtree = cKDTree(pts_np[s:e])
        rows, cols, weights = [], [], []  # rows local to the chunk
        for members, tree, r in trees:
            pairs = qtree.sparse_distance_matrix(tree, r, output_type="ndarray")
            if len(pairs) == 0:
                continue
            gj = members[pairs["j"]]
            near = pairs["v"] <= reach[gj]
            if not near.any():
                continue
            qi = torch.from_numpy(pairs["i"][near].astype(np.int64)).to(dev)
            gi = torch.from_numpy(gj[near]).to(dev)
            d = points[s + qi] - means[gi]  # [K, 3]
            local = torch.einsum("kji,kj->ki", rot[gi], d)  # R^T d: stable for the thinnest splats
            m2 = (local * local * inv_var[gi]).sum(-1)
            live = m2 <= cutoff * cutoff
            rows.append(qi[live])
            cols.append(gi[live])
            weights.append(amp[gi[live]] * torch.exp(-0.5 * m2[live]))
        if not rows:
            continue
        qi, gi, w = torch.cat(rows), torch.cat(cols), torch.cat(weights)
        density[s:e].index_add_(0, qi, w)
        log_transmit[s:e].index_add_(0, qi, torch.log1p(-w.clamp(max=0.9999)))
        # the weighted sum of values as one sparse [rows, N] x [N, C] product: no [pairs, C] gather is ever made.
        # The pairs are unique (each group's tree pairs a point with a Gaussian once, groups are disjoint), so a
        # CSR matrix is built by sorting the rows (as int16: a chunk has fewer than 32768), not by COO's coalescing
        order = torch.sort(qi.to(torch.int16), stable=True).indices
        crow = torch.zeros(e - s + 1, dtype=torch.int64, device=dev)
        crow[1:] = torch.cumsum(torch.bincount(qi, minlength=e - s), 0)
        wmat = torch.sparse_csr_tensor(crow, gi[order], w[order], (e - s, means.shape[0]))
        acc[s:e] += wmat @ values.float()
    return density, log_transmit, acc


def gaussians_of(field) -> GaussianField:
    """The Gaussians behind a field, for what only Gaussians can do (edits, splat PLYs); ConfigError otherwise."""
    if isinstance(field, GaussianField):
        return field
    if isinstance(field, GaussianFeatureField):
        return field.gaussians
    from ..errors import ConfigError

    raise ConfigError(f"{getattr(field, 'source', field)}: this needs a Gaussian-splat field, not a "
                      f"{getattr(field, 'kind', type(field).__name__)} field")
