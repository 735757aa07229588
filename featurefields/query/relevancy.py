"""LERF relevancy: how much more a feature looks like the query than like any of a few negative phrases.

For a unit feature ``f``, a positive ``q`` and negatives ``n_i`` (all unit vectors), LERF scores

    relevancy(q, f) = min_i softmax([q.f, n_i.f] / T)[0]          (T = 0.1)

Each pairwise softmax is ``sigmoid((q.f - n_i.f) / T)`` and the sigmoid is monotone, so the minimum over negatives
is ``sigmoid((q.f - max_i n_i.f) / T)``: one matrix product against all text embeddings and a max, which is what
makes scoring a million Gaussians cheap. ``relevancy > 0.5`` means exactly "the positive beats every negative";
with the scene's other label names as negatives it is the best-label assignment used for segmentation.

Before scoring, a query is matched against the scene's vocabulary (:func:`vocabulary_matches`: the labels it names
by the word rule or is close to in the text space score for it; the others are negatives), so "cup" finds a scene's
"blue coffee mug" instead of losing to it, and a class word ("food") the labels nearer it than any broad
category. Pure functions here; text encoding and rendering live in :mod:`.engine`.
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


# Words after which a phrase's head noun has been said: "a mug of coffee" is a mug, "a banana on the table" a banana.
_ARTICLES = frozenset({"a", "an", "the", "this", "that"})
_PREPOSITIONS = frozenset("of on in with at from for under near beside by behind inside".split())


def words(text: str) -> list[str]:
    """'Coffee_Mug' -> ['coffee', 'mug']: lower-case word tokens, underscores as spaces."""
    return re.findall(r"\w+", text.lower().replace("_", " "))


def head_noun(text: str) -> str:
    """The word a phrase names a thing by: its last word before any preposition ('the red mug' -> 'mug', 'a mug of
    coffee' -> 'mug'); '' for a phrase without words."""
    w = words(text)
    cut = next((i for i, x in enumerate(w) if x in _PREPOSITIONS and i > 0), len(w))
    return w[cut - 1] if w[:cut] else (w[-1] if w else "")


def names_same_thing(label: str, positive: str) -> bool:
    """The word rule: does ``positive`` say what ``label`` says? True when

    - the positive's words are all in the label: the label is a kind or a part of it ("yellow banana" or "mug
      handle" for "banana" or "mug": the handle is part of the mug, so "mug" covers its pixels too);
    - or the label's words are all in the positive and both have the same head noun: the label names the positive
      more generally ("mug" for "red mug"). "mug" is not said by "mug handle", whose head is "handle": the rest of
      the mug is not its handle, and "table" is not said by "a banana on the table"."""
    p, w = set(words(positive)), set(words(label))
    if not p or not w:
        return False
    return p <= w or (w <= p and head_noun(label) == head_noun(positive))


def scene_negatives(labels: Sequence[str], positives: Sequence[str]) -> list[str]:
    """The scene's label names as negatives, minus those a positive names by the word rule
    (:func:`names_same_thing`): a negative that names the same thing would always win."""
    out = []
    for label in labels:
        if not words(label):
            continue
        name = " ".join(label.replace("_", " ").split())
        if not any(names_same_thing(label, p) for p in positives) and name not in out:
            out.append(name)
    return out


MATCH_MIN = 0.4  # cosine (query, label) from which a label can be what the query means (all-MiniLM-L6-v2 scale)
MATCH_WITHIN = 0.1  # ... and at most this far below the query's best label: "fruit" is the banana, not the ball
# (min, within) per text teacher. Cosines are on each text encoder's own scale, so only encoders measured here get
# text matching (benchmarks/results/queries_descriptive.json); the others (clip: no weights offline to calibrate
# with) match by the word rule alone until measured.
TEXT_MATCH: dict[str, tuple[float, float]] = {"labels": (MATCH_MIN, MATCH_WITHIN)}
NEVER_MATCHED = ("background",)  # the room around a scene is no answer to a query for a thing
# How a query picks labels among the close ones (vocabulary_matches): 'category' (the default) is 'generic' with
# each extra label of a class word checked against broad categories; 'generic' lets only a word more generic than
# its nearest label stand for several; 'window' takes every label within MATCH_WITHIN of the best; 'zscore' takes
# those that also stand out from the scene's vocabulary by Z_MIN standard deviations.
MATCH_RULES = ("category", "generic", "window", "zscore")
Z_MIN = 1.2  # chosen on the descriptive list (its neighbours there: 1.1 and 1.3), so a fragile alternative
# The 'category' rule's reference categories: COCO's twelve supercategories, a published taxonomy of everyday
# objects, taken as they are (not written for any scene here). A label that is nearer one of them than the class
# word is of that category rather than the query's ("ceramic bowl": kitchen 0.46 > food 0.32).
CATEGORIES: tuple[str, ...] = ("person", "vehicle", "outdoor", "animal", "accessory", "sports", "kitchen", "food",
                               "furniture", "electronic", "appliance", "indoor")
# A label leaves a class word for a rival category only when it is nearer that category by this much: on the
# descriptive tabletop "food"'s bowl and ball are 0.06 and 0.16 nearer kitchen and sports, while the plain tiny
# tabletop's "bowl" is 0.01 nearer food than "kitchenware" (and is kitchenware). Chosen between those, so fragile.
CATEGORY_MARGIN = 0.03


def compound(text: str) -> str:
    """A label's kind without its outer modifiers: the head noun and the word before it ('yellow cereal box' ->
    'cereal box'): what a thing is for or made of ('soda can') rather than how it looks ('red')."""
    w = words(text)
    head = head_noun(text)
    if head not in w:
        return " ".join(w)
    i = w.index(head)
    return " ".join(w[i - 1:i + 1]) if i > 0 and w[i - 1] not in _ARTICLES else head


def label_forms(label: str) -> list[str]:
    """The phrases a label is compared with a query as: itself, its compound and its head noun (a class word such
    as 'reading material' is nearer a bare noun than a description, 'food' nearer 'cereal box' than 'box')."""
    name = " ".join(label.replace("_", " ").split())
    return [name, compound(label) or name, head_noun(label) or name]


def vocabulary_matches(positives: Sequence[str], labels: Sequence[str], sim: Tensor,
                       min_sim: float = MATCH_MIN, within: float = MATCH_WITHIN, rule: str = "category",
                       generality: tuple[Tensor, Tensor] | None = None,
                       categories: tuple[Tensor, Tensor] | None = None) -> list[list[str]]:
    """For each positive, the scene labels it stands for: those it names by the word rule, plus those it is close
    to in the text space. ``sim`` [P, L, K]: cosine of each positive to each of a label's K forms
    (:func:`label_forms`: the phrase, its compound, its head noun). A label is close when its similarity (the best
    form) is >= ``min_sim`` and within ``within`` of the positive's best label (a close label brings the labels it
    names: "cup" is the mug, so its "mug handle" too), so a partial name, a synonym or a class word finds its
    objects and a word that is vaguely like everything ("tin": 0.3 to half the table) finds nothing rather than
    the wrong thing.

    ``rule`` (:data:`MATCH_RULES`) decides whether a query may stand for several close labels:

    - 'generic': only when it is a class word, i.e. at least as generic as its nearest label, genericity being the
      cosine to the canonical phrases (object, things, stuff, texture): ``generality`` = (query [P], label [L]).
      A more specific word is a synonym: it stands for its nearest label and what that label's head noun names
      ("cola" is the soda can alone, though as near the bottle and the mug as "kitchenware" is to the mug and the
      bowl). Both sides are cosines of the same encoder to the same phrases, so this test has no scale to calibrate.
    - 'category' (the default): 'generic', and a class word keeps a close label only if no rival reference
      category (:data:`CATEGORIES` less the query's own, its nearest one: 'kitchen' for "kitchenware") is nearer
      the label, on the form the query matched, by more than CATEGORY_MARGIN: each label's own threshold, from
      the text model, so "food" is the banana and the cereal box but not the bowl (kitchen) or the toy ball
      (sports). The nearest close label always stays: the category test chooses among close labels, the
      similarity floor decides whether any.
      ``categories`` = (query to category [P, C], label form to category [L, K, C]).
    - 'window': every close label (the rule before).
    - 'zscore': the close labels whose similarity is also >= Z_MIN standard deviations above the mean over the
      scene's labels (the relative structure: a label must stand out from the vocabulary).

    LERF-style: the query is compared with the scene's vocabulary first, the field is then asked for the query and
    the labels it stands for."""
    if rule not in MATCH_RULES:
        raise ConfigError(f"unknown vocabulary rule '{rule}': one of {', '.join(MATCH_RULES)}")
    if rule in ("generic", "category") and generality is None:
        raise ConfigError(f"the '{rule}' vocabulary rule needs each phrase's similarity to the canonical phrases")
    if rule == "category" and categories is None:
        raise ConfigError("the 'category' vocabulary rule needs each phrase's similarity to the reference categories")
    out = []
    sim = sim.float()
    best_sim, best_form = sim.max(dim=-1)  # [P, L]
    cand = [j for j, lab in enumerate(labels) if words(lab) and " ".join(words(lab)) not in NEVER_MATCHED]
    for i, p in enumerate(positives):
        s = best_sim[i]
        best_j = max(cand, key=lambda j: float(s[j]), default=None)
        best = float(s[best_j]) if best_j is not None else -1.0
        floor = max(min_sim, best - within)
        close = [j for j in cand if float(s[j]) >= floor]
        names = [labels[j] for j in close]
        if rule in ("generic", "category") and close and float(generality[0][i]) < float(generality[1][best_j]):
            names = [labels[best_j], head_noun(labels[best_j])]  # a synonym: its nearest label's kind
        elif rule == "category" and len(close) > 1:
            others = torch.ones_like(categories[0][i], dtype=torch.bool)  # [C]: the query's rivals, all but ...
            others[int(categories[0][i].argmax())] = False  # ... its nearest category: its own ('kitchen', 'food')
            if bool(others.any()):
                names = [labels[j] for j in close if j == best_j or float(s[j]) >= float(
                    categories[1][j, int(best_form[i, j])][others].max()) - CATEGORY_MARGIN]
        elif rule == "zscore" and len(cand) > 1:
            c = s[cand]
            z = {j: float((s[j] - c.mean()) / c.std().clamp_min(1e-6)) for j in close}
            names = [labels[j] for j in close if z[j] >= Z_MIN]
        chosen = []
        for lab in labels:  # what the positive names, what it is close to, and what those name ("mug handle")
            name = " ".join(lab.replace("_", " ").split())
            if any(names_same_thing(lab, x) for x in [p] + names if x) and name not in chosen:
                chosen.append(name)
        out.append(chosen)
    return out


def relevancy_from_scores(pos_scores: Tensor, neg_scores: Tensor, temperature: float = TEMPERATURE,
                          groups: Sequence[Sequence[int]] | None = None) -> Tensor:
    """pos_scores [..., P] (q.f), neg_scores [..., M] (n_i.f) -> relevancy [..., P] in (0, 1).

    min_i softmax([q.f, n_i.f] / T)[0] == sigmoid((q.f - max_i n_i.f) / T), computed in the stable sigmoid form.
    ``groups``: positive k scores as the best of the columns ``groups[k]`` of pos_scores (a query and the scene
    labels it stands for); then the result is [..., len(groups)]."""
    if groups is not None:
        pos_scores = torch.stack([pos_scores[..., list(g)].max(dim=-1).values for g in groups], dim=-1)
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
