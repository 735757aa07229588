"""LERF relevancy against the formula written out by hand, the linear-head fold, phrase parsing, and the open-
vocabulary rule (a query resolved against the scene's labels) on hand-made embeddings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from featurefields.errors import ConfigError
from featurefields.query.relevancy import (
    CANONICAL_NEGATIVES,
    CATEGORIES,
    CATEGORY_MARGIN,
    MAX_QUERY_CHARS,
    Z_MIN,
    QueryError,
    compound,
    cosine_scores,
    head_noun,
    label_forms,
    lerf_relevancy,
    linear_cosine_scores,
    names_same_thing,
    relevancy_from_scores,
    scene_negatives,
    split_positives,
    vocabulary_matches,
)


def unit(*v):
    return F.normalize(torch.tensor(v, dtype=torch.float32), dim=-1)


def by_hand(f, q, negs, T=0.1):
    """min_i softmax([q.f, n_i.f] / T)[0], literally."""
    vals = []
    for n in negs:
        a, b = float(q @ f) / T, float(n @ f) / T
        vals.append(math.exp(a) / (math.exp(a) + math.exp(b)))
    return min(vals)


def test_matches_the_formula_on_hand_made_vectors():
    q = unit(1.0, 0.0, 0.0)
    negs = torch.stack([unit(0.0, 1.0, 0.0), unit(0.6, 0.8, 0.0), unit(0.0, 0.0, 1.0)])
    feats = torch.stack([unit(1.0, 0.0, 0.0), unit(0.7, 0.7, 0.0), unit(0.0, 1.0, 0.2), unit(0.5, 0.1, 0.9)])
    rel = lerf_relevancy(feats, q[None], negs)  # [4, 1]
    assert rel.shape == (4, 1)
    for i, f in enumerate(feats):
        assert rel[i, 0].item() == pytest.approx(by_hand(f, q, negs), abs=1e-6)
    # the feature equal to the query: the hardest negative is n_1 (0.6 similar), not the orthogonal ones
    expected = 1 / (1 + math.exp(-(1.0 - 0.6) / 0.1))
    assert rel[0, 0].item() == pytest.approx(expected, abs=1e-6)


def test_minimum_is_over_negatives_not_the_mean_or_first():
    f = unit(1.0, 0.2, 0.0)
    q = unit(1.0, 0.0, 0.0)
    easy, hard = unit(0.0, 0.0, 1.0), unit(0.9, 0.3, 0.0)
    r_easy = lerf_relevancy(f[None], q[None], easy[None])[0, 0]
    r_both = lerf_relevancy(f[None], q[None], torch.stack([easy, hard]))[0, 0]
    r_hard = lerf_relevancy(f[None], q[None], hard[None])[0, 0]
    assert r_both == pytest.approx(r_hard.item(), abs=1e-7) and r_both < r_easy
    # order of negatives does not matter
    assert lerf_relevancy(f[None], q[None], torch.stack([hard, easy]))[0, 0] == pytest.approx(r_both.item())


def test_unnormalised_features_several_positives_and_temperature():
    torch.manual_seed(0)
    feats = torch.randn(50, 8) * 3
    pos = F.normalize(torch.randn(3, 8), dim=-1)
    neg = F.normalize(torch.randn(4, 8), dim=-1)
    rel = lerf_relevancy(feats, pos, neg, temperature=0.05)
    assert rel.shape == (50, 3) and bool(((rel > 0) & (rel < 1)).all())
    for i in (0, 17, 49):
        for p in range(3):
            assert rel[i, p].item() == pytest.approx(by_hand(F.normalize(feats[i], dim=0), pos[p], neg, 0.05),
                                                     rel=1e-5)
    # > 0.5 exactly when the positive beats every negative
    s_pos, s_neg = F.normalize(feats, dim=-1) @ pos.T, F.normalize(feats, dim=-1) @ neg.T
    assert torch.equal(rel > 0.5, s_pos > s_neg.max(-1, keepdim=True).values)


def test_needs_a_negative_and_a_positive_temperature():
    with pytest.raises(ConfigError, match="negative"):
        relevancy_from_scores(torch.zeros(3, 1), torch.zeros(3, 0))
    with pytest.raises(ConfigError, match="temperature"):
        relevancy_from_scores(torch.zeros(3, 1), torch.zeros(3, 2), temperature=0)


def test_linear_head_fold_equals_decoding():
    torch.manual_seed(1)
    head = torch.nn.Linear(6, 40)
    z = torch.randn(1000, 6)
    texts = F.normalize(torch.randn(5, 40), dim=-1)
    exact = cosine_scores(z, texts, decode=head, chunk=128)
    folded = linear_cosine_scores(z, head.weight.detach(), head.bias.detach(), texts, chunk=333)
    torch.testing.assert_close(folded, exact.detach(), atol=1e-5, rtol=1e-5)
    direct = F.normalize(head(z), dim=-1) @ texts.T
    torch.testing.assert_close(exact, direct.detach(), atol=1e-5, rtol=1e-5)
    narrow = torch.nn.Linear(6, 4)  # a head narrower than its latent: R of the QR is [4, 7]
    t4 = F.normalize(torch.randn(3, 4), dim=-1)
    torch.testing.assert_close(linear_cosine_scores(z, narrow.weight.detach(), narrow.bias.detach(), t4),
                               (F.normalize(narrow(z), dim=-1) @ t4.T).detach(), atol=1e-5, rtol=1e-5)
    no_bias = linear_cosine_scores(z, head.weight.detach(), None, texts)
    torch.testing.assert_close(no_bias, F.normalize(z @ head.weight.detach().T, dim=-1) @ texts.T, atol=1e-5,
                               rtol=1e-5)


def test_split_positives():
    assert split_positives("red mug") == ["red mug"]
    assert split_positives(" red   mug ; bowl;;bowl ") == ["red mug", "bowl"]
    for bad in ("", "  ", ";;", " ; "):
        with pytest.raises(QueryError, match="empty"):
            split_positives(bad)
    with pytest.raises(QueryError, match="characters long"):
        split_positives("mug " * (MAX_QUERY_CHARS // 4 + 1))
    with pytest.raises(QueryError, match="per phrase"):
        split_positives("x" * 150)
    with pytest.raises(QueryError, match="phrases"):
        split_positives(";".join(f"p{i}" for i in range(20)))


def test_scene_negatives_drop_labels_the_query_names():
    labels = ["background", "table", "mug", "coffee_table", "bowl"]
    assert scene_negatives(labels, ["red mug"]) == ["background", "table", "coffee table", "bowl"]
    assert scene_negatives(labels, ["coffee table"]) == ["background", "mug", "bowl"]
    assert scene_negatives(labels, ["smug"]) == ["background", "table", "mug", "coffee table", "bowl"]
    assert scene_negatives(labels, ["table"]) == ["background", "mug", "bowl"]  # a coffee table is a table


def test_scene_negatives_know_parts_from_wholes():
    labels = ["table", "mug", "bottle", "mug handle", "bottle neck"]
    assert scene_negatives(labels, ["mug"]) == ["table", "bottle", "bottle neck"]  # the handle is part of the mug
    assert scene_negatives(labels, ["mug handle"]) == ["table", "mug", "bottle", "bottle neck"]  # the rest is not
    assert scene_negatives(labels, ["handle"]) == ["table", "mug", "bottle", "bottle neck"]
    assert scene_negatives(labels, ["blue mug"]) == ["table", "bottle", "mug handle", "bottle neck"]
    assert set(CANONICAL_NEGATIVES) == {"object", "things", "stuff", "texture"}


# ---- open vocabulary: a query resolved against the scene's labels (issue 15) ------------------------------------
class _HandMadeField:
    """Just enough of a field for QueryEngine.resolve_query: label names and a text encoder that returns hand-made
    unit vectors, so the rule is tested on embeddings whose similarities we chose."""

    def __init__(self, vectors: dict[str, list[float]], labels: list[str], teacher: str = "labels"):
        self.teacher = teacher
        self.vectors = {k: torch.nn.functional.normalize(torch.tensor(v, dtype=torch.float32), dim=0)
                        for k, v in vectors.items()}
        self.label_names = labels
        self.device = torch.device("cpu")

    def text_teacher(self, name=None):
        return self.teacher

    def encode_text(self, phrases, teacher):
        return torch.stack([self._vector(p) for p in phrases])

    def _vector(self, p):
        if p in self.vectors:
            return self.vectors[p]
        owner = next((k for k in self.vectors if compound(k) == p), None)
        if owner is not None:  # an unlisted compound ('soda can') is its label
            return self.vectors[owner]
        if p in CATEGORIES:  # unlisted reference categories: as generic as the canonical phrases
            return self.vectors[CANONICAL_NEGATIVES[0]]
        raise KeyError(p)


# axes: banana, can, mug, generic (the canonical phrases live there)
_VECTORS = {
    "yellow banana": [1, 0, 0, 0], "red soda can": [0, 1, 0, 0], "blue coffee mug": [0, 0, 1, 0],
    "banana": [1, 0, 0, 0], "can": [0, 1, 0, 0], "mug": [0, 0, 1, 0],  # head nouns
    "bananas": [0.8, 0.1, 0, 0.3],  # a near name the word rule cannot see (plural)
    "cup": [0.05, 0.45, 0.8, 0.2],  # a synonym, a little like the can too
    "tin": [0.3, 0.3, 0.3, 0.6],  # vaguely like everything: no answer
    **{c: [0, 0, 0, 1] for c in CANONICAL_NEGATIVES},
}


def _relevancy_at_labels(mode: str, query: str) -> dict[str, float]:
    """Relevancy of ``query`` at a feature equal to each scene label's embedding (a perfectly trained field)."""
    from featurefields.query.engine import QueryEngine

    labels = ["yellow banana", "red soda can", "blue coffee mug"]
    field = _HandMadeField(_VECTORS, labels)
    texts = QueryEngine(field).resolve_query([query], mode)
    feats = field.encode_text(labels, "labels")  # [3, 4]
    rel = texts.relevancy(feats @ texts.embeddings.T)[:, 0]
    return dict(zip(labels, rel.tolist()))


