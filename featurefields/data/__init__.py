"""Scene loading: nerfstudio, NeRF-synthetic Blender and RGB-D sequences into one metric-frame SceneData."""
from .cameras import GL_TO_CV, Cameras
from .load import load_scene
from .points import points_from_depth
from .scene import SceneData

__all__ = ["GL_TO_CV", "Cameras", "SceneData", "load_scene", "points_from_depth"]
