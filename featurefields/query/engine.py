"""The query engine: one object on a :class:`~featurefields.fields.FeatureField` that answers text and prompt
queries in 2D and 3D.

The field supplies rendering, decoding, text encoders, its scene's views and its elements (the Gaussians of a
splat field); the engine adds the query logic, so the CLI, the viewer and the robot API all ask the same questions
the same way:

- ``relevancy_2d(query, view)``: LERF relevancy of a rendered (decoded) feature map, per positive phrase;
- ``relevancy_3d(query)``: the same score for every element's own decoded feature, in chunks;
- ``relevancy_points(query, xyz)``: the same score for the field's features at arbitrary world points;
- ``select(query)``: a :class:`~.selection.Selection` (relevancy > threshold, opaque enough, optionally cleaned);
- ``prompt(view, point=|box=)``: a click or box -> 2D mask + 3D selection, by feature similarity in that view, or
  through SAM's own prompt decoder when the field carries the ``sam`` teacher.

Everything here runs under ``torch.no_grad``; geometry stays in the field's metric world frame.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..fields.base import FeatureField, View, check_points, names_or_none
from ..fields.gaussians import GaussianField
from ..fields.rendering import FieldRender
from ..fields.views import interpolated_views, views_from_camera_file  # noqa: F401  (re-exported)
from .relevancy import (
    CANONICAL_NEGATIVES,
    CATEGORIES,
    TEMPERATURE,
    TEXT_MATCH,
    QueryError,
    label_forms,
    relevancy_from_scores,
    scene_negatives,
    split_phrases,
    split_positives,
    vocabulary_matches,
)
from .selection import Selection

# How a query's negatives are chosen (see resolve_query). 'auto' is 'vocabulary' (measured best on the descriptive
# tabletop, benchmarks/results/queries_descriptive.json); the others stay selectable by name.
NEGATIVE_MODES = ("auto", "vocabulary", "vocabulary-generic", "vocabulary-window", "vocabulary-z", "similar", "words",
                  "scene", "canonical")
# the vocabulary modes' text-matching rule (relevancy.MATCH_RULES); 'auto', 'vocabulary', 'scene' and 'similar' use
# 'category'
_MATCH_RULE_OF_MODE = {"vocabulary-generic": "generic", "vocabulary-window": "window", "vocabulary-z": "zscore"}
DEFAULT_THRESHOLD = 0.5  # relevancy above it: the positive beats every negative (LERF's pairwise softmax > 1/2)
DEFAULT_MIN_OPACITY = 0.3  # Gaussians below it are mostly see-through and carry poorly supervised features
DEFAULT_SIMILARITY = 0.8  # cosine to a prompt's reference feature above which a pixel/Gaussian belongs to it
MIN_ALPHA = 0.05  # pixels the field barely covers have no feature to speak of: relevancy 0 there


@dataclass
class QueryTexts:
    """A query resolved against the scene's vocabulary: what is compared with every feature."""
    teacher: str
    positives: list[str]
    negatives: list[str]
    stands_for: list[list[str]]  # per positive: the scene labels that also score for it ([] in the plain modes)
    embeddings: Tensor = dc_field(repr=False)  # [sum(1 + len(stands_for[k])) + len(negatives), D] unit

    @property
    def groups(self) -> list[list[int]]:  # rows of the embeddings that score for each positive
        out, i = [], 0
        for extra in self.stands_for:
            out.append(list(range(i, i + 1 + len(extra))))
            i += 1 + len(extra)
        return out

    @property
    def num_positive_rows(self) -> int:
        return sum(1 + len(e) for e in self.stands_for)

    def relevancy(self, scores: Tensor, temperature: float = TEMPERATURE) -> Tensor:
        """Cosines to the embeddings [..., rows] -> relevancy [..., P]."""
        k = self.num_positive_rows
        return relevancy_from_scores(scores[..., :k], scores[..., k:], temperature, self.groups)


@dataclass
class Relevancy2D:
    view: View
    positives: list[str]
    negatives: list[str]
    relevancy: Tensor  # [P, H, W] in (0, 1); 0 where the field does not cover the pixel
    render: FieldRender = dc_field(repr=False)
    stands_for: list[list[str]] = dc_field(default_factory=list)  # per positive: scene labels it also answers by

    @property
    def combined(self) -> Tensor:  # [H, W]: relevant to any positive
        return self.relevancy.max(dim=0).values

    def mask(self, threshold: float = DEFAULT_THRESHOLD) -> Tensor:  # [H, W] bool
        return self.combined > threshold


