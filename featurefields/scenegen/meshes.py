"""Procedural, vertex-coloured triangle meshes for the synthetic scenes (pure numpy, metres).

Every builder returns a :class:`Mesh` in the object's local frame: z up, origin on the supporting surface under the
object's centre (the axis of round things) (so a pose only needs a yaw and a translation). Colours are *albedo* per vertex; patterns are
deliberately mid-frequency (a few stripes or checks per object) so a small Gaussian field can learn them at
200x150. Hard edges get their own vertices so normals stay crisp; curved surfaces get analytic normals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

TAU = 2.0 * np.pi


@dataclass
class Mesh:
    vertices: np.ndarray  # [V, 3] float64 metres
    triangles: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside
    colors: np.ndarray  # [V, 3] float64 albedo in [0, 1]
    normals: np.ndarray  # [V, 3] float64 unit, outward

    def transformed(self, T: np.ndarray) -> "Mesh":
        """The same mesh moved by a rigid 4x4 transform ``T``."""
        R, t = T[:3, :3], T[:3, 3]
        return Mesh(self.vertices @ R.T + t, self.triangles.copy(), self.colors.copy(), self.normals @ R.T)

    def translated(self, t) -> "Mesh":
        return Mesh(self.vertices + np.asarray(t, float), self.triangles.copy(), self.colors.copy(), self.normals.copy())

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:  # ([3], [3]) over referenced vertices only
        used = self.vertices[np.unique(self.triangles)]
        return used.min(0), used.max(0)

    def face_areas(self) -> np.ndarray:  # [F]
        v = self.vertices[self.triangles]
        return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def concat(meshes: list[Mesh]) -> Mesh:
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
        np.concatenate([m.colors for m in meshes]),
        np.concatenate([m.normals for m in meshes]),
    )


def rest_on_ground(mesh: Mesh) -> Mesh:
    """Shift so the lowest vertex sits exactly at z = 0 (objects touch the table, never float or sink)."""
    return mesh.translated([0.0, 0.0, -mesh.bounds[0][2]])


# ----------------------------------------------------------------------------------------------------------------
# Grid surfaces
# ----------------------------------------------------------------------------------------------------------------


def _grid_mesh(P: np.ndarray, N: np.ndarray, C: np.ndarray, wrap_v: bool = False) -> Mesh:
    """Triangulate a [nu, nv] vertex grid; each triangle is wound to agree with its vertex normals.

    Zero-area triangles (poles, tips) are dropped so the ray caster never sees them.
    """
    nu, nv = P.shape[:2]
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv if wrap_v else nv - 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    j1 = (j + 1) % nv
    a, b, c, d = i * nv + j, (i + 1) * nv + j, (i + 1) * nv + j1, i * nv + j1
    F = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    V, Nv = P.reshape(-1, 3), N.reshape(-1, 3)
    return _oriented(Mesh(V.astype(np.float64), F.astype(np.int64), C.reshape(-1, 3).astype(np.float64), Nv))


def _oriented(m: Mesh) -> Mesh:
    v = m.vertices[m.triangles]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area2 = np.linalg.norm(fn, axis=1)
    keep = area2 > 1e-12
    flip = (fn * m.normals[m.triangles].sum(1)).sum(1) < 0
    F = m.triangles.copy()
    F[flip] = F[flip][:, [0, 2, 1]]
    n = m.normals / np.maximum(np.linalg.norm(m.normals, axis=1, keepdims=True), 1e-12)
    return Mesh(m.vertices, F[keep], np.clip(m.colors, 0.0, 1.0), n)


def _steps(length: float, step: float) -> int:
    return max(2, int(np.ceil(length / step)) + 1)


def polyline(points, step: float) -> np.ndarray:
    """Resample a 2D polyline (r, z) so that consecutive points are at most ``step`` apart: [K, 2]."""
    pts = np.asarray(points, float)
    out = [pts[:1]]
    for p0, p1 in zip(pts[:-1], pts[1:]):
        n = _steps(float(np.linalg.norm(p1 - p0)), step)
        s = np.linspace(0.0, 1.0, n)[1:, None]
        out.append(p0 + s * (p1 - p0))
    return np.concatenate(out)


ColorFn = Callable[..., np.ndarray]


def revolve(segments: list[np.ndarray], n_theta: int, color_fn: ColorFn) -> Mesh:
    """Surface of revolution about z from profile polylines (r, z).

    Each segment is traversed with the solid on its left (counter-clockwise in the r-z half plane), which fixes the
    outward normal. Segments meet at creases, so each gets its own vertices. ``color_fn(seg, r, z, theta)`` takes
    broadcastable arrays and returns [..., 3].
    """
    theta = TAU * np.arange(n_theta) / n_theta  # [T]
    parts = []
    for si, seg in enumerate(segments):
        seg = np.asarray(seg, float)  # [K, 2]
        t = np.gradient(seg, axis=0)
        n2 = np.stack([t[:, 1], -t[:, 0]], 1)
        n2 /= np.maximum(np.linalg.norm(n2, axis=1, keepdims=True), 1e-12)
        r, z = seg[:, 0:1], seg[:, 1:2]  # [K, 1]
        ct, st = np.cos(theta)[None], np.sin(theta)[None]  # [1, T]
        P = np.stack([r * ct, r * st, np.broadcast_to(z, (len(seg), n_theta))], -1)
        N = np.stack([n2[:, 0:1] * ct, n2[:, 0:1] * st, np.broadcast_to(n2[:, 1:2], (len(seg), n_theta))], -1)
        C = np.broadcast_to(color_fn(si, r, z, theta[None]), P.shape)
        parts.append(_grid_mesh(P, N, C, wrap_v=True))
    return concat(parts)


def tube(centers: np.ndarray, radii: np.ndarray, axis: np.ndarray, n_around: int, color_fn: ColorFn) -> Mesh:
    """A tube of varying radius along a planar curve; ``axis`` is the normal of the curve's plane.

    ``color_fn(s, phi)`` gets the arc-length fraction s [K, 1] and the angle around the tube phi [1, A]
    (phi = pi/2 points along ``axis``).
    """
    centers = np.asarray(centers, float)
    T = np.gradient(centers, axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    B = np.broadcast_to(np.asarray(axis, float) / np.linalg.norm(axis), T.shape)
    Nn = np.cross(T, B)
    Nn /= np.linalg.norm(Nn, axis=1, keepdims=True)
    phi = TAU * np.arange(n_around) / n_around
    dirs = np.cos(phi)[None, :, None] * Nn[:, None] + np.sin(phi)[None, :, None] * B[:, None]  # [K, A, 3]
    P = centers[:, None] + np.asarray(radii, float)[:, None, None] * dirs
    seglen = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seglen)]) / seglen.sum()
    C = np.broadcast_to(color_fn(s[:, None], phi[None]), P.shape)
    return _grid_mesh(P, dirs, C, wrap_v=True)


BOX_FACES = {  # name: (normal, u axis, v axis); u x v = normal so the grid is wound outward
    "+x": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "-x": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "+y": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
    "-y": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    "+z": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    "-z": ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
}


def box(size, step: float | dict[str, float], color_fn: ColorFn, center=(0.0, 0.0, None),
        faces=tuple(BOX_FACES)) -> Mesh:
    """Axis-aligned box, bottom at z = 0 unless ``center[2]`` is given; ``color_fn(face, p)`` with p [..., 3] local.

    Coordinates passed to ``color_fn`` are relative to the box's own bottom-centre, so patterns move with the box.
    ``step`` (vertex spacing) may be a dict per face name, to keep unseen or plain faces coarse.
    """
    size = np.asarray(size, float)
    half = size / 2
    c = np.array([center[0], center[1], half[2] if center[2] is None else center[2]], float)
    parts = []
    for name in faces:
        n, u, v = (np.asarray(a, float) for a in BOX_FACES[name])
        lu, lv = float(np.abs(u) @ size), float(np.abs(v) @ size)
        st = step[name] if isinstance(step, dict) else step
        a = np.linspace(-0.5, 0.5, _steps(lu, st))[:, None, None] * lu * u
        b = np.linspace(-0.5, 0.5, _steps(lv, st))[None, :, None] * lv * v
        local = n * half + a + b  # [nu, nv, 3] around the box centre
        P = local + c
        rel = local + np.array([0.0, 0.0, half[2]])
        C = np.broadcast_to(color_fn(name, rel), P.shape)
        parts.append(_grid_mesh(P, np.broadcast_to(n, P.shape), C))
    return concat(parts)


# ----------------------------------------------------------------------------------------------------------------
# Colour helpers
# ----------------------------------------------------------------------------------------------------------------


def smoothstep(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, float) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def mix(a, b, t):
    """Blend colours a -> b by weight t ([...] broadcast to [..., 3])."""
    t = np.asarray(t, float)[..., None]
    return (1.0 - t) * np.asarray(a, float) + t * np.asarray(b, float)


def band(x, lo: float, hi: float, soft: float):
    """1 inside [lo, hi], 0 outside, with soft edges of width ``soft`` (anti-aliased stripes)."""
    return smoothstep(lo - soft, lo + soft, x) * (1.0 - smoothstep(hi - soft, hi + soft, x))


def periodic_stripes(x, period: float, duty: float = 0.5, soft: float = 0.1):
    """Soft square wave in [0, 1] with the given period; ``soft`` is the edge width as a fraction of the period."""
    f = np.mod(np.asarray(x, float) / period, 1.0)
    return band(f, 0.0, duty, soft) + band(f, 1.0, 1.0 + duty, soft)


def solid(rgb) -> ColorFn:
    """A uniform colour; the builders broadcast it over the vertex grid."""
    rgb = np.asarray(rgb, float)
    return lambda *args: rgb


# ----------------------------------------------------------------------------------------------------------------
# Objects (local frame: z up, origin on the table under the object's centre, metres)
# ----------------------------------------------------------------------------------------------------------------


def make_mug() -> Mesh:
    """Ceramic mug, 9.5 cm tall, 8.2 cm across, blue with a white band, cream inside, with a C handle (+x)."""
    R, H, wall, base = 0.041, 0.095, 0.004, 0.006
    step = 0.004
    segs = [
        polyline([(0.0, 0.0), (R - 0.002, 0.0)], step),
        polyline([(R - 0.002, 0.0), (R, 0.002), (R, H)], step),
        polyline([(R, H), (R - wall, H)], 0.002),
        polyline([(R - wall, H), (R - wall, base)], step),
        polyline([(R - wall, base), (0.0, base)], step),
    ]
    blue, white, cream = (0.16, 0.33, 0.72), (0.93, 0.93, 0.9), (0.92, 0.88, 0.78)

    def color(seg, r, z, th):
        if seg == 1:
            return mix(blue, white, band(z, 0.045, 0.062, 0.003) + 0 * th)
        if seg == 2:
            return np.asarray(white)
        if seg in (3, 4):
            return np.asarray(cream)
        return np.asarray(blue)

    body = revolve(segs, 64, color)
    a = np.linspace(-np.pi / 2, np.pi / 2, 33)
    xc, zc, ax, az = R - 0.003, 0.050, 0.028, 0.027
    centers = np.stack([xc + ax * np.cos(a), np.zeros_like(a), zc + az * np.sin(a)], 1)
    handle = tube(centers, np.full(len(a), 0.0055), (0.0, 1.0, 0.0), 16, solid(blue))
    return rest_on_ground(concat([body, handle]))


def make_bowl() -> Mesh:
    """Cereal bowl, 16 cm across, 6.5 cm tall: cream outside with a green band, pale sage inside."""
    R, H, Rb, t, base = 0.080, 0.065, 0.036, 0.004, 0.007
    a = np.linspace(0.0, np.pi / 2, 24)
    outer = np.stack([Rb + (R - Rb) * np.sin(a), H * (1 - np.cos(a))], 1)
    Ri, Rbi = R - t, Rb - 0.002
    inner = np.stack([Rbi + (Ri - Rbi) * np.sin(a), base + (H - base) * (1 - np.cos(a))], 1)[::-1]
    segs = [
        polyline([(0.0, 0.0), (Rb, 0.0)], 0.006),
        outer,
        polyline([(R, H), (Ri, H)], 0.002),
        inner,
        polyline([(Rbi, base), (0.0, base)], 0.006),
    ]
    cream, green, sage = (0.93, 0.89, 0.8), (0.2, 0.55, 0.35), (0.78, 0.86, 0.74)

    def color(seg, r, z, th):
        if seg == 1:
            wave = 0.046 + 0.004 * np.sin(6 * th)
            return mix(cream, green, band(z - wave, -0.006, 0.006, 0.002))
        if seg in (3, 4):
            return mix(sage, cream, smoothstep(0.0, Ri, r) * 0.6 + 0 * th)
        return np.asarray(cream)

    return rest_on_ground(revolve(segs, 72, color))


def make_cereal_box() -> Mesh:
    """Cereal box 19 x 7 x 28 cm: yellow front/back with broad red diagonal stripes and a blue top band."""
    sx, sy, sz = 0.19, 0.07, 0.28
    yellow, red, blue, white, card = (0.96, 0.78, 0.18), (0.85, 0.2, 0.15), (0.15, 0.3, 0.7), (0.95, 0.95, 0.92), (0.7, 0.6, 0.45)

    def color(face, p):
        x, z = p[..., 0], p[..., 2]
        if face in ("+y", "-y"):
            c = mix(yellow, red, periodic_stripes(x + 0.6 * z, 0.085, 0.4, 0.12))
            c = mix(c, blue, smoothstep(0.225, 0.235, z))
            disc = 1.0 - smoothstep(0.028, 0.034, np.hypot(x - 0.0, z - 0.255))
            return mix(c, white, disc)
        if face in ("+x", "-x"):
            return mix(blue, white, periodic_stripes(z, 0.07, 0.3, 0.12))
        return np.asarray(card)

    return box((sx, sy, sz), 0.008, color)


def make_ball() -> Mesh:
    """Toy ball, 13 cm across, orange/white checker of 8 x 4 patches (a football-like pattern, mid-frequency)."""
    R = 0.065
    a = np.linspace(0.0, np.pi, 41)
    prof = np.stack([R * np.sin(a), R - R * np.cos(a)], 1)
    orange, white = (0.95, 0.5, 0.1), (0.95, 0.94, 0.9)

    def color(seg, r, z, th):
        lat = np.arccos(np.clip((z - R) / R, -1.0, 1.0))  # polar angle 0..pi
        s1 = np.sin(4 * th)  # 8 longitudinal patches
        s2 = np.cos(4 * lat)  # 4 latitudinal bands
        return mix(orange, white, smoothstep(-0.25, 0.25, s1 * s2))

    return rest_on_ground(revolve([prof], 64, color))


def make_bottle() -> Mesh:
    """Green glass bottle, 25 cm tall, 7 cm across, with a cream label band (red stripe) and a red cap."""
    R, rn = 0.035, 0.013
    step = 0.006
    a = np.linspace(0.0, np.pi / 2, 12)
    shoulder = np.stack([rn + (R - rn) * np.cos(a), 0.17 + 0.04 * np.sin(a)], 1)
    segs = [
        polyline([(0.0, 0.0), (R, 0.0)], step),
        np.concatenate([polyline([(R, 0.0), (R, 0.17)], step)[:-1], shoulder, polyline([(rn, 0.21), (rn, 0.232)], step)[1:]]),
        polyline([(rn, 0.232), (rn + 0.002, 0.232)], 0.002),
        polyline([(rn + 0.002, 0.232), (rn + 0.002, 0.25)], 0.004),
        polyline([(rn + 0.002, 0.25), (0.0, 0.25)], 0.004),
    ]
    green, cream, red = (0.18, 0.5, 0.28), (0.93, 0.9, 0.8), (0.8, 0.15, 0.12)

    def color(seg, r, z, th):
        if seg == 1:
            c = mix(green, cream, band(z, 0.07, 0.14, 0.003) + 0 * th)
            return mix(c, red, band(z, 0.098, 0.112, 0.002))
        if seg >= 2:
            return np.asarray(red)
        return np.asarray(green)

    return rest_on_ground(revolve(segs, 48, color))


def make_can() -> Mesh:
    """Soda can 6.6 cm x 12.2 cm: red with a white wave band, silver top and bottom."""
    R, H = 0.033, 0.122
    segs = [
        polyline([(0.0, 0.0), (R - 0.003, 0.0), (R, 0.004)], 0.006),
        polyline([(R, 0.004), (R, H - 0.008)], 0.004),
        polyline([(R, H - 0.008), (R - 0.006, H), (0.0, H)], 0.004),
    ]
    red, white, silver = (0.8, 0.1, 0.12), (0.95, 0.95, 0.95), (0.72, 0.73, 0.76)

    def color(seg, r, z, th):
        if seg == 1:
            wave = 0.06 + 0.012 * np.sin(2 * th)
            return mix(red, white, band(z - wave, -0.008, 0.008, 0.003))
        return np.asarray(silver)

    return rest_on_ground(revolve(segs, 48, color))


def make_banana() -> Mesh:
    """Banana lying on its side: a curved tapered tube, 19 cm along the arc, yellow with brown tips."""
    K, Rc, span, rmax = 49, 0.12, np.deg2rad(90.0), 0.018
    ang = np.linspace(-span / 2, span / 2, K)
    centers = np.stack([Rc * np.sin(ang), Rc * (1 - np.cos(ang)) - Rc * (1 - np.cos(span / 2)) / 2, np.full(K, rmax)], 1)
    s = np.linspace(0.0, 1.0, K)
    radii = rmax * np.sin(np.pi * s) ** 0.6
    yellow, green, brown = (0.95, 0.8, 0.2), (0.65, 0.72, 0.2), (0.35, 0.22, 0.1)

    def color(s, phi):
        c = mix(yellow, green, smoothstep(0.7, 0.95, s) * 0.7 + 0 * phi)
        return mix(c, brown, 1.0 - band(s, 0.06, 0.94, 0.025) + 0 * phi)

    return rest_on_ground(tube(centers, radii, (0.0, 0.0, 1.0), 20, color))


def make_book() -> Mesh:
    """Hardback book 24 x 17 x 3.2 cm lying flat: blue covers (gold band, white title box), cream page block."""
    sx, sy, sz, t = 0.24, 0.17, 0.032, 0.003
    blue, gold, white, cream = (0.12, 0.22, 0.5), (0.85, 0.68, 0.25), (0.92, 0.92, 0.88), (0.93, 0.9, 0.8)

    def cover(face, p):
        x, y = p[..., 0], p[..., 1]
        c = mix(blue, gold, band(y, -0.045, -0.025, 0.004))
        return mix(c, white, band(x, -0.06, 0.07, 0.004) * band(y, 0.015, 0.055, 0.004))

    def spine(face, p):
        return mix(blue, gold, band(p[..., 2], 0.013, 0.019, 0.002) * band(p[..., 1], -0.06, 0.06, 0.004))

    inset = 0.004
    parts = [
        box((sx, sy, t), 0.008, cover),
        box((sx, sy, t), 0.008, cover, center=(0.0, 0.0, sz - t / 2)),
        box((sx - inset - t, sy - 2 * inset, sz - 2 * t), 0.008, solid(cream), center=(t / 2 - inset / 2 + 0.0, 0.0, sz / 2),
            faces=("+x", "+y", "-y")),
        box((t, sy, sz - 2 * t), 0.008, spine, center=(-sx / 2 + t / 2, 0.0, sz / 2), faces=("-x", "+y", "-y")),
    ]
    return concat(parts)


OBJECT_BUILDERS: dict[str, Callable[[], Mesh]] = {
    "mug": make_mug,
    "bowl": make_bowl,
    "box": make_cereal_box,
    "ball": make_ball,
    "bottle": make_bottle,
    "can": make_can,
    "banana": make_banana,
    "book": make_book,
}


# Named parts of objects, for part queries ("mug handle") and their ground truth: object label -> [(part label,
# rule)], each rule mapping triangle centroids in the object's local frame ([F, 3], metres) to a bool mask.
OBJECT_PARTS: dict[str, list[tuple[str, Callable[[np.ndarray], np.ndarray]]]] = {
    "mug": [("mug handle", lambda c: np.hypot(c[:, 0], c[:, 1]) > 0.0415)],  # outside the body's 4.1 cm radius
    "bottle": [("bottle neck", lambda c: c[:, 2] > 0.2)],  # above the shoulder's middle: neck and cap
}
PART_LABELS = [part for parts in OBJECT_PARTS.values() for part, _ in parts]


def part_masks(label: str, mesh: Mesh) -> list[tuple[str, np.ndarray]]:
    """[(part label, [F] bool over the mesh's triangles)] for an object in its local frame (none for most)."""
    centroids = mesh.vertices[mesh.triangles].mean(1)
    return [(part, rule(centroids)) for part, rule in OBJECT_PARTS.get(label, [])]


def submesh(mesh: Mesh, tri_mask: np.ndarray) -> Mesh:
    """The triangles ``tri_mask`` selects, with only the vertices they use."""
    tris = mesh.triangles[tri_mask]
    used, inverse = np.unique(tris, return_inverse=True)
    return Mesh(mesh.vertices[used], inverse.reshape(-1, 3).astype(np.int64), mesh.colors[used], mesh.normals[used])


# ----------------------------------------------------------------------------------------------------------------
# Table and room (world frame: floor at z = 0)
# ----------------------------------------------------------------------------------------------------------------

TABLE_SIZE = (1.0, 0.7)
TABLE_HEIGHT = 0.75
TABLE_THICKNESS = 0.03


def wood(x, y, light=(0.74, 0.54, 0.33), dark=(0.5, 0.32, 0.17)):
    """Wood-like grain along x: warped soft stripes (period ~6 cm) plus a slow brightness drift."""
    warp = 0.010 * np.sin(TAU * x / 0.41 + 1.3) + 0.005 * np.sin(TAU * x / 0.19 + 0.4) + 0.008 * np.sin(TAU * (x + y) / 0.33)
    g = 0.5 + 0.5 * np.sin(TAU * (y + warp) / 0.06)
    c = mix(dark, light, 0.45 + 0.55 * g**2)
    return c * (0.93 + 0.07 * np.sin(TAU * x / 0.6 + 2.0) * np.cos(TAU * y / 0.5))[..., None]


def make_table() -> Mesh:
    """Wooden table, 1.0 x 0.7 m, top surface at z = 0.75 m, four square legs."""
    sx, sy = TABLE_SIZE
    top_z0 = TABLE_HEIGHT - TABLE_THICKNESS

    def top_color(face, p):
        if face == "+z":
            return wood(p[..., 0], p[..., 1])
        return wood(p[..., 0], p[..., 1] + p[..., 2], light=(0.6, 0.42, 0.25), dark=(0.45, 0.29, 0.16))

    steps = {f: 0.05 for f in BOX_FACES} | {"+z": 0.01}
    top = box((sx, sy, TABLE_THICKNESS), steps, top_color, center=(0.0, 0.0, top_z0 + TABLE_THICKNESS / 2))
    leg = 0.05
    legs = []
    for ix in (-1, 1):
        for iy in (-1, 1):
            c = (ix * (sx / 2 - 0.06), iy * (sy / 2 - 0.06), top_z0 / 2)
            legs.append(box((leg, leg, top_z0), 0.05, solid((0.42, 0.27, 0.15)), center=c, faces=("+x", "-x", "+y", "-y")))
    return concat([top] + legs)


ROOM_SIZE = (4.0, 4.0, 2.6)


def make_room() -> Mesh:
    """Closed room around the table (normals pointing inward): soft-tiled floor, pastel walls with gradients."""
    sx, sy, sz = ROOM_SIZE

    def color(face, p):
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        if face == "+z":  # the box's top face is the ceiling (normal flipped below)
            return np.asarray((0.9, 0.9, 0.88))
        if face == "-z":  # floor: large soft tiles, low contrast
            tiles = np.sin(np.pi * x / 0.5) * np.sin(np.pi * y / 0.5)
            return mix((0.62, 0.6, 0.56), (0.7, 0.68, 0.63), smoothstep(-0.6, 0.6, tiles))
        wall = {"+x": (0.72, 0.8, 0.86), "-x": (0.86, 0.8, 0.7), "+y": (0.76, 0.84, 0.74), "-y": (0.84, 0.76, 0.8)}[face]
        along = y if face in ("+x", "-x") else x
        shade = 0.8 + 0.2 * smoothstep(0.0, 2.0, z) + 0.04 * np.sin(TAU * along / 3.0)
        return np.asarray(wall) * shade[..., None]

    m = box((sx, sy, sz), {f: 0.25 for f in BOX_FACES} | {"-z": 0.1, "+z": 1.0}, color)
    # Seen from inside: flip normals and winding.
    return Mesh(m.vertices, m.triangles[:, [0, 2, 1]].copy(), m.colors, -m.normals)


# ----------------------------------------------------------------------------------------------------------------
# PLY I/O (binary little endian; deterministic bytes)
# ----------------------------------------------------------------------------------------------------------------


def to_uint8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(colors) * 255.0), 0, 255).astype(np.uint8)


