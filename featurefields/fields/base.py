"""The field interface: what every consumer of a trained feature field may ask of it, whatever represents it.

The query engine, the robot tools (locate, grasps), camera localisation and the viewer talk to a
:class:`FeatureField` only, never to Gaussians directly, so a NeRF field can implement the same interface later
without touching its callers. Everything crossing this interface is in the scene's **metric world frame**
(``world_from_scene`` applied): camera poses, query points, surface points, element positions.

A field has *elements*: the primitives that 3D selections index and edits act on (a Gaussian field's Gaussians; a
NeRF would expose a fixed sample of surface points). Their positions, opacities and raw features are part of the
interface so selections stay representation-agnostic.

Concrete fields implement rendering, decoding, point queries and the element accessors; this base class supplies
what is common: the training scene and its cameras (loaded lazily with the training run's own options), the
teachers and their text encoders, surface extraction by fusing rendered depth, and the robot/localisation verbs.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from .gaussians import TeacherSpec

if TYPE_CHECKING:  # imported for annotations only: these layers sit above fields
    from ..data.scene import SceneData
    from ..teachers import Teacher
    from .rendering import FieldRender


@dataclass
class View:
    """A camera to render: a scene frame (``index``, ground-truth ``image``) or a novel pose."""

    name: str
    c2w: Tensor  # [4, 4] camera-to-world, OpenCV axes, world frame
    K: Tensor  # [3, 3] pixels
    width: int
    height: int
    image: Tensor | None = None  # [H, W, 3] uint8 ground truth (scene frames only)
    index: int | None = None  # frame index in the scene

    @property
    def stem(self) -> str:  # file-name-safe name
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.name).stem) or "view"

    @property
    def center(self) -> Tensor:  # [3] camera position
        return self.c2w[:3, 3]


@dataclass
class PointQuery:
    """What a field holds at arbitrary points (world frame), as F3RM's adapter asks a NeRF.

    For Gaussians: ``density`` is sum_i o_i G_i(x) (G_i unnormalised, 1 at the centre), ``opacity`` the
    probability that a ray would stop in an infinitesimal neighbourhood, 1 - prod_i (1 - o_i G_i(x)), and colours
    and features are averages weighted by o_i G_i(x)."""

    density: Tensor  # [P]
    opacity: Tensor  # [P] in [0, 1]
    rgb: Tensor  # [P, 3] in [0, 1] (view-independent base colour)
    latent: Tensor  # [P, F] raw (undecoded) features
    features: dict[str, Tensor]  # teacher -> [P, D_t] decoded features


@dataclass
class SurfacePoints:
    """A field's visible surface as a point cloud (world frame): what robots collide with and grasp."""

    points: Tensor  # [M, 3] metres
    normals: Tensor  # [M, 3] unit, pointing out of the surface (towards free space)
    colors: Tensor  # [M, 3] in [0, 1]
    voxel: float  # sampling spacing, metres
    mesh_vertices: Tensor | None = None  # [V, 3] the same surface as triangles (for collision checks), if asked
    mesh_triangles: Tensor | None = None  # [T, 3] long
    renders: list | None = None  # [(crop View, depth [H, W] where the render stops, alpha [H, W])] fused, if asked

    def __len__(self) -> int:
        return self.points.shape[0]

    def subset(self, mask: Tensor) -> "SurfacePoints":
        return SurfacePoints(self.points[mask], self.normals[mask], self.colors[mask], self.voxel)

    def to_open3d(self):
        import open3d as o3d

        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(self.points.double().numpy()))
        pcd.normals = o3d.utility.Vector3dVector(self.normals.double().numpy())
        pcd.colors = o3d.utility.Vector3dVector(self.colors.clamp(0, 1).double().numpy())
        return pcd