@dataclass
class Relevancy3D:
    positives: list[str]
    negatives: list[str]
    relevancy: Tensor  # [P, N] per element (or per query point)
    stands_for: list[list[str]] = dc_field(default_factory=list)  # per positive: scene labels it also answers by

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
    """Queries on one trained field. Build it with :meth:`from_checkpoint`, from a loaded
    :class:`~featurefields.fields.FeatureField`, or from a :class:`GaussianField` in memory (``kwargs`` then
    describe it as :class:`~featurefields.fields.splats.GaussianFeatureField` takes them: teachers,
    teacher_records, train_config, scene, scene_root, world_from_scene, background, source)."""

    def __init__(self, field: FeatureField | GaussianField, **kwargs):
        if isinstance(field, GaussianField):
            from ..fields.splats import GaussianFeatureField

            field = GaussianFeatureField(field, **kwargs)
        elif kwargs:
            unknown = set(kwargs) - {"scene", "scene_root", "teachers"}
            if unknown:
                raise TypeError(f"QueryEngine on a loaded field takes only scene, scene_root and teachers, not "
                                f"{', '.join(sorted(unknown))}")
            field.attach_scene(kwargs.get("scene"), kwargs.get("scene_root"))
            field._teachers.update(kwargs.get("teachers") or {})
        self.field = field
        self.device = field.device

    # ---- construction ---------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu", **kwargs) -> "QueryEngine":
        """``kwargs``: teachers, scene, scene_root (see :func:`featurefields.load`)."""
        from ..fields.loading import load

        return cls(load(path, device=device, **kwargs))

    # ---- what the field says about itself (see FeatureField) -----------------------------------------------
    @property
    def source(self) -> str:
        return self.field.source

    @property
    def world_from_scene(self) -> Tensor:
        return self.field.world_from_scene

    @property
    def teacher_names(self) -> list[str]:
        return self.field.teacher_names

    def teacher(self, name: str):
        return self.field.teacher(name)

    def text_teacher(self, name: str | None = None) -> str:
        return self.field.text_teacher(name)

    @property
    def scene(self):
        return self.field.scene

    @property
    def label_names(self) -> list[str] | None:
        return self.field.label_names

    def frame_view(self, i: int) -> View:
        return self.field.frame_view(i)

    def views(self, spec: str | Sequence[int | str] = "test") -> list[View]:
        return self.field.views(spec)

    @torch.no_grad()
    def render(self, view: View) -> FieldRender:
        return self.field.render(view)

    @torch.no_grad()
    def decoded(self, out: FieldRender, teacher: str) -> Tensor:
        """A rendered feature map decoded to the teacher's width: [H, W, D]."""
        if out.features is None:
            raise ConfigError(f"{self.source}: the field has no feature channels")
        return self.field.decode(out.features, teacher)

    def encode_text(self, phrases: Sequence[str], teacher: str) -> Tensor:
        return self.field.encode_text(phrases, teacher)

    # ---- text -----------------------------------------------------------------------------------------------
    def resolve_negatives(self, positives: Sequence[str], negatives: str | Sequence[str] = "auto",
                          teacher: str | None = None) -> list[str]:
        """The negative phrases :meth:`resolve_query` chooses for ``positives`` (see there for the modes)."""
        return self.resolve_query(positives, negatives, teacher).negatives

    def resolve_query(self, positives: Sequence[str], negatives: str | Sequence[str] = "auto",
                      teacher: str | None = None) -> QueryTexts:
        """The one place a query's texts are chosen (2D, 3D, points, CLIs, locate and the viewer all come here).

        Modes (``negatives``):

        - 'vocabulary' ('auto', the default): each positive stands for the scene labels it names by the word rule
          or is close to in the text space (:func:`~.relevancy.vocabulary_matches`, rule 'category': only a word
          more generic than its nearest label stands for several, and of those only the labels nearer it than any
          broad reference category); those labels score for it, every other scene
          label and the canonical phrases are negatives. "banana" in a scene labelled "yellow banana" is the
          banana, "fruit" is the banana too, "tin" (like everything a little) is nothing.
        - 'vocabulary-generic', 'vocabulary-window', 'vocabulary-z': the same with the 'generic' (no category
          test), 'window' (every close label) or 'zscore' rule.
        - 'scene': the same without the canonical phrases: the best-label rule of segmentation.
        - 'similar': the scene labels the positive stands for are dropped from the negatives but do not score.
        - 'words': scene labels not named by the word rule + canonical (the rule before text matching).
        - 'canonical': object, things, stuff, texture (LERF's); or explicit phrases (a list or 'a; b').

        A scene without label names has only the canonical negatives in the scene modes ('scene' is refused)."""
        name = self.text_teacher(teacher)
        positives = list(positives)
        mode = negatives.strip() if isinstance(negatives, str) and negatives.strip() in NEGATIVE_MODES else None
        labels = [lab for lab in (self.label_names or []) if lab and str(lab).strip()]
        stands_for: list[list[str]] = [[] for _ in positives]
        if mode is None:
            phrases = split_phrases(negatives, "negatives") if isinstance(negatives, str) else [
                p for n in negatives for p in split_phrases(n, "negatives")]
            negs = list(dict.fromkeys(phrases))
        elif mode == "canonical":
            negs = list(CANONICAL_NEGATIVES)
        else:
            if mode == "scene" and not labels:
                raise ConfigError("negatives 'scene' need a scene with semantic label names; this one has none "
                                  "(use canonical or list phrases)")
            if mode == "words" or not labels:
                scene = scene_negatives(labels, positives)
            else:
                named = self._vocabulary(positives, labels, name, _MATCH_RULE_OF_MODE.get(mode, "category"))
                said = {lab for m in named for lab in m}
                scene = [lab for lab in scene_negatives(labels, []) if lab not in said]
                if mode != "similar":
                    stands_for = [[lab for lab in m if lab != p] for m, p in zip(named, positives)]
            if mode == "scene":
                if not scene:
                    raise ConfigError("every scene label is named by the query, so no negatives are left")
                negs = scene
            else:
                negs = list(dict.fromkeys(scene + [n for n in CANONICAL_NEGATIVES if n not in positives]))
        rows = [t for p, extra in zip(positives, stands_for) for t in [p] + extra]
        emb = self.encode_text(rows + negs, name)
        return QueryTexts(name, positives, negs, stands_for, emb)

    def _vocabulary(self, positives: list[str], labels: list[str], teacher: str,
                    rule: str = "category") -> list[list[str]]:
        """Per positive, the scene labels it stands for (text-space similarity to each of a label's forms, how
        near each is to the canonical phrases, and for the 'category' rule to the reference categories)."""
        match = TEXT_MATCH.get(teacher)
        if match is None:  # an encoder whose cosine scale is not calibrated: the word rule alone
            return vocabulary_matches(positives, labels, torch.full((len(positives), len(labels), 1), -1.0),
                                      rule="window")
        forms = [f for lab in labels for f in label_forms(lab)]  # [L * K]: phrase, compound, head noun
        canon, cats = list(CANONICAL_NEGATIVES), list(CATEGORIES)
        emb = self.encode_text(list(positives) + forms + canon + cats, teacher).float()
        p, n, k = len(positives), len(labels), len(forms) // max(len(labels), 1)
        q, form_e = emb[:p], emb[p:p + n * k]
        can_e, cat_e = emb[p + n * k:p + n * k + len(canon)], emb[p + n * k + len(canon):]
        sim = (q @ form_e.T).reshape(p, n, k)  # [P, L, K]
        generality = ((q @ can_e.T).max(dim=-1).values,  # [P]
                      (form_e @ can_e.T).max(dim=-1).values.reshape(n, k).max(dim=-1).values)  # [L]
        categories = (q @ cat_e.T, (form_e @ cat_e.T).reshape(n, k, len(cats)))  # [P, C], [L, K, C]
        return vocabulary_matches(positives, labels, sim, *match, rule=rule, generality=generality,
                                  categories=categories)

    def _texts(self, query: str | Sequence[str], negatives, teacher: str | None) -> QueryTexts:
        positives = split_positives(query) if isinstance(query, str) else [
            p for q in query for p in split_positives(q)]
        return self.resolve_query(positives, negatives, teacher)

    # ---- scoring --------------------------------------------------------------------------------------------
    def scores(self, rows: Tensor, texts: Tensor, teacher: str, exact: bool = False,
               chunk: int | None = None) -> Tensor:
        """Cosine of decoded rows (per-element latents or rendered pixels) [N, F] to unit texts [Q, D] -> [N, Q]
        (see :meth:`FeatureField.scores`)."""
        return self.field.scores(rows, texts, teacher, exact=exact, chunk=chunk)

    @torch.no_grad()
    def relevancy_2d(self, query: str | Sequence[str], view: View, *, negatives: str | Sequence[str] = "auto",
                     teacher: str | None = None, temperature: float = TEMPERATURE,
                     out: FieldRender | None = None) -> Relevancy2D:
        """LERF relevancy of every pixel of a rendered view, per positive: [P, H, W]."""
        t = self._texts(query, negatives, teacher)
        out = out if out is not None else self.render(view)
        if out.features is None:
            raise ConfigError(f"{self.source}: the field has no feature channels")
        rows = out.features.reshape(-1, out.features.shape[-1])
        rel = t.relevancy(self.scores(rows, t.embeddings, t.teacher), temperature)  # [HW, P]
        rel = rel.T.reshape(len(t.positives), view.height, view.width)
        rel = torch.where(out.alpha[None] >= MIN_ALPHA, rel, torch.zeros_like(rel))
        return Relevancy2D(view, t.positives, t.negatives, rel, out, t.stands_for)

    @torch.no_grad()
    def relevancy_3d(self, query: str | Sequence[str], *, negatives: str | Sequence[str] = "auto",
                     teacher: str | None = None, temperature: float = TEMPERATURE, exact: bool = False,
                     chunk: int | None = None) -> Relevancy3D:
        """LERF relevancy of every element's own decoded feature: [P, N]."""
        t = self._texts(query, negatives, teacher)
        s = self.scores(self.field.element_features(), t.embeddings, t.teacher, exact=exact, chunk=chunk)
        return Relevancy3D(t.positives, t.negatives, t.relevancy(s, temperature).T.contiguous(), t.stands_for)

    @torch.no_grad()
    def relevancy_points(self, query: str | Sequence[str], xyz: Tensor, *,
                         negatives: str | Sequence[str] = "auto", teacher: str | None = None,
                         temperature: float = TEMPERATURE, blur: float = 0.0) -> Relevancy3D:
        """LERF relevancy of the field's features at arbitrary world points ``xyz`` [M, 3] (see
        :meth:`FeatureField.query_points`, ``blur`` included): [P, M]; 0 where the field holds nothing."""
        t = self._texts(query, negatives, teacher)
        q = self.field.query_points(check_points(xyz, "query points"), teachers=[], blur=blur)
        rel = t.relevancy(self.scores(q.latent, t.embeddings, t.teacher), temperature)
        rel = torch.where(q.density[:, None] > 1e-6, rel, torch.zeros_like(rel))
        return Relevancy3D(t.positives, t.negatives, rel.T.contiguous(), t.stands_for)

    def select(self, query: str | Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
               min_opacity: float = DEFAULT_MIN_OPACITY, clean: bool = False, negatives: str | Sequence[str] = "auto",
               teacher: str | None = None, relevancy: Relevancy3D | None = None) -> Selection:
        """Gaussians whose relevancy to any positive exceeds ``threshold`` and whose opacity is >= ``min_opacity``;
        ``clean`` keeps the largest connected component."""
        _check_unit("threshold", threshold)
        rel = relevancy if relevancy is not None else self.relevancy_3d(query, negatives=negatives, teacher=teacher)
        sel = Selection(rel.combined.cpu() > threshold).opaque(self.field.element_opacities().cpu(), min_opacity)
        if clean:
            sel = sel.largest_component(self.field.element_positions().cpu())
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
            w = self.field.element_weights(v, torch.stack(masks + [torch.ones_like(masks[0])], -1).float()).cpu()
            inside += w[:, :q]
            total += w[:, q]
        seen = total >= min_weight
        out_sel = []
        for j in range(q):
            sel = Selection((inside[:, j] > 0.5 * total) & seen).opaque(self.field.element_opacities().cpu(), min_opacity)
            out_sel.append(sel.largest_component(self.field.element_positions().cpu()) if clean else sel)
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
            raise ConfigError(f"{self.source}: the field has no {teacher!r} teacher; it has {names_or_none(names)}")
        out = self.render(view)
        if teacher == "sam":
            mask, logits = self._sam_mask(view, out, point, box)
            sel = lift_mask(self.field, view, mask, out).opaque(self.field.element_opacities().cpu(), min_opacity)
            if clean:
                sel = sel.largest_component(self.field.element_positions().cpu())
            return PromptResult(view, mask, logits, sel, "sam", teacher)

        feats = F.normalize(self.decoded(out, teacher).float(), dim=-1)  # [H, W, D]
        ref = _reference_feature(feats, point, box, threshold)  # [D]
        sim = feats @ ref  # [H, W]
        inside = _box_mask(view, box) if box is not None else torch.ones_like(sim, dtype=torch.bool)
        mask = (sim > threshold) & inside & (out.alpha >= MIN_ALPHA)
        # per-Gaussian: decoded own feature vs the reference (same fold as text queries)
        g = self.scores(self.field.element_features(), ref[None], teacher)[:, 0].cpu()
        sel_mask = g > threshold
        if box is not None:  # a box also says where: keep Gaussians whose centre projects into it
            uv, z = project_points(self.field.element_positions(), view)
            x0, y0, x1, y1 = box
            sel_mask &= ((z > 0) & (uv[:, 0] >= x0) & (uv[:, 0] < x1) & (uv[:, 1] >= y0) & (uv[:, 1] < y1)).cpu()
        sel = Selection(sel_mask).opaque(self.field.element_opacities().cpu(), min_opacity)
        if clean:
            sel = sel.largest_component(self.field.element_positions().cpu())
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


def lift_mask(field: FeatureField, view: View, mask: Tensor, out: FieldRender) -> Selection:
    """A 2D mask in a view -> the Gaussians behind it: centre projects into the mask, and lies between the visible
    surface there and one object-width behind it (the object is assumed about as deep as it is wide)."""
    n = len(field)
    mask = mask.cpu()
    if not mask.any():
        return Selection.none(n)
    uv, z = project_points(field.element_positions(), view)
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