def test_a_near_name_beats_its_own_label_as_a_negative():
    # the old word rule: 'yellow banana' stays a negative for 'bananas' and wins on the banana's own pixels
    assert _relevancy_at_labels("words", "bananas")["yellow banana"] < 0.5
    rel = _relevancy_at_labels("auto", "bananas")  # the vocabulary rule: 'bananas' stands for 'yellow banana'
    assert rel["yellow banana"] > 0.99 and rel["red soda can"] < 0.01 and rel["blue coffee mug"] < 0.01
    rel = _relevancy_at_labels("auto", "cup")
    assert rel["blue coffee mug"] > 0.99
    # the partial name the word rule already knew still works, and the exact label too
    assert _relevancy_at_labels("auto", "banana")["yellow banana"] > 0.99
    assert _relevancy_at_labels("auto", "yellow banana")["yellow banana"] > 0.99


def test_an_unrelated_scene_label_still_suppresses_false_positives():
    # 'cup' is 0.45 like the can: with only the canonical negatives it lights the can up ...
    assert _relevancy_at_labels("canonical", "cup")["red soda can"] > 0.5
    # ... with the scene's vocabulary 'red soda can' stays a negative and wins there
    for mode in ("auto", "similar", "scene"):
        assert _relevancy_at_labels(mode, "cup")["red soda can"] < 0.01, mode
    # a word vaguely like everything stands for nothing and finds nothing
    assert max(_relevancy_at_labels("auto", "tin").values()) < 0.01