class FeatureField(ABC):
    """A trained feature field in its scene's metric world frame. Build one with :func:`featurefields.load`.

    ``teachers``: ready teacher objects by name (others are rebuilt from ``teacher_records`` when a text encoder
    or SAM decoder is first needed). ``scene``: the training scene, or ``scene_root`` to load it lazily."""

    kind = "abstract"

    def __init__(self, *, teachers: dict[str, "Teacher"] | None = None, teacher_records: Sequence[dict] = (),
                 train_config: dict | None = None, scene: "SceneData | None" = None,
                 scene_root: str | Path | None = None, background: Sequence[float] | None = None,
                 source: str = "<field>", cameras: dict | None = None, frame_info: dict | None = None):
        self._teachers: dict[str, Teacher] = dict(teachers or {})
        self._records = {r["name"]: r for r in teacher_records}
        self.train_config = dict(train_config or {})
        self._scene = scene
        self.scene_root = Path(scene_root) if scene_root is not None else (scene.root if scene is not None else None)
        self.scene_given = False  # True: the caller chose scene_root (--scene), it is not the checkpoint's record
        bg = background if background is not None else self.train_config.get("background", (1.0, 1.0, 1.0))
        self.background = torch.tensor(list(bg), dtype=torch.float32)
        self.source = source
        self._cameras = cameras  # the poses as trained, by frame name (refined under --optimize-cameras)
        self._frame_info = frame_info  # the frame as trained (e.g. a COLMAP frame made metric)
        self._surface_cache: dict[tuple, SurfacePoints] = {}
        self._localize_indexes: dict[str, Any] = {}  # localisation maps by settings (featurefields.localize)
        self._engine = None

    # ---- what it is -----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def teacher_specs(self) -> list[TeacherSpec]:
        """The teachers the field was distilled from (name, width)."""

    @property
    def teacher_names(self) -> list[str]:
        return [t.name for t in self.teacher_specs]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def world_from_scene(self) -> Tensor:  # [4, 4] similarity from the field's internal frame to the world
        return torch.eye(4)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} elements, teachers {self.teacher_names}, from {self.source})"

    # ---- the training scene and its cameras ----------------------------------------------------------------
    @property
    def scene(self) -> "SceneData":
        """The training scene (loaded on first use, with the training run's own loading options)."""
        if self._scene is None:
            if self.scene_root is None:
                raise DataError(f"{self.source}: no scene is recorded for this field; pass one explicitly "
                                "(--scene)")
            if not Path(self.scene_root).exists():
                if self.scene_given:
                    raise DataError(f"scene folder {self.scene_root} does not exist")
                raise DataError(f"the scene this field was trained on is gone: {self.scene_root} (pass --scene to "
                                "point at it)")
            from ..data import load_scene
            from ..train.cameras import apply_trained_cameras

            c = self.train_config
            cache = Path(self.source).parent / "cache" / "undistorted"
            # Not rescaled here: the checkpoint's poses (applied below) are already in the frame it was trained in.
            scene = load_scene(self.scene_root, downscale=c.get("downscale", 1.0), max_size=c.get("max_size"),
                               eval_every=c.get("eval_every", 8),
                               background=tuple(c.get("background", (1.0, 1.0, 1.0))), stride=c.get("stride", 1),
                               depth_scale=c.get("depth_scale"), intrinsics=c.get("intrinsics"),
                               undistort_cache=cache if cache.is_dir() else True,
                               allow_outside_root=bool(c.get("allow_outside_scene", False)),
                               holdout=c.get("holdout"))
            self._scene = apply_trained_cameras(scene, self._cameras, self._frame_info)
        return self._scene

    def attach_scene(self, scene: "SceneData | None" = None, root: str | Path | None = None) -> None:
        """Point the field at its training scene (after it moved, or one already in memory)."""
        if scene is not None:
            self._scene, self.scene_root = scene, Path(scene.root)
        elif root is not None:
            self._scene, self.scene_root, self.scene_given = None, Path(root), True

    @property
    def label_names(self) -> list[str] | None:
        """The scene's semantic label names (None if it has none or cannot be loaded)."""
        try:
            return self.scene.label_names
        except DataError:
            return None

    def frame_view(self, i: int) -> View:
        s = self.scene
        if not 0 <= i < len(s):  # (no Python-style -1: a typo would silently pick the last frame)
            from ..query.relevancy import QueryError

            raise QueryError(f"frame {i} does not exist; the scene has frames 0..{len(s) - 1}")
        return View(s.frame_names[i], self.scene_pose_to_world(s.cameras.c2w[i]), s.cameras.K[i], s.width,
                    s.height, s.images[i], i)

    def views(self, spec: str | Sequence[int | str] = "test") -> list[View]:
        """Scene views by name: 'test' (held out), 'train', 'all', 'novel:N' (N poses interpolated between
        consecutive frames), or a comma-separated list of frame indices / names / stems."""
        from .views import parse_views

        return parse_views(self, spec)

    def scene_pose_to_world(self, c2w: Tensor) -> Tensor:
        """A camera pose of the scene's frame -> the world frame (rotation kept orthonormal under a scale)."""
        return similarity_pose(self.world_from_scene, c2w)

    # ---- teachers and text ----------------------------------------------------------------------------------
    def teacher(self, name: str) -> "Teacher":
        """The named teacher of this field (built from its checkpoint record on first use)."""
        if name not in self.teacher_names:
            raise ConfigError(f"{self.source}: the field has no {name!r} teacher; it has "
                              f"{names_or_none(self.teacher_names)}")
        if name not in self._teachers:
            from ..teachers.rebuild import build_teacher

            self._teachers[name] = build_teacher(self._records.get(name, {"name": name}), self.train_config)
        return self._teachers[name]

    def text_teacher(self, name: str | None = None) -> str:
        """The teacher that answers text queries: ``name`` if given (and text-aligned), else the first
        text-aligned teacher of the field; ConfigError naming the teachers the field has otherwise."""
        from ..teachers.rebuild import text_aligned

        names = self.teacher_names
        if name is not None:
            if name not in names:
                raise ConfigError(f"{self.source}: the field has no {name!r} teacher; it has {names_or_none(names)}")
            if not text_aligned(name):
                raise ConfigError(f"{self.source}: the {name} teacher is not text-aligned, so it cannot answer text "
                                  f"queries (the field has {names_or_none(names)}; text needs labels or clip)")
            return name
        for n in names:
            if text_aligned(n):
                return n
        raise ConfigError(f"{self.source}: this field cannot answer text queries: its teachers are "
                          f"{names_or_none(names)}, none of them text-aligned; train with a text-aligned teacher "
                          "(labels or clip)")

    def encode_text(self, phrases: Sequence[str], teacher: str) -> Tensor:
        """[Q, D] unit text embeddings by the teacher's own text encoder."""
        emb = self.teacher(teacher).encode_text(list(phrases)).float()
        return F.normalize(emb, dim=-1).to(self.device)

    # ---- rendering and features (implemented per representation) ------------------------------------------
    @abstractmethod
    def render(self, view: View, *, with_features: bool = True, c2w: Tensor | None = None) -> "FieldRender":
        """Render ``view`` (or the pose ``c2w`` [4, 4] with the view's intrinsics, differentiably when it requires
        grad; the field itself stays constant): rgb, raw feature channels, depth along the optical axis (world
        units), alpha."""

    @abstractmethod
    def decode(self, features: Tensor, teacher: str) -> Tensor:
        """Raw features [..., F] (rendered or per element) -> the teacher's features [..., D]."""

    def scores(self, rows: Tensor, texts: Tensor, teacher: str, exact: bool = False,
               chunk: int | None = None) -> Tensor:
        """Cosine of decoded rows [N, F] to unit embeddings [Q, D] -> [N, Q], decoding chunk by chunk."""
        from ..query.relevancy import DEFAULT_CHUNK, cosine_scores

        return cosine_scores(rows, texts, lambda x: self.decode(x, teacher), chunk or DEFAULT_CHUNK)

    @abstractmethod
    def query_points(self, xyz: Tensor, *, teachers: Sequence[str] | None = None, blur: float = 0.0) -> PointQuery:
        """Density, opacity, colour and per-teacher features at world points ``xyz`` [P, 3]; ``blur`` (metres)
        smooths the field isotropically first, for points known only to a few millimetres (fused surfaces)."""

    # ---- elements (what selections index) ------------------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int:
        """The number of elements."""

    @abstractmethod
    def element_positions(self) -> Tensor:
        """[N, 3] world positions of the elements."""

    @abstractmethod
    def element_opacities(self) -> Tensor:
        """[N] in [0, 1]."""

    @abstractmethod
    def element_features(self) -> Tensor:
        """[N, F] raw (direction-averaged, undecoded) features of the elements."""

    @abstractmethod
    def element_weights(self, view: View, masks: Tensor) -> Tensor:
        """Each element's rendering weight summed over each mask's pixels: masks [H, W, M] -> [N, M]."""

    # ---- queries built on the interface --------------------------------------------------------------------
    @property
    def engine(self):
        """The :class:`~featurefields.query.QueryEngine` on this field (one per field, made on first use)."""
        if self._engine is None:
            from ..query.engine import QueryEngine

            self._engine = QueryEngine(self)
        return self._engine

    def relevancy(self, text: str | Sequence[str], xyz: Tensor, *, negatives: str | Sequence[str] = "auto",
                  teacher: str | None = None) -> Tensor:
        """LERF relevancy of the field's features at world points ``xyz`` [P, 3] to ``text`` -> [P] (the best of
        several ';'-separated positives)."""
        return self.engine.relevancy_points(text, xyz, negatives=negatives, teacher=teacher).combined

    @torch.no_grad()
    def surface_points(self, *, views: str | Sequence[View] = "train", voxel: float | None = None,
                       region: tuple[Sequence[float], Sequence[float]] | None = None,
                       min_alpha: float = 0.9, with_mesh: bool = False, with_renders: bool = False
                       ) -> SurfacePoints:
        """The visible surface with outward normals: the field's rendered depth over ``views`` fused into a TSDF
        (open3d), sampled every ``voxel`` metres, optionally only inside ``region`` = (lo [3], hi [3]) (then 2 mm
        by default; else 1/500 of the scene's extent).

        Fusing renders rather than reading element centres keeps this representation-agnostic (a NeRF renders
        depth too) and gives clean normals; see :mod:`.surface`. ``with_mesh`` adds the triangle mesh of the same
        surface; ``with_renders`` keeps the depth and alpha each view rendered (what
        space carving of the same region can reuse). Cached per field and arguments."""
        view_list = self.views(views) if isinstance(views, str) else list(views)
        key = (tuple((v.name, tuple(v.c2w.flatten().tolist())) for v in view_list), voxel,
               None if region is None else tuple(tuple(float(x) for x in r) for r in region), min_alpha, with_mesh,
               with_renders)
        if key not in self._surface_cache:
            from .surface import fuse_surface

            self._surface_cache[key] = fuse_surface(self, view_list, voxel=voxel, min_alpha=min_alpha,
                                                    region=region, with_mesh=with_mesh,
                                                    with_renders=with_renders)
        return self._surface_cache[key]

    def locate(self, text: str, **options):
        """Where ``text`` is: one :class:`~featurefields.robot.Located` per instance (see
        :func:`featurefields.robot.locate`)."""
        from ..robot.locate import locate

        return locate(self, text, **options)

    def grasps(self, text: str, gripper=None, k: int = 10, **options):
        """Ranked parallel-jaw grasps of what ``text`` names (see :func:`featurefields.robot.plan_grasps`)."""
        from ..robot.grasps import plan_grasps

        return plan_grasps(self, text, gripper=gripper, k=k, **options)

    def localize(self, image, intrinsics, *, depth=None, **options):
        """The camera pose of ``image`` in this field's world frame, with no initial guess: a
        :class:`~featurefields.localize.PoseEstimate` (check ``.success``; see :func:`featurefields.localize.localize`
        for the inputs and options)."""
        from ..localize import localize

        return localize(self, image, intrinsics, depth=depth, **options)

    def invalidate(self) -> None:
        """Forget cached derived data (surface, localisation maps, engine state) after the field changed."""
        self._surface_cache.clear()
        self._localize_indexes.clear()


