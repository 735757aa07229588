"""The CLIP teacher (open_clip): dense, text-aligned patch features.

CLIP only ever learned one embedding per image, so a dense map needs a trick. Two are offered:

- ``mode="maskclip"`` (MaskCLIP / F3RM): in the last transformer block, each patch token's *value* embedding goes
  through the attention's output projection, the final layer norm and the image projection, skipping the query-key
  mixing (and that block's residual and MLP). Every patch then lands in the text-embedding space; one forward pass.
- ``mode="multiscale"`` (LERF): square crops at a few scales (fractions of the image's shorter side) on an
  overlapping grid, each encoded by the normal image encoder; every output cell averages the crops covering its
  centre, per scale, then over scales. Slower (hundreds of crops per view) but uses CLIP as trained.

Both give ``[h, w, D]`` unit vectors on the patch grid of the image resized so its longer side is ``resolution``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before open_clip pulls in huggingface_hub

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, FFError
from .base import Teacher, TeacherInput, TeacherOutput
from .weights import (
    Candidate,
    check_checkpoint,
    featurefields_weights_dir,
    find_weights,
    load_or_fail,
)

MODES = ("maskclip", "multiscale")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def patch_grid(height: int, width: int, resolution: int, patch: int) -> tuple[int, int]:
    """Patch grid (rows, cols) of an image resized so its longer side is ~``resolution``, sides multiples of ``patch``."""
    s = resolution / max(height, width)
    return max(1, round(height * s / patch)), max(1, round(width * s / patch))


def grid_batches(views: Sequence, resolution: int, patch: int, batch_size: int):
    """(patch grid, model input size (h, w), view indices) per batch of at most ``batch_size``: views grouped by
    the patch grid their size maps to, so that each batch stacks into one tensor."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault(patch_grid(v.height, v.width, resolution, patch), []).append(i)
    for grid, idx in groups.items():
        for s in range(0, len(idx), batch_size):
            yield grid, (grid[0] * patch, grid[1] * patch), idx[s : s + batch_size]


def to_model_input(image: Tensor, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                   device: str | torch.device = "cpu") -> Tensor:
    """uint8 [H, W, 3] -> normalised float [3, h, w] at ``size`` (bicubic, antialiased like PIL)."""
    x = image.to(device).permute(2, 0, 1).float().div_(255.0)[None]  # [1, 3, H, W]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s)[0]


def crop_boxes(height: int, width: int, scale: float, overlap: float = 0.5) -> Tensor:
    """Square crops of side ``scale * min(H, W)`` on a grid covering the image: [K, 4] int (x0, y0, x1, y1).

    Neighbours overlap by ``overlap`` of a side (stride ``side * (1 - overlap)``); the last row/column is flush with
    the image edge, so together the boxes cover every pixel.
    """
    if not 0 < scale <= 1:
        raise ConfigError(f"clip crop scale {scale} must be in (0, 1] (a fraction of the image's shorter side)")
    if not 0 <= overlap < 1:
        raise ConfigError(f"clip crop overlap {overlap} must be in [0, 1)")
    side = max(1, round(scale * min(height, width)))
    stride = max(1.0, side * (1.0 - overlap))

    def starts(extent: int) -> Tensor:
        if side >= extent:
            return torch.zeros(1, dtype=torch.long)
        n = math.ceil((extent - side) / stride) + 1
        return torch.linspace(0, extent - side, n).round().long()

    ys, xs = starts(height), starts(width)
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y0.reshape(-1), x0.reshape(-1)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