def test_resolve_query_modes_say_what_each_positive_stands_for():
    from featurefields.query.engine import QueryEngine

    eng = QueryEngine(_HandMadeField(_VECTORS, ["yellow banana", "red soda can", "blue coffee mug"]))
    t = eng.resolve_query(["bananas", "cup"], "auto")
    assert t.stands_for == [["yellow banana"], ["blue coffee mug"]]
    assert t.negatives == ["red soda can", *CANONICAL_NEGATIVES] and t.groups == [[0, 1], [2, 3]]
    assert eng.resolve_query(["bananas"], "vocabulary").stands_for == [["yellow banana"]]
    s = eng.resolve_query(["cup"], "similar")
    assert s.stands_for == [[]] and "blue coffee mug" not in s.negatives and "red soda can" in s.negatives
    assert eng.resolve_query(["cup"], "scene").negatives == ["yellow banana", "red soda can"]
    assert eng.resolve_negatives(["cup"], "words") == ["yellow banana", "red soda can", "blue coffee mug",
                                                      *CANONICAL_NEGATIVES]


def test_uncalibrated_text_encoders_match_by_words_alone():
    """Cosines are on each encoder's own scale: one without measured thresholds (clip here) gets the word rule."""
    from featurefields.query.engine import QueryEngine

    eng = QueryEngine(_HandMadeField(_VECTORS, ["yellow banana", "red soda can", "blue coffee mug"], "clip"))
    assert eng.resolve_query(["banana", "cup"], "auto").stands_for == [["yellow banana"], []]


