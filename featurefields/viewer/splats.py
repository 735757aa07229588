"""A Gaussian field as viser's client-side splats (centres, covariances, base colours, opacities), for browsers
that draw the scene themselves while the camera moves. Colour only: features and modes stay server-side."""
from __future__ import annotations

import numpy as np
import torch

from ..fields.density import quat_to_rotmat
from ..fields.gaussians import sh0_to_rgb
from ..fields.splats import gaussians_of


@torch.no_grad()
def splat_arrays(field) -> dict[str, np.ndarray]:
    """Keyword arguments of ``scene.add_gaussian_splats`` for ``field`` (its Gaussians through
    ``field.gaussians``), in the world frame: centres [N, 3], covariances R S^2 R^T [N, 3, 3], rgbs [N, 3],
    opacities [N, 1]."""
    g = gaussians_of(field)
    wfs = field.world_from_scene.to(g.means)
    a = wfs[:3, :3]  # s R of a similarity: centres map by it, covariances by a C a^T
    rot = quat_to_rotmat(g.quats)
    m = rot * g.scales[:, None, :]  # R S
    cov = a @ (m @ m.transpose(1, 2)) @ a.T
    centers = g.means @ a.T + wfs[:3, 3]
    return {"centers": centers.cpu().numpy(), "covariances": cov.cpu().numpy(),
            "rgbs": sh0_to_rgb(g.sh0[:, 0]).clamp(0, 1).cpu().numpy(),
            "opacities": g.opacities[:, None].cpu().numpy()}
