"""Camera localisation in a trained field, with no initial guess: ``field.localize(image, K)`` or ``ff-localize``.

- :mod:`.index`: the map (training views' keypoints lifted by rendered depth, VLAD retrieval)
- :mod:`.coarse`: retrieval, matches, PnP-RANSAC hypotheses ranked by renders
- :mod:`.fine`: photometric refinement through the rasteriser's pose gradient (pypose SE(3) steps)
- :mod:`.icp`: point-to-plane ICP against rendered depth when a depth image is given
- :mod:`.pipeline`: :func:`localize` and its :class:`PoseEstimate`
- :mod:`.evaluate`: ``ff-eval localize`` (errors against ground truth, the iNeRF-style baseline)
"""
from .config import CoarseConfig, FineConfig, IndexConfig, LocalizeConfig
from .pipeline import PoseEstimate, localize

__all__ = ["CoarseConfig", "FineConfig", "IndexConfig", "LocalizeConfig", "PoseEstimate", "localize"]