def test_vocabulary_matches_need_a_close_and_clear_label():
    labels = ["background", "table", "yellow banana", "orange toy ball"]
    sim = torch.tensor([[[0.9, 0.9], [0.2, 0.2], [0.3, 0.59], [0.51, 0.4]],  # 'fruit': background is never an answer
                        [[0.2, 0.2], [0.2, 0.2], [0.42, 0.45], [0.44, 0.3]],  # 'food': two alike labels both match
                        [[0.1, 0.1], [0.1, 0.1], [0.3, 0.39], [0.2, 0.2]]])  # below MATCH_MIN: none
    assert vocabulary_matches(["fruit", "food", "tin"], labels, sim, rule="window") == [
        ["yellow banana", "orange toy ball"], ["yellow banana", "orange toy ball"], []]
    assert vocabulary_matches(["fruit"], labels, sim[:1], within=0.05, rule="window") == [["yellow banana"]]
    # the word rule needs no similarity at all
    assert vocabulary_matches(["banana"], labels, torch.zeros(1, 4, 2), rule="window") == [["yellow banana"]]


def test_only_a_word_more_generic_than_its_nearest_label_stands_for_several():
    labels = ["table", "red soda can", "blue coffee mug", "green glass bottle"]
    # 'cola' and 'drinks' are alike close to the can, the mug and the bottle (all within MATCH_WITHIN) ...
    sim = torch.tensor([[[0.2, 0.2], [0.58, 0.3], [0.4, 0.52], [0.4, 0.52]],
                        [[0.2, 0.2], [0.49, 0.3], [0.42, 0.56], [0.43, 0.55]]])
    labels_generic = torch.tensor([0.43, 0.39, 0.40, 0.40])  # each label's cosine to the canonical phrases
    window = vocabulary_matches(["cola", "drinks"], labels, sim, rule="window")
    assert window == [labels[1:], labels[1:]]
    # ... but 'cola' is farther from the canonical phrases than the can (more specific: a synonym, the can alone)
    # and 'drinks' nearer than the mug (a class word: all three); swap the genericities and the answers swap
    got = vocabulary_matches(["cola", "drinks"], labels, sim, rule="generic",
                             generality=(torch.tensor([0.31, 0.45]), labels_generic))
    assert got == [["red soda can"], labels[1:]]
    got = vocabulary_matches(["cola", "drinks"], labels, sim, rule="generic",
                             generality=(torch.tensor([0.45, 0.31]), labels_generic))
    assert got == [labels[1:], ["blue coffee mug"]]
    # a synonym stands for its nearest label's kind: every label its head noun names (both mugs, not the can)
    mugs = ["red soda can", "blue coffee mug", "red coffee mug"]
    s2 = torch.tensor([[[0.3, 0.35], [0.6, 0.71], [0.6, 0.70]]])
    got = vocabulary_matches(["cup"], mugs, s2, rule="generic",
                             generality=(torch.tensor([0.3]), torch.tensor([0.4, 0.4, 0.4])))
    assert got == [["blue coffee mug", "red coffee mug"]]
    with pytest.raises(ConfigError, match="canonical"):
        vocabulary_matches(["cola"], labels, sim[:1], rule="generic")
    with pytest.raises(ConfigError, match="unknown vocabulary rule"):
        vocabulary_matches(["cola"], labels, sim[:1], rule="nearest")