def similarity_pose(world_from_scene: Tensor, c2w: Tensor) -> Tensor:
    """Apply a similarity ``world_from_scene`` (s R | t) to a pose c2w [4, 4]: rotation R R_c (orthonormal),
    position s R t_c + t."""
    m = world_from_scene.to(c2w)
    if torch.equal(m, torch.eye(4, dtype=m.dtype, device=m.device)):
        return c2w
    s = torch.linalg.det(m[:3, :3]).abs() ** (1 / 3)
    out = m @ c2w
    out[:3, :3] = out[:3, :3] / s
    return out


def names_or_none(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none (colour only)"


def check_points(xyz: Any, what: str = "points") -> Tensor:
    """Query points as a float [P, 3] tensor of finite numbers (ConfigError otherwise)."""
    t = torch.as_tensor(np.asarray(xyz) if not isinstance(xyz, Tensor) else xyz, dtype=torch.float32)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ConfigError(f"{what} must be an array of shape [P, 3], not {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{what} contain NaN or inf")
    return t


def fov_intrinsics(width: int, height: int, fov_deg: float) -> Tensor:
    """K [3, 3] of a pinhole camera with horizontal field of view ``fov_deg`` and the principal point centred."""
    if not (0 < fov_deg < 180) or not math.isfinite(fov_deg):
        raise ConfigError(f"field of view must be in (0, 180) degrees, not {fov_deg}")
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
