"""LERF relevancy: how much more a feature looks like the query than like any of a few negative phrases.

For a unit feature ``f``, a positive ``q`` and negatives ``n_i`` (all unit vectors), LERF scores

    relevancy(q, f) = min_i softmax([q.f, n_i.f] / T)[0]          (T = 0.1)

Each pairwise softmax is ``sigmoid((q.f - n_i.f) / T)`` and the sigmoid is monotone, so the minimum over negatives
is ``sigmoid((q.f - max_i n_i.f) / T)``: one matrix product against all text embeddings and a max, which is what
makes scoring a million Gaussians cheap. ``relevancy > 0.5`` means exactly "the positive beats every negative";
with the scene's other label names as negatives it is the best-label assignment used for segmentation.

Pure tensor functions here; text encoding and rendering live in :mod:`.engine`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import validate
from ..errors import ConfigError, FFError

CANONICAL_NEGATIVES: tuple[str, ...] = ("object", "things", "stuff", "texture")
TEMPERATURE = 0.1
MAX_QUERY_CHARS = 300  # a query is a few phrases, not a document; CLIP's text tower stops at 77 tokens anyway
MAX_PHRASE_CHARS = 120
MAX_POSITIVES = 16
DEFAULT_CHUNK = 262_144  # rows scored at a time: bounds memory (chunk x D floats) while keeping matmuls large


class QueryError(FFError):
    """A query the field cannot answer as asked: empty, absurdly long, or a prompt outside the image."""


def split_phrases(text: str, what: str = "query") -> list[str]:
    """'red mug; bowl' -> ['red mug', 'bowl']: ';'-separated phrases, whitespace collapsed, duplicates dropped."""
    if not isinstance(text, str):
        raise QueryError(f"{what} must be text, not {type(text).__name__}")
    validate.text(text, what, error=QueryError)
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"{what} is {len(text)} characters long; the limit is {MAX_QUERY_CHARS} "
                         "(a few short phrases separated by ';')")
    phrases = list(dict.fromkeys(p for p in (" ".join(s.split()) for s in text.split(";")) if p))
    if not phrases:
        raise QueryError(f"empty {what}: give a phrase such as 'red mug' (several separated by ';')")
    if len(phrases) > MAX_POSITIVES:
        raise QueryError(f"{what} has {len(phrases)} phrases; at most {MAX_POSITIVES} are allowed")
    for p in phrases:
        if len(p) > MAX_PHRASE_CHARS:
            raise QueryError(f"{what} phrase '{p[:40]}...' is {len(p)} characters long; the limit is "
                             f"{MAX_PHRASE_CHARS} per phrase")
    return phrases


def split_positives(query: str) -> list[str]:
    """The positives of a query: ';'-separated phrases (a pixel is relevant if it is relevant to any of them)."""
    return split_phrases(query, "query")


def scene_negatives(labels: Sequence[str], positives: Sequence[str]) -> list[str]:
    """The scene's label names as negatives, minus those that say what a positive says (a negative that names the
    same thing would always win). A label is dropped for a positive when

    - the positive's words are all in the label: the label is a kind or a part of it ("yellow banana" or "mug
      handle" for "banana" or "mug": the handle is part of the mug, so "mug" covers its pixels too);
    - or the label's words are all in the positive and both end in the same word (their head noun): the label
      names the positive more generally ("mug" for "red mug"). "mug" stays a negative for "mug handle", whose head
      is "handle": the rest of the mug is not its handle."""
    def words(s: str) -> list[str]:
        return re.findall(r"\w+", s.lower().replace("_", " "))

    pos = [words(p) for p in positives]
    out = []
    for label in labels:
        w = words(label)
        if not w:
            continue
        said = any(set(p) <= set(w) or (set(w) <= set(p) and w[-1] == p[-1]) for p in pos if p)
        name = " ".join(label.replace("_", " ").split())
        if not said and name not in out:
            out.append(name)
    return out


def relevancy_from_scores(pos_scores: Tensor, neg_scores: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """pos_scores [..., P] (q.f), neg_scores [..., M] (n_i.f) -> relevancy [..., P] in (0, 1).

    min_i softmax([q.f, n_i.f] / T)[0] == sigmoid((q.f - max_i n_i.f) / T), computed in the stable sigmoid form."""
    if neg_scores.shape[-1] == 0:
        raise ConfigError("LERF relevancy needs at least one negative phrase")
    if temperature <= 0:
        raise ConfigError(f"relevancy temperature must be positive, not {temperature}")
    hardest = neg_scores.max(dim=-1, keepdim=True).values  # [..., 1]
    return torch.sigmoid((pos_scores - hardest) / temperature)


def lerf_relevancy(feats: Tensor, positives: Tensor, negatives: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """feats [..., D] (any scale; unit-normalised here), positives [P, D], negatives [M, D] (unit) -> [..., P]."""
    f = F.normalize(feats.float(), dim=-1)
    return relevancy_from_scores(f @ positives.float().T, f @ negatives.float().T, temperature)


def cosine_scores(rows: Tensor, texts: Tensor, decode: Callable[[Tensor], Tensor] | None = None,
                  chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Cosine similarity of decoded rows to unit text embeddings, in chunks: rows [N, F], texts [Q, D] -> [N, Q].

    ``decode`` maps a chunk of rows (e.g. per-Gaussian latents) to teacher features [n, D]; None: rows are features.
    Only ``chunk x D`` decoded values exist at a time, so a million 384-D features never sit in memory at once."""
    texts = texts.to(rows.device, torch.float32)
    out = torch.empty(rows.shape[0], texts.shape[0], device=rows.device)
    for s in range(0, rows.shape[0], chunk):
        x = rows[s:s + chunk].float()
        if decode is not None:
            x = decode(x)
        # (x . t) / |x| rather than normalize(x) . t: no normalised copy of the chunk is ever made
        out[s:s + chunk] = (x @ texts.T) / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
    return out


def linear_cosine_scores(latents: Tensor, weight: Tensor, bias: Tensor | None, texts: Tensor,
                         chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Exactly :func:`cosine_scores` through a linear head ``x = W z + b`` (W [D, L]), without decoding.

    With z' = [z, 1] and W' = [W b] (QR: W' = Q R, R [L+1, L+1]): q.x = (W'^T q).z' and |x| = |R z'|, so every
    Gaussian is scored in its own (L+1)-dim latent space by one small matrix product, O(N L (Q + L)) instead of
    O(N L D). latents [N, L], texts [Q, D] -> [N, Q]."""
    w = weight.float()
    b = torch.zeros(w.shape[0], device=w.device) if bias is None else bias.float()
    w_aug = torch.cat([w, b[:, None]], dim=1)  # [D, L+1]
    r = torch.linalg.qr(w_aug, mode="r").R  # [L+1, L+1]: |W' z'| == |R z'|
    texts = texts.to(w.device, torch.float32)
    m = torch.cat([r.T, (texts @ w_aug).T], dim=1)  # [L+1, L+1+Q]
    n_lat, k = latents.shape[1], r.shape[0]
    out = torch.empty(latents.shape[0], texts.shape[0], device=latents.device)
    for s in range(0, latents.shape[0], chunk):
        y = torch.addmm(m[n_lat], latents[s:s + chunk].float(), m[:n_lat])  # [n, L+1+Q]: rows of z' @ m
        norm = torch.linalg.vector_norm(y[:, :k], dim=-1, keepdim=True).clamp_min(1e-12)
        out[s:s + chunk] = y[:, k:] / norm
    return out
