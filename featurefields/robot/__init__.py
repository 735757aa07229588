"""Robot tools on a feature field, in its metric world frame: find objects by text, plan parallel-jaw grasps, and
check them in physics simulation. Built on the :class:`~featurefields.fields.FeatureField` interface only."""
from .geometry import OrientedBox, Plane
from .grasps import Grasp, GraspResult, plan_grasps
from .gripper import PANDA, ROBOTIQ_2F85, ParallelJaw, load_gripper
from .locate import Located, LocateResult, locate

__all__ = ["PANDA", "ROBOTIQ_2F85", "Grasp", "GraspResult", "Located", "LocateResult", "OrientedBox", "ParallelJaw",
           "Plane", "load_gripper", "locate", "plan_grasps"]
