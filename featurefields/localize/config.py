"""Localisation settings as dataclasses (saved with every result, so a pose says how it was found)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class IndexConfig:
    """The map that the coarse stage matches against: keypoints of the field's training views, lifted to 3D by the
    field's own rendered depth, plus one global descriptor per view for retrieval."""

    views: str = "train"  # which scene views make the map (parse_views spec)
    images: str = "auto"  # auto: the scene's images where loaded, else renders | scene | render
    max_keypoints: int = 2000  # SIFT keypoints per image (strongest first)
    contrast_threshold: float = 0.02  # SIFT's; lower than OpenCV's 0.04 because our images are small
    vocabulary: int = 32  # VLAD visual words for retrieval
    min_alpha: float = 0.95  # a keypoint is lifted only where the render is opaque ...
    max_depth_step: float = 0.08  # ... and its 3x3 depth neighbourhood spans less than this fraction of its depth


@dataclass
class CoarseConfig:
    """No guess: retrieval, 2D-2D matches lifted to 2D-3D, PnP-RANSAC per retrieved view and on their union."""

    retrieve: int = 5  # nearest index views by global descriptor
    ratio: float = 0.8  # Lowe's ratio test
    reprojection_px: float = 4.0  # RANSAC inlier threshold at 320 px image width (scaled with the image)
    ransac_iterations: int = 1000
    min_inliers: int = 20  # fewer PnP inliers than this: no pose
    score_size: int = 96  # longest side of the renders that rank the hypotheses
    keep: int = 2  # at most this many distinct, similarly scored hypotheses go to the fine stage
    contender_margin: float = 0.05  # runners-up within this NCC of the best are refined too


@dataclass
class FineConfig:
    """Photometric refinement through the rasteriser's pose gradient: coarse to fine over an image pyramid."""

    levels: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)  # image scales, coarse to fine
    steps: tuple[int, ...] = (8, 8, 12, 12)  # renders (function evaluations) per level
    optimizer: str = "lbfgs"  # lbfgs (strong-Wolfe line search) | adam
    pivot: float = 1.0  # rotations are about a point this many scene depths ahead of the camera (0: its centre)
    tolerance: float = 0.01  # a level ends once a step moves the image by less than tolerance * first_step_px
    # of its pixels, or changes the loss by less than tolerance / LOSS_SCALE (fine.py)
    first_step_px: float = 0.5  # the first trial step of a level, in pixels of image motion at that level
    lr: float = 1.0  # adam: step size in those units, cosine-decayed within a level
    robust_scale: float = 0.1  # Cauchy loss scale on colour residuals in [0, 1]
    brightness: bool = True  # fit a gain and offset between render and image (auto exposure, other cameras)
    depth_weight: float = 1.0  # relative depth residual against a query depth image, when one is given
    min_alpha: float = 0.5  # the render-to-image gain is fitted where the field covers more than this


@dataclass
class LocalizeConfig:
    work_size: int = 320  # longest image side everything runs at (the query is shrunk, never enlarged)
    index: IndexConfig = field(default_factory=IndexConfig)
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    icp: bool = True  # with a depth image: point-to-plane ICP (open3d) before the photometric stage
    min_ncc: float = 0.5  # the final render must correlate with the image at least this much, else no pose
    accept_ncc: float = 0.9  # a refined pose this convincing ends the search (no other contender refined)
    blank_std: float = 2.0 / 255  # an image whose grey levels vary less than this is blank

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LocalizeConfig":
        d = dict(d)
        sub = {"index": IndexConfig, "coarse": CoarseConfig, "fine": FineConfig}
        for k, typ in sub.items():
            if isinstance(d.get(k), dict):
                d[k] = typ(**d[k])
        return cls(**d)
