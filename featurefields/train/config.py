"""Training options as one dataclass; the CLI maps flags onto it and it is saved with every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import ConfigError
from ..fields.density import DensityConfig
from ..validate import MAX_IMAGE_SIDE, choice, integer, number


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


DEFAULT_DEPTH_WEIGHT = 2.0  # measured on the demo: places concave, uniformly coloured surfaces to within ~1 cm


@dataclass
class TrainConfig:
    scene: str = ""
    out: str = "outputs/run"
    # data
    downscale: float = 1.0
    max_size: int | None = None
    eval_every: int = 8  # every k-th frame is held out (transforms.json / RGB-D); Blender uses its test split
    holdout: str | None = None  # another split instead: every:K, last:N, first:N (featurefields.data.load)
    stride: int = 1  # RGB-D sequences: use every k-th frame
    depth_scale: float | None = None  # RGB-D sequences / --scale-from-depth: raw depth units per metre (None: the
    # layout's own, 1000 = millimetres for most, 5000 for TUM)
    intrinsics: str | None = None  # RGB-D sequences: "fx,fy,cx,cy" or an intrinsics file
    scale_from_depth: str | None = None  # COLMAP: folder of metric depth maps that sets the frame's scale
    known_distance: list[str] | None = None  # COLMAP: [A, B, metres], A/B frame names or x,y,z
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    allow_outside_scene: bool = False  # follow file paths that leave the scene folder ('../', absolute paths)
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
    feature_balance: float = 0.0  # share of them spread evenly over the teacher's feature clusters (train/balance)
    feature_moves_geometry: bool = False
    optimize_cameras: bool = False  # learn a per-frame SE(3) correction of every training pose
    camera_regularizer: float = 1e-3  # weight of |rotation (rad)|^2 + |translation / extent|^2 per frame
    camera_warmup: int = 50  # steps before the poses move (at most a tenth of the run): a rough scene first
    camera_fix_gauge: bool = True  # take the similarity common to all corrections out after every pose step
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

    def validate(self) -> "TrainConfig":
        """Every value finite, of the right type and in range, or a ConfigError naming its ``ff-train`` flag (the
        nested lr/density settings by their field names); run before the scene is loaded or anything written."""
        from ..render.backends import BACKENDS

        big = 10_000_000
        for name, lo, hi in (("iterations", 1, big), ("init_points", 1, big), ("eval_every", 0, 1_000_000),
                             ("stride", 1, 1_000_000), ("sh_degree", 0, 3), ("sh_degree_every", 1, big),
                             ("decoder_hidden", 0, 4096), ("feature_samples", 0, big), ("save_every", 0, big),
                             ("camera_warmup", 0, big),
                             ("seed", 0, 2**63 - 1)):
            setattr(self, name, integer(getattr(self, name), _flag(name), lo=lo, hi=hi))
        for name, lo, hi in (("latent_dim", 0, 1024), ("feature_view_degree", 0, 3), ("max_size", 1, MAX_IMAGE_SIDE)):
            if getattr(self, name) is not None:
                setattr(self, name, integer(getattr(self, name), _flag(name), lo=lo, hi=hi))
        self.downscale = number(self.downscale, "--downscale", lo=1, hi=1000)
        self.feature_balance = number(self.feature_balance, "--feature-balance", lo=0, hi=1)
        if self.depth_scale is not None:  # None: the layout's own (featurefields.data)
            self.depth_scale = number(self.depth_scale, "--depth-scale", lo=0, lo_open=True)
        self.camera_regularizer = number(self.camera_regularizer, "--camera-regularizer", lo=0)
        if self.known_distance is not None:
            if not (isinstance(self.known_distance, (list, tuple)) and len(self.known_distance) == 3):
                raise ConfigError(f"--known-distance: expected A B METRES, got {self.known_distance!r}")
            number(self.known_distance[2], "--known-distance METRES", lo=0, lo_open=True)
        if self.scale_from_depth is not None and self.known_distance is not None:
            raise ConfigError("--scale-from-depth and --known-distance both set the scale: choose one")
        self.init_opacity = number(self.init_opacity, "init_opacity", lo=0, hi=1, lo_open=True, hi_open=True)
        self.lambda_dssim = number(self.lambda_dssim, "lambda_dssim", lo=0, hi=1)
        if self.depth_weight is not None:
            self.depth_weight = number(self.depth_weight, "--depth-weight", lo=0)
        if not (isinstance(self.background, (tuple, list)) and len(self.background) == 3):
            raise ConfigError(f"--background {self.background!r}: expected three numbers r,g,b in [0, 1]")
        self.background = tuple(number(c, "--background", lo=0, hi=1) for c in self.background)
        choice(self.init, "--init", ("auto", "depth", "points", "random"))
        if self.holdout is not None:
            from ..data.load import parse_holdout

            parse_holdout(self.holdout)  # every:K | last:N | first:N, refused before the scene is loaded
        choice(self.feature_loss, "--feature-loss", ("cosine", "l1"))
        choice(self.device, "--device", ("auto", "cpu", "cuda"))
        choice(self.backend, "--backend", list(BACKENDS))
        if self.teachers is not None:
            if not isinstance(self.teachers, (list, tuple)) or not all(isinstance(t, str) and t.strip()
                                                                       for t in self.teachers):
                raise ConfigError(f"--teacher: expected teacher names, got {self.teachers!r}")
        for name, w in self.teacher_weights.items():
            self.teacher_weights[name] = number(w, f"--teacher-weight {name}", lo=0)
        for key in fields(LearningRates):
            setattr(self.lr, key.name, number(getattr(self.lr, key.name), f"lr.{key.name}", lo=0))
        d = self.density
        for name in ("refine_start", "refine_stop", "refine_every", "reset_every", "max_gaussians"):
            setattr(d, name, integer(getattr(d, name), f"density.{name}", lo=1 if name == "refine_every" else 0,
                                     hi=10 * big if name == "max_gaussians" else None))
        for name in ("grow_grad2d", "grow_scale3d", "prune_opacity", "prune_scale3d"):
            setattr(d, name, number(getattr(d, name), f"density.{name}", lo=0))
        return self

    def check_teacher_names(self, names: list[str]) -> None:
        """Per-teacher settings must name a teacher of this run (a typo would otherwise be ignored silently)."""
        for flag, given in (("--teacher-weight", self.teacher_weights), ("--teacher-checkpoint",
                                                                         self.teacher_checkpoints),
                            ("--teacher-option", self.teacher_options)):
            for name in given:
                if name not in names:
                    raise ConfigError(f"{flag} {name}: {name} is not a teacher of this run (its teachers: "
                                      f"{', '.join(names) or 'none, colour only'})")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["lr"] = _known(LearningRates, d.get("lr", {}))  # settings of older versions are dropped
        d["density"] = _known(DensityConfig, d.get("density", {}))
        d["background"] = tuple(d.get("background", (1.0, 1.0, 1.0)))
        return _known(cls, d)


def _known(cls, d: dict):
    """``cls(**d)`` without the keys ``cls`` does not have (settings of other versions)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
