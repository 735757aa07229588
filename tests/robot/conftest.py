"""A robot-sized oracle: the tabletop at 200x150 from 24 cameras (the demo's resolution), with Gaussians on its meshes carrying the exact
label features (named parts included), so locating and grasping are tested without training."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class RobotOracle:
    scene: Path
    checkpoint: Path
    field: object  # GaussianField
    labels: list[str]


@pytest.fixture(scope="session")
def robot_oracle(tmp_path_factory) -> RobotOracle:
    from featurefields.scenegen.tabletop import generate_tabletop
    from tests.query.helpers import oracle_field, save_as_checkpoint

    root = tmp_path_factory.mktemp("robot_oracle")
    scene = generate_tabletop(root / "tabletop", seed=0, views=24, width=200, height=150, n_points=500,
                              progress=False)
    field, labels = oracle_field(per_object=2500, table=12000, room=3000)
    ckpt = save_as_checkpoint(field, scene, root / "run" / "checkpoint.pt", eval_every=4)
    return RobotOracle(scene, ckpt, field, labels)
