"""The SAM teacher (segment_anything): the image encoder's 256-D embedding map.

A field that reproduces SAM's image embedding can be prompted like SAM from any novel view: render the feature map,
then hand it to SAM's own prompt encoder and mask decoder (:meth:`SamTeacher.prompt_decoder`). Features are therefore
kept raw (not L2-normalised) by default, since the decoder expects the encoder's scale.

Preprocessing is SAM's: resize the longer side to the encoder input (1024) with ``ResizeLongestSide``, normalise
and zero-pad bottom/right to a square (``Sam.preprocess``); the output is the part of the ``[64, 64]`` map covering
the image (not the padding), so an 800x600 view gives ``[48, 64, 256]``.
"""
from __future__ import annotations

import math
import os
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Teacher, TeacherInput, TeacherOutput
from .weights import (
    Candidate,
    check_checkpoint,
    featurefields_weights_dir,
    find_weights,
    load_or_fail,
    torch_hub_checkpoints_dir,
)

PROMPT_DIM = 256
# Encoder hyperparameters and official checkpoint files of the released SAM models.
MODELS: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11),
              "file": "sam_vit_b_01ec64.pth"},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23),
              "file": "sam_vit_l_0b3195.pth"},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31),
              "file": "sam_vit_h_4b8939.pth"},
}
DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


