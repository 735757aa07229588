"""A 3D Gaussian splat scene whose Gaussians carry, besides SH colour, a feature vector of run-time width.

Parameters are stored unconstrained (log-scales, opacity logits, unnormalised quaternions) so Adam can move them
freely; the activated values are exposed as properties. The feature block is either one shared low-dimensional
latent that per-teacher decoders lift to each teacher's width after rasterisation (the Feature 3DGS speed-up), or a
full-width block per teacher (``FeatureLayout``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..errors import DataError
from ..render import eval_sh_backend
from ..render.sh import num_sh_bases

SH_C0 = 0.28209479177387814  # Y_0^0: converts an RGB value to its DC SH coefficient


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


@dataclass
class TeacherSpec:
    """What the field needs to know about a teacher: its name and output width."""

    name: str
    dim: int


@dataclass
class FeatureLayout:
    """How per-Gaussian features map to teacher features.

    ``latent_dim > 0``: one shared latent of that width, decoded per pixel by a per-teacher head.
    ``latent_dim == 0``: a full-width block per teacher, concatenated; heads just slice it.
    """

    teachers: list[TeacherSpec] = field(default_factory=list)
    latent_dim: int = 0
    decoder_hidden: int = 0  # 0: a linear head (1x1 conv); >0: a two-layer MLP with this many hidden units
    view_degree: int = 0  # SH degree of the features' view dependence (0: the same feature from every direction)

    @property
    def width(self) -> int:  # channels rasterised per Gaussian
        return self.latent_dim if self.latent_dim > 0 else sum(t.dim for t in self.teachers)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureLayout":
        return cls([TeacherSpec(**t) for t in d["teachers"]], d["latent_dim"], d.get("decoder_hidden", 0),
                   d.get("view_degree", 0))


class FeatureDecoder(nn.Module):
    """Per-pixel heads: rendered feature map [..., width] -> teacher features [..., D_t]."""

    def __init__(self, layout: FeatureLayout):
        super().__init__()
        self.layout = layout
        self.heads = nn.ModuleDict()
        if layout.latent_dim > 0:
            for t in layout.teachers:
                if layout.decoder_hidden > 0:
                    self.heads[t.name] = nn.Sequential(
                        nn.Linear(layout.latent_dim, layout.decoder_hidden), nn.ReLU(),
                        nn.Linear(layout.decoder_hidden, t.dim))
                else:
                    self.heads[t.name] = nn.Linear(layout.latent_dim, t.dim)
        self._slices: dict[str, slice] = {}
        start = 0
        for t in layout.teachers:
            self._slices[t.name] = slice(start, start + t.dim)
            start += t.dim

    def forward(self, feature_map: Tensor, teacher: str) -> Tensor:
        if self.layout.latent_dim > 0:
            return self.heads[teacher](feature_map)
        return feature_map[..., self._slices[teacher]]

    def linear_head(self, teacher: str) -> nn.Linear | None:
        """The teacher's head if it is a single linear map of the latent (losses can then work in latent space)."""
        head = self.heads[teacher] if self.layout.latent_dim > 0 else None
        return head if isinstance(head, nn.Linear) else None


class GaussianField(nn.Module):
    """N Gaussians: means [N,3], log_scales [N,3], quats [N,4] (wxyz), opacity_logits [N], sh0 [N,1,3],
    shN [N,K-1,3], features [N,F], features_view [N,Kf-1,F]; plus the feature decoder.

    ``features`` is each Gaussian's direction-averaged feature (what 3D queries read); ``features_view`` holds SH
    coefficients (degrees 1..layout.view_degree, none by default) added for the viewing direction when rendering,
    for teachers whose descriptors change with the viewpoint (upright SIFT of a table seen from around it)."""

    param_names = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN", "features", "features_view")

    def __init__(self, means: Tensor, colors: Tensor, log_scales: Tensor, layout: FeatureLayout, sh_degree: int = 3,
                 init_opacity: float = 0.1, seed: int = 0):
        super().__init__()
        n = means.shape[0]
        g = torch.Generator().manual_seed(seed)
        k = num_sh_bases(sh_degree)
        self.sh_degree = sh_degree
        self.layout = layout
        self.means = nn.Parameter(means.float().clone())
        self.log_scales = nn.Parameter(log_scales.float().clone())
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        self.quats = nn.Parameter(quats)
        self.opacity_logits = nn.Parameter(torch.full((n,), math.log(init_opacity / (1 - init_opacity))))
        self.sh0 = nn.Parameter(rgb_to_sh0(colors.float().clamp(0, 1))[:, None, :].clone())
        self.shN = nn.Parameter(torch.zeros(n, k - 1, 3))
        self.features = nn.Parameter(0.1 * torch.randn(n, layout.width, generator=g))
        self.features_view = nn.Parameter(torch.zeros(n, num_sh_bases(layout.view_degree) - 1, layout.width))
        self.decoder = FeatureDecoder(layout)

    # ---- activated values -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:  # [N, 3] metres
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh_coeffs(self) -> Tensor:  # [N, K, 3]
        return torch.cat([self.sh0, self.shN], dim=1)

    def features_from(self, dirs: Tensor, backend: str = "auto", index: Tensor | None = None) -> Tensor:
        """Per-Gaussian features seen along ``dirs`` [N, 3] (camera -> Gaussian, any length): [N, F].
        ``backend``: whose SH kernel evaluates it (see :func:`featurefields.render.eval_sh_backend`); ``index``
        [M]: only those Gaussians (``dirs`` then [M, 3]), so a culled render pays only for what it draws."""
        feats = self.features if index is None else self.features[index]
        degree = self.layout.view_degree
        if degree == 0:
            return feats
        view = self.features_view if index is None else self.features_view[index]
        # an SH sum whose DC coefficient is scaled so that its term is the feature itself
        return eval_sh_backend(degree, dirs, (feats / SH_C0)[:, None, :], view, backend)

    def params(self) -> dict[str, nn.Parameter]:
        return {name: getattr(self, name) for name in self.param_names}

    def replace_params(self, new: dict[str, Tensor]) -> None:
        """Swap in tensors of a new Gaussian count (density control, edits); decoder untouched."""
        for name in self.param_names:
            setattr(self, name, nn.Parameter(new[name].detach().clone()))

    # ---- persistence ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "sh_degree": self.sh_degree,
            "layout": self.layout.to_dict(),
            "params": {k: v.detach().cpu() for k, v in self.params().items()},
            "decoder": self.decoder.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "GaussianField":
        layout = FeatureLayout.from_dict(state["layout"])
        p = dict(state["params"])
        if "features_view" not in p:  # checkpoints from before view-dependent features
            p["features_view"] = p["features"].new_zeros(len(p["features"]), 0, layout.width)
        f = cls(p["means"], torch.zeros_like(p["means"]), p["log_scales"], layout, state["sh_degree"])
        f.replace_params(p)
        f.decoder.load_state_dict(state["decoder"])
        return f


