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
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    ang = 2 * np.pi * np.arange(CONE_EDGES) / CONE_EDGES
    forces = n[None] + mu * (np.cos(ang)[:, None] * t1 + np.sin(ang)[:, None] * t2)  # [E, 3]
    torques = np.cross(point - centroid, forces) / scale
    spin = np.stack([np.zeros(3), np.zeros(3)]), np.stack([n, -n]) * (mu * torsion / scale)
    return np.concatenate([np.concatenate([forces, torques], 1), np.concatenate(spin, 1)])


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
