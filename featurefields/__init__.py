"""featurefields: lift 2D foundation-model features into 3D Gaussian feature fields and query them.

The public API, in pipeline order: load a scene, pick teachers, train a field, render it, query it, export it.
``featurefields.load(path)`` gives a trained field (:class:`FeatureField`) in its scene's metric world frame: what
robots, the viewer, the query engine and camera localisation (``field.localize(image, K)``) all use;
``field.locate("mug")`` and ``field.grasps("mug", gripper=ff.PANDA)`` answer where a thing is and how to pick it up.
"""
from . import allocator
from .data import Cameras, SceneData, load_scene
from .errors import ConfigError, DataError, FFError
from .fields.base import FeatureField, PointQuery, SurfacePoints, View
from .fields.gaussians import FeatureLayout, GaussianField
from .fields.loading import load
from .fields.ply import field_from_ply, read_ply, write_ply
from .fields.rendering import render_field
from .localize import LocalizeConfig, PoseEstimate
from .query.engine import QueryEngine
from .query.relevancy import QueryError, lerf_relevancy
from .query.selection import Selection
from .robot import PANDA, ROBOTIQ_2F85, Grasp, Located, ParallelJaw, load_gripper
from .teachers import available_teachers, make_teacher
from .train.checkpoint import load_checkpoint
from .train.config import TrainConfig
from .train.trainer import Trainer

allocator.tune()  # large tensors reused from the heap instead of page-faulted in at every step (allocator.py)

__version__ = "0.1.0"

__all__ = [
    "PANDA", "ROBOTIQ_2F85", "Cameras", "ConfigError", "DataError", "FFError", "FeatureField", "FeatureLayout",
    "GaussianField", "Grasp", "LocalizeConfig", "Located", "ParallelJaw", "PointQuery", "PoseEstimate", "QueryEngine",
    "QueryError", "SceneData", "Selection", "SurfacePoints", "TrainConfig", "Trainer", "View", "available_teachers",
    "field_from_ply", "lerf_relevancy", "load", "load_checkpoint", "load_gripper", "load_scene", "make_teacher",
    "read_ply", "render_field", "write_ply",
]
