"""Grippers as data, upright boxes, support planes and box overlap, grasp quality: small exact cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.robot.geometry import Plane, fit_support_plane, footprint_fill, upright_box, upright_box_iou
from featurefields.robot.gripper import PANDA, ROBOTIQ_2F85, load_gripper
from featurefields.robot.quality import ferrari_canny


def test_builtin_and_file_grippers(tmp_path):
    assert load_gripper("panda") is PANDA and load_gripper("Robotiq-2F-85") is ROBOTIQ_2F85
    assert load_gripper(None) is PANDA
    spec = {"max_width": 0.1, "finger_length": 0.05, "finger_width": 0.02, "finger_thickness": 0.01,
            "palm": [0.1, 0.05, 0.04], "force": 40}
    (tmp_path / "g.json").write_text(json.dumps(spec))
    g = load_gripper(tmp_path / "g.json")
    assert g.name == "g" and g.max_width == 0.1 and g.palm == (0.1, 0.05, 0.04) and g.force == 40
    boxes = dict((n, (c, e)) for n, c, e in g.boxes(0.06))
    # fingers just outside the opening, on either side of the grasp centre, reaching tip_depth past it
    assert boxes["finger_1"][0][0] == pytest.approx(-0.035) and boxes["finger_2"][0][0] == pytest.approx(0.035)
    assert boxes["finger_1"][0][2] + boxes["finger_1"][1][2] / 2 == pytest.approx(g.tip_depth)
    assert g.opening_for(0.03) == pytest.approx(0.05) and g.opening_for(0.2) == 0.1


@pytest.mark.parametrize("spec, match", [
    ({"max_width": 0.1}, "missing finger_length"),
    ({"max_width": -0.1, "finger_length": 0.05, "finger_width": 0.02, "finger_thickness": 0.01,
      "palm": [0.1, 0.05, 0.04]}, "max_width must be a positive number"),
    ({"max_width": 0.1, "finger_length": 0.05, "finger_width": 0.02, "finger_thickness": 0.01,
      "palm": [0.1, 0.05]}, "palm must be three positive numbers"),
    ({"max_width": 0.1, "finger_length": 0.05, "finger_width": 0.02, "finger_thickness": 0.01,
      "palm": [0.1, 0.05, 0.04], "fingers": 3}, "unknown gripper field"),
    ([1, 2], "JSON object"),
])
def test_bad_gripper_files(tmp_path, spec, match):
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=match):
        load_gripper(tmp_path / "bad.json")


def test_unknown_gripper_name():
    with pytest.raises(ConfigError, match="unknown gripper 'claw'.*panda"):
        load_gripper("claw")


def box_points(size, yaw, centre, n=4000, seed=0):
    """Points on the surface of an upright box."""
    g = np.random.default_rng(seed)
    p = g.uniform(-0.5, 0.5, (n, 3))
    axis = g.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(p[np.arange(n), axis]) * 0.5
    p *= size
    c, s = math.cos(yaw), math.sin(yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return torch.from_numpy(p @ R.T + centre).float()


def test_upright_boxes_and_their_overlap():
    up = torch.tensor([0.0, 0.0, 1.0])
    pts = box_points(np.array([0.19, 0.07, 0.28]), 0.4, np.array([0.1, -0.2, 0.89]))
    box = upright_box(pts, up)
    torch.testing.assert_close(box.extent, torch.tensor([0.19, 0.07, 0.28]), atol=2e-3, rtol=0)
    torch.testing.assert_close(box.center, torch.tensor([0.1, -0.2, 0.89]), atol=2e-3, rtol=0)
    assert abs(float(box.rotation[:, 0] @ torch.tensor([math.cos(0.4), math.sin(0.4), 0.0]))) > 0.999
    assert bool(box.contains(pts, margin=1e-4).all())
    assert upright_box_iou(box, box) == pytest.approx(1.0)
    shifted = upright_box(pts + torch.tensor([0.0, 0.0, 0.14]), up)  # half its height up: 1/3 overlap
    assert upright_box_iou(box, shifted) == pytest.approx(1 / 3, abs=0.01)
    # a round footprint: every yaw is as small, so the box takes the world's x axis and two scans agree
    a = torch.linspace(0, 2 * math.pi, 400)
    ring = torch.stack([0.05 * a.cos(), 0.05 * a.sin(), torch.zeros_like(a)], -1)
    can = torch.cat([ring + torch.tensor([0.0, 0.0, z]) for z in (0.0, 0.06, 0.12)])
    b1 = upright_box(can, up)
    b2 = upright_box(can @ torch.tensor([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0],
                                         [0, 0, 1.0]]).T, up)
    assert upright_box_iou(b1, b2) > 0.99 and abs(float(b1.rotation[0, 0])) > 0.999


def test_support_plane_and_footprint():
    g = torch.Generator().manual_seed(0)
    table = torch.cat([torch.rand(3000, 2, generator=g) - 0.5, torch.full((3000, 1), 0.75)], 1)
    up = torch.tensor([0.0, 0.0, 1.0])
    plane = fit_support_plane(table, up.expand(3000, 3), up, below=0.8)
    assert plane is not None and float(plane.normal @ up) > 0.999 and plane.offset == pytest.approx(-0.75, abs=1e-3)
    assert fit_support_plane(table, -up.expand(3000, 3), up, below=0.8) is None  # facing down: not a support
    ball = box_points(np.array([0.1, 0.1, 0.1]), 0.0, np.array([0.0, 0.0, 0.8]))
    fill = footprint_fill(ball, Plane(up, -0.75), 0.005)
    assert torch.allclose(fill[:, 2], torch.tensor(0.75)) and len(fill) == pytest.approx(21 * 21, rel=0.15)


def test_force_closure_of_antipodal_and_one_sided_contacts():
    centroid = np.zeros(3)
    pts = np.array([[-0.03, 0.0, 0.0], [0.03, 0.0, 0.0]])
    inward = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    eps = ferrari_canny(pts, inward, centroid, 0.8, 0.05)
    assert eps > 0.01
    assert ferrari_canny(pts, np.array([[1.0, 0, 0], [1.0, 0, 0]]), centroid, 0.8, 0.05) == 0.0  # same side
    # contacts off the line of their normals by more than the friction cone: no closure
    skew = np.array([[-0.03, -0.03, 0.0], [0.03, 0.03, 0.0]])
    assert ferrari_canny(skew, inward, centroid, 0.3, 0.05) == 0.0
    assert ferrari_canny(skew, inward, centroid, 1.2, 0.05) > 0.0  # ... unless friction covers the angle
    # lower friction, lower quality
    assert ferrari_canny(pts, inward, centroid, 0.4, 0.05) < eps


def _cylinder(radius: float, height: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points [n, 3] and outward normals of an upright cylinder's side, axis along z through the origin."""
    rng = np.random.default_rng(seed)
    a, z = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, height, n)
    nrm = np.stack([np.cos(a), np.sin(a), np.zeros(n)], 1)
    return nrm * radius + np.stack([np.zeros(n), np.zeros(n), z], 1), nrm


