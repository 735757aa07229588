import math

import torch

from featurefields.data.cameras import GL_TO_CV, Cameras
from featurefields.fields.init import focus_point, knn_log_scales, random_points_near_focus, scene_extent
from tests.conftest import look_at_gl


def orbit(n=8, radius=4.0, target=(0.5, -0.2, 0.3)):
    import numpy as np

    c2w = []
    for i in range(n):
        a = 2 * math.pi * i / n
        eye = np.array(target) + radius * np.array([math.cos(a), math.sin(a), 0.5])
        c2w.append(torch.tensor(look_at_gl(eye, np.array(target)), dtype=torch.float32) @ GL_TO_CV)
    K = torch.tensor([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]]).expand(n, 3, 3)
    return Cameras(torch.stack(c2w), K.clone(), 64, 48)


def test_focus_point_of_an_orbit_is_its_target():
    cams = orbit()
    assert torch.allclose(focus_point(cams), torch.tensor([0.5, -0.2, 0.3]), atol=1e-4)


def test_random_points_surround_the_focus():
    cams = orbit()
    pts, cols = random_points_near_focus(cams, 1000)
    assert pts.shape == (1000, 3) and cols.shape == (1000, 3)
    half = 0.35 * 4.0 * math.sqrt(1.25)
    assert ((pts - torch.tensor([0.5, -0.2, 0.3])).abs() <= half + 1e-4).all()
    assert scene_extent(cams) > 4.0


def test_knn_scales_follow_spacing():
    grid = torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.1
    s = knn_log_scales(grid).exp()
    assert torch.allclose(s[62], torch.full((3,), 0.1), atol=1e-4)  # interior point: 3 neighbours at 0.1