def write_mesh_ply(path: str | Path, mesh: Mesh, comment: str = "") -> None:
    """Vertices (float32 xyz, normals) with uchar colours and int32 faces; readable by open3d and plyfile."""
    V = len(mesh.vertices)
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
                    ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v = np.empty(V, vdt)
    for k, name in enumerate("xyz"):
        v[name] = mesh.vertices[:, k]
        v["n" + name] = mesh.normals[:, k]
    c = to_uint8(mesh.colors)
    v["red"], v["green"], v["blue"] = c[:, 0], c[:, 1], c[:, 2]
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    f = np.empty(len(mesh.triangles), fdt)
    f["n"] = 3
    f["i"] = mesh.triangles
    header = ["ply", "format binary_little_endian 1.0"]
    if comment:
        header.append(f"comment {comment}")
    header += [f"element vertex {V}"] + [f"property float {n}" for n in ("x", "y", "z", "nx", "ny", "nz")]
    header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(v.tobytes())
        fh.write(f.tobytes())


def write_points_ply(path: str | Path, points: np.ndarray, normals: np.ndarray, colors: np.ndarray, comment: str = "") -> None:
    """Coloured point cloud (float32 xyz + normals, uchar rgb) as nerfstudio's ``ply_file_path`` expects."""
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
                   ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v = np.empty(len(points), dt)
    for k, name in enumerate("xyz"):
        v[name] = points[:, k]
        v["n" + name] = normals[:, k]
    c = to_uint8(colors)
    v["red"], v["green"], v["blue"] = c[:, 0], c[:, 1], c[:, 2]
    header = ["ply", "format binary_little_endian 1.0"]
    if comment:
        header.append(f"comment {comment}")
    header += [f"element vertex {len(v)}"] + [f"property float {n}" for n in ("x", "y", "z", "nx", "ny", "nz")]
    header += ["property uchar red", "property uchar green", "property uchar blue", "end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(v.tobytes())


def sample_surface(mesh: Mesh, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted random surface points: (points [n, 3], normals [n, 3], albedo [n, 3])."""
    areas = mesh.face_areas()
    f = rng.choice(len(areas), size=n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    over = u + v > 1
    u[over], v[over] = 1 - u[over], 1 - v[over]
    w = np.stack([1 - u - v, u, v], 1)[:, :, None]  # [n, 3, 1]
    tri = mesh.triangles[f]
    p = (mesh.vertices[tri] * w).sum(1)
    nrm = (mesh.normals[tri] * w).sum(1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    col = (mesh.colors[tri] * w).sum(1)
    return p, nrm, col
