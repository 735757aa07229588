"""The query engine: one object, built from a checkpoint, that answers text and prompt queries in 2D and 3D.

It holds the field, its decoder heads and (lazily) the teachers' text encoders and the scene's cameras, so the CLI,
the viewer and the robot API all ask the same questions the same way:

- ``relevancy_2d(query, view)``: LERF relevancy of a rendered (decoded) feature map, per positive phrase;
- ``relevancy_3d(query)``: the same score for every Gaussian's own decoded feature, in chunks;
- ``select(query)``: a :class:`~.selection.Selection` (relevancy > threshold, opaque enough, optionally cleaned);
- ``prompt(view, point=|box=)``: a click or box -> 2D mask + 3D selection, by feature similarity in that view, or
  through SAM's own prompt decoder when the field carries the ``sam`` teacher.

Everything here runs under ``torch.no_grad``; geometry stays in the field's (metric, untouched) frame.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.cameras import GL_TO_CV
from ..data.scene import SceneData
from ..errors import ConfigError, DataError
from ..fields.gaussians import GaussianField
from ..fields.rendering import FieldRender, render_field
from ..io import read_json
from ..render import render
from ..teachers import Teacher, make_teacher
from ..train.cameras import apply_trained_cameras
from ..train.checkpoint import load_checkpoint
from .relevancy import (
    CANONICAL_NEGATIVES,
    DEFAULT_CHUNK,
    TEMPERATURE,
    QueryError,
    cosine_scores,
    linear_cosine_scores,
    relevancy_from_scores,
    scene_negatives,
    split_phrases,
    split_positives,
)
from .selection import Selection

NEGATIVE_MODES = ("auto", "canonical", "scene")
DEFAULT_THRESHOLD = 0.5  # relevancy above it: the positive beats every negative (LERF's pairwise softmax > 1/2)
DEFAULT_MIN_OPACITY = 0.3  # Gaussians below it are mostly see-through and carry poorly supervised features
DEFAULT_SIMILARITY = 0.8  # cosine to a prompt's reference feature above which a pixel/Gaussian belongs to it
MIN_ALPHA = 0.05  # pixels the field barely covers have no feature to speak of: relevancy 0 there


@dataclass
class View:
    """A camera to render: a scene frame (``index``, ground-truth ``image``) or a novel pose."""

    name: str
    c2w: Tensor  # [4, 4] camera-to-world, OpenCV axes, field frame
    K: Tensor  # [3, 3] pixels
    width: int
    height: int
    image: Tensor | None = None  # [H, W, 3] uint8 ground truth (scene frames only)
    index: int | None = None  # frame index in the scene

    @property
    def stem(self) -> str:  # file-name-safe name
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(self.name).stem) or "view"


@dataclass
class Relevancy2D:
    view: View
    positives: list[str]
    negatives: list[str]
    relevancy: Tensor  # [P, H, W] in (0, 1); 0 where the field does not cover the pixel
    render: FieldRender = dc_field(repr=False)

    @property
    def combined(self) -> Tensor:  # [H, W]: relevant to any positive
        return self.relevancy.max(dim=0).values

    def mask(self, threshold: float = DEFAULT_THRESHOLD) -> Tensor:  # [H, W] bool
        return self.combined > threshold


@dataclass
class Relevancy3D:
    positives: list[str]
    negatives: list[str]
    relevancy: Tensor  # [P, N] per Gaussian

    @property
    def combined(self) -> Tensor:  # [N]
        return self.relevancy.max(dim=0).values


@dataclass
class PromptResult:
    view: View
    mask: Tensor  # [H, W] bool
    score: Tensor  # [H, W]: cosine similarity to the reference (similarity) or SAM mask logits (sam)
    selection: Selection
    method: str  # "similarity" | "sam"
    teacher: str
    reference: Tensor | None = None  # [D] unit reference feature (similarity prompts)


class QueryEngine:
    """Queries on one trained field. Build it with :meth:`from_checkpoint` (or directly, for fields in memory).

    ``teachers``: ready teacher objects by name (optional; others are rebuilt from ``teacher_records`` when a text
    encoder or SAM decoder is first needed). ``scene``: the training scene, or ``scene_root`` to load it lazily
    (cameras of held-out views, label names for scene-specific negatives)."""

    def __init__(self, field: GaussianField, *, teachers: dict[str, Teacher] | None = None,
                 teacher_records: Sequence[dict] = (), train_config: dict | None = None,
                 scene: SceneData | None = None, scene_root: str | Path | None = None,
                 world_from_scene: Tensor | None = None, background: Sequence[float] | None = None,
                 source: str = "<field>", cameras: dict | None = None, frame_info: dict | None = None):
        self.field = field.eval()
        self.device = field.means.device
        self._teachers: dict[str, Teacher] = dict(teachers or {})
        self._records = {r["name"]: r for r in teacher_records}
        self.train_config = dict(train_config or {})
        self._scene = scene
        self.scene_root = Path(scene_root) if scene_root is not None else (scene.root if scene is not None else None)
        wfs = world_from_scene if world_from_scene is not None else (
            scene.world_from_scene if scene is not None else torch.eye(4))
        self.world_from_scene = torch.as_tensor(wfs, dtype=torch.float32)
        bg = background if background is not None else self.train_config.get("background", (1.0, 1.0, 1.0))
        self.background = torch.tensor(list(bg), dtype=torch.float32, device=self.device)
        self.source = source
        self._cameras = cameras  # the checkpoint's poses as trained (refined ones under --optimize-cameras)
        self._frame_info = frame_info

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        teachers: dict[str, Teacher] | None = None, scene: SceneData | None = None,
                        scene_root: str | Path | None = None) -> "QueryEngine":
        state = load_checkpoint(path)
        try:
            field = GaussianField.from_state(state["field"]).to(device)
        except (KeyError, RuntimeError, TypeError) as e:
            raise DataError(f"{path}: checkpoint holds no usable field ({type(e).__name__}: {e})") from None
        info = state.get("scene", {})
        return cls(field, teachers=teachers, teacher_records=state.get("teachers", []),
                   train_config=state.get("config", {}), scene=scene,
                   scene_root=scene_root if scene_root is not None else info.get("root"),
                   world_from_scene=torch.tensor(info.get("world_from_scene", np.eye(4).tolist())),
                   source=str(path), cameras=state.get("cameras"), frame_info=info.get("frame_info"))

    @property
    def teacher_names(self) -> list[str]:
        return [t.name for t in self.field.layout.teachers]

    def teacher(self, name: str) -> Teacher:
        """The named teacher of this field (built from its checkpoint record on first use)."""
        if name not in self.teacher_names:
            raise ConfigError(f"{self.source}: the field has no {name!r} teacher; it has "
                              f"{_names(self.teacher_names)}")
        if name not in self._teachers:
            self._teachers[name] = build_teacher(self._records.get(name, {"name": name}), self.train_config)
        return self._teachers[name]

    def text_teacher(self, name: str | None = None) -> str:
        """The teacher that answers text queries: ``name`` if given (and text-aligned), else the first
        text-aligned teacher of the field; ConfigError naming the teachers the field has otherwise."""
        names = self.teacher_names
        if name is not None:
            if name not in names:
                raise ConfigError(f"{self.source}: the field has no {name!r} teacher; it has {_names(names)}")
            if not _text_aligned(name):
                raise ConfigError(f"{self.source}: the {name} teacher is not text-aligned, so it cannot answer text "
                                  f"queries (the field has {_names(names)}; text needs labels or clip)")
            return name
        for n in names:
            if _text_aligned(n):
                return n
        raise ConfigError(f"{self.source}: this field cannot answer text queries: its teachers are {_names(names)}, "
                          "none of them text-aligned; train with a text-aligned teacher (labels or clip)")

    # ---- scene and views ------------------------------------------------------------------------------------
    @property
    def scene(self) -> SceneData:
        """The training scene (loaded on first use, with the training run's own loading options)."""
        if self._scene is None:
            if self.scene_root is None:
                raise DataError(f"{self.source}: no scene is recorded for this field; pass one explicitly")
            if not Path(self.scene_root).exists():
                raise DataError(f"the scene this field was trained on is gone: {self.scene_root} (pass --scene to "
                                "point at it)")
            from ..data import load_scene

            c = self.train_config
            cache = Path(self.source).parent / "cache" / "undistorted"
            # Not rescaled here: the checkpoint's poses (below) are already in the frame the field was trained in.
            scene = load_scene(self.scene_root, downscale=c.get("downscale", 1.0), max_size=c.get("max_size"),
                               eval_every=c.get("eval_every", 8),
                               background=tuple(c.get("background", (1.0, 1.0, 1.0))), stride=c.get("stride", 1),
                               depth_scale=c.get("depth_scale"), intrinsics=c.get("intrinsics"),
                               undistort_cache=cache if cache.is_dir() else True)
            self._scene = apply_trained_cameras(scene, self._cameras, self._frame_info)
        return self._scene

    @property
    def label_names(self) -> list[str] | None:
        """The scene's semantic label names (None if it has none or cannot be loaded)."""
        try:
            return self.scene.label_names
        except DataError:
            return None

    def frame_view(self, i: int) -> View:
        s = self.scene
        if not -len(s) <= i < len(s):
            raise QueryError(f"frame {i} does not exist; the scene has frames 0..{len(s) - 1}")
        i %= len(s)
        return View(s.frame_names[i], s.cameras.c2w[i], s.cameras.K[i], s.width, s.height, s.images[i], i)

    def views(self, spec: str | Sequence[int | str] = "test") -> list[View]:
        """Scene views by name: 'test' (held out), 'train', 'all', 'novel:N' (N poses interpolated between
        consecutive frames), or a comma-separated list of frame indices / names / stems."""
        s = self.scene
        if isinstance(spec, str):
            key = spec.strip()
            if key in ("test", "train", "all"):
                idx = {"test": s.test_idx, "train": s.train_idx, "all": list(range(len(s)))}[key]
                if not idx:
                    raise QueryError(f"the scene has no {key} views")
                return [self.frame_view(i) for i in idx]
            if key.startswith("novel"):
                n = key.partition(":")[2] or "4"
                if not n.isdigit() or int(n) < 1:
                    raise QueryError(f"--views {spec!r}: use novel:N with N a positive number")
                return interpolated_views(s, int(n))
            items: list[int | str] = [t.strip() for t in key.split(",") if t.strip()]
        else:
            items = list(spec)
        if not items:
            raise QueryError("no views given")
        out = []
        stems = {Path(n).stem: i for i, n in enumerate(s.frame_names)}
        names = {n: i for i, n in enumerate(s.frame_names)}
        for it in items:
            if isinstance(it, int) or (isinstance(it, str) and it.lstrip("-").isdigit()):
                out.append(self.frame_view(int(it)))
            elif it in names or it in stems:
                out.append(self.frame_view(names.get(it, stems.get(it))))
            else:
                raise QueryError(f"unknown view {it!r}: use test, train, all, novel:N, frame indices or frame names "
                                 f"(e.g. {Path(s.frame_names[0]).stem})")
        return out

    # ---- rendering ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, view: View) -> FieldRender:
        return render_field(self.field, view.c2w.to(self.device).float(), view.K.to(self.device).float(),
                            view.width, view.height, background=self.background)

    @torch.no_grad()
    def decoded(self, out: FieldRender, teacher: str) -> Tensor:
        """A rendered feature map decoded to the teacher's width: [H, W, D]."""
        if out.features is None:
            raise ConfigError(f"{self.source}: the field has no feature channels")
        return self.field.decoder(out.features, teacher)

    # ---- text -----------------------------------------------------------------------------------------------
    def encode_text(self, phrases: Sequence[str], teacher: str) -> Tensor:
        """[Q, D] unit text embeddings by the teacher's own text encoder."""
        emb = self.teacher(teacher).encode_text(list(phrases)).float()
        return F.normalize(emb, dim=-1).to(self.device)

    def resolve_negatives(self, positives: Sequence[str], negatives: str | Sequence[str] = "auto") -> list[str]:
        """'canonical' (object, things, stuff, texture), 'scene' (the scene's label names not named by a positive),
        'auto' (scene + canonical when the scene has labels, else canonical), or explicit phrases (a list or one
        ';'-separated string)."""
        if isinstance(negatives, str) and negatives.strip() in NEGATIVE_MODES:
            mode = negatives.strip()
            if mode == "canonical":
                return list(CANONICAL_NEGATIVES)
            labels = self.label_names
            if mode == "scene" and not labels:
                raise ConfigError("negatives 'scene' need a scene with semantic label names; this one has none "
                                  "(use canonical or list phrases)")
            scene = scene_negatives(labels or [], positives)
            if mode == "scene":
                if not scene:
                    raise ConfigError("every scene label is named by the query, so no negatives are left")
                return scene
            return list(dict.fromkeys(scene + [n for n in CANONICAL_NEGATIVES if n not in positives]))
        phrases = split_phrases(negatives, "negatives") if isinstance(negatives, str) else [
            p for n in negatives for p in split_phrases(n, "negatives")]
        return list(dict.fromkeys(phrases))

    def _texts(self, query: str | Sequence[str], negatives, teacher: str | None
               ) -> tuple[str, list[str], list[str], Tensor, Tensor]:
        positives = split_positives(query) if isinstance(query, str) else [
            p for q in query for p in split_positives(q)]
        name = self.text_teacher(teacher)
        negs = self.resolve_negatives(positives, negatives)
        emb = self.encode_text(positives + negs, name)
        return name, positives, negs, emb[:len(positives)], emb[len(positives):]

    # ---- scoring --------------------------------------------------------------------------------------------
    def scores(self, rows: Tensor, texts: Tensor, teacher: str, exact: bool = False,
               chunk: int = DEFAULT_CHUNK) -> Tensor:
        """Cosine of decoded rows (per-Gaussian latents or rendered pixels) [N, F] to unit texts [Q, D] -> [N, Q].

        A linear decoder head is folded into the texts (see :func:`.relevancy.linear_cosine_scores`) unless
        ``exact``, which decodes every row chunk by chunk; both give the same numbers."""
        head = self.field.decoder.heads[teacher] if teacher in self.field.decoder.heads else None
        if isinstance(head, nn.Linear) and not exact:
            return linear_cosine_scores(rows, head.weight.detach(), head.bias.detach() if head.bias is not None
                                        else None, texts, chunk)
        return cosine_scores(rows, texts, lambda x: self.field.decoder(x, teacher), chunk)

    @torch.no_grad()
    def relevancy_2d(self, query: str | Sequence[str], view: View, *, negatives: str | Sequence[str] = "auto",
                     teacher: str | None = None, temperature: float = TEMPERATURE,
                     out: FieldRender | None = None) -> Relevancy2D:
        """LERF relevancy of every pixel of a rendered view, per positive: [P, H, W]."""
        name, pos, negs, tp, tn = self._texts(query, negatives, teacher)
        out = out if out is not None else self.render(view)
        if out.features is None:
            raise ConfigError(f"{self.source}: the field has no feature channels")
        rows = out.features.reshape(-1, out.features.shape[-1])
        s = self.scores(rows, torch.cat([tp, tn]), name)
        rel = relevancy_from_scores(s[:, :len(pos)], s[:, len(pos):], temperature)  # [HW, P]
        rel = rel.T.reshape(len(pos), view.height, view.width)
        rel = torch.where(out.alpha[None] >= MIN_ALPHA, rel, torch.zeros_like(rel))
        return Relevancy2D(view, pos, negs, rel, out)

    @torch.no_grad()
    def relevancy_3d(self, query: str | Sequence[str], *, negatives: str | Sequence[str] = "auto",
                     teacher: str | None = None, temperature: float = TEMPERATURE, exact: bool = False,
                     chunk: int = DEFAULT_CHUNK) -> Relevancy3D:
        """LERF relevancy of every Gaussian's own decoded feature: [P, N]."""
        name, pos, negs, tp, tn = self._texts(query, negatives, teacher)
        s = self.scores(self.field.features.detach(), torch.cat([tp, tn]), name, exact=exact, chunk=chunk)
        rel = relevancy_from_scores(s[:, :len(pos)], s[:, len(pos):], temperature)
        return Relevancy3D(pos, negs, rel.T.contiguous())

    def select(self, query: str | Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
               min_opacity: float = DEFAULT_MIN_OPACITY, clean: bool = False, negatives: str | Sequence[str] = "auto",
               teacher: str | None = None, relevancy: Relevancy3D | None = None) -> Selection:
        """Gaussians whose relevancy to any positive exceeds ``threshold`` and whose opacity is >= ``min_opacity``;
        ``clean`` keeps the largest connected component."""
        _check_unit("threshold", threshold)
        rel = relevancy if relevancy is not None else self.relevancy_3d(query, negatives=negatives, teacher=teacher)
        sel = Selection(rel.combined.cpu() > threshold).opaque(self.field.opacities.cpu(), min_opacity)
        if clean:
            sel = sel.largest_component(self.field.means.detach().cpu())
        return sel

    def select_by_views(self, query: str | Sequence[str], *, views: str | Sequence[int | str] = "train",
                        threshold: float = DEFAULT_THRESHOLD, min_opacity: float = DEFAULT_MIN_OPACITY,
                        clean: bool = False, negatives: str | Sequence[str] = "auto", teacher: str | None = None,
                        min_weight: float = 0.5) -> Selection:
        """Gaussians seen as the query: more than half of their blending weight over ``views`` falls inside the
        query's rendered 2D masks (multi-view lifting, ~0.15 s per view on this CPU).

        :meth:`select` reads each Gaussian's own feature; a Gaussian that is rarely in front (along an object's
        contact with the table, or half hidden) has a poorly supervised one, but what it renders into is what the
        masks say. Gaussians with less than ``min_weight`` pixels of weight in all views together are never
        selected (they are not seen)."""
        return self.select_each_by_views([query], views=views, threshold=threshold, min_opacity=min_opacity,
                                         clean=clean, negatives=negatives, teacher=teacher, min_weight=min_weight)[0]

    def select_each_by_views(self, queries: Sequence[str | Sequence[str]], *,
                             views: str | Sequence[int | str] = "train", threshold: float = DEFAULT_THRESHOLD,
                             min_opacity: float = DEFAULT_MIN_OPACITY, clean: bool = False,
                             negatives: str | Sequence[str] = "auto", teacher: str | None = None,
                             min_weight: float = 0.5) -> list[Selection]:
        """:meth:`select_by_views` for several queries at once: one render and one weight pass per view for all."""
        _check_unit("threshold", threshold)
        n, q = len(self.field), len(queries)
        inside = torch.zeros(n, q)
        total = torch.zeros(n)
        for v in self.views(views):
            out = self.render(v)
            masks = [self.relevancy_2d(query, v, negatives=negatives, teacher=teacher, out=out).mask(threshold)
                     for query in queries]
            w = mask_weights(self.field, v, torch.stack(masks + [torch.ones_like(masks[0])], -1).float()).cpu()
            inside += w[:, :q]
            total += w[:, q]
        seen = total >= min_weight
        out_sel = []
        for j in range(q):
            sel = Selection((inside[:, j] > 0.5 * total) & seen).opaque(self.field.opacities.cpu(), min_opacity)
            out_sel.append(sel.largest_component(self.field.means.detach().cpu()) if clean else sel)
        return out_sel

    # ---- prompts --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt(self, view: View, *, point: Sequence[float] | None = None, box: Sequence[float] | None = None,
               teacher: str | None = None, threshold: float = DEFAULT_SIMILARITY,
               min_opacity: float = DEFAULT_MIN_OPACITY, clean: bool = False) -> PromptResult:
        """A click ``point`` (x, y) or a ``box`` (x0, y0, x1, y1), in pixels of ``view``, -> 2D mask + 3D selection.

        With ``teacher='sam'`` (the default when SAM is the field's only teacher) the rendered SAM embedding goes
        through SAM's prompt encoder and mask decoder and the mask is lifted to 3D; with any other teacher the
        reference feature at the prompt is compared (cosine > ``threshold``) with every pixel and every Gaussian."""
        _check_prompt(view, point, box)
        _check_unit("threshold", threshold, lo=-1.0)
        names = self.teacher_names
        if not names:
            raise ConfigError(f"{self.source}: the field has no teachers (colour only), so prompts have no features "
                              "to compare")
        if teacher is None:
            teacher = next((n for n in names if n != "sam"), names[0])
        elif teacher not in names:
            raise ConfigError(f"{self.source}: the field has no {teacher!r} teacher; it has {_names(names)}")
        out = self.render(view)
        if teacher == "sam":
            mask, logits = self._sam_mask(view, out, point, box)
            sel = lift_mask(self.field, view, mask, out).opaque(self.field.opacities.cpu(), min_opacity)
            if clean:
                sel = sel.largest_component(self.field.means.detach().cpu())
            return PromptResult(view, mask, logits, sel, "sam", teacher)

        feats = F.normalize(self.decoded(out, teacher).float(), dim=-1)  # [H, W, D]
        ref = _reference_feature(feats, point, box, threshold)  # [D]
        sim = feats @ ref  # [H, W]
        inside = _box_mask(view, box) if box is not None else torch.ones_like(sim, dtype=torch.bool)
        mask = (sim > threshold) & inside & (out.alpha >= MIN_ALPHA)
        # per-Gaussian: decoded own feature vs the reference (same fold as text queries)
        g = self.scores(self.field.features.detach(), ref[None], teacher)[:, 0].cpu()
        sel_mask = g > threshold
        if box is not None:  # a box also says where: keep Gaussians whose centre projects into it
            uv, z = project_points(self.field.means.detach(), view)
            x0, y0, x1, y1 = box
            sel_mask &= ((z > 0) & (uv[:, 0] >= x0) & (uv[:, 0] < x1) & (uv[:, 1] >= y0) & (uv[:, 1] < y1)).cpu()
        sel = Selection(sel_mask).opaque(self.field.opacities.cpu(), min_opacity)
        if clean:
            sel = sel.largest_component(self.field.means.detach().cpu())
        return PromptResult(view, mask.cpu(), sim.cpu(), sel, "similarity", teacher, ref.cpu())

    def _sam_mask(self, view: View, out: FieldRender, point, box) -> tuple[Tensor, Tensor]:
        """Rendered SAM embedding -> SAM's prompt encoder + mask decoder -> ([H, W] mask, [H, W] logits)."""
        sam_t = self.teacher("sam")
        sam = getattr(sam_t, "sam", None)
        if sam is None:
            raise ConfigError("the sam teacher of this field has no SAM model to decode prompts with")
        emb = self.decoded(out, "sam").float()  # [H, W, 256]
        h_in, w_in = sam_t.input_size(view.height, view.width)
        grid_e = tuple(int(x) for x in sam.prompt_encoder.image_embedding_size)
        gh, gw = min(math.ceil(h_in / sam_t.patch), grid_e[0]), min(math.ceil(w_in / sam_t.patch), grid_e[1])
        small = F.interpolate(emb.permute(2, 0, 1)[None], size=(gh, gw), mode="bilinear", align_corners=False,
                              antialias=True)
        full = small.new_zeros(1, emb.shape[-1], *grid_e)
        full[..., :gh, :gw] = small  # SAM's map covers the padded square; the image is its top-left part
        dev = next(sam.mask_decoder.parameters()).device
        full = full.to(dev)
        points = boxes = None
        if point is not None:
            xy = sam_t.to_input_coords(torch.tensor([[point[0], point[1]]], dtype=torch.float32), view.height,
                                       view.width)
            points = (xy[None].to(dev), torch.ones(1, 1, dtype=torch.int, device=dev))
        if box is not None:
            corners = torch.tensor([[box[0], box[1]], [box[2], box[3]]], dtype=torch.float32)
            boxes = sam_t.to_input_coords(corners, view.height, view.width).reshape(1, 4).to(dev)
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        low, iou = sam.mask_decoder(image_embeddings=full, image_pe=sam.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=True)
        best = int(iou[0].argmax())
        logits = sam.postprocess_masks(low[:, best:best + 1], (h_in, w_in), (view.height, view.width))[0, 0]
        logits = logits.float().cpu()
        return logits > sam.mask_threshold, logits


