"""Shared fixtures: the sentence model loads once per test session (several seconds on CPU)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def labels_teacher():
    from featurefields.teachers import make_teacher

    teacher = make_teacher("labels")
    teacher.encode_text(["warm up"])  # load the model here, not inside the first test's timing
    return teacher
