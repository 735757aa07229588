"""ff-eval segmentation --queries on the oracle field of the tiny tabletop: known answers, a control that must
fail, and a bad query file."""
from __future__ import annotations

import json

import pytest

from featurefields.errors import DataError
from featurefields.query import SegmentationConfig
from featurefields.query.evaluate_queries import evaluate_queries, read_queries

QUERIES = {"objects": {
    "mug": {"exact": "mug", "synonym": ["cup", "coffee mug"], "class": "kitchenware"},
    "bowl": {"exact": "bowl", "class": "kitchenware"},
    "banana": {"exact": "banana", "partial": [], "synonym": "bananas", "class": "fruit"},
    "book": {"exact": "book", "synonym": "novel"},
}}


@pytest.fixture
def query_file(tmp_path):
    path = tmp_path / "queries.json"
    path.write_text(json.dumps(QUERIES))
    return path


def test_queries_on_the_oracle_find_their_answers(engine, query_file, tmp_path):
    r = evaluate_queries(engine, query_file, SegmentationConfig(negatives="auto", lift="features"), tmp_path)
    assert json.loads((tmp_path / "queries.json").read_text())["per_query"].keys() == r["per_query"].keys()
    q = r["per_query"]
    assert q["kitchenware"]["answers"] == ["mug", "bowl"] and q["kitchenware"]["kind"] == "class"
    assert q["cup"]["stands_for"] == ["mug", "mug handle"]  # the handle is the mug's (word rule)
    for query, label in (("mug", "mug"), ("cup", "mug"), ("coffee mug", "mug"), ("bananas", "banana"),
                         ("fruit", "banana"), ("novel", "book"), ("kitchenware", None)):
        row = q[query]
        # 3D on the oracle is exact: every Gaussian of the answers and nothing else
        assert row["precision_3d"] >= 0.95 and row["recall_3d"] >= 0.95, (query, row)
        assert row["max_false_coverage"] <= 0.1, (query, row)
        if label is not None:  # in 2D a synonym's mask is its label's (64x48 px: coarse masks, so not IoU 1)
            assert row["iou"] == pytest.approx(q[label]["iou"]) and row["iou"] > 0.15, (query, row)
    assert min(q["kitchenware"]["recall_3d_per_answer"].values()) >= 0.95
    acc = r["acceptance"]
    assert acc["max_false_coverage"]["failing"] == {} and acc["exact_partial_iou"]["min"] > 0.15
    assert r["by_kind"]["synonym"]["queries"] == 4


def test_the_old_word_rule_fails_the_same_queries(engine, query_file):
    """Control: with the word rule alone, a synonym has its object's own label as a negative and finds nothing;
    the evaluation must say so."""
    r = evaluate_queries(engine, query_file, SegmentationConfig(negatives="words", lift="features"))
    for query in ("cup", "novel", "fruit"):
        assert r["per_query"][query]["iou"] < 0.05 and r["per_query"][query]["recall_3d"] < 0.05, query
    assert r["per_query"]["mug"]["recall_3d"] >= 0.95  # the exact label still works
    assert not r["acceptance"]["synonym_mean_iou"]["met"] and not r["passed"]


def test_bad_query_files(engine, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"objects": {"zebra": {"exact": "zebra"}}}))
    with pytest.raises(DataError, match="zebra"):
        evaluate_queries(engine, bad)
    bad.write_text(json.dumps({"objects": {"mug": {"exact": 3}}}))
    with pytest.raises(DataError, match="mug"):
        read_queries(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="objects"):
        read_queries(bad)