# ---- helpers --------------------------------------------------------------------------------------------------
# How a foundation-model teacher's recorded config maps back onto make_teacher options:
# name -> (option naming the model, option naming pretrained weights, options for random-init weights, kept keys)
_REBUILD = {
    "clip": ("model", "pretrained", {"pretrained": None}, ("mode", "resolution")),
    "sam": ("model_type", None, {"random_init": True}, ("normalize",)),
}


def build_teacher(record: dict, train_config: dict | None = None) -> Teacher:
    """Rebuild a teacher from a checkpoint's record ({name, dim, config}) and the run's --teacher-checkpoint map,
    so queries use the same text tower / SAM decoder the field was trained against."""
    name = record["name"]
    cfg = record.get("config", {}) or {}
    ckpts = (train_config or {}).get("teacher_checkpoints", {}) or {}
    opts: dict = {}
    model = cfg.get("model")
    weights = cfg.get("weights")
    if name == "labels":
        if cfg.get("model_path"):
            opts["model_path"] = cfg["model_path"]
    elif name in _REBUILD:
        model_key, pretrained_key, random_init, kept = _REBUILD[name]
        if isinstance(model, dict):
            opts["arch"] = model.get("arch")
        elif model:
            opts[model_key] = model
        if name in ckpts:
            opts["checkpoint"] = ckpts[name]
        elif weights == "random-init":
            opts.update(random_init)
        elif weights and pretrained_key:
            opts[pretrained_key] = weights
        opts.update({k: cfg[k] for k in kept if k in cfg})
    elif name in ckpts:
        opts["checkpoint"] = ckpts[name]
    return make_teacher(name, **opts)


