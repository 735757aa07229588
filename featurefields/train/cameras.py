"""Camera refinement during training (``--optimize-cameras``): a learned rigid correction per training frame.

Real poses (COLMAP's, a SLAM system's, a robot's forward kinematics) are never exact, and a pose a centimetre off
blurs every surface it sees. The correction of frame i is a rotation vector w_i (radians) and a translation r_i
(scene units): ``R_i' = Exp(w_i) R_i`` (a turn about the camera's own centre, axes in the world frame) and
``c_i' = c_i + r_i``, so the camera centre moves by exactly r_i. Exp and Log are roma's SO(3) maps.

How it is learned (measured on the bundled scene, every pose 1 degree / 2 cm off, benchmarks/camera_refine.py):

- **Gauss-Newton steps, not gradient steps.** A small turn and a sideways move shift the image almost alike, so
  a pose sits in a long narrow valley that only parallax and depth tell apart. With a few dozen visits per frame,
  Adam on the loss's pose gradient either crawls along it (small steps: 0.79 degrees left after 1000 steps at
  1e-3) or random-walks across it (large ones: 0.59 at 5e-3). ``gauss_newton`` fits frame i to the field as it is
  now with one damped Gauss-Newton step on its colour and depth residuals: 0.26 degrees after 300 steps.
- **The gauge is fixed.** Moving the whole scene and every camera by one similarity changes no training image
  (nor its depth map, but for a scale the field's depth is slightly off in: the set grew 0.9% without the scale
  part), so nothing in the losses says where the frame is; left free, the set drifts (14 mm on the demo) with the
  Gaussians following, and the given frame, where the held-out views and every later tool live, no longer fits.
  After each step ``remove_common_motion`` takes out of the corrections the one similarity that best explains
  them all: of all equivalent solutions it keeps the one closest to the given poses, the given frame and its
  metric scale, which is where zero-mean pose errors leave the true frame.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..data.scene import SceneData

# render(c2w [4, 4]) -> (rgb [H, W, 3], alpha-weighted depth [H, W], alpha [H, W]) of the field as it is now
RenderFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


class CameraCorrections(nn.Module):
    def __init__(self, n_frames: int, frames: list[int]):
        """``frames``: the frame indices that get a correction (the training frames); others stay as given."""
        super().__init__()
        self.n_frames = n_frames
        self.frames = list(frames)
        self.slot = {f: k for k, f in enumerate(self.frames)}
        self.visits = [0] * len(self.frames)  # pose steps asked for so far, per frame (``due``)
        self.rotvecs = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])
        self.translations = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])

    def pose(self, i: int, c2w: Tensor) -> Tensor:
        """Frame i's corrected camera-to-world [4, 4] (differentiable in the correction); c2w [4, 4] as given."""
        k = self.slot.get(i)
        if k is None:
            return c2w
        return self._pose_from(torch.cat([self.rotvecs[k], self.translations[k]]).to(c2w), c2w)

    def due(self, i: int, dense: int = 16, every: int = 4) -> bool:
        """Whether frame i gets a pose step on this visit: each of its first ``dense`` visits (the poses converge
        while the field takes shape), then every ``every``-th (the field keeps changing a little; a step costs
        seven renders)."""
        k = self.slot[i]
        self.visits[k] += 1
        n = self.visits[k]
        return n <= dense or (n - dense) % every == 0

    def _pose_from(self, x: Tensor, c2w: Tensor) -> Tensor:
        """The pose [4, 4] that the correction x = (rotation vector, translation) [6] makes of c2w [4, 4]."""
        import roma

        top = torch.cat([roma.rotvec_to_rotmat(x[:3]) @ c2w[:3, :3], (c2w[:3, 3] + x[3:])[:, None]], dim=1)
        return torch.cat([top, c2w[3:]], dim=0)

    def gauss_newton(self, i: int, c2w: Tensor, render: RenderFn, gt: Tensor, gt_depth: Tensor | None,
                     depth_weight: float, extent: float, regularizer: float, mask: Tensor | None = None,
                     damping: float = 1e-3, eps: float = 3e-3, max_rotation: float = math.radians(0.5),
                     max_shift: float = 0.01) -> Tensor:
        """One damped Gauss-Newton step of frame i's correction against the current field.

        Residuals: the colour error of every pixel (``mask``: the ones that count) and, where the frame has a depth
        map, the relative depth error times sqrt(depth_weight), as the training losses weigh them; Huber weights
        keep a floater from steering the pose. The gradient is exact (the rasteriser's pose gradient); the
        Gauss-Newton curvature J^T J comes from six forward renders with the correction nudged by ``eps`` (radians;
        times ``extent`` for translations). Finite differences of a rasteriser are a little rough (Gaussians
        enter and leave tiles), which only mis-scales a step: where the exact gradient vanishes is where the
        pose ends up. ``regularizer`` pulls towards the given pose (|w|^2 + |r / extent|^2), for frames that carry
        little information; a step is capped at ``max_rotation`` radians and ``max_shift`` x extent. Returns the
        step [6] (rotation vector, translation)."""
        k = self.slot[i]
        c2w = c2w.float()
        x0 = torch.cat([self.rotvecs[k].detach(), self.translations[k].detach()]).clone().float()
        keep = None if mask is None else mask.reshape(-1)
        valid = None

        def residuals(rgb: Tensor, depth: Tensor, alpha: Tensor) -> Tensor:  # [n]
            res = (rgb - gt).reshape(-1, 3)
            res = (res if keep is None else res[keep]).reshape(-1)
            if valid is None:
                return res
            z = depth[valid] / alpha[valid].clamp_min(1e-6)
            return torch.cat([res, math.sqrt(depth_weight) * (z - gt_depth[valid]) / gt_depth[valid]])

        prior = regularizer * torch.tensor([1.0] * 3 + [extent ** -2] * 3, device=x0.device)
        with torch.enable_grad():
            x = x0.clone().requires_grad_(True)
            rgb, depth, alpha = render(self._pose_from(x, c2w))
            if gt_depth is not None and depth_weight > 0:
                valid = (gt_depth > 0) & (alpha.detach() > 0.5)
            r = residuals(rgb, depth, alpha)
            r0 = r.detach()
            sigma = 1.4826 * r0.abs().median().clamp_min(1e-6)  # robust residual scale
            w = (1.345 * sigma / r0.abs().clamp_min(1e-12)).clamp(max=1.0)  # Huber weights [n]
            loss = 0.5 * (w * r.square()).mean() + 0.5 * (prior * x.square()).sum()
            (g,) = torch.autograd.grad(loss, [x])
        with torch.no_grad():
            cols = []
            for j in range(6):
                xj = x0.clone()
                nudge = eps * (extent if j >= 3 else 1.0)
                xj[j] += nudge
                cols.append((residuals(*render(self._pose_from(xj, c2w))) - r0) / nudge)
            J = torch.stack(cols, dim=1).double()  # [n, 6]
            H = (J * w.double()[:, None]).T @ J / len(r0) + torch.diag(prior.double())
            A = H + damping * torch.diag(torch.diagonal(H)) + 1e-12 * torch.eye(6, dtype=torch.float64,
                                                                                 device=J.device)
            step = -torch.linalg.solve(A, g.double())
            # one factor for both parts: the step's direction (along the valley) is the point of the exercise
            step *= min(1.0, max_rotation / max(float(step[:3].norm()), 1e-12),
                        max_shift * extent / max(float(step[3:].norm()), 1e-12))
            step = step.to(x0)
            self.rotvecs[k].copy_(x0[:3] + step[:3])
            self.translations[k].copy_(x0[3:] + step[3:])
        return step

    @torch.no_grad()
    def remove_common_motion(self, c2w: Tensor, extent: float, with_scale: bool = True) -> dict:
        """Take out of the corrections the similarity (rotation, translation and, ``with_scale``, scale about the
        rig's centre) they share, exactly: every corrected pose P_i becomes G^-1 P_i. G is the least-squares fit of
        the linearised motion to all corrections, rotations in radians and centre moves over ``extent``.
        c2w [N, 4, 4]: every frame's given pose. Returns the motion removed (degrees, scene units, scale - 1)."""
        import roma

        M = len(self.frames)
        if M < 3:
            return {}
        dev = self.rotvecs[0].device
        f64 = torch.float64
        c = c2w[self.frames, :3, 3].to(dev, f64)  # [M, 3] given centres
        w = torch.stack([p.detach() for p in self.rotvecs]).to(f64)  # [M, 3]
        r = torch.stack([p.detach() for p in self.translations]).to(f64)  # [M, 3] centre moves
        m = c.mean(0)
        x = (c - m) / extent  # [M, 3]
        # linearised: w_i = omega, r_i / extent = omega x x_i + tau + s x_i, with omega x x_i = -[x_i]_x omega
        cross = torch.zeros(M, 3, 3, dtype=f64, device=dev)
        cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = x[:, 2], -x[:, 1], x[:, 0]
        cross = cross - cross.transpose(1, 2)
        cols = 7 if with_scale else 6
        A = torch.zeros(M, 6, cols, dtype=f64, device=dev)
        A[:, :3, :3] = torch.eye(3, dtype=f64)
        A[:, 3:, :3] = cross
        A[:, 3:, 3:6] = torch.eye(3, dtype=f64)
        if with_scale:
            A[:, 3:, 6] = x
        b = torch.cat([w, r / extent], dim=1)  # [M, 6]
        sol = torch.linalg.lstsq(A.reshape(-1, cols), b.reshape(-1, 1)).solution[:, 0]
        omega, tau = sol[:3], sol[3:6] * extent
        s = float(sol[6]) if with_scale else 0.0
        G_inv = roma.rotvec_to_rotmat(-omega)  # [3, 3]
        w_new = roma.rotmat_to_rotvec(G_inv @ roma.rotvec_to_rotmat(w))
        c_new = ((c + r - m - tau) @ G_inv.T) / (1.0 + s) + m  # G^-1 of the corrected centres
        for k in range(M):
            self.rotvecs[k].copy_(w_new[k])
            self.translations[k].copy_(c_new[k] - c[k])
        return {"rotation_deg": math.degrees(float(omega.norm())), "translation": float(tau.norm()), "scale": s}

    @torch.no_grad()
    def corrected(self, c2w: Tensor) -> Tensor:
        """All frames' corrected poses [N, 4, 4] from the given ones [N, 4, 4]."""
        out = c2w.clone()
        for f in self.frames:
            out[f] = self.pose(f, c2w[f].float()).to(out)
        return out

    @torch.no_grad()
    def stats(self) -> dict:
        """Size of the learned corrections: degrees and scene units, mean and max over the corrected frames."""
        if not self.frames:
            return {"frames": 0}
        rot = torch.stack([p.detach() for p in self.rotvecs]).norm(dim=1) * (180.0 / math.pi)
        tr = torch.stack([p.detach() for p in self.translations]).norm(dim=1)
        return {"frames": len(self.frames), "rotation_deg_mean": float(rot.mean()), "rotation_deg_max": float(rot.max()),
                "translation_mean": float(tr.mean()), "translation_max": float(tr.max())}

    def state(self) -> dict:
        return {"frames": self.frames, "n_frames": self.n_frames, "visits": self.visits,
                "rotvecs": torch.stack([p.detach().cpu() for p in self.rotvecs]).tolist() if self.frames else [],
                "translations": torch.stack([p.detach().cpu() for p in self.translations]).tolist()
                if self.frames else []}

    @classmethod
    def from_state(cls, state: dict) -> "CameraCorrections":
        out = cls(int(state["n_frames"]), [int(f) for f in state["frames"]])
        out.visits = [int(v) for v in state.get("visits", out.visits)]
        with torch.no_grad():
            for k in range(len(out.frames)):
                out.rotvecs[k].copy_(torch.tensor(state["rotvecs"][k]))
                out.translations[k].copy_(torch.tensor(state["translations"][k]))
        return out


def apply_trained_cameras(scene: SceneData, record: dict | None, frame_info: dict | None) -> SceneData:
    """The scene with the poses the field was trained with (a checkpoint's ``cameras`` record, by frame name):
    refined poses after --optimize-cameras, metric ones after --scale-from-depth. Frames the record does not
    name keep their loaded pose."""
    if frame_info:
        scale = frame_info.get("scale") if not scene.frame_info.get("metric", True) else None
        if scale and scene.points is not None:
            scene.points = scene.points * float(scale)
        scene.frame_info = dict(frame_info)
    if not record or "c2w" not in record:
        return scene
    index = {n: i for i, n in enumerate(record.get("frame_names", []))}
    c2w = torch.as_tensor(record["c2w"], dtype=scene.cameras.c2w.dtype)
    for i, name in enumerate(scene.frame_names):
        if name in index:
            scene.cameras.c2w[i] = c2w[index[name]]
    return scene
