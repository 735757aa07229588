"""Fixtures shared by the query tests (and the query CLI tests); the oracle itself lives in tests/conftest.py."""
from __future__ import annotations

import pytest


@pytest.fixture
def engine(oracle):
    from featurefields.query import QueryEngine

    return QueryEngine.from_checkpoint(oracle.checkpoint)
