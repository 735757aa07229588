r"""The text side of the open-vocabulary rule alone: which scene labels each query stands for, per matching rule.

    python benchmarks/queries_text_rules.py /tmp/desc_run/checkpoint.pt --out benchmarks/results/queries_text_rules.json

Given the labels a query stands for, a well-trained field answers it (benchmarks/queries_descriptive.py: every
label it stands for is found at IoU >= 0.95, every other label stays a negative that wins on its own object), so
these sets decide the acceptance of issue 15 and take seconds instead of minutes to compare. Per rule: each
query's set against its answers (object IoU |A & S| / |A | S|, mean per query kind), the class-word answers left
out, and the queries that take in an object that is not an answer. The rules are the package's
(``--negatives vocabulary`` = 'category', 'vocabulary-generic', 'vocabulary-window', 'vocabulary-z', through
``QueryEngine.resolve_query``)
and, for the record, alternatives that were measured and not kept (written here, on the same cosines):

- 'canonical-floor': the window rule, but a label must also be nearer the query than the canonical phrases are;
- 'per-word': the window rule on the cosine to the label's best single word ("cereal" for "yellow cereal box");
- 'csls': the window rule on cosines less half each label's mean cosine to its 3 nearest labels (hubness, CSLS);
- 'category-no-compound': the default 'category' rule on the label and its head noun only (the rule's two parts);
- 'category-wordnet': the 'category' rule with WordNet's 25 noun classes as the reference categories.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from featurefields.io import write_json  # noqa: E402
from featurefields.machine import describe  # noqa: E402
from featurefields.query.engine import QueryEngine  # noqa: E402
from featurefields.query.evaluate_queries import read_queries  # noqa: E402
from featurefields.query.relevancy import (  # noqa: E402
    CANONICAL_NEGATIVES,
    CATEGORIES,
    MATCH_MIN,
    MATCH_WITHIN,
    NEVER_MATCHED,
    head_noun,
    label_forms,
    names_same_thing,
    vocabulary_matches,
    words,
)

PACKAGE_RULES = ("vocabulary", "vocabulary-generic", "vocabulary-window", "vocabulary-z")
OTHER_RULES = ("canonical-floor", "per-word", "csls", "category-no-compound", "category-wordnet")
# WordNet 3.0's 25 noun lexicographer classes (noun.act ... noun.time): another published list of broad categories,
# to see how much the 'category' rule owes to its reference list (COCO's supercategories)
WORDNET_CLASSES = ("act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event", "feeling",
                   "food", "group", "location", "motive", "object", "person", "phenomenon", "plant", "possession",
                   "process", "quantity", "relation", "shape", "state", "substance", "time")


def answers_of(queries: dict) -> dict[str, tuple[str, set[str]]]:
    out: dict[str, tuple[str, set[str]]] = {}
    for label, kinds in queries.items():
        for kind, qs in kinds.items():
            for q in qs:
                out.setdefault(q, (kind, set()))[1].add(label)
    return out


def window_on(score: torch.Tensor, cos: torch.Tensor, cand: list[int]) -> list[int]:
    """The window rule on any score [L] (close: within MATCH_WITHIN of the best), the cosine floor on ``cos``."""
    best = max(float(score[j]) for j in cand)
    return [j for j in cand if float(score[j]) >= best - MATCH_WITHIN and float(cos[j]) >= MATCH_MIN]


def other_rule_sets(engine: QueryEngine, labels: list[str], qs: list[str], teacher: str) -> dict[str, list[set]]:
    heads = [head_noun(lab) or lab for lab in labels]
    forms = [f for lab in labels for f in label_forms(lab)]
    vocab = sorted({w for lab in labels for w in words(lab)})
    emb = engine.encode_text(qs + labels + heads + vocab + list(CANONICAL_NEGATIVES) + forms, teacher).float()
    emb, form_e = emb[:-len(forms)], emb[-len(forms):]
    q, rest = emb[:len(qs)], emb[len(qs):]
    lab_e, head_e, rest = rest[:len(labels)], rest[len(labels):2 * len(labels)], rest[2 * len(labels):]
    word_e, can_e = rest[:len(vocab)], rest[len(vocab):]
    cos = (q @ form_e.T).reshape(len(qs), len(labels), -1).max(dim=-1).values  # [Q, L]: as the package compares
    per_word = torch.stack([(q @ word_e.T)[:, [vocab.index(w) for w in words(lab)]].max(dim=1).values
                            for lab in labels], dim=1)  # [Q, L]
    lab_lab = torch.maximum(lab_e @ lab_e.T, head_e @ head_e.T).fill_diagonal_(-1.0)
    hub = lab_lab.topk(min(3, len(labels) - 1), dim=1).values.mean(dim=1)  # [L]
    floor = (q @ can_e.T).max(dim=1).values  # [Q]
    cand = [j for j, lab in enumerate(labels) if words(lab) and " ".join(words(lab)) not in NEVER_MATCHED]
    out: dict[str, list[set]] = {r: [] for r in OTHER_RULES}
    # the 'category' rule without the compound form, and with WordNet's classes for COCO's supercategories
    sim = (q @ form_e.T).reshape(len(qs), len(labels), -1)  # [Q, L, 3]
    gen = ((q @ can_e.T).max(dim=-1).values, (form_e @ can_e.T).max(dim=-1).values.reshape(len(labels), -1))
    for rule, cats, keep in (("category-no-compound", CATEGORIES, [0, 2]), ("category-wordnet", WORDNET_CLASSES,
                                                                             [0, 1, 2])):
        cat_e = engine.encode_text(list(cats), teacher).float()
        form_cat = (form_e @ cat_e.T).reshape(len(labels), -1, len(cats))[:, keep]
        named = vocabulary_matches(qs, labels, sim[..., keep], rule="category",
                                   generality=(gen[0], gen[1][:, keep].max(dim=-1).values),
                                   categories=(q @ cat_e.T, form_cat))
        out[rule] = [{lab for lab in labels if any(names_same_thing(lab, x) for x in [p] + m)}
                     for p, m in zip(qs, named)]
    for i, p in enumerate(qs):
        picks = {"canonical-floor": [j for j in window_on(cos[i], cos[i], cand) if cos[i, j] > floor[i]],
                 "per-word": window_on(torch.maximum(cos[i], per_word[i]), torch.maximum(cos[i], per_word[i]), cand),
                 "csls": window_on(cos[i] - hub / 2, cos[i], cand)}
        for rule, js in picks.items():  # as the package: what the query names and what the picked labels name
            said = [p] + [labels[j] for j in js]
            out[rule].append({lab for lab in labels if any(names_same_thing(lab, x) for x in said)})
    return out


def score(sets: list[set], qs: list[str], truth: dict) -> dict:
    by_kind: dict[str, list[float]] = {}
    left_out, spills, stood = [], {}, {}
    for q, s in zip(qs, sets):
        kind, ans = truth[q]
        s = {x for x in s if " ".join(words(x)) not in NEVER_MATCHED}
        by_kind.setdefault(kind, []).append(len(ans & s) / len(ans | s))
        if kind == "class":
            left_out += [f"{q} -> {a}" for a in sorted(ans - s)]
        extra = sorted(s - ans - {"table"})
        if extra:
            spills[q] = extra
        stood[q] = sorted(s)
    return {"mean_object_iou": {k: round(sum(v) / len(v), 3) for k, v in by_kind.items()},
            "class_answers_left_out": left_out, "queries_taking_in_a_non_answer": spills, "stands_for": stood}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--queries", default=str(ROOT / "benchmarks" / "queries_descriptive.json"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    truth = answers_of(read_queries(args.queries))
    qs = list(truth)
    engine = QueryEngine.from_checkpoint(args.checkpoint)
    teacher = engine.text_teacher()
    labels = [lab for lab in engine.label_names or [] if lab and str(lab).strip()]
    rows = {}
    for mode in PACKAGE_RULES:
        sets = []
        for q in qs:
            t = engine.resolve_query([q], mode)
            sets.append(set(t.stands_for[0]) | {lab for lab in labels if names_same_thing(lab, q)})
        rows[mode] = score(sets, qs, truth)
    for rule, sets in other_rule_sets(engine, labels, qs, teacher).items():
        rows[rule] = score(sets, qs, truth)
    for rule, r in rows.items():
        print(f"{rule:>17}: {r['mean_object_iou']}, class answers left out {len(r['class_answers_left_out'])}, "
              f"queries taking in a non-answer {len(r['queries_taking_in_a_non_answer'])} "
              f"({', '.join(r['queries_taking_in_a_non_answer'])})", file=sys.stderr)
    write_json(args.out, {"checkpoint": str(args.checkpoint), "queries": str(args.queries), "labels": labels,
                          "teacher": teacher, "rules": rows, "machine": describe()})
    print(args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
