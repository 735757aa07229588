"""The DINO teacher: DINOv2 patch features (ViT-S/14 by default, 384-D), built with timm.

DINOv2 patch tokens carry strong part/instance structure without any text, which makes them a good target for
grouping and correspondence. The network is timm's ``vit_*_patch14_dinov2`` (the same architecture as the
``facebookresearch/dinov2`` hub models) with ``dynamic_img_size`` so any multiple of 14 works; weights come from a
local file only: the official ``dinov2_vits14_pretrain.pth`` (``torch.hub`` checkpoints folder or
``~/.cache/featurefields/dino/``), timm's copy in the Hugging Face cache, or ``checkpoint=PATH``. Both key layouts
load (timm's ``checkpoint_filter_fn`` converts the official one).

Images are resized so the longer side is ~``resolution`` with both sides multiples of 14, ImageNet-normalised; the
output is ``[h/14, w/14, D]`` patch tokens after the final norm, L2-normalised unless ``normalize=False`` (unit
vectors keep the distillation loss scale-free and the float16 cache well inside range).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Teacher, TeacherInput, TeacherOutput
from .clip import grid_batches, to_model_input
from .weights import (
    Candidate,
    check_checkpoint,
    featurefields_weights_dir,
    find_weights,
    load_or_fail,
    torch_hub_checkpoints_dir,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# name -> (timm architecture, official checkpoint file, timm's Hugging Face repo)
MODELS: dict[str, tuple[str, str, str]] = {
    "vits14": ("vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth", "timm/vit_small_patch14_dinov2.lvd142m"),
    "vitb14": ("vit_base_patch14_dinov2", "dinov2_vitb14_pretrain.pth", "timm/vit_base_patch14_dinov2.lvd142m"),
    "vitl14": ("vit_large_patch14_dinov2", "dinov2_vitl14_pretrain.pth", "timm/vit_large_patch14_dinov2.lvd142m"),
    "vitg14": ("vit_giant_patch14_dinov2", "dinov2_vitg14_pretrain.pth", "timm/vit_giant_patch14_dinov2.lvd142m"),
    "vits14_reg": ("vit_small_patch14_reg4_dinov2", "dinov2_vits14_reg4_pretrain.pth",
                   "timm/vit_small_patch14_reg4_dinov2.lvd142m"),
    "vitb14_reg": ("vit_base_patch14_reg4_dinov2", "dinov2_vitb14_reg4_pretrain.pth",
                   "timm/vit_base_patch14_reg4_dinov2.lvd142m"),
}
DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/dinov2/"


class DinoTeacher(Teacher):
    """DINOv2 patch features, ``[h, w, D]`` float32 on the 14-px patch grid.

    Options: ``model`` (vits14 | vitb14 | vitl14 | vitg14 | vits14_reg | vitb14_reg), ``checkpoint``, ``random_init``
    (no weights: tests), ``arch`` (keyword overrides for ``timm.create_model``, e.g. a tiny depth/width for tests),
    ``resolution`` (longer side fed to the model), ``normalize``, ``batch_size`` and ``device``.
    """

    name = "dino"
    text_aligned = False

    def __init__(
        self,
        model: str = "vits14",
        checkpoint: str | os.PathLike | None = None,
        random_init: bool = False,
        arch: dict | None = None,
        resolution: int = 448,
        normalize: bool = True,
        batch_size: int = 4,
        device: str = "cpu",
    ):
        if model not in MODELS:
            raise ConfigError(f"dino model {model!r} is not one of {', '.join(MODELS)}")
        if int(resolution) < 1 or int(batch_size) < 1:
            raise ConfigError("dino resolution and batch_size must be positive")
        self.model_name = model
        self.arch = None if arch is None else dict(arch)
        self.resolution = int(resolution)
        self.normalize = bool(normalize)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        timm_name, fname, hf_repo = MODELS[model]

        path = None
        if checkpoint is not None:
            path = check_checkpoint(checkpoint, "DINOv2")
        elif not random_init:
            own = featurefields_weights_dir("dino")
            path = find_weights(
                f"DINOv2 {model}",
                [
                    Candidate(path=own / fname),
                    Candidate(path=torch_hub_checkpoints_dir() / fname),
                    Candidate(hf_repo=hf_repo, hf_file="model.safetensors"),
                    Candidate(hf_repo=hf_repo, hf_file="pytorch_model.bin"),
                ],
                f"download {DOWNLOAD_URL}dinov2_{model[:6]}/{fname} to {own / fname}",
            )

        import timm

        kwargs = {"pretrained": False, "num_classes": 0, "dynamic_img_size": True, **(self.arch or {})}
        try:
            net = timm.create_model(timm_name, **kwargs)
        except TypeError as e:
            raise ConfigError(f"dino arch options are not {timm_name} arguments: {e}") from None
        if path is not None:
            load_or_fail("DINOv2", path, lambda p: _load_into(net, p))
        self.weights = None if path is None else str(path)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.patch = int(self.net.patch_embed.patch_size[0])
        self.dim = int(self.net.embed_dim)

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model_name if self.arch is None else {"model": self.model_name, "arch": self.arch},
            "weights": "random-init" if self.weights is None else os.path.basename(self.weights),
            "resolution": self.resolution,
            "normalize": self.normalize,
        }

    @torch.no_grad()
    def patch_tokens(self, x):
        """ImageNet-normalised [B, 3, H, W] (multiples of 14) -> final-norm patch tokens [B, H/14, W/14, D]."""
        b, _, hh, ww = x.shape
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens :]  # drop cls/register tokens
        return tokens.reshape(b, hh // self.patch, ww // self.patch, -1)

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        outs: list[TeacherOutput | None] = [None] * len(views)
        for grid, size, chunk in grid_batches(views, self.resolution, self.patch, self.batch_size):
            x = torch.stack(
                [to_model_input(views[i].image, size, IMAGENET_MEAN, IMAGENET_STD, self.device) for i in chunk]
            )
            feats = self.patch_tokens(x).float()
            if self.normalize:
                feats = F.normalize(feats, dim=-1)
            for i, f in zip(chunk, feats.cpu()):
                outs[i] = TeacherOutput(features=f.contiguous(), valid=torch.ones(grid, dtype=torch.bool))
        return outs  # type: ignore[return-value]


def _load_into(net, path) -> None:
    """A timm-layout or official DINOv2 state dict (.pth/.bin/.safetensors) into ``net``, strictly."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint_filter_fn(state, net)
    state = {k: v for k, v in state.items() if not k.startswith("head.")} if net.num_classes == 0 else state
    net.load_state_dict(state, strict=True)