def test_the_zscore_rule_keeps_close_labels_that_stand_out_from_the_vocabulary():
    labels = ["a", "b", "c", "d", "e", "f"]
    # 'q': b and c are both close in absolute terms (>= 0.4, within 0.1), but c is barely above the rest
    sim = torch.tensor([[0.3, 0.6, 0.55, 0.42, 0.42, 0.3]]).unsqueeze(-1).expand(1, 6, 2)
    assert vocabulary_matches(["q"], labels, sim, rule="window") == [["b", "c"]]
    z = (sim[0, :, 0] - sim[0, :, 0].mean()) / sim[0, :, 0].std()
    assert z[1] >= Z_MIN > z[2]
    assert vocabulary_matches(["q"], labels, sim, rule="zscore") == [["b"]]


# axes: can, mug, bottle, generic (the canonical phrases)
_DRINKS = {
    "red soda can": [1, 0, 0, 0.5], "blue coffee mug": [0, 1, 0, 0.5], "green glass bottle": [0, 0, 1, 0.5],
    "can": [1, 0, 0, 0.5], "mug": [0, 1, 0, 0.5], "bottle": [0, 0, 1, 0.5],
    "cola": [0.62, 0.55, 0.55, 0.2],  # specific: less generic than any label
    "drinks": [0.55, 0.55, 0.55, 0.6],  # generic: more than any label
    **{c: [0, 0, 0, 1] for c in CANONICAL_NEGATIVES},
}


def test_resolve_query_tells_synonyms_from_class_words_by_the_canonical_phrases():
    from featurefields.query.engine import QueryEngine

    labels = ["red soda can", "blue coffee mug", "green glass bottle"]
    eng = QueryEngine(_HandMadeField(_DRINKS, labels))
    assert eng.resolve_query(["cola", "drinks"], "auto").stands_for == [["red soda can"], labels]
    assert eng.resolve_query(["cola"], "vocabulary-window").stands_for == [labels]
    t = eng.resolve_query(["cola"], "vocabulary")
    assert t.negatives == ["blue coffee mug", "green glass bottle", *CANONICAL_NEGATIVES]


def test_head_nouns_and_the_word_rule_for_phrases():
    assert head_noun("the red mug") == "mug" and head_noun("a mug of coffee") == "mug"
    assert head_noun("a banana on the table") == "banana" and head_noun("mug handle") == "handle"
    assert names_same_thing("yellow banana", "banana") and names_same_thing("mug", "a mug of coffee")
    assert not names_same_thing("table", "a banana on the table")
    assert not names_same_thing("mug", "mug handle")


def test_grouped_positives_score_as_their_best_member():
    pos = torch.tensor([[0.2, 0.9, 0.1], [0.8, 0.1, 0.1]])  # [N=2, rows=3]
    neg = torch.tensor([[0.5], [0.5]])
    rel = relevancy_from_scores(pos, neg, groups=[[0, 1], [2]])
    assert rel.shape == (2, 2)
    assert rel[0, 0] > 0.5 and rel[1, 0] > 0.5 and rel[0, 1] < 0.5 and rel[1, 1] < 0.5


def test_label_forms_are_the_phrase_its_compound_and_its_head_noun():
    assert compound("yellow cereal box") == "cereal box" and compound("ceramic bowl") == "ceramic bowl"
    assert compound("banana") == "banana" and compound("a mug of coffee") == "mug"
    assert label_forms("Yellow_Cereal box") == ["Yellow Cereal box", "yellow cereal box"[7:], "box"]
    assert label_forms("mug") == ["mug", "mug", "mug"]


# 'food' against a table, a ceramic bowl, a yellow cereal box and a yellow banana; forms: phrase, compound, head
_FOOD_LABELS = ["table", "ceramic bowl", "yellow cereal box", "yellow banana"]
_FOOD_SIM = torch.tensor([[[0.37, 0.37, 0.37], [0.32, 0.32, 0.46], [0.34, 0.42, 0.36], [0.35, 0.35, 0.49]]])
_FOOD_GENERALITY = (torch.tensor([0.5]), torch.tensor([0.4, 0.4, 0.4, 0.4]))  # 'food' is a class word


