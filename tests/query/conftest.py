"""Fixtures shared by the query tests (and the query CLI tests): a tiny generated tabletop with an oracle field."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from featurefields.fields.gaussians import GaussianField

from .helpers import oracle_field, save_as_checkpoint, tiny_tabletop


@dataclass
class Oracle:
    scene: Path  # tiny tabletop scene folder (objects.json, meshes, semantics)
    checkpoint: Path
    field: GaussianField
    labels: list[str]  # label of every Gaussian


@pytest.fixture(scope="session")
def oracle(tmp_path_factory) -> Oracle:
    root = tmp_path_factory.mktemp("oracle")
    scene = tiny_tabletop(root / "tabletop")
    field, labels = oracle_field(per_object=500)
    ckpt = save_as_checkpoint(field, scene, root / "run" / "checkpoint.pt")
    return Oracle(scene, ckpt, field, labels)


@pytest.fixture
def engine(oracle):
    from featurefields.query import QueryEngine

    return QueryEngine.from_checkpoint(oracle.checkpoint)