def _text_aligned(name: str) -> bool:
    from ..teachers import _factory

    try:
        return bool(getattr(_factory(name)[1], "text_aligned", False))
    except ConfigError:
        return False


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none (colour only)"


def _check_unit(what: str, value: float, lo: float = 0.0) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= 1):
        raise ConfigError(f"{what} must be a number in [{lo:g}, 1], not {value}")


def _check_prompt(view: View, point, box) -> None:
    if (point is None) == (box is None):
        raise QueryError("give exactly one prompt: a point (x, y) or a box (x0, y0, x1, y1)")
    w, h = view.width, view.height
    if point is not None:
        if len(point) != 2 or not all(math.isfinite(float(c)) for c in point):
            raise QueryError(f"a point prompt is two numbers x,y, not {list(point)}")
        x, y = float(point[0]), float(point[1])
        if not (0 <= x < w and 0 <= y < h):
            raise QueryError(f"point prompt ({x:g}, {y:g}) is outside the {w}x{h} view {view.name} "
                             f"(x in [0, {w}), y in [0, {h}))")
    else:
        if len(box) != 4 or not all(math.isfinite(float(c)) for c in box):
            raise QueryError(f"a box prompt is four numbers x0,y0,x1,y1, not {list(box)}")
        x0, y0, x1, y1 = (float(c) for c in box)
        if not (x0 < x1 and y0 < y1):
            raise QueryError(f"box prompt ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty: need x0 < x1 and y0 < y1")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise QueryError(f"box prompt ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {w}x{h} view {view.name}")
        if int(math.ceil(x1)) <= int(x0) or int(math.ceil(y1)) <= int(y0):
            raise QueryError(f"box prompt ({x0:g}, {y0:g}, {x1:g}, {y1:g}) covers no pixel centre")


