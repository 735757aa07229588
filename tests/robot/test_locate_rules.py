"""The rules locate decides by, on hand-made geometry: when an object rests on a plane it is not seen touching, and
which pieces of relevant fused surface are the instance's."""
from __future__ import annotations

import math

import numpy as np
import torch

from featurefields.robot.geometry import Plane


def test_an_object_rests_on_a_plane_when_only_its_unseen_band_is_missing():
    from featurefields.robot.locate import _rests_on

    table = Plane(torch.tensor([0.0, 0.0, 1.0]), 0.0)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(6000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ball = torch.from_numpy(d * 0.063 + [0, 0, 0.063]).float()  # a 12.6 cm ball standing on the table
    seen = ball[ball[:, 2] > 0.0127]  # cameras 40-45 degrees up see down to about 1.3 cm above the table
    hidden = torch.tensor([[0.0, 0.0, 0.0], [0.004, 0.0, 0.0]])  # the table right under it is hidden
    assert _rests_on(table, seen, seen, hidden, math.radians(42))
    assert not _rests_on(table, seen, seen, hidden, math.radians(15))  # from that low it would have been seen
    assert not _rests_on(table, seen, seen, torch.zeros(0, 3), math.radians(42))  # nothing hidden under it
    # a mug's handle: a 1.1 cm tube 1.5 cm above the table, hidden table under it, is held by the mug, not the table
    a = torch.linspace(-math.pi / 2, math.pi / 2, 200)
    handle = torch.stack([0.028 * torch.cos(a), torch.zeros_like(a), 0.043 + 0.022 * torch.sin(a)], 1)
    assert float(handle[:, 2].min()) > 0.015
    assert not _rests_on(table, handle, handle, torch.tensor([[0.014, 0.0, 0.0]]), math.radians(42))
    assert _rests_on(table, handle - torch.tensor([0, 0, 0.019]), handle, hidden, math.radians(42))  # touching


def test_only_the_main_pieces_of_relevant_surface_are_the_instance():
    from featurefields.robot.locate import _main_pieces

    g = torch.arange(40, dtype=torch.float32) * 0.0025
    patch = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # [1600, 2] a 10 cm surface
    flat = torch.cat([patch, torch.zeros(len(patch), 1)], 1)
    speck = flat[:100] + torch.tensor([0.0, 0.0, 0.2])  # 100 points 20 cm above it: the side of a neighbour
    keep = _main_pieces(torch.cat([flat, speck]), 0.0025)
    assert bool(keep[:1600].all()) and not bool(keep[1600:].any())
    twin = flat + torch.tensor([0.3, 0.0, 0.0])  # a second surface as big: both are kept
    assert bool(_main_pieces(torch.cat([flat, twin]), 0.0025).all())


def test_isolated_elements_do_not_stretch_the_region_fused():
    from featurefields.robot.locate import _dense_bounds

    g = torch.arange(10, dtype=torch.float32) * 0.01
    bowl = torch.stack(torch.meshgrid(g, g, g[:4], indexing="ij"), -1).reshape(-1, 3)  # [400, 3] 9 x 9 x 3 cm
    floaters = torch.tensor([[0.05, 0.05, 0.15], [0.2, 0.05, 0.02], [0.05, -0.12, 0.0]])  # 6-12 cm off, alone
    lo, hi = _dense_bounds(torch.cat([bowl, floaters]))
    assert torch.allclose(lo, bowl.min(0).values) and torch.allclose(hi, bowl.max(0).values)
    lo, hi = _dense_bounds(torch.cat([bowl, bowl + torch.tensor([0.2, 0.0, 0.0])]))  # a second dense part counts
    assert torch.allclose(hi, bowl.max(0).values + torch.tensor([0.2, 0.0, 0.0]))
