"""Training options as one dataclass; the CLI maps flags onto it and it is saved with every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..fields.density import DensityConfig


@dataclass
class LearningRates:
    means: float = 1.6e-4  # times the scene extent, decays exponentially to means_final
    means_final: float = 1.6e-6
    log_scales: float = 5e-3
    quats: float = 1e-3
    opacity_logits: float = 5e-2
    sh0: float = 2.5e-3
    shN: float = 2.5e-3 / 20
    features: float = 5e-3
    features_view: float = 5e-3
    decoder: float = 2e-3
    camera_rotation: float = 5e-3  # radians per step (Adam), --optimize-cameras; decays 100x over the run
    camera_translation: float = 5e-3  # times the scene extent, per step; decays likewise


DEFAULT_DEPTH_WEIGHT = 2.0  # measured on the demo: places concave, uniformly coloured surfaces to within ~1 cm


@dataclass
class TrainConfig:
    scene: str = ""
    out: str = "outputs/run"
    # data
    downscale: float = 1.0
    max_size: int | None = None
    eval_every: int = 8  # every k-th frame is held out (transforms.json / RGB-D); Blender uses its test split
    stride: int = 1  # RGB-D sequences: use every k-th frame
    depth_scale: float | None = None  # RGB-D sequences / --scale-from-depth: raw depth units per metre (None: the
    # layout's own, 1000 = millimetres for most, 5000 for TUM)
    intrinsics: str | None = None  # RGB-D sequences: "fx,fy,cx,cy" or an intrinsics file
    scale_from_depth: str | None = None  # COLMAP: folder of metric depth maps that sets the frame's scale
    known_distance: list[str] | None = None  # COLMAP: [A, B, metres], A/B frame names or x,y,z
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # teachers
    teachers: list[str] | None = None  # None: 'labels' when the scene has semantic masks, else colour only
    teacher_weights: dict[str, float] = field(default_factory=dict)
    teacher_checkpoints: dict[str, str] = field(default_factory=dict)  # name -> local weights file
    teacher_options: dict[str, dict] = field(default_factory=dict)  # name -> {option: value} for make_teacher
    teacher_device: str | None = None  # where teachers run (default: their own default, the CPU)
    cache_dir: str | None = None  # None: OUT/cache; point several runs at one folder to share it
    # field
    sh_degree: int = 3
    sh_degree_every: int = 500  # raise the active SH degree every this many steps
    latent_dim: int | None = None  # None: 16 per teacher wider than 64 channels (at most 64), else full width
    decoder_hidden: int = 0
    feature_view_degree: int | None = None  # None: 2 if a teacher's features depend on the viewpoint, else 0
    init: str = "auto"  # auto | points | depth | random
    init_points: int = 20_000
    init_opacity: float = 0.1
    # optimisation
    iterations: int = 2000
    lambda_dssim: float = 0.2
    depth_weight: float | None = None  # relative L1 to the scene's metric depth maps (None: DEFAULT_DEPTH_WEIGHT
    # where the scene has them; 0: off)
    feature_loss: str = "cosine"  # cosine | l1
    feature_samples: int = 4096  # random teacher pixels per step for the feature loss (0: all)
    feature_moves_geometry: bool = False
    optimize_cameras: bool = False  # learn a per-frame SE(3) correction of every training pose
    camera_regularizer: float = 1e-3  # weight of |rotation (rad)|^2 + |translation / extent|^2 per frame
    lr: LearningRates = field(default_factory=LearningRates)
    density: DensityConfig = field(default_factory=DensityConfig)
    # bookkeeping
    save_every: int = 1000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # rasteriser: auto | native | torch | gsplat (featurefields.render.backends)
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["lr"] = LearningRates(**d.get("lr", {}))
        d["density"] = DensityConfig(**d.get("density", {}))
        d["background"] = tuple(d.get("background", (1.0, 1.0, 1.0)))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