# ---- validation of stored fields (checkpoints, PLY files): one line naming the entry, never a later crash ------
MAX_TEACHER_DIM = 65536


def check_layout(lay, where: str) -> FeatureLayout:
    """A FeatureLayout.to_dict() from a file: teacher names and widths, latent width, head size, view degree."""
    from ..validate import integer, mapping, text

    lay = mapping(lay, f"{where}.layout")
    teachers = lay.get("teachers")
    if not isinstance(teachers, list):
        raise DataError(f"{where}.layout.teachers: expected a list, got {type(teachers).__name__}")
    specs = []
    for i, t in enumerate(teachers):
        t = mapping(t, f"{where}.layout.teachers[{i}]")
        specs.append(TeacherSpec(text(t.get("name"), f"{where}.layout.teachers[{i}].name", error=DataError),
                                 integer(t.get("dim"), f"{where}.layout.teachers[{i}].dim", lo=1, hi=MAX_TEACHER_DIM,
                                         error=DataError)))
    latent, hidden, degree = (integer(lay.get(k, 0), f"{where}.layout.{k}", lo=0, hi=hi, error=DataError)
                              for k, hi in (("latent_dim", 4096), ("decoder_hidden", 65536), ("view_degree", 3)))
    return FeatureLayout(specs, latent, hidden, degree)


def check_params(params, sh_degree: int, layout: FeatureLayout, where: str) -> int:
    """Parameter tensors that agree in length N and match the SH degree and layout, all finite; returns N."""
    from ..validate import mapping, tensor

    params = mapping(params, f"{where}.params")
    n = tensor(params.get("means"), f"{where}.params.means", (None, 3)).shape[0]
    shapes = {"log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,), "sh0": (n, 1, 3),
              "shN": (n, num_sh_bases(sh_degree) - 1, 3), "features": (n, layout.width),
              "features_view": (n, num_sh_bases(layout.view_degree) - 1, layout.width)}
    for name, shape in shapes.items():
        if name == "features_view" and name not in params:  # stored before view-dependent features existed
            continue
        tensor(params.get(name), f"{where}.params.{name}", shape)
    if n and bool((params["quats"].norm(dim=-1) == 0).any()):
        raise DataError(f"{where}.params.quats: some rotations are all zeros")
    return n


def check_state(fs, where: str) -> int:
    """A GaussianField.state() dict: consistent shapes, finite values, decoder heads matching the layout.
    Returns the Gaussian count."""
    from ..io import one_reason
    from ..validate import integer, mapping, tensor

    fs = mapping(fs, where)
    sh_degree = integer(fs.get("sh_degree"), f"{where}.sh_degree", lo=0, hi=3, error=DataError)
    layout = check_layout(fs.get("layout"), where)
    n = check_params(fs.get("params"), sh_degree, layout, where)
    decoder = mapping(fs.get("decoder"), f"{where}.decoder")
    for k, v in decoder.items():
        tensor(v, f"{where}.decoder.{k}", tuple(None for _ in range(getattr(v, "ndim", 0))))
    try:
        FeatureDecoder(layout).load_state_dict(dict(decoder))
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}.decoder: does not match the feature layout ({one_reason(e)[:200]})") from None
    return n
