"""Deterministic synthetic scenes (meshes -> ray-cast RGB, depth, normals, masks) in nerfstudio format.

The bundled demo is ``tabletop`` (``ff-scene tabletop --seed 0 --out scenes/tabletop``): everyday objects on a
table, with exact depth, normals, semantic and instance masks, object meshes and metric poses for testing.
"""
from .tabletop import (
    GENERATOR_VERSION,
    OBJECT_LABELS,
    SEMANTIC_LABELS,
    Tabletop,
    build_tabletop,
    generate_tabletop,
    orbit_cameras,
)

GENERATORS = {"tabletop": generate_tabletop}

__all__ = [
    "GENERATORS",
    "GENERATOR_VERSION",
    "OBJECT_LABELS",
    "SEMANTIC_LABELS",
    "Tabletop",
    "build_tabletop",
    "generate_tabletop",
    "orbit_cameras",
]
