"""The simulator itself is tested: a box a centred grasp must lift, and an off-centre grasp whose finger comes
down through the box must not."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")


def test_centred_grasp_lifts_a_box_and_an_offset_one_does_not():
    import trimesh

    from featurefields.robot.gripper import PANDA
    from featurefields.robot.sim import SimConfig, SimObject, simulate_grasp

    box = trimesh.creation.box((0.05, 0.05, 0.10))
    v = np.asarray(box.vertices) + [0.0, 0.0, 0.05]
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 0.75]
    objects = [SimObject("box", v, np.asarray(box.faces), pose)]
    table = (np.array([-0.5, -0.35, 0.0]), np.array([0.5, 0.35, 0.75]))

    def grasp(x: float) -> np.ndarray:  # from above, closing along x, centre 6 cm above the table
        g = np.eye(4)
        g[:3, 0], g[:3, 2] = [1.0, 0, 0], [0, 0, -1.0]
        g[:3, 1] = np.cross(g[:3, 2], g[:3, 0])
        g[:3, 3] = [x, 0.0, 0.81]
        return g

    cfg = SimConfig(hold_s=1.0)
    ok = simulate_grasp(objects, "box", table, PANDA, grasp(0.0), 0.07, cfg)
    assert ok.success and ok.lifted_m > 0.12 and ok.fingers_touching == 2
    assert ok.object_mass_kg == pytest.approx(0.05 * 0.05 * 0.10 * cfg.density, rel=1e-3)
    off = simulate_grasp(objects, "box", table, PANDA, grasp(0.04), 0.07, cfg)
    assert not off.success and off.lifted_m < 0.05
