"""``field.locate("red mug")``: every instance of what a phrase names, as metric geometry a robot can act on.

1. Which elements: every element's own feature scored against the phrase (LERF relevancy with the field's usual
   negatives, so "mug" keeps its handle and "mug handle" is only the handle); opaque ones above the threshold.
2. How many: connected components of those elements (every two closer than twice their typical spacing are
   linked; not a kNN graph, which cuts an object where its density jumps, a bottle's cap from its body), so two
   mugs give two entries; specks (fewer than ``min_fraction`` of the biggest and than ``min_elements``) are noise.
3. Where exactly: each instance's box (of the dense part of its elements, plus a margin) is fused from the views
   that see it best into a fine surface (``FeatureField.surface_points`` with a region, 2.5 mm), the surface
   points are scored again by the field's features at those points, and the instance keeps the relevant ones
   near its elements. Its surroundings (the
   support, neighbours within a gripper's reach) are fused coarser (5 mm): what grasps must not collide with.
4. What shape: the support it stands on (RANSAC plane under it), its unseen underside completed by the part of
   its footprint on that plane that no view sees and by the part of its convex hull that every view finds
   hidden (space carving), then centroid (area-weighted, of the completed surface), an upright box and extent.

Everything is in the field's metric world frame. The surroundings (support, neighbours) stay with each result,
for collision checks.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch
from torch import Tensor

from ..fields.base import FeatureField, SurfacePoints, View
from ..query.selection import Selection, components
from .geometry import OrientedBox, Plane, camera_up, fit_support_plane, footprint_fill, plane_basis, upright_box

DEFAULT_VOXEL = 0.0025  # metres: the fused surface a grasp is planned on
CONTEXT_VOXEL = 0.005  # metres: the surroundings, for collisions and the support plane
DEFAULT_MAX_VIEWS = 10  # training views fused per instance: the ones that see it best
CONTEXT_VIEWS = 6  # of those, the ones fused for its surroundings (support plane, neighbours to collide with)
FINE_VOXELS_ACROSS = 96  # an instance is fused at least this finely along its longest side, not finer than ``voxel``
MARGIN = 0.02  # metres around an instance's elements fused finely (its surface may lie a little outside them)
CONTEXT = 0.12  # metres of surroundings fused around an instance (a gripper's reach around it)
TOUCHES = 0.007  # metres: an instance whose surface comes this close to a plane under it stands on it
UNDER_CENTRE = 0.01  # metres: "right under its centre"
SUPPORT_ABOVE = 0.015  # metres: the support plane may lie this far above an instance's (robust) bottom
MAX_HIDDEN_BAND = 0.03  # metres: at most this much of an object's bottom is taken as unseen (and the plane looked for)
SURFACE_LINK = 3.0  # voxels: fused surface points this close are one piece of surface
DENSE_NEIGHBOURS = 8  # an element is isolated when its 8th nearest fellow is far (see _dense_bounds)
SURFACE_PIECE = 0.1  # a piece of relevant surface smaller than this share of the biggest is not the instance's
SUPPORT_CLIP = 0.003  # metres: points this far below the support of what stands on it are artefacts
ON_PLANE = 0.004  # metres: up-facing points this close to the support are the support


@dataclass
class Located:
    """One instance of a query, world frame, metres."""

    query: str
    points: Tensor  # [M, 3] its visible surface points
    normals: Tensor  # [M, 3] outward unit normals
    centroid: Tensor  # [3] area-weighted centroid of the surface completed by its footprint on the support
    box: OrientedBox  # upright when it stands on a support (axes: columns of box.rotation; the third is up)
    score: float  # mean relevancy of its points (0.5: barely beats every negative; 1: certain)
    selection: Selection  # the field's elements (Gaussians) it is made of
    support: Plane | None  # what it stands on (None: not resting on a plane, e.g. a part such as a handle)
    surroundings: SurfacePoints = dc_field(repr=False)  # the surface around it, itself included (5 mm)
    timings: dict = dc_field(default_factory=dict)

    @property
    def extent(self) -> Tensor:  # [3] side lengths of the box
        return self.box.extent

    @property
    def obb(self):
        """The box as an open3d OrientedBoundingBox."""
        return self.box.to_open3d()

    def to_dict(self) -> dict:
        return {"query": self.query, "centroid": self.centroid.tolist(), "box": self.box.to_dict(),
                "extent": self.extent.tolist(), "score": self.score, "num_points": len(self.points),
                "num_elements": self.selection.count,
                "support": None if self.support is None else {"normal": self.support.normal.tolist(),
                                                              "offset": self.support.offset}}


class LocateResult(list):
    """A list of :class:`Located`, best first; when empty, ``reason`` says why."""

    def __init__(self, items=(), reason: str = ""):
        super().__init__(items)
        self.reason = reason


@torch.no_grad()
def locate(field: FeatureField, text: str, *, negatives="auto", teacher: str | None = None,
           threshold: float = 0.5, min_opacity: float = 0.3, min_elements: int = 30, min_fraction: float = 0.05,
           voxel: float = DEFAULT_VOXEL, views: str = "train", max_views: int = DEFAULT_MAX_VIEWS,
           up: Tensor | None = None) -> LocateResult:
    """Every instance of ``text`` in the field, best score first (see the module docstring for the method).

    ``up``: the world's up direction (default: as the training cameras hold it). An empty result carries the
    reason (nothing relevant, or only specks)."""
    t0 = time.perf_counter()
    eng = field.engine
    rel3 = eng.relevancy_3d(text, negatives=negatives, teacher=teacher)
    opac = field.element_opacities().cpu()
    score = rel3.combined.cpu()
    chosen = (score > threshold) & (opac >= min_opacity)
    if not bool(chosen.any()):
        return LocateResult(reason=f"nothing in the field is {text!r}: no element scores above {threshold} (best "
                                   f"{float(score.max()):.2f}; negatives: {', '.join(rel3.negatives)})")
    pos = field.element_positions().cpu()
    idx = chosen.nonzero()[:, 0]
    labels, _ = components(pos[idx], k=None)  # (the radius graph: an object's density may jump, see components)
    sizes = np.bincount(labels)
    keep = [c for c in np.argsort(-sizes) if sizes[c] >= max(min_elements, min_fraction * sizes.max())]
    if not keep:
        return LocateResult(reason=f"only specks of {text!r} (at most {int(sizes.max())} elements together, fewer "
                                   f"than {min_elements})")
    view_list = field.views(views)
    up = camera_up(torch.stack([v.c2w for v in view_list]).cpu()) if up is None else up.float() / up.norm()
    t_select = time.perf_counter() - t0
    out = []
    for c in keep:
        members = idx[torch.from_numpy(labels == c)]
        loc = _one_instance(field, text, members, pos, view_list, up, rel3.positives, negatives, teacher,
                            threshold, voxel, max_views)
        if loc is not None:
            loc.timings["select_s"] = t_select
            out.append(loc)
    if not out:
        return LocateResult(reason=f"{text!r}: its elements were found, but no fused surface point of them is "
                                   "relevant (the field's features at its surface disagree)")
    out.sort(key=lambda r: -r.score)
    return LocateResult(out)


def _one_instance(field, text, members: Tensor, pos: Tensor, view_list: list[View], up: Tensor, positives, negs,
                  teacher, threshold, voxel, max_views) -> Located | None:
    from scipy.spatial import cKDTree

    t0 = time.perf_counter()
    body = pos[members]
    tree = cKDTree(body.double().numpy())  # (one k-d tree over the elements: bounds, spacing, nearness)
    lo, hi = _dense_bounds(body, tree=tree)
    # A big object needs no 2.5 mm voxels for its centroid, box or grasps, and the fusion cube's cost grows with
    # the cube of its side: the 34 cm region of the cereal box fused at 3.1 mm instead takes 0.7x the time.
    voxel = max(voxel, float((hi - lo).max()) / FINE_VOXELS_ACROSS)
    best = _best_views(view_list, (lo + hi) / 2, max_views)
    fine = field.surface_points(views=best, voxel=voxel, region=(lo - MARGIN, hi + MARGIN), with_renders=True)
    surr = field.surface_points(views=best[:CONTEXT_VIEWS], voxel=max(voxel, CONTEXT_VOXEL),
                                region=(lo - CONTEXT, hi + CONTEXT), with_mesh=True)
    t_fuse = time.perf_counter() - t0
    if len(fine) == 0:
        return None
    rel = field.engine.relevancy_points(positives, fine.points, negatives=negs, teacher=teacher,
                                        blur=voxel).combined.cpu()
    near, _ = tree.query(fine.points.double().numpy(), k=1, distance_upper_bound=4 * voxel + _spacing(body, tree))
    mine = (rel > threshold) & torch.from_numpy(np.isfinite(near))
    if int(mine.sum()) < 10:
        return None
    pts, nrm = fine.points[mine], fine.normals[mine]
    whole = _main_pieces(pts, fine.voxel)
    pts, nrm = pts[whole], nrm[whole]
    on = _on_support(pts, nrm, body, surr, up, voxel, _median_elevation(best, pts.mean(0), up))
    if on is None:
        return None
    pts, nrm, support, fill = on
    completed = torch.cat([pts, fill, _unseen_hull(pts, fill, fine.renders, voxel)])
    box = upright_box(completed, support.normal if support is not None else up,
                      bottom=None if support is None else -support.offset)
    sel = torch.zeros(len(pos), dtype=torch.bool)
    sel[members] = True
    return Located(query=text, points=pts, normals=nrm, centroid=completed.mean(0), box=box,
                   score=float(rel[mine].mean()), selection=Selection(sel), support=support, surroundings=surr,
                   timings={"fuse_s": t_fuse, "instance_s": time.perf_counter() - t0})


def _dense_bounds(body: Tensor, k: int = DENSE_NEIGHBOURS, factor: float = 3.0, tree=None) -> tuple[Tensor, Tensor]:
    """lo [3], hi [3] around an instance's elements [E, 3], leaving out the isolated ones: a few floaters that
    score as the object hang around it, 7-11 cm from their 8th nearest fellow where the bowl's elements are 2 cm
    apart, and stretched its box from 16 x 16 x 7 cm to 22 x 22 x 23 cm (six times the voxels to fuse, for surface
    that :func:`_main_pieces` then drops). Isolated: the distance to its ``k``-th nearest element is over
    ``factor`` times the median of that distance. ``tree``: a scipy cKDTree over ``body``, if one is at hand."""
    from scipy.spatial import cKDTree

    dense = body
    if len(body) > 2 * k:
        tree = cKDTree(body.double().numpy()) if tree is None else tree
        d, _ = tree.query(body.double().numpy(), k=k + 1)
        keep = d[:, k] <= factor * np.median(d[:, k])
        dense = body[torch.from_numpy(keep)]
    return dense.min(0).values, dense.max(0).values


def _main_pieces(points: Tensor, voxel: float) -> Tensor:
    """[P] bool: the fused points [P, 3] on the instance's own pieces of surface. A few relevant elements far from
    the object (on a neighbour's side, under the table: seen by no view, their features never trained) join its
    elements' graph and pull relevant surface of theirs into the instance; that surface lies apart from the
    object's (fused points come ``voxel`` apart, so a gap of a few voxels separates two pieces) and is small."""
    pieces, _ = components(points, radius=SURFACE_LINK * voxel)
    size = np.bincount(pieces)
    return torch.from_numpy(size[pieces] >= SURFACE_PIECE * size.max())


def _on_support(pts: Tensor, nrm: Tensor, body: Tensor, surr: SurfacePoints, up: Tensor, voxel: float,
                elevation: float):
    """The plane an instance stands on and its unseen footprint there: (points, normals, support or None, fill
    [F, 3]), the points cleaned of what belongs to the plane; None if nothing of the instance is left.
    ``elevation``: radians, how high above the horizon the fusing views typically look at it (see _rests_on)."""
    spacing = max(voxel, CONTEXT_VOXEL)
    others = _away_from(surr.points, pts, 2 * spacing)
    bottom = float(torch.quantile(pts @ up, 0.05))  # robust: a few artefacts may lie below the support
    support = fit_support_plane(surr.points[others], surr.normals[others], up, below=bottom + SUPPORT_ABOVE)
    if support is None:
        return pts, nrm, None, pts.new_zeros(0, 3)
    # nothing of an object standing on a plane is visible below it: what fused there is an artefact (the
    # underside of a thin book blended into the table), and it would drag the centroid and box down; and what
    # lies on the plane facing up is the plane itself (the table around a box, scored as the box by the blur of
    # the features at the points), not the object
    dist = support.distance(pts)
    keep = (dist > -SUPPORT_CLIP) & ~((dist < ON_PLANE) & (nrm @ support.normal > 0.9))
    if int(keep.sum()) < 10:
        return None
    pts, nrm = pts[keep], nrm[keep]
    hidden = footprint_fill(pts, support, voxel)
    if bool(others.any()):
        hidden = hidden[_away_from(hidden, surr.points[others], 1.5 * spacing)]
    if not _rests_on(support, pts, body, hidden, elevation):
        return pts, nrm, None, pts.new_zeros(0, 3)
    return pts, nrm, support, hidden  # the unseen underside: the part of its footprint no view sees


def _best_views(views: list[View], target: Tensor, k: int) -> list[View]:
    """The ``k`` views that see ``target`` most squarely and from closest (score: cos(off-axis angle) / distance),
    spread out: each next pick must differ in direction from those taken by at least 15 degrees when possible."""
    if len(views) <= k:
        return views
    scored = []
    for v in views:
        to = target.float() - v.c2w[:3, 3].float().cpu()
        dist = float(to.norm())
        fwd = v.c2w[:3, 2].float().cpu()
        cosang = float(fwd @ to) / max(dist, 1e-9)
        scored.append((cosang / max(dist, 1e-6), v, to / max(dist, 1e-9)))
    scored.sort(key=lambda s: -s[0])
    picked: list = []
    for s, v, d in scored:
        if s <= 0:
            continue
        if all(float(d @ e) < np.cos(np.deg2rad(15)) for _, _, e in picked):
            picked.append((s, v, d))
        if len(picked) == k:
            break
    for item in scored:  # not enough distinct directions: fill up with the best remaining ones
        if len(picked) == k:
            break
        if all(item[1] is not p[1] for p in picked) and item[0] > 0:
            picked.append(item)
    return [v for _, v, _ in picked]


def _rests_on(plane: Plane, pts: Tensor, body: Tensor, hidden: Tensor, elevation: float) -> bool:
    """Whether an instance stands on ``plane``. It does if its surface or its elements come within TOUCHES of it.
    It also does if the plane right under its centre is hidden (``hidden``: the footprint points no view sees) and
    its lowest seen surface lies within the band that cameras looking down at ``elevation`` cannot see on a convex
    object of its footprint radius R resting there: R (1 - cos elevation), the part of a ball below where the
    views' lines of sight graze it (a 12.6 cm ball seen from 42 degrees: 1.6 cm). A mug's handle (R ~1.2 cm, its
    tube 1.5-1.8 cm above the table: band 0.3 cm) or a bottle's neck do not stand on the table."""
    def low(x: Tensor) -> float:
        d = plane.distance(x)
        d = d[d > -SUPPORT_CLIP]
        return float(d.min()) if len(d) else math.inf

    if min(low(pts), low(body)) <= TOUCHES:
        return True
    if len(hidden) == 0:
        return False
    band = min(_footprint_radius(plane, pts) * (1 - math.cos(elevation)), MAX_HIDDEN_BAND)
    if min(low(pts), low(body)) > band:
        return False
    centre = plane.project(pts.mean(0, keepdim=True))
    return float((hidden - centre).norm(dim=-1).min()) <= UNDER_CENTRE


def _footprint_radius(plane: Plane, pts: Tensor) -> float:
    """Radius of the disc with the area of the points' footprint on the plane (their convex hull, projected)."""
    from scipy.spatial import ConvexHull, QhullError

    e1, e2 = plane_basis(plane.normal)
    try:
        return math.sqrt(ConvexHull(torch.stack([pts @ e1, pts @ e2], -1).double().numpy()).volume / math.pi)
    except (QhullError, ValueError):
        return 0.0


def _median_elevation(views: list[View], target: Tensor, up: Tensor) -> float:
    """Radians: the median angle above the horizon (the plane normal to ``up``) at which ``views`` see ``target``."""
    to = torch.stack([v.c2w[:3, 3].float().cpu() for v in views]) - target.float()  # [V, 3]
    return float(torch.asin((to @ up.float() / to.norm(dim=1).clamp_min(1e-9)).clamp(-1, 1)).median())


def _unseen_hull(pts: Tensor, fill: Tensor, renders: list, voxel: float) -> Tensor:
    """The surface no view sees, completed: samples of the convex hull of what is seen that lie away from the
    seen surface and that every view finds hidden (behind the rendered depth, or out of frame). A ball's lower
    third, seen by no camera above the table, is completed by its hull; a bowl's opening, a mug's mouth and the
    table inside a banana's curve are seen as free space by the views and carved away (space carving of the
    hull). ``renders``: what the fine fusion rendered (a crop of each view around the region the seen surface
    lies in, depth and alpha). [U, 3], one sample per voxel of hull area."""
    import trimesh
    from scipy.spatial import QhullError

    seen = torch.cat([pts, fill])
    try:
        hull = trimesh.convex.convex_hull(seen.double().numpy())
    except (QhullError, ValueError):
        return pts.new_zeros(0, 3)
    n = int(min(hull.area / voxel ** 2, 200_000))
    if n < 1:
        return pts.new_zeros(0, 3)
    samples = torch.from_numpy(np.asarray(trimesh.sample.sample_surface(hull, n, seed=0)[0])).float()
    cand = samples[_away_from(samples, seen, 2 * voxel)].numpy()  # [U, 3]
    keep = np.ones(len(cand), dtype=bool)
    for crop, depth, alpha in renders:  # (numpy: a few passes over the samples per view, on one thread)
        if not keep.any():
            break
        w2c = torch.linalg.inv(crop.c2w.float()).numpy()
        cam = cand @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        K = crop.K.float().numpy()
        uv = cam[:, :2] / np.maximum(z, 1e-6)[:, None] @ K[:2, :2].T + K[:2, 2]
        u, v = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
        inside = (z > 1e-3) & (u >= 0) & (v >= 0) & (u < crop.width) & (v < crop.height)
        uc, vc = np.clip(u, 0, crop.width - 1), np.clip(v, 0, crop.height - 1)
        a, d = alpha.numpy()[vc, uc], depth.numpy()[vc, uc]
        keep &= ~(inside & ((a < 0.5) | (d > z + 2 * voxel)))
    return torch.from_numpy(cand[keep])


def _away_from(points: Tensor, body: Tensor, dist: float) -> Tensor:
    """[P] bool: points farther than ``dist`` from every point of ``body``."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(body.double().numpy()).query(points.double().numpy(), k=1, distance_upper_bound=dist)
    return torch.from_numpy(~np.isfinite(d))


def _spacing(points: Tensor, tree=None) -> float:
    """Median distance of ``points`` [P, 3] to their nearest neighbour; ``tree``: a cKDTree over them, if at hand."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return 0.0
    tree = cKDTree(points.double().numpy()) if tree is None else tree
    d, _ = tree.query(points.double().numpy(), k=2)
    return float(np.median(d[:, 1]))