def _food_categories(query_to_food=0.95, bowl_kitchen=0.52, banana_kitchen=0.37, food_of_labels=0.3):
    """Reference categories (kitchen, food): the query's cosine to each [1, 2], each label form's [4, 3, 2]."""
    kitchen = torch.tensor([[0.35] * 3, [0.46, 0.46, bowl_kitchen], [0.24, 0.3, 0.2], [0.25, 0.25, banana_kitchen]])
    return torch.tensor([[0.3, query_to_food]]), torch.stack([kitchen, torch.full((4, 3), food_of_labels)], dim=-1)


def test_a_class_word_keeps_only_the_close_labels_no_broad_category_is_nearer():
    kw = {"generality": _FOOD_GENERALITY}
    # the bowl (head noun 0.46), the box (its compound 'cereal box' 0.42) and the banana are all close to 'food'
    assert vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, rule="generic", **kw) == [_FOOD_LABELS[1:]]
    # ... but the bowl's head noun is nearer 'kitchen' (0.52) than 'food' (0.46): the bowl is kitchenware
    got = vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, categories=_food_categories(), **kw)
    assert got == [["yellow cereal box", "yellow banana"]]
    # a bowl nearer the kitchen than food by less than the margin stays
    for bowl_kitchen, kept in ((0.46 + CATEGORY_MARGIN - 0.005, True), (0.46 + CATEGORY_MARGIN + 0.005, False)):
        cats = _food_categories(bowl_kitchen=bowl_kitchen)
        got = vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, categories=cats, **kw)
        assert ("ceramic bowl" in got[0]) == kept and "yellow cereal box" in got[0]
    # the nearest close label always stays: the test picks among close labels, the floor decides whether any
    got = vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, categories=_food_categories(banana_kitchen=0.6), **kw)
    assert got == [["yellow cereal box", "yellow banana"]]
    # the query's own category (its nearest: 'food' here) is no rival however near the labels; when 'kitchen' is
    # its nearest instead, 'food' is a rival nearer every label and only the nearest label stays
    own = _food_categories(food_of_labels=0.9, query_to_food=0.95)
    assert vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, categories=own, **kw) == [
        ["yellow cereal box", "yellow banana"]]
    rival = _food_categories(food_of_labels=0.9, query_to_food=0.2)
    assert vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, categories=rival, **kw) == [["yellow banana"]]
    # a synonym (less generic than its nearest label) is its nearest label whatever the categories say
    syn = (torch.tensor([0.3]), _FOOD_GENERALITY[1])
    assert vocabulary_matches(["snack"], _FOOD_LABELS, _FOOD_SIM, generality=syn,
                              categories=_food_categories()) == [["yellow banana"]]
    with pytest.raises(ConfigError, match="reference categories"):
        vocabulary_matches(["food"], _FOOD_LABELS, _FOOD_SIM, **kw)


# axes: bowl, box, banana, kitchen, generic; the labels' compounds and head nouns are given where they differ
_FOOD = {
    "table": [0, 0, 0, 0.3, 1], "ceramic bowl": [1, 0, 0, 0.9, 0.4], "bowl": [1, 0, 0, 0.9, 0.4],
    "yellow cereal box": [0, 1, 0, 0, 0.4], "box": [0, 1, 0, 0, 0.4], "yellow banana": [0, 0, 1, 0, 0.4],
    "banana": [0, 0, 1, 0, 0.4],
    "food": [0.8, 0.55, 0.65, 0, 0.6],  # a class word: near the bowl as near the box and the banana, generic
    "kitchen": [0, 0, 0, 1, 0],
    **{c: [0, 0, 0, 0, 1] for c in CANONICAL_NEGATIVES},
}


def test_resolve_query_checks_a_class_words_labels_against_the_reference_categories():
    from featurefields.query.engine import QueryEngine

    eng = QueryEngine(_HandMadeField(_FOOD, _FOOD_LABELS))
    # the bowl is nearer 'kitchen' (0.64) than 'food' (0.56): by default food is the box and the banana
    assert eng.resolve_query(["food"], "auto").stands_for == [["yellow cereal box", "yellow banana"]]
    assert eng.resolve_query(["food"], "vocabulary-generic").stands_for == [_FOOD_LABELS[1:]]
    t = eng.resolve_query(["food"], "vocabulary")
    assert "ceramic bowl" in t.negatives and "yellow cereal box" not in t.negatives
