"""``field.grasps("mug", gripper=PANDA, k=10)``: ranked parallel-jaw grasps of what a phrase names, world frame.

No demonstrations and no learned grasp network: the grasps come from the located surface itself.

1. Antipodal pairs: seed contacts on the instance's surface; close along the seed's inward normal (and a few
   directions inside its friction cone); the second contact is where that line leaves the surface (the nearest
   surface point on the line whose normal faces along it); keep pairs whose closing line lies inside both
   friction cones and whose width fits the gripper.
2. Quality: force closure and Ferrari-Canny epsilon for soft-finger contacts, torques about the instance's
   centroid (:mod:`.quality`).
3. Poses: approach directions around the closing axis (every 30 degrees), tried in order of alignment with the
   approach constraint ("top", "any", or a vector) and inside the reachable workspace box; each pair keeps the
   first collision-free one.
4. Collisions: the open gripper's finger and palm boxes (the palm grown by 1 cm on every side), at the grasp and
   along the last 10 cm of its approach, against the fused surroundings (support, neighbours, the object itself)
   and the support plane as a solid, with FCL (:mod:`.collision`). The pairs are tried best bound first (their
   score with the best alignment any approach could have) and the search stops once k distinct grasps beat every
   pair left: the same top k as trying every pair.
5. Ranking: 0.5 epsilon (relative to the best pair) + 0.3 centring (how close the grasp is to the centroid,
   Gaussian with sigma 3 cm) + 0.2 approach alignment; near-duplicates (within 1 cm and 15 degrees of a better
   grasp) are dropped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..fields.base import FeatureField
from .collision import SceneCollider
from .gripper import ParallelJaw, load_gripper
from .locate import Located, locate
from .quality import cross, ferrari_canny_many

APPROACH_STEP_DEG = 30
RETREAT = (0.03, 0.06, 0.10)  # metres back along the approach checked for collisions as well
# metres a gripper part is grown by on every side against the fused scene: the planner prefers grasps close to the
# centroid, i.e. as deep as the fused surface lets the palm go, and without a margin the millimetres that surface
# is off decide whether the palm hits the real object (the cereal box's top grasp did, from its end). The fingers
# get none: they must pass within the opening's clearance of the object, and 4 mm took every grasp of the box.
MARGINS = {"palm": 0.01}
WEIGHTS = {"epsilon": 0.5, "centring": 0.3, "alignment": 0.2}
MAX_QUALITY_PAIRS = 96  # contact pairs whose wrench space is computed (the most antipodal, most central first)
CENTRING_SIGMA = 0.03
FIT_NEIGHBOURS = 128  # surface points checked around each finger of a pair (_fits_between_fingers)


@dataclass
class Grasp:
    """A parallel-jaw grasp in the world frame.

    ``pose`` [4, 4]: columns x (closing direction, first finger towards the second), y = z x x, z (approach
    direction, from the palm towards the object), and the origin midway between the two contacts (the
    fingertips reach ``gripper.tip_depth`` past it). ``width``: distance between the contacts; ``opening``: how
    far apart the fingers approach."""

    pose: Tensor
    width: float
    opening: float
    contacts: Tensor  # [2, 3]
    score: float
    scores: dict  # breakdown: epsilon, epsilon_rel, centring, alignment, antipodal_deg, force_closure
    query: str
    gripper: str
    instance: int = 0  # which located instance (0 = the best one)

    @property
    def position(self) -> Tensor:
        return self.pose[:3, 3]

    @property
    def approach(self) -> Tensor:
        return self.pose[:3, 2]

    @property
    def closing(self) -> Tensor:
        return self.pose[:3, 0]

    def to_dict(self) -> dict:
        return {"pose": self.pose.tolist(), "position": self.position.tolist(), "approach": self.approach.tolist(),
                "closing": self.closing.tolist(), "width": self.width, "opening": self.opening,
                "contacts": self.contacts.tolist(), "score": self.score, "scores": self.scores,
                "query": self.query, "gripper": self.gripper, "instance": self.instance}


class GraspResult(list):
    """A list of :class:`Grasp`, best first; when empty, ``reason`` says why. ``located``: the instances."""

    def __init__(self, items=(), reason: str = "", located: Sequence[Located] = (), timings: dict | None = None):
        super().__init__(items)
        self.reason = reason
        self.located = list(located)
        self.timings = timings or {}


@torch.no_grad()
def plan_grasps(field: FeatureField, text: str, *, gripper: ParallelJaw | str | None = None, k: int = 10,
                approach: str | Sequence[float] = "any", approach_tolerance_deg: float = 45.0,
                workspace: tuple[Sequence[float], Sequence[float]] | None = None, seeds: int = 300,
                located: Sequence[Located] | None = None, seed: int = 0, **locate_options) -> GraspResult:
    """Ranked grasps of every instance of ``text`` (see the module docstring).

    ``approach``: "any", "top" (from above, within ``approach_tolerance_deg`` of straight down), or a world
    vector to come from; ``workspace``: (lo [3], hi [3]) world box the grasp centre must lie in; ``located``:
    reuse a :func:`~.locate.locate` result."""
    t0 = time.perf_counter()
    grip = load_gripper(gripper)
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive number of grasps, not {k!r}")
    box = _check_workspace(workspace)
    found = located if located is not None else locate(field, text, **locate_options)
    t_locate = time.perf_counter() - t0
    if not found:
        return GraspResult(reason=getattr(found, "reason", f"nothing located for {text!r}"),
                           timings={"locate_s": t_locate})
    up = found[0].support.normal if found[0].support is not None else _up(field)
    prefer = _approach_vector(approach, up)
    rng = np.random.default_rng(seed)
    grasps: list[Grasp] = []
    why: list[str] = []
    for inst, loc in enumerate(found):
        g, reason = _grasps_of(loc, inst, text, grip, prefer, math.cos(math.radians(approach_tolerance_deg)), box,
                               seeds, rng, k)
        grasps += g
        if reason:
            why.append(reason)
    timings = {"locate_s": t_locate, "grasps_s": time.perf_counter() - t0 - t_locate}
    if not grasps:
        return GraspResult(reason="; ".join(why) or f"no grasp of {text!r} fits the gripper", located=found,
                           timings=timings)
    grasps.sort(key=lambda g: -g.score)
    return GraspResult(_distinct(grasps, k), located=found, timings=timings)


def _grasps_of(loc: Located, inst: int, text: str, grip: ParallelJaw, prefer: Tensor | None, cos_tol: float,
               box, seeds: int, rng, k: int) -> tuple[list[Grasp], str]:
    """An instance's grasps, at least its ``k`` best distinct ones when it has so many (with the reason why none
    when it has none)."""
    from scipy.spatial import cKDTree

    pts, nrm = loc.points.double().numpy(), loc.normals.double().numpy()
    tree = cKDTree(pts)  # one k-d tree over the instance's surface for the pair search and the finger-fit check
    pairs = antipodal_pairs(pts, nrm, grip.friction, grip.max_width - 0.002, seeds, rng, tree=tree)
    if len(pairs) == 0:
        return [], f"instance {inst}: no antipodal contact pair within the friction cone fits the " \
                   f"{grip.max_width * 100:.1f} cm opening"
    pairs = pairs[_fits_between_fingers(pairs, pts, grip, tree)]
    if len(pairs) == 0:
        return [], f"instance {inst}: no antipodal pair leaves the surface between the open fingers (at most " \
                   f"{grip.max_width * 100:.1f} cm apart)"
    centroid = loc.centroid.double().numpy()
    scale = float(np.linalg.norm(pts - centroid, axis=1).max())
    pairs = _most_promising(pairs, pts, nrm, centroid, MAX_QUALITY_PAIRS)
    eps = ferrari_canny_many(pts[pairs], -nrm[pairs], centroid, grip.friction, scale)  # [K]
    good = eps > 0
    if not good.any():
        return [], f"instance {inst}: no contact pair is force closure"
    pairs, eps = pairs[good], eps[good]
    p1, p2 = pts[pairs[:, 0]], pts[pairs[:, 1]]
    mids, widths = (p1 + p2) / 2, np.linalg.norm(p2 - p1, axis=1)
    xs = (p2 - p1) / widths[:, None]  # [K, 3] closing directions
    inside = np.ones(len(pairs), bool) if box is None else np.all((mids >= box[0]) & (mids <= box[1]), axis=1)
    centring = np.exp(-np.sum((mids - centroid) ** 2, axis=1) / (2 * CENTRING_SIGMA ** 2))
    pref = None if prefer is None else prefer.double().numpy()
    # the best alignment any approach about a closing axis x can have: sqrt(1 - (x . pref)^2)
    best_align = np.ones(len(pairs)) if pref is None else np.sqrt(np.clip(1 - (xs @ pref) ** 2, 0, 1))
    eps_rel = eps / float(eps.max())
    bound = WEIGHTS["epsilon"] * eps_rel + WEIGHTS["centring"] * centring + WEIGHTS["alignment"] * best_align
    collider = _collider(loc)
    out: list[Grasp] = []
    # Collision checks dominate: the pairs go in order of the best score they could reach, and the search stops
    # once k distinct grasps score above every pair left (the ranking they would have had from every pair).
    order = [i for i in np.argsort(-bound, kind="stable") if inside[i]]
    for n, q in enumerate(order):
        g = _first_free_grasp(pairs[q], pts, nrm, xs[q], widths[q], mids[q], eps[q], eps_rel[q], centring[q],
                              pref, cos_tol, collider, loc.support, grip, text, inst)
        if g is not None:
            out.append(g)
            rest = bound[order[n + 1]] if n + 1 < len(order) else -math.inf
            if len(_distinct(sorted((h for h in out if h.score > rest), key=lambda h: -h.score), k)) == k:
                break
    if not out:
        return [], f"instance {inst}: every force-closure grasp collides with the scene or leaves the " \
                   "approach/workspace limits"
    return out, ""


def _first_free_grasp(pair, pts, nrm, x, width, mid, e, e_rel, centring, pref, cos_tol, collider, support,
                      grip: ParallelJaw, text: str, inst: int) -> Grasp | None:
    """A contact pair's grasp: approach directions around its closing axis ``x`` (every APPROACH_STEP_DEG, best
    aligned with ``pref`` first, none beyond ``cos_tol``); the first one that collides with nothing."""
    i, j = pair
    opening = grip.opening_for(float(width))
    helper = np.array([0.0, 0.0, 1.0]) if abs(x[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b1 = cross(x, helper)
    b1 /= np.linalg.norm(b1)
    b2 = cross(x, b1)
    angles = np.radians(np.arange(0, 360, APPROACH_STEP_DEG))
    zs = np.cos(angles)[:, None] * b1 + np.sin(angles)[:, None] * b2  # [A, 3]
    align = np.ones(len(zs)) if pref is None else zs @ pref
    ys = cross(zs, np.broadcast_to(x, zs.shape))  # [A, 3]
    # the support plane first, for every approach at once (cheap: it rejects those coming from under the table)
    through = np.zeros(len(zs), bool) if support is None else _below_plane(support, grip, x, ys, zs, mid, opening)
    for a in np.argsort(-align, kind="stable"):
        if pref is not None and align[a] < cos_tol:
            return None
        if through[a]:
            continue
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, ys[a], zs[a], mid
        if collider is not None and _collides(collider, grip, pose, opening):
            continue
        anti = math.degrees(max(_angle(x, -nrm[i]), _angle(-x, -nrm[j])))
        scores = {"epsilon": float(e), "epsilon_rel": float(e_rel), "centring": float(centring),
                  "alignment": float(align[a]), "antipodal_deg": anti, "force_closure": True}
        total = (WEIGHTS["epsilon"] * scores["epsilon_rel"] + WEIGHTS["centring"] * scores["centring"]
                 + WEIGHTS["alignment"] * max(float(align[a]), 0.0))
        return Grasp(torch.from_numpy(pose).float(), float(width), opening,
                     torch.from_numpy(np.stack([pts[i], pts[j]])).float(), total, scores, text, grip.name, inst)
    return None

def antipodal_pairs(pts: np.ndarray, nrm: np.ndarray, mu: float, max_width: float, seeds: int, rng,
                    min_width: float = 0.002, perturb: int = 2, tree=None) -> np.ndarray:
    """[K, 2] indices (i, j) of contact pairs on a surface (points [P, 3], outward normals [P, 3]): from each seed
    i, the closing line runs along -n_i (and ``perturb`` random directions within half the friction cone) and j
    is the first surface point met along it (sampled every point spacing, nearest point within 1.5 spacings, via a
    k-d tree, ``tree`` if given: a scipy cKDTree over ``pts``) whose normal faces along it; both contacts must have
    the line inside their friction cones."""
    from scipy.spatial import cKDTree

    n = len(pts)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    tree = cKDTree(pts) if tree is None else tree
    spacing = float(np.median(tree.query(pts, k=2)[0][:, 1]))
    cone = math.atan(mu)
    pick = rng.choice(n, size=min(seeds, n), replace=False)
    src = np.repeat(pick, perturb + 1)
    dirs = -nrm[src]
    for r in range(perturb):  # tilted copies of each seed's normal, inside half its friction cone
        rows = np.arange(len(pick)) * (perturb + 1) + r + 1
        perp = rng.normal(size=(len(rows), 3))
        perp -= (perp * dirs[rows]).sum(1, keepdims=True) * dirs[rows]
        perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-12)
        tilted = dirs[rows] + math.tan(cone / 2) * rng.uniform(0, 1, (len(rows), 1)) * perp
        dirs[rows] = tilted / np.linalg.norm(tilted, axis=1, keepdims=True)
    ts = np.arange(min_width + spacing, max_width, spacing)  # [T]
    if len(ts) == 0:
        return np.zeros((0, 2), np.int64)
    samples = pts[src][:, None, :] + ts[None, :, None] * dirs[:, None, :]  # [R, T, 3]
    dist, j = tree.query(samples.reshape(-1, 3), k=1, distance_upper_bound=1.5 * spacing)
    found = np.isfinite(dist).reshape(len(src), len(ts))
    j = np.where(found.reshape(-1), j, 0).reshape(len(src), len(ts))
    faces = found & ((nrm[j] * dirs[:, None, :]).sum(-1) > math.cos(cone))
    hit = faces.any(1)
    first = faces.argmax(1)
    i_idx, j_idx = src[hit], j[hit, first[hit]]
    line = pts[j_idx] - pts[i_idx]
    length = np.linalg.norm(line, axis=1)
    ok = (length > min_width) & (length < max_width)
    line = line / np.maximum(length[:, None], 1e-12)
    ok &= ((line * -nrm[i_idx]).sum(1) >= math.cos(cone)) & ((-line * -nrm[j_idx]).sum(1) >= math.cos(cone))
    return np.unique(np.stack([i_idx[ok], j_idx[ok]], 1).astype(np.int64).reshape(-1, 2), axis=0)


def _fits_between_fingers(pairs: np.ndarray, pts: np.ndarray, grip: ParallelJaw, tree=None) -> np.ndarray:
    """[K] bool: whether the instance's own surface around each pair's closing line lies between the fingers
    opened for that pair, for every approach angle: no surface point within reach of a finger's face (half its
    width across, its tip's depth along any approach: a cylinder about the line) may lie between the inner and
    outer faces of either finger. A chord across a mug's body 6.8 cm long passes the friction test, but the body
    bulges to 8.2 cm just past it, into fingers opened to 8 cm: no approach angle saves it, and such central pairs
    would crowd the ones that fit (the rim, the handle) out of the pairs whose quality and collisions are
    computed (MAX_QUALITY_PAIRS)."""
    from scipy.spatial import cKDTree

    if len(pairs) == 0:
        return np.zeros(0, bool)
    p1, p2 = pts[pairs[:, 0]], pts[pairs[:, 1]]
    mid, width = (p1 + p2) / 2, np.linalg.norm(p2 - p1, axis=1)
    x = (p2 - p1) / width[:, None]  # [K, 3] closing directions
    inner = grip.opening_for_all(width) / 2  # [K] the fingers' inner faces, from the grasp centre
    outer = inner + grip.finger_thickness
    rho = math.hypot(grip.finger_width / 2, grip.tip_depth)
    # the surface points nearest each finger's slab centre (a k-d tree query for both fingers of every pair at once;
    # the FIT_NEIGHBOURS nearest reach ~1.5 cm on a 2.5 mm surface, the slab's size)
    half = (outer - inner) / 2
    # both fingers of every pair at once: rows [0, K) the finger on p1's side, [K, 2K) the one on p2's
    side = np.concatenate([-np.ones(len(pairs)), np.ones(len(pairs))])[:, None]  # [2K, 1]
    mid2, x2, inner2, outer2, half2 = (np.concatenate([a, a]) for a in (mid, x, inner, outer, half))
    centres = mid2 + side * x2 * (inner2 + half2)[:, None]  # [2K, 3] the finger slabs' centres
    dist, idx = (cKDTree(pts) if tree is None else tree).query(centres, k=min(FIT_NEIGHBOURS, len(pts)),
                                   distance_upper_bound=float(np.hypot(half, rho).max()))
    idx = idx.reshape(len(centres), -1)
    found = np.isfinite(dist.reshape(len(centres), -1))
    d = pts[np.where(found, idx, 0)] - mid2[:, None]  # [2K, k, 3]
    along = (d * x2[:, None]).sum(-1)  # [2K, k]
    perp = np.linalg.norm(d - along[..., None] * x2[:, None], axis=-1)
    t = np.abs(along)
    inside = (found & (perp <= rho) & (t >= inner2[:, None]) & (t <= outer2[:, None])).any(1)  # [2K]
    return ~(inside[:len(pairs)] | inside[len(pairs):])


def _most_promising(pairs: np.ndarray, pts: np.ndarray, nrm: np.ndarray, centroid: np.ndarray, n: int
                    ) -> np.ndarray:
    """At most ``n`` pairs, preferring small antipodal angles and midpoints near the centroid (what epsilon and
    the ranking reward), spread over the surface by taking every k-th of that order."""
    if len(pairs) <= n:
        return pairs
    line = pts[pairs[:, 1]] - pts[pairs[:, 0]]
    line /= np.linalg.norm(line, axis=1, keepdims=True)
    anti = np.maximum(np.arccos(np.clip((line * -nrm[pairs[:, 0]]).sum(1), -1, 1)),
                      np.arccos(np.clip((-line * -nrm[pairs[:, 1]]).sum(1), -1, 1)))
    off = np.linalg.norm((pts[pairs[:, 0]] + pts[pairs[:, 1]]) / 2 - centroid, axis=1)
    order = np.argsort(anti / math.radians(10) + off / CENTRING_SIGMA)
    return pairs[order[:2 * n:2]] if len(order) >= 2 * n else pairs[order[:n]]


def _collider(loc: Located) -> SceneCollider | None:
    s = loc.surroundings
    if s is None or s.mesh_vertices is None or len(s.mesh_triangles) == 0:
        return None
    return SceneCollider([(s.mesh_vertices.double().numpy(), s.mesh_triangles.numpy())])


def _collides(collider: SceneCollider, grip: ParallelJaw, pose: np.ndarray, opening: float) -> bool:
    """Whether the gripper touches the scene at ``pose`` or on the last of its approach (RETREAT)."""
    for back in (0.0,) + RETREAT:
        p = pose.copy()
        p[:3, 3] = pose[:3, 3] - back * pose[:3, 2]
        if collider.gripper_collides(grip, p, opening, MARGINS) is not None:
            return True
    return False


_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float) / 2  # [8, 3]


def _below_plane(support, grip: ParallelJaw, x: np.ndarray, ys: np.ndarray, zs: np.ndarray, mid: np.ndarray,
                 opening: float) -> np.ndarray:
    """[A] bool: whether any corner of a gripper box goes through the support (a solid below its plane) at the
    grasp or on its approach (RETREAT), for grasp frames (x, ys [A, 3], zs [A, 3]) centred at ``mid``."""
    n, d = support.normal.double().numpy(), float(support.offset)
    corners = np.concatenate([c + _CORNERS * (e + 2 * MARGINS.get(name, 0.0))
                              for name, c, e in grip.boxes(opening)])  # [8 B, 3] grasp frame
    height = corners[:, :1] * float(x @ n) + corners[:, 1:2] * (ys @ n)[None] + corners[:, 2:] * (zs @ n)[None]
    lowest = height.min(0) + float(mid @ n) + d  # [A] at the grasp; backing off moves it by -back (z . n)
    back = np.asarray((0.0,) + RETREAT)
    return ((lowest[:, None] - back[None] * (zs @ n)[:, None]) < 0.0).any(1)

def _distinct(grasps: list[Grasp], k: int, dist: float = 0.01, deg: float = 15.0) -> list[Grasp]:
    """The best grasp per place: later ones within ``dist`` and ``deg`` of the closing axis of a kept one are the
    same contacts from another approach, and the top k should offer different contacts."""
    keep: list[Grasp] = []
    for g in grasps:
        if all(float((g.position - h.position).norm()) > dist or
               _angle(g.closing.double().numpy(), h.closing.double().numpy()) > math.radians(deg) for h in keep):
            keep.append(g)
        if len(keep) == k:
            break
    return keep


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    return math.acos(max(-1.0, min(1.0, c)))


def _approach_vector(approach, up: Tensor) -> Tensor | None:
    if isinstance(approach, str):
        key = approach.strip().lower()
        if key == "any":
            return None
        if key == "top":
            return -up.float()
        raise ConfigError(f"approach must be 'any', 'top' or a vector x,y,z, not {approach!r}")
    v = torch.as_tensor(list(approach), dtype=torch.float32)
    if v.shape != (3,) or not bool(torch.isfinite(v).all()) or float(v.norm()) < 1e-9:
        raise ConfigError(f"an approach vector is three finite numbers, not all zero: {list(approach)}")
    return v / v.norm()


def _check_workspace(workspace):
    if workspace is None:
        return None
    try:
        lo, hi = (np.asarray(w, float).reshape(3) for w in workspace)
    except (TypeError, ValueError):
        raise ConfigError(f"a workspace is two points lo, hi of three numbers each, not {workspace!r}") from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
        raise ConfigError(f"workspace must have lo < hi on every axis: {lo.tolist()} .. {hi.tolist()}")
    return lo, hi


def _up(field: FeatureField) -> Tensor:
    from .geometry import camera_up

    return camera_up(torch.stack([v.c2w for v in field.views("train")]).cpu())
