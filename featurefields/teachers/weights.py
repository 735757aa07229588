"""Find pretrained teacher weights on this machine, or fail at once with a message that says how to provide them.

Teachers never download: a download inside a training run can hang for minutes on a machine without network, and
silently pulls gigabytes on one with it. Instead each teacher lists where its ecosystem keeps weights (an explicit
``checkpoint=PATH``, the Hugging Face hub cache, the ``torch.hub`` checkpoints folder, open_clip's ``~/.cache/clip``,
our own ``~/.cache/featurefields/<teacher>``) and :func:`find_weights` returns the first file that exists there.
Only paths to local files are ever handed to the model libraries' loaders.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Keep huggingface_hub (imported by open_clip and timm) from ever reaching for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ..errors import FFError


def featurefields_weights_dir(teacher: str) -> Path:
    """``$FF_WEIGHTS_DIR/<teacher>`` if set, else ``$XDG_CACHE_HOME/featurefields/<teacher>`` (``~/.cache/...``)."""
    if os.environ.get("FF_WEIGHTS_DIR"):
        return Path(os.environ["FF_WEIGHTS_DIR"]).expanduser() / teacher
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "featurefields" / teacher


def torch_hub_checkpoints_dir() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps files (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class Candidate:
    """One place weights may be: a plain file, or a file in the Hugging Face hub cache (``repo_id`` + filename)."""

    path: Path | None = None
    hf_repo: str | None = None
    hf_file: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"hf-hub {self.hf_repo}/{self.hf_file}"

    def resolve(self) -> Path | None:
        if self.path is not None:
            return self.path if self.path.is_file() else None
        return hf_cached_file(self.hf_repo, self.hf_file)


def hf_cached_file(repo_id: str | None, filename: str | None) -> Path | None:
    """A file already in the local Hugging Face hub cache, without any network call; None if absent."""
    if not repo_id or not filename:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        got = try_to_load_from_cache(repo_id=repo_id, filename=filename)
    except Exception:  # noqa: BLE001 - malformed repo id, unreadable cache: treat as absent
        return None
    if isinstance(got, (str, os.PathLike)) and Path(got).is_file():
        return Path(got)
    return None


def check_checkpoint(path: str | os.PathLike, what: str) -> Path:
    """An explicit ``checkpoint=PATH``: it must be an existing file (a typo must not fall back to anything else)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FFError(f"{what} checkpoint {p} does not exist or is not a file; pass checkpoint=PATH to the weights file")
    return p


def find_weights(what: str, candidates: Sequence[Candidate], hint: str) -> Path:
    """The first candidate file that exists locally; otherwise FFError listing where we looked and ``hint``."""
    for c in candidates:
        got = c.resolve()
        if got is not None:
            return got
    looked = "; ".join(c.describe() for c in candidates)
    raise FFError(
        f"{what} weights not found locally (looked in: {looked}); {hint}, "
        "or pass checkpoint=PATH (--teacher-checkpoint) to the file; nothing is downloaded"
    )


def load_or_fail(what: str, path: Path, loader: Callable[[Path], object]):
    """Run a library's loader on a local file, turning its failures into a one-line FFError naming the file."""
    try:
        return loader(path)
    except FFError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.load / load_state_dict raise many types for bad or mismatched files
        detail = " ".join(str(e).split())[:300]
        raise FFError(f"cannot load {what} weights from {path} ({type(e).__name__}: {detail})") from None
