"""The teacher interface: images in, per-pixel (or per-patch) feature maps out.

A feature field is trained to reproduce whatever a teacher says about each view, so every teacher (labels, CLIP,
SAM, DINO, SIFT...) answers through the same two dataclasses and the same small abstract class. Teachers are
pure functions of their :meth:`Teacher.config` and their input view, which is what makes their outputs cacheable.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from torch import Tensor

from ..errors import FFError

if TYPE_CHECKING:
    from ..data.scene import SceneData


@dataclass
class TeacherInput:
    """One view as a teacher sees it."""

    image: Tensor  # [H, W, 3] uint8
    semantics: Tensor | None = None  # [H, W] int16 index into label_names, -1 unknown
    label_names: list[str] | None = None
    name: str = "<view>"  # frame name, for messages

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class TeacherOutput:
    """A teacher's opinion of one view, on CPU.

    ``features`` is float32 straight from a teacher and float16 (memory-mapped, copy-on-write) when read back from
    a :class:`~featurefields.teachers.cache.FeatureCache`; consumers call ``.float()`` on the pixels they use rather
    than converting whole maps, which for a 384-D full-resolution map can be gigabytes.
    """

    features: Tensor  # [h, w, D]; (h, w) is the teacher's own resolution, possibly smaller than the image
    valid: Tensor  # [h, w] bool: where the teacher has an opinion (the distillation loss is masked to it)

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])


class Teacher(abc.ABC):
    """A frozen 2D model whose features a 3D field learns to reproduce.

    Subclasses set ``name``, ``dim`` and ``text_aligned`` and implement :meth:`config` and :meth:`extract`; text-aligned
    teachers also implement :meth:`encode_text` so that queries live in the same space as the features.
    """

    name: ClassVar[str]
    dim: int
    text_aligned: ClassVar[bool] = False
    view_dependent: ClassVar[bool] = False  # True: a point's features change with the viewpoint (fields model it)
    max_batch_size: ClassVar[int | None] = None  # cap on views per extract() call, for teachers with huge outputs

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the output (model, resolution, ...), JSON-able: part of the cache key."""

    @abc.abstractmethod
    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        """Feature maps for a batch of views, one output per view, in order."""

    def encode_text(self, texts: list[str]) -> Tensor:
        """Text queries in the feature space: [Q, D], L2-normalised."""
        raise NotTextAligned(
            f"the {self.name} teacher is not text-aligned, so it cannot answer text queries; "
            "use a text-aligned teacher such as labels"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, config={self.config()!r})"


class NotTextAligned(FFError, NotImplementedError):
    """Raised by :meth:`Teacher.encode_text` on teachers whose features have no text counterpart."""


def views_from_scene(scene: SceneData, indices: Sequence[int] | None = None) -> list[TeacherInput]:
    """The teacher inputs for some (default: all) frames of a scene; tensors are views, not copies."""
    if indices is None:
        indices = range(len(scene))
    views = []
    for i in indices:
        views.append(
            TeacherInput(
                image=scene.images[i],
                semantics=None if scene.semantics is None else scene.semantics[i],
                label_names=scene.label_names,
                name=scene.frame_names[i],
            )
        )
    return views


def check_outputs(teacher: Teacher, views: Sequence[TeacherInput], outs: Sequence[TeacherOutput]) -> None:
    """Catch a teacher that breaks the contract here rather than as a shape error deep inside training."""
    if len(outs) != len(views):
        raise RuntimeError(f"teacher {teacher.name} returned {len(outs)} outputs for {len(views)} views")
    for view, out in zip(views, outs):
        f, v = out.features, out.valid
        if f.ndim != 3 or f.shape[-1] != teacher.dim:
            raise RuntimeError(
                f"teacher {teacher.name} gave features of shape {tuple(f.shape)} for {view.name}; "
                f"expected [h, w, {teacher.dim}]"
            )
        if tuple(v.shape) != tuple(f.shape[:2]):
            raise RuntimeError(
                f"teacher {teacher.name} gave a valid mask of shape {tuple(v.shape)} for {view.name}; "
                f"expected {tuple(f.shape[:2])}"
            )
