"""Deterministic CPU rendering of vertex-coloured meshes with open3d's Embree ray caster.

Why not a rasteriser: ``open3d.t.geometry.RaycastingScene`` needs no display or GPU, gives the same answer on every
run and machine, and hands back exact hit distances, triangle ids and barycentrics, from which depth, normals,
semantic and instance masks follow directly. Shading is Lambert + ambient from one fixed, slightly soft
directional light with ray-traced shadows; it depends on the surface point only (no view-dependent effects), which
is what a Gaussian field with plain RGB colours can represent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from .meshes import Mesh, concat


@dataclass
class Part:
    """A mesh already in the world frame, with the labels its pixels get."""

    name: str
    mesh: Mesh
    semantic: int
    instance: int
    casts_shadow: bool = True
    tri_semantic: np.ndarray | None = None  # [F] per-triangle class (named parts of an object), else `semantic`


@dataclass
class RenderedView:
    rgb: np.ndarray  # [H, W, 3] uint8, 2x2 supersampled and box-filtered
    depth_mm: np.ndarray  # [H, W] uint16 z-depth in millimetres, 0 = no hit
    normals: np.ndarray  # [H, W, 3] uint8 world normals as (n + 1) / 2 * 255, facing the camera; 0 = no hit
    semantic: np.ndarray  # [H, W] uint8 class index
    instance: np.ndarray  # [H, W] uint8 instance id, 0 = background / no hit
    depth: np.ndarray  # [H, W] float64 z-depth in metres (unquantised), 0 = no hit


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Renderer:
    """Ray-cast renderer for a fixed set of parts; create once per scene, then :meth:`render` each camera."""

    def __init__(
        self,
        parts: list[Part],
        light_dir=(-0.35, 0.45, 1.0),
        ambient: float = 0.36,
        sky: float = 0.08,
        diffuse: float = 0.66,
        shadow_samples: int = 8,
        light_radius_deg: float = 3.0,
    ) -> None:
        self.parts = parts
        mesh = concat([p.mesh for p in parts])
        self.vertices, self.triangles = mesh.vertices, mesh.triangles
        self.colors, self.normals = mesh.colors, mesh.normals
        self.tri_semantic = np.concatenate([
            np.full(len(p.mesh.triangles), p.semantic, np.uint8) if p.tri_semantic is None
            else np.asarray(p.tri_semantic, np.uint8) for p in parts])
        self.tri_instance = np.concatenate([np.full(len(p.mesh.triangles), p.instance, np.uint8) for p in parts])
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(self.vertices.astype(np.float32)), o3d.core.Tensor(self.triangles.astype(np.uint32))
        )
        casters = [p.mesh for p in parts if p.casts_shadow]
        self.shadow_scene = o3d.t.geometry.RaycastingScene()
        if casters:
            m = concat(casters)
            self.shadow_scene.add_triangles(
                o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.triangles.astype(np.uint32))
            )
        # A small disc of light directions around the main one gives soft, alias-free shadow edges.
        L = _unit(light_dir)
        e1 = _unit(np.cross(L, [0.0, 0.0, 1.0]) if abs(L[2]) < 0.99 else np.cross(L, [1.0, 0.0, 0.0]))
        e2 = np.cross(L, e1)
        rad = np.tan(np.deg2rad(light_radius_deg))
        k = np.arange(shadow_samples)
        ring = np.sqrt((k + 0.5) / shadow_samples)[:, None] * rad  # area-uniform radii
        ang = k * np.pi * (3.0 - np.sqrt(5.0))  # golden-angle spiral, fixed
        self.light_dirs = _unit(L + ring * (np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2))  # [S, 3]
        self.ambient, self.sky, self.diffuse = ambient, sky, diffuse

    # -- geometry -----------------------------------------------------------------------------------------------

    def trace(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        """Cast rays (dirs need not be unit; t is in units of |dir|). Misses have tri = -1 and t = 0."""
        rays = np.concatenate([origins, dirs], 1).astype(np.float32)
        out = self.scene.cast_rays(o3d.core.Tensor(rays))
        t = out["t_hit"].numpy().astype(np.float64)
        tri = out["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t)
        tri[~hit] = -1
        t[~hit] = 0.0
        uv = out["primitive_uvs"].numpy().astype(np.float64)
        return {"t": t, "tri": tri, "hit": hit, "uv": uv}

    def surface(self, origins, dirs, h) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hit points, interpolated normals (turned to face the ray) and albedo, for hit rays only: [M, 3] each."""
        m = h["hit"]
        tri = self.triangles[h["tri"][m]]  # [M, 3]
        u, v = h["uv"][m, 0], h["uv"][m, 1]
        w = np.stack([1.0 - u - v, u, v], 1)[:, :, None]
        p = origins[m] + h["t"][m, None] * dirs[m]
        n = _unit((self.normals[tri] * w).sum(1))
        n = np.where(((n * dirs[m]).sum(1) > 0)[:, None], -n, n)
        alb = (self.colors[tri] * w).sum(1)
        return p, n, alb

    # -- shading ------------------------------------------------------------------------------------------------

    def shade(self, points: np.ndarray, normals: np.ndarray, albedo: np.ndarray) -> np.ndarray:
        """View-independent radiance [M, 3] in [0, 1]: albedo * (ambient + sky * n_z + diffuse * shadowed Lambert)."""
        S = len(self.light_dirs)
        cos = normals @ self.light_dirs.T  # [M, S]
        lit = cos > 0
        vis = np.zeros_like(cos)
        idx_p, idx_l = np.nonzero(lit)
        if len(idx_p):
            o = points[idx_p] + 1e-3 * normals[idx_p]
            rays = np.concatenate([o, self.light_dirs[idx_l]], 1).astype(np.float32)
            occ = self.shadow_scene.test_occlusions(o3d.core.Tensor(rays)).numpy()
            vis[idx_p, idx_l] = (~occ).astype(np.float64)
        direct = (np.where(lit, cos, 0.0) * vis).sum(1) / S
        light = self.ambient + self.sky * normals[:, 2] + self.diffuse * direct
        return np.clip(albedo * light[:, None], 0.0, 1.0)

    # -- cameras ------------------------------------------------------------------------------------------------

    @staticmethod
    def camera_rays(c2w_cv: np.ndarray, K: np.ndarray, width: int, height: int, ss: int = 1):
        """Rays through sub-pixel centres; ``dirs`` have unit camera-z so ray t equals z-depth. [H*ss*W*ss, 3] each.

        Row-major over (v, sub-v, u, sub-u) with pixel centres at (u + 0.5, v + 0.5).
        """
        off = (np.arange(ss) + 0.5) / ss
        us = (np.arange(width)[:, None] + off[None]).ravel()  # [W*ss]
        vs = (np.arange(height)[:, None] + off[None]).ravel()  # [H*ss]
        uu, vv = np.meshgrid(us, vs)
        d_cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
        dirs = d_cam @ c2w_cv[:3, :3].T
        origins = np.broadcast_to(c2w_cv[:3, 3], dirs.shape).copy()
        return origins, dirs

    def render(self, c2w_cv: np.ndarray, K: np.ndarray, width: int, height: int, supersample: int = 2) -> RenderedView:
        ss = supersample
        o, d = self.camera_rays(c2w_cv, K, width, height, ss)
        h = self.trace(o, d)
        rgb = np.zeros((len(o), 3))
        p, n, alb = self.surface(o, d, h)
        rgb[h["hit"]] = self.shade(p, n, alb)
        rgb = rgb.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
        rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

        # Geometry buffers come from the exact pixel centres, not from a blend of sub-samples.
        o, d = self.camera_rays(c2w_cv, K, width, height, 1)
        h = self.trace(o, d)
        hit = h["hit"]
        depth = h["t"]
        depth_mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
        _, n, _ = self.surface(o, d, h)
        nrm = np.zeros((len(o), 3), np.uint8)
        nrm[hit] = np.clip(np.round((n + 1.0) * 0.5 * 255.0), 0, 255).astype(np.uint8)
        tri = np.where(hit, h["tri"], 0)
        sem = np.where(hit, self.tri_semantic[tri], 0).astype(np.uint8)
        inst = np.where(hit, self.tri_instance[tri], 0).astype(np.uint8)
        return RenderedView(
            rgb=rgb8,
            depth_mm=depth_mm.reshape(height, width),
            normals=nrm.reshape(height, width, 3),
            semantic=sem.reshape(height, width),
            instance=inst.reshape(height, width),
            depth=depth.reshape(height, width),
        )
