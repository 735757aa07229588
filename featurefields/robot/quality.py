"""Grasp quality: force closure and the Ferrari-Canny epsilon measure for soft-finger contacts.

Each contact can push along its inward normal within a Coulomb friction cone (8 edges) and, being a soft finger
pad, resist a torsional moment about the normal up to ``torsion`` times the normal force. Torques are about the
object's centroid, divided by a characteristic length (the object's radius) so forces and torques are comparable.
The grasp is force closure when the origin lies inside the convex hull of the contact wrenches, and its epsilon
is the radius of the largest ball around the origin inside that hull (Ferrari and Canny, 1992): the smallest
disturbance wrench, per unit of total normal force, that the grasp can just resist. No maintained Python library
computes it (Dex-Net's is unmaintained), so it is written here on scipy's Qhull.
"""
from __future__ import annotations

import numpy as np

CONE_EDGES = 8
TORSION = 0.005  # metres: the torsional friction of a pad ~ mu x its effective contact radius


def contact_wrenches(point: np.ndarray, inward: np.ndarray, centroid: np.ndarray, mu: float, scale: float,
                     torsion: float = TORSION) -> np.ndarray:
    """[CONE_EDGES + 2, 6] wrenches a contact can apply per unit normal force: friction-cone edges and the two
    torsional moments of a soft finger."""
    n = inward / np.linalg.norm(inward)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = cross(n, helper)
    t1 /= np.linalg.norm(t1)
    t2 = cross(n, t1)
    forces = n[None] + mu * (_CONE_COS[:, None] * t1 + _CONE_SIN[:, None] * t2)  # [E, 3]
    torques = cross(point - centroid, forces) / scale
    out = np.zeros((CONE_EDGES + 2, 6))
    out[:CONE_EDGES, :3], out[:CONE_EDGES, 3:] = forces, torques
    out[CONE_EDGES, 3:], out[CONE_EDGES + 1, 3:] = n * (mu * torsion / scale), -n * (mu * torsion / scale)
    return out


_CONE_COS = np.cos(2 * np.pi * np.arange(CONE_EDGES) / CONE_EDGES)
_CONE_SIN = np.sin(2 * np.pi * np.arange(CONE_EDGES) / CONE_EDGES)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b for [3] or [K, 3] operands (np.cross costs more than the sum itself on arrays this small)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def ferrari_canny(points: np.ndarray, inward: np.ndarray, centroid: np.ndarray, mu: float, scale: float,
                  torsion: float = TORSION) -> float:
    """Epsilon quality of contacts ``points`` [C, 3] pushing along ``inward`` [C, 3]; 0 if not force closure."""
    from scipy.spatial import ConvexHull, QhullError

    w = np.concatenate([contact_wrenches(p, n, centroid, mu, scale, torsion) for p, n in zip(points, inward)])
    try:
        hull = ConvexHull(w)
    except (QhullError, ValueError):  # the wrenches span less than 6 dimensions: no closure
        return 0.0
    # facets: normal . x + offset <= 0 inside; the origin's distance to each facet is -offset
    dist = -hull.equations[:, -1]
    return float(dist.min()) if bool((dist > 1e-9).all()) else 0.0


def ferrari_canny_many(points: np.ndarray, inward: np.ndarray, centroid: np.ndarray, mu: float, scale: float,
                       torsion: float = TORSION) -> np.ndarray:
    """[K] epsilon of K grasps' contacts ``points`` [K, C, 3] pushing along ``inward`` [K, C, 3], on as many
    threads as PyTorch uses (Qhull releases the GIL: a 6-D hull of 20 wrenches takes ~3 ms)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def one(k: int) -> float:
        return ferrari_canny(points[k], inward[k], centroid, mu, scale, torsion)

    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        return np.array(list(pool.map(one, range(len(points)))), dtype=float)