class ClipTeacher(Teacher):
    """Dense open_clip features in the text-embedding space (``D`` = the model's embed_dim, 512 for ViT-B-16).

    Options: ``model`` (an open_clip ViT name), ``pretrained`` (an open_clip tag found in the local caches, or None
    for random weights), ``checkpoint`` (a weights file, overrides ``pretrained``), ``mode`` (maskclip|multiscale),
    ``resolution`` (longer image side fed to the model; sets the output grid), ``scales``/``overlap``/``crop_batch``
    (multiscale crops), ``batch_size`` (views per forward), ``device``, and ``arch`` (an open_clip model config dict
    used instead of ``model``'s, for small random test models).
    """

    name = "clip"
    text_aligned = True

    def __init__(
        self,
        model: str = "ViT-B-16",
        pretrained: str | None = "openai",
        checkpoint: str | os.PathLike | None = None,
        mode: str = "maskclip",
        resolution: int = 448,
        scales: Sequence[float] = (0.1, 0.25, 0.5),
        overlap: float = 0.5,
        crop_batch: int = 64,
        batch_size: int = 4,
        device: str = "cpu",
        arch: dict | None = None,
    ):
        if mode not in MODES:
            raise ConfigError(f"clip mode {mode!r} is not one of {', '.join(MODES)}")
        if int(resolution) < 1 or int(batch_size) < 1 or int(crop_batch) < 1:
            raise ConfigError("clip resolution, batch_size and crop_batch must be positive")
        self.model_name = str(model)
        self.mode = mode
        self.resolution = int(resolution)
        self.scales = tuple(float(s) for s in scales)
        self.overlap = float(overlap)
        for s in self.scales:
            crop_boxes(2, 2, s, self.overlap)  # validates scale and overlap now rather than mid-run
        if mode == "multiscale" and not self.scales:
            raise ConfigError("clip multiscale mode needs at least one crop scale")
        self.crop_batch = int(crop_batch)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.arch = None if arch is None else dict(arch)
        self.weights: str | None = None  # the file loaded; None for random init
        self.pretrained = None if checkpoint is not None else pretrained

        import open_clip

        tag_cfg: dict = {}
        path = None
        if checkpoint is not None:
            path = check_checkpoint(checkpoint, "CLIP")
        elif pretrained:
            path, tag_cfg = self._find_pretrained(open_clip, self.model_name, str(pretrained))
        self.model = self._build(open_clip, bool(tag_cfg.get("quick_gelu", False)))
        if path is not None:
            load_or_fail("CLIP", path, lambda p: open_clip.load_checkpoint(self.model, str(p)))
            self.weights = str(path)
        self.model.eval().requires_grad_(False).to(self.device)

        visual = self.model.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer) or visual.attn_pool is not None:
            raise ConfigError(f"clip model {self.model_name!r} is not a plain ViT; dense CLIP features need one")
        self.patch = int(visual.patch_size[0])
        self.image_size = tuple(int(s) for s in visual.image_size)  # native input (multiscale crops use it)
        pp = getattr(visual, "preprocess_cfg", None) or {}
        self.mean = tuple(tag_cfg.get("mean") or pp.get("mean") or OPENAI_MEAN)
        self.std = tuple(tag_cfg.get("std") or pp.get("std") or OPENAI_STD)
        self.dim = int(visual.proj.shape[1])
        self._tokenizer = None

    # ---- construction -------------------------------------------------------------------------------------------

    @staticmethod
    def _find_pretrained(open_clip, model: str, tag: str):
        cfg = open_clip.get_pretrained_cfg(model, tag)
        if not cfg:
            if os.path.isfile(os.path.expanduser(tag)):  # open_clip also accepts a file as ``pretrained``
                return check_checkpoint(tag, "CLIP"), {}
            tags = open_clip.list_pretrained_tags_by_model(model)
            known = ", ".join(tags) if tags else "none"
            raise ConfigError(f"clip pretrained tag {tag!r} is unknown for {model}; known tags: {known}")
        candidates: list[Candidate] = []
        if cfg.get("file"):
            candidates.append(Candidate(path=_p(cfg["file"])))
        hub = cfg.get("hf_hub", "")
        if hub:
            repo, filename = os.path.split(hub)
            filename = filename or "open_clip_pytorch_model.bin"
            if filename.endswith((".bin", ".pth")):
                candidates.append(Candidate(hf_repo=repo, hf_file=filename[:-4] + ".safetensors"))
            candidates.append(Candidate(hf_repo=repo, hf_file=filename))
        url = cfg.get("url", "")
        if url:
            base = os.path.basename(url)
            candidates.append(Candidate(path=_p("~/.cache/clip") / base))
            candidates.append(Candidate(path=featurefields_weights_dir("clip") / base))
        hint = (
            f"fetch them once on a machine with network, e.g. python -c \"import open_clip; "
            f"open_clip.create_model('{model}', pretrained='{tag}')\", and copy the Hugging Face cache over"
        )
        return find_weights(f"CLIP {model}/{tag}", candidates, hint), cfg

    def _build(self, open_clip, quick_gelu: bool):
        if self.arch is not None:
            cfg = dict(self.arch)
            if quick_gelu:
                cfg["quick_gelu"] = True
            try:
                return open_clip.model.CLIP(**cfg)
            except TypeError as e:
                raise ConfigError(f"clip arch config is not a valid open_clip model config: {e}") from None
        if self.model_name not in open_clip.list_models():
            raise ConfigError(f"clip model {self.model_name!r} is not a built-in open_clip model (e.g. ViT-B-16)")
        return open_clip.create_model(self.model_name, pretrained=None, force_quick_gelu=quick_gelu)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "model": self.model_name if self.arch is None else {"arch": self.arch},
            # The tag when weights came from one (stable across machines), else the file, else random.
            "weights": "random-init" if self.weights is None else (self.pretrained or self.weights),
            "mode": self.mode,
            "resolution": self.resolution,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.mode == "multiscale":
            cfg["scales"] = list(self.scales)
            cfg["overlap"] = self.overlap
        return cfg

    # ---- text ---------------------------------------------------------------------------------------------------

    def encode_text(self, texts: list[str]) -> Tensor:
        """[Q, D] float32 unit vectors from the same model's tokenizer and text tower."""
        import open_clip

        if isinstance(texts, str):
            texts = [texts]
        if self._tokenizer is None:
            if self.arch is not None:
                self._tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=self.model.context_length)
            else:
                try:
                    self._tokenizer = open_clip.get_tokenizer(self.model_name)
                except Exception as e:  # noqa: BLE001 - any tokenizer failure means the same to the user
                    raise FFError(f"cannot load the tokenizer of {self.model_name} offline: {e}") from None
        if not texts:
            return torch.zeros(0, self.dim)
        tokens = self._tokenizer([str(t) for t in texts]).to(self.device)
        with torch.inference_mode():
            emb = self.model.encode_text(tokens)
        return F.normalize(emb.float(), dim=-1).cpu()

    # ---- images -------------------------------------------------------------------------------------------------

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        outs: list[TeacherOutput | None] = [None] * len(views)
        if self.mode == "multiscale":
            for i, v in enumerate(views):
                outs[i] = self._multiscale(v)
            return outs  # type: ignore[return-value]
        for grid, size, chunk in grid_batches(views, self.resolution, self.patch, self.batch_size):
            x = torch.stack([to_model_input(views[i].image, size, self.mean, self.std, self.device) for i in chunk])
            with torch.inference_mode():
                feats = F.normalize(self.maskclip_features(x).float(), dim=-1).cpu()  # [B, h, w, D]
            for i, f in zip(chunk, feats):
                outs[i] = TeacherOutput(features=f.contiguous(), valid=torch.ones(grid, dtype=torch.bool))
        return outs  # type: ignore[return-value]

    def maskclip_features(self, x: Tensor) -> Tensor:
        """Normalised images [B, 3, H, W] (sides multiples of the patch) -> un-normalised [B, H/p, W/p, D]."""
        v = self.model.visual
        b, _, hh, ww = x.shape
        gh, gw = hh // self.patch, ww // self.patch
        t = v.conv1(x.to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # [B, gh*gw, width]
        cls = v.class_embedding.to(t.dtype).expand(b, 1, -1)
        t = torch.cat([cls, t], dim=1) + self._pos_embed(gh, gw).to(t.dtype)
        t = v.ln_pre(v.patch_dropout(t))
        blocks = v.transformer.resblocks
        if not v.transformer.batch_first:
            t = t.transpose(0, 1)
        for blk in blocks[:-1]:
            t = blk(t)
        if not v.transformer.batch_first:
            t = t.transpose(0, 1)
        last = blocks[-1]
        width = t.shape[-1]
        y = last.ln_1(t[:, 1:])
        val = F.linear(y, last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :])
        out = last.ls_1(last.attn.out_proj(val))
        feats = v.ln_post(out) @ v.proj  # [B, gh*gw, D]
        return feats.reshape(b, gh, gw, -1)

    def _pos_embed(self, gh: int, gw: int) -> Tensor:
        """The positional embedding [1 + gh*gw, width], bicubically resampled from the native grid when needed."""
        pos = self.model.visual.positional_embedding
        g0, g1 = (int(g) for g in self.model.visual.grid_size)
        if (gh, gw) == (g0, g1):
            return pos
        grid = pos[1:].reshape(1, g0, g1, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(pos.dtype)
        return torch.cat([pos[:1], grid], dim=0)

    def _multiscale(self, view: TeacherInput) -> TeacherOutput:
        hgt, wid = view.height, view.width
        gh, gw = patch_grid(hgt, wid, self.resolution, self.patch)
        img = view.image.to(self.device).permute(2, 0, 1).float().div_(255.0)  # [3, H, W]
        mean = torch.tensor(self.mean, device=self.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(3, 1, 1)
        cy = (torch.arange(gh, dtype=torch.float32) + 0.5) * hgt / gh  # output cell centres in pixels
        cx = (torch.arange(gw, dtype=torch.float32) + 0.5) * wid / gw
        total = torch.zeros(gh, gw, self.dim)
        for scale in self.scales:
            boxes = crop_boxes(hgt, wid, scale, self.overlap)  # [K, 4]
            embs = []
            for s in range(0, len(boxes), self.crop_batch):
                crops = []
                for x0, y0, x1, y1 in boxes[s : s + self.crop_batch].tolist():
                    c = F.interpolate(img[None, :, y0:y1, x0:x1], size=self.image_size, mode="bicubic",
                                      align_corners=False, antialias=True).clamp_(0, 1)[0]
                    crops.append((c - mean) / std)
                with torch.inference_mode():
                    embs.append(F.normalize(self.model.encode_image(torch.stack(crops)).float(), dim=-1).cpu())
            emb = torch.cat(embs)  # [K, D]
            bx = boxes.float()
            in_y = (cy[None] >= bx[:, 1:2]) & (cy[None] < bx[:, 3:4])  # [K, gh]
            in_x = (cx[None] >= bx[:, 0:1]) & (cx[None] < bx[:, 2:3])  # [K, gw]
            count = torch.einsum("ki,kj->ij", in_y.float(), in_x.float())
            summed = torch.einsum("ki,kj,kd->ijd", in_y.float(), in_x.float(), emb)
            total += summed / count.clamp_min(1)[..., None]
        feats = F.normalize(total / len(self.scales), dim=-1)
        return TeacherOutput(features=feats.contiguous(), valid=torch.ones(gh, gw, dtype=torch.bool))


def _p(path: str) -> Path:
    return Path(os.path.expanduser(path))