def build_sam(
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    img_size: int = 1024,
    patch_size: int = 16,
    window_size: int = 14,
    decoder_depth: int = 2,
    decoder_mlp_dim: int = 2048,
) -> nn.Module:
    """A randomly initialised ``segment_anything.modeling.Sam``; the defaults are SAM ViT-B, smaller values give
    tiny models of the same classes for tests."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    if img_size % patch_size:
        raise ConfigError(f"sam img_size {img_size} must be a multiple of patch_size {patch_size}")
    grid = img_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=4, out_chans=PROMPT_DIM, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=window_size, global_attn_indexes=tuple(global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=decoder_depth, embedding_dim=PROMPT_DIM, mlp_dim=decoder_mlp_dim,
                                          num_heads=8),
            transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


class SamPromptDecoder(nn.Module):
    """SAM's prompt encoder + mask decoder, for embeddings that came from the encoder or from a rendered field.

    Point coordinates are (x, y) pixels in the encoder's input frame, i.e. of the image after ``ResizeLongestSide``
    (use :meth:`SamTeacher.to_input_coords` for original-image pixels); labels are 1 foreground, 0 background.
    """

    def __init__(self, sam: nn.Module):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self._sam = [sam]  # for postprocess_masks, without registering the encoder as a submodule

    @torch.no_grad()
    def forward(self, image_embedding: Tensor, point_coords: Tensor, point_labels: Tensor,
                multimask_output: bool = False) -> tuple[Tensor, Tensor]:
        """[B, 256, E, E] embedding, [B, P, 2] points, [B, P] labels -> ([B, M, 4E, 4E] mask logits, [B, M] IoU)."""
        emb = image_embedding.to(self.mask_decoder.iou_token.weight.device, torch.float32)
        sparse, dense = self.prompt_encoder(points=(point_coords.to(emb.device).float(),
                                                    point_labels.to(emb.device).int()), boxes=None, masks=None)
        return self.mask_decoder(
            image_embeddings=emb, image_pe=self.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask_output,
        )

    def upscale(self, low_res: Tensor, input_size: tuple[int, int], original_size: tuple[int, int]) -> Tensor:
        """Mask logits at the original image size (padding removed), as ``Sam.postprocess_masks``."""
        return self._sam[0].postprocess_masks(low_res, input_size, original_size)


class SamTeacher(Teacher):
    """SAM image-encoder embeddings: [ceil(h'/16), ceil(w'/16), 256] float32 per view.

    Options: ``model_type`` (vit_b | vit_l | vit_h), ``checkpoint`` (the official ``sam_*.pth``; default: looked
    up in ``~/.cache/featurefields/sam/`` then the torch hub checkpoints folder), ``random_init`` (no weights: tests),
    ``arch`` (:func:`build_sam` keyword arguments replacing ``model_type``'s, for tiny test models), ``normalize``
    (L2-normalise each embedding; off by default so the decoder can read them), ``batch_size`` and ``device``.
    """

    name = "sam"
    text_aligned = False
    max_batch_size = 4  # a 1024x1024 ViT forward each; more at once only costs memory

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | os.PathLike | None = None,
        random_init: bool = False,
        arch: dict | None = None,
        normalize: bool = False,
        batch_size: int = 2,
        device: str = "cpu",
    ):
        if model_type not in MODELS:
            raise ConfigError(f"sam model_type {model_type!r} is not one of {', '.join(MODELS)}")
        if int(batch_size) < 1:
            raise ConfigError("sam batch_size must be positive")
        self.model_type = model_type
        self.arch = None if arch is None else dict(arch)
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dim = PROMPT_DIM

        path = None
        if checkpoint is not None:
            path = check_checkpoint(checkpoint, "SAM")
        elif not random_init:
            fname = MODELS[model_type]["file"]
            own = featurefields_weights_dir("sam")
            path = find_weights(
                f"SAM {model_type}",
                [Candidate(path=own / fname), Candidate(path=torch_hub_checkpoints_dir() / fname)],
                f"download {DOWNLOAD_URL}{fname} to {own / fname}",
            )
        if self.arch is not None:
            try:
                sam = build_sam(**self.arch)
            except TypeError as e:
                raise ConfigError(f"sam arch options are not build_sam arguments: {e}") from None
        else:
            spec = {k: v for k, v in MODELS[model_type].items() if k != "file"}
            sam = build_sam(**spec)
        if path is not None:
            def load(p):
                state = torch.load(p, map_location="cpu", weights_only=True)
                sam.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)

            load_or_fail("SAM", path, load)
        self.weights = None if path is None else str(path)
        self.sam = sam.eval().requires_grad_(False).to(self.device)
        self.img_size = int(self.sam.image_encoder.img_size)
        self.patch = self.img_size // int(self.sam.prompt_encoder.image_embedding_size[0])

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model_type if self.arch is None else {"arch": self.arch},
            "weights": "random-init" if self.weights is None else os.path.basename(self.weights),
            "img_size": self.img_size,
            "normalize": self.normalize,
        }

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h', w') of an image after ``ResizeLongestSide`` to the encoder input."""
        from segment_anything.utils.transforms import ResizeLongestSide

        return ResizeLongestSide.get_preprocess_shape(height, width, self.img_size)

    def to_input_coords(self, coords: Tensor, height: int, width: int) -> Tensor:
        """(x, y) pixels of an original ``height x width`` image -> the encoder input frame the decoder expects."""
        h, w = self.input_size(height, width)
        return coords.float() * torch.tensor([w / width, h / height], dtype=torch.float32)

    def prompt_decoder(self) -> SamPromptDecoder:
        """SAM's prompt encoder + mask decoder (sharing this teacher's weights), to prompt rendered embeddings."""
        return SamPromptDecoder(self.sam)

    @torch.no_grad()
    def embed(self, images: list[Tensor]) -> Tensor:
        """uint8 [H, W, 3] images -> the full padded embedding maps [B, 256, E, E] (E = img_size / 16)."""
        from segment_anything.utils.transforms import ResizeLongestSide

        resize = ResizeLongestSide(self.img_size)
        batch = []
        for img in images:
            arr = resize.apply_image(np.ascontiguousarray(img.cpu().numpy()))  # PIL resize, as SamPredictor
            x = torch.from_numpy(arr).to(self.device).permute(2, 0, 1).float()[None]
            batch.append(self.sam.preprocess(x)[0])  # normalise, pad bottom/right to img_size
        return self.sam.image_encoder(torch.stack(batch))

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        outs = []
        for s in range(0, len(views), self.batch_size):
            chunk = views[s : s + self.batch_size]
            emb = self.embed([v.image for v in chunk]).float()
            for v, e in zip(chunk, emb):
                h, w = self.input_size(v.height, v.width)
                gh, gw = math.ceil(h / self.patch), math.ceil(w / self.patch)
                f = e[:, :gh, :gw].permute(1, 2, 0)  # [gh, gw, 256]
                if self.normalize:
                    f = F.normalize(f, dim=-1)
                outs.append(TeacherOutput(features=f.cpu().contiguous(), valid=torch.ones(gh, gw, dtype=torch.bool)))
        return outs