def _box_mask(view: View, box) -> Tensor:
    ys = torch.arange(view.height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(view.width, dtype=torch.float32)[None, :] + 0.5
    x0, y0, x1, y1 = (float(c) for c in box)
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def _reference_feature(feats: Tensor, point, box, threshold: float = DEFAULT_SIMILARITY) -> Tensor:
    """The feature a prompt points at: [D] unit.

    A point: the mean over its 3x3 pixel neighbourhood. A box: what is inside it but not around it. Candidate
    features (a sample of the box's pixels) are scored by the fraction of box pixels similar to them (cosine >
    ``threshold``) minus the fraction of pixels in a ring around the box that are; the best candidate's similar box
    pixels are averaged. A loose box around a mug on a table then picks the mug, not the table that fills more of
    the box but also surrounds it."""
    h, w, d = feats.shape
    if point is not None:
        x, y = int(point[0]), int(point[1])
        patch = feats[max(0, y - 1):min(h, y + 2), max(0, x - 1):min(w, x + 2)].reshape(-1, d)
        return F.normalize(patch.mean(0), dim=0)
    x0, y0 = int(math.floor(box[0])), int(math.floor(box[1]))
    x1, y1 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    mx, my = max(2, (x1 - x0) // 4), max(2, (y1 - y0) // 4)
    ring = torch.zeros(h, w, dtype=torch.bool)
    ring[max(0, y0 - my):y1 + my, max(0, x0 - mx):x1 + mx] = True
    ring &= ~inside
    f_in, f_ring = feats[inside.to(feats.device)], feats[ring.to(feats.device)]
    g = torch.Generator().manual_seed(0)
    cand = f_in[torch.randperm(len(f_in), generator=g)[:256].to(feats.device)]  # [C, D]
    in_frac = ((f_in @ cand.T) > threshold).float().mean(0)  # [C]
    ring_frac = ((f_ring @ cand.T) > threshold).float().mean(0) if len(f_ring) else torch.zeros_like(in_frac)
    best = cand[int((in_frac - ring_frac).argmax())]
    members = f_in[(f_in @ best) > threshold]
    return F.normalize((members if len(members) else best[None]).mean(0), dim=0)


def project_points(points: Tensor, view: View) -> tuple[Tensor, Tensor]:
    """World points [N, 3] -> (pixel coordinates [N, 2] with pixel centres at +0.5, camera depth z [N])."""
    w2c = torch.linalg.inv(view.c2w.to(points.device).float())
    cam = points.float() @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    K = view.K.to(points.device).float()
    zs = z.clamp_min(1e-9)
    uv = torch.stack([K[0, 0] * cam[:, 0] / zs + K[0, 2], K[1, 1] * cam[:, 1] / zs + K[1, 2]], -1)
    return uv, z


def mask_weights(field: GaussianField, view: View, masks: Tensor) -> Tensor:
    """Each Gaussian's blending weight summed over each mask's pixels: masks [H, W, M] -> [N, M].

    The rendered image is linear in the per-Gaussian colours with the blending weights as coefficients, so the
    gradient of sum(image * masks) with respect to M colour channels that are all zero is exactly these sums (one
    forward and one backward pass, on any backend)."""
    dev = field.means.device
    colors = torch.zeros(len(field), masks.shape[-1], device=dev, requires_grad=True)
    with torch.enable_grad():
        out = render(field.means.detach(), field.quats.detach(), field.scales.detach(), field.opacities.detach(),
                     colors, torch.linalg.inv(view.c2w.to(dev).float()), view.K.to(dev).float(), view.width,
                     view.height)
        (out.image * masks.to(out.image)).sum().backward()
    return colors.grad


def lift_mask(field: GaussianField, view: View, mask: Tensor, out: FieldRender) -> Selection:
    """A 2D mask in a view -> the Gaussians behind it: centre projects into the mask, and lies between the visible
    surface there and one object-width behind it (the object is assumed about as deep as it is wide)."""
    n = len(field)
    mask = mask.cpu()
    if not mask.any():
        return Selection.none(n)
    uv, z = project_points(field.means.detach(), view)
    uv, z = uv.cpu(), z.cpu()
    px = uv.floor().long()
    inside = (z > 0) & (px[:, 0] >= 0) & (px[:, 0] < view.width) & (px[:, 1] >= 0) & (px[:, 1] < view.height)
    hit = torch.zeros(n, dtype=torch.bool)
    idx = inside.nonzero()[:, 0]
    hit[idx] = mask[px[idx, 1], px[idx, 0]]
    alpha = out.alpha.cpu()
    depth = (out.depth.cpu() / alpha.clamp_min(1e-6))[mask & (alpha > 0.5)]
    if depth.numel() == 0:
        return Selection(hit)
    ys, xs = mask.nonzero(as_tuple=True)
    extent_px = float(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    width_m = extent_px * float(depth.median()) / float(view.K[0, 0])
    lo, hi = float(depth.min()) - 0.25 * width_m, float(depth.max()) + width_m
    return Selection(hit & (z >= lo) & (z <= hi))


def interpolated_views(scene: SceneData, n: int) -> list[View]:
    """n novel poses halfway between consecutive frames (position lerp, rotation slerp), spread over the scene."""
    cams = scene.cameras
    if len(cams) < 2:
        raise QueryError("novel views need a scene with at least two frames")
    picks = np.linspace(0, len(cams) - 2, n).round().astype(int)
    views = []
    for j, i in enumerate(picks):
        a, b = cams.c2w[i].double(), cams.c2w[i + 1].double()
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = _slerp_rot(a[:3, :3], b[:3, :3], 0.5)
        c2w[:3, 3] = 0.5 * (a[:3, 3] + b[:3, 3])
        views.append(View(f"novel_{j:03d}", c2w.float(), cams.K[i], cams.width, cams.height))
    return views


def _slerp_rot(ra: Tensor, rb: Tensor, t: float) -> Tensor:
    from scipy.spatial.transform import Rotation, Slerp

    rots = Rotation.from_matrix(np.stack([ra.numpy(), rb.numpy()]))
    return torch.from_numpy(Slerp([0.0, 1.0], rots)([t]).as_matrix()[0])


def views_from_camera_file(path: str | Path, default: View | None = None) -> list[View]:
    """Novel views from a JSON file: one camera or a list (or {"frames": [...]}). Each has either ``c2w``
    (OpenCV camera-to-world) or ``transform_matrix`` (nerfstudio/OpenGL), and either ``K`` or fl_x/fl_y/cx/cy
    plus ``width``/``height`` (or w/h); missing intrinsics come from ``default`` (a scene frame)."""
    path = Path(path)
    data = read_json(path)
    items = data.get("frames", [data]) if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise DataError(f"{path}: expected a camera object, a list of them, or {{\"frames\": [...]}}")
    views = []
    for j, c in enumerate(items):
        where = f"{path} camera {j}"
        if not isinstance(c, dict):
            raise DataError(f"{where}: not an object")
        try:
            if "c2w" in c:
                c2w = torch.tensor(c["c2w"], dtype=torch.float64)
            elif "transform_matrix" in c:
                c2w = torch.tensor(c["transform_matrix"], dtype=torch.float64) @ GL_TO_CV.double()
            else:
                raise DataError(f"{where}: needs 'c2w' (OpenCV) or 'transform_matrix' (nerfstudio)")
            if c2w.shape == (3, 4):
                c2w = torch.cat([c2w, torch.tensor([[0.0, 0, 0, 1]], dtype=torch.float64)])
            w = int(c.get("width", c.get("w", default.width if default else 0)))
            h = int(c.get("height", c.get("h", default.height if default else 0)))
            if "K" in c:
                K = torch.tensor(c["K"], dtype=torch.float32)
            elif "fl_x" in c:
                K = torch.tensor([[c["fl_x"], 0, c.get("cx", w / 2)], [0, c.get("fl_y", c["fl_x"]), c.get("cy", h / 2)],
                                  [0, 0, 1]], dtype=torch.float32)
            elif default is not None:
                K = default.K.clone()
            else:
                raise DataError(f"{where}: needs intrinsics ('K' or fl_x/fl_y/cx/cy)")
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{where}: malformed camera ({e})") from None
        if c2w.shape != (4, 4) or K.shape != (3, 3) or w < 1 or h < 1:
            raise DataError(f"{where}: need a 4x4 pose, a 3x3 K and a positive width and height")
        if not (torch.isfinite(c2w).all() and torch.isfinite(K).all()):
            raise DataError(f"{where}: pose or intrinsics contain NaN or inf")
        rot = c2w[:3, :3]
        if not torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-3):
            raise DataError(f"{where}: the pose's rotation is not orthonormal")
        views.append(View(str(c.get("name", f"{path.stem}_{j:03d}")), c2w.float(), K, w, h))
    return views