def test_pairs_whose_surface_would_be_inside_the_fingers_are_dropped():
    from featurefields.robot.grasps import _fits_between_fingers

    outer, _ = _cylinder(0.041, 0.09)  # a mug's body: 8.2 cm across (the Panda opens 8 cm), a 4 mm wall
    inner, _ = _cylinder(0.037, 0.09, seed=1)
    half = math.sqrt(0.041 ** 2 - 0.0227 ** 2)
    contacts = np.array([[0.0227, -half, 0.045], [0.0227, half, 0.045],  # a chord 6.8 cm long, 2.3 cm off-axis
                         [0.041, 0.0, 0.06], [0.037, 0.0, 0.06]])  # a pinch across the wall
    pts = np.concatenate([contacts, outer, inner])
    ok = _fits_between_fingers(np.array([[0, 1], [2, 3]]), pts, PANDA)
    assert not ok[0]  # the body bulges past the chord's ends into the fingers
    assert ok[1]
    can, _ = _cylinder(0.0315, 0.12)  # a 6.3 cm can: every chord fits
    half = 0.0315
    ends = np.array([[0.0, -half, 0.06], [0.0, half, 0.06]])
    across = np.array([[int(np.argmin(np.linalg.norm(can - e, axis=1))) for e in ends]])
    assert _fits_between_fingers(across, can, PANDA).all()

