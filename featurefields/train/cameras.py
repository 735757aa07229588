"""Camera refinement during training (``--optimize-cameras``): a learned rigid correction per training frame.

Real poses (COLMAP's, a SLAM system's, a robot's forward kinematics) are never exact, and a pose a centimetre off
blurs every surface it sees. The native rasteriser differentiates the image with respect to the view matrix, so a
correction per frame can be learned with the Gaussians, from the same photometric (and depth) losses.

The correction of frame i is a rotation vector w_i (radians) and a translation r_i (scene units). The rotation
turns the camera about a pivot on its optical axis, at the depth of what it looks at (``pivot`` d_i; 0: the camera
centre): ``R_i' = Exp(w_i) R_i`` and ``c_i' = c_i + r_i + d_i (z_i - Exp(w_i) z_i)`` (z_i the optical axis).
About its own centre a small turn and a sideways move shift the image almost alike, so the two parameters would
be nearly collinear and Adam's per-coordinate steps zig-zag along that valley; about the pivot, r_i shifts the
image and w_i orbits the scene (parallax), two directions the losses tell apart. Exp is roma's SO(3) exponential.

Gauge: moving the whole scene and every camera by one rigid motion (a similarity without depth maps) changes no
training image, so nothing in the losses says where the frame is; left free, per-frame noise random-walks the set
and the Gaussians follow it, and the given frame (held-out views, every later tool) no longer fits. After every
step ``remove_common_motion`` takes out of the corrections the one rigid motion that best explains them all (least
squares, rotations in radians, translations over the rig's extent): of all equivalent solutions it keeps the one
closest to the given poses, which is where zero-mean pose errors leave the true frame.

Each frame is its own parameter, so Adam only steps the frame a training step rendered (parameters without a
gradient are skipped), instead of coasting every frame on stale momentum.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data.scene import SceneData


class CameraCorrections(nn.Module):
    def __init__(self, n_frames: int, frames: list[int], pivots: list[float] | None = None):
        """``frames``: the frame indices that get a correction (the training frames); others stay as given.
        ``pivots``: per corrected frame, the distance along its optical axis the rotation turns about."""
        super().__init__()
        self.n_frames = n_frames
        self.frames = list(frames)
        self.slot = {f: k for k, f in enumerate(self.frames)}
        self.pivots = [float(p) for p in pivots] if pivots is not None else [0.0] * len(self.frames)
        if len(self.pivots) != len(self.frames):
            raise ValueError("one pivot per corrected frame")
        self.visits = [0] * len(self.frames)  # Gauss-Newton visits so far (``due``)
        self.rotvecs = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])
        self.translations = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])

    def due(self, i: int, dense: int = 8, every: int = 4) -> bool:
        """Whether frame i gets a pose step on this visit: each of its first ``dense`` visits (the poses converge
        while the field takes shape), then every ``every``-th one (the field keeps changing a little)."""
        k = self.slot[i]
        self.visits[k] += 1
        n = self.visits[k]
        return n <= dense or (n - dense) % every == 0

    def _delta(self, k: int, c2w: Tensor) -> tuple[Tensor, Tensor]:
        """Slot k's (rotation [3, 3], camera-centre shift [3]) for the given pose c2w [4, 4]."""
        import roma

        R = roma.rotvec_to_rotmat(self.rotvecs[k].to(c2w))
        z = c2w[:3, 2]
        return R, self.translations[k].to(c2w) + self.pivots[k] * (z - R @ z)

    def pose(self, i: int, c2w: Tensor) -> Tensor:
        """Frame i's corrected camera-to-world [4, 4] (differentiable in the correction); c2w [4, 4] as given."""
        k = self.slot.get(i)
        if k is None:
            return c2w
        R, shift = self._delta(k, c2w)
        top = torch.cat([R @ c2w[:3, :3], (c2w[:3, 3] + shift)[:, None]], dim=1)
        return torch.cat([top, c2w[3:]], dim=0)

    def regularizer(self, i: int, c2w: Tensor, extent: float) -> Tensor:
        """|w|^2 + |centre shift / extent|^2 of frame i: keeps frames that carry little information near where
        they were given."""
        k = self.slot[i]
        _, shift = self._delta(k, c2w)
        return self.rotvecs[k].square().sum() + (shift / extent).square().sum()

    @torch.no_grad()
    def remove_common_motion(self, c2w: Tensor, extent: float, with_scale: bool = False) -> dict:
        """Take the rigid motion (with a scale if ``with_scale``) shared by all corrections out of them, exactly
        (through roma's SO(3) maps): corrected poses P_i become G^-1 P_i. c2w [N, 4, 4]: every frame's given pose.
        Returns the motion removed (degrees, scene units)."""
        import roma

        if len(self.frames) < 3:
            return {}
        dev = self.rotvecs[0].device
        given = c2w[self.frames].to(dev, torch.float64)  # [M, 4, 4]
        c, z = given[:, :3, 3], given[:, :3, 2]  # [M, 3] centres, optical axes
        w = torch.stack([p.detach() for p in self.rotvecs]).double()  # [M, 3]
        r = torch.stack([p.detach() for p in self.translations]).double()
        piv = torch.tensor(self.pivots, dtype=torch.float64, device=dev)[:, None]
        R = roma.rotvec_to_rotmat(w)  # [M, 3, 3]
        shift = r + piv * (z - (R @ z[..., None])[..., 0])  # [M, 3] centre shifts
        m = c.mean(0)
        x = (c - m) / extent  # [M, 3] centred, unitless
        # linearised: w_i = omega, shift_i / extent = omega x x_i + tau + s x_i
        M = len(self.frames)
        eye = torch.eye(3, dtype=torch.float64, device=dev).expand(M, 3, 3)
        cross = torch.zeros(M, 3, 3, dtype=torch.float64, device=dev)  # omega x x_i = -[x_i]_x omega
        cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = x[:, 2], -x[:, 1], x[:, 0]
        cross = cross - cross.transpose(1, 2)
        cols = 7 if with_scale else 6
        A = torch.zeros(M, 6, cols, dtype=torch.float64, device=dev)
        A[:, :3, :3] = eye
        A[:, 3:, :3] = cross
        A[:, 3:, 3:6] = eye
        if with_scale:
            A[:, 3:, 6] = x
        b = torch.cat([w, shift / extent], dim=1)  # [M, 6]
        sol = torch.linalg.lstsq(A.reshape(-1, cols), b.reshape(-1, 1)).solution[:, 0]
        omega, tau = sol[:3], sol[3:6] * extent
        s = float(sol[6]) if with_scale else 0.0
        G_inv = roma.rotvec_to_rotmat(-omega)  # [3, 3]
        R_new = G_inv @ R  # corrections' new rotations (about each camera's given orientation)
        c_new = ((c + shift - m - tau) @ G_inv.T) / (1.0 + s) + m  # G^-1 of the corrected centres
        w_new = roma.rotmat_to_rotvec(R_new)
        r_new = c_new - c - piv * (z - (R_new @ z[..., None])[..., 0])
        for k in range(M):
            self.rotvecs[k].copy_(w_new[k].to(self.rotvecs[k]))
            self.translations[k].copy_(r_new[k].to(self.translations[k]))
        return {"rotation_deg": math.degrees(float(omega.norm())), "translation": float(tau.norm()), "scale": s}

    @torch.no_grad()
    def gauss_newton(self, i: int, c2w: Tensor, render, gt: Tensor, gt_depth: Tensor | None, depth_weight: float,
                     extent: float, regularizer: float, mask: Tensor | None = None, damping: float = 0.1,
                     eps: float = 1e-3, max_rotation: float = math.radians(0.5), max_shift: float = 0.01) -> Tensor:
        """One damped Gauss-Newton (Levenberg-Marquardt) step of frame i's correction against the current field.

        ``render(c2w) -> (rgb [H, W, 3], depth [H, W] alpha-weighted, alpha [H, W])``. The residuals are the
        colour error of every pixel and, where the frame has depth, the relative depth error (times
        sqrt(depth_weight)), Huber-weighted; the Jacobian [n, 6] comes from six forward renders with the correction
        nudged by ``eps`` (radians; times ``extent`` for translations). Why not gradient steps: a small turn and a
        sideways move shift the image almost alike, so the pose sits in a long narrow valley only parallax and depth
        tell apart; Adam or gradient descent either crawl along it or random-walk across it in the few dozen visits
        a frame gets, while a Gauss-Newton step takes the curvature of each direction into account. Returns the
        step [6] (rotation vector, translation)."""
        k = self.slot[i]
        x0 = torch.cat([self.rotvecs[k].detach(), self.translations[k].detach()]).clone()
        steps = torch.tensor([eps] * 3 + [eps * extent] * 3, device=x0.device)

        def set_x(x: Tensor) -> None:
            self.rotvecs[k].copy_(x[:3])
            self.translations[k].copy_(x[3:])

        rgb, depth, alpha = render(self.pose(i, c2w))
        keep = None if mask is None else mask.reshape(-1)
        valid = None
        if gt_depth is not None and depth_weight > 0:
            valid = (gt_depth > 0) & (alpha > 0.5)
        scale_d = math.sqrt(depth_weight)

        def residuals(rgb: Tensor, depth: Tensor, alpha: Tensor) -> Tensor:
            res = rgb - gt
            res = (res if keep is None else res.reshape(-1, 3)[keep]).reshape(-1)
            if valid is not None:
                z = depth[valid] / alpha[valid].clamp_min(1e-6)
                res = torch.cat([res, scale_d * (z - gt_depth[valid]) / gt_depth[valid]])
            return res

        r0 = residuals(rgb, depth, alpha)  # [n]
        cols = []
        for j in range(6):
            x = x0.clone()
            x[j] += steps[j]
            set_x(x)
            cols.append((residuals(*render(self.pose(i, c2w))) - r0) / steps[j])
        set_x(x0)
        J = torch.stack(cols, dim=1)  # [n, 6]
        sigma = 1.4826 * r0.abs().median().clamp_min(1e-6)
        wts = (1.345 * sigma / r0.abs().clamp_min(1e-12)).clamp(max=1.0)  # Huber weights [n]
        n = len(r0)
        prior = torch.tensor([1.0] * 3 + [1.0 / extent**2] * 3, device=x0.device) * regularizer
        H = (J * wts[:, None]).T @ J / n + torch.diag(prior)
        g = (J * wts[:, None]).T @ r0 / n + prior * x0
        A = H + damping * torch.diag(torch.diagonal(H)) + 1e-12 * torch.eye(6, device=x0.device)
        step = -torch.linalg.solve(A.double(), g.double()).to(x0)
        rot, tr = step[:3].norm(), step[3:].norm()
        step[:3] *= min(1.0, max_rotation / max(float(rot), 1e-12))
        step[3:] *= min(1.0, max_shift * extent / max(float(tr), 1e-12))
        set_x(x0 + step)
        return step

    @torch.no_grad()
    def corrected(self, c2w: Tensor) -> Tensor:
        """All frames' corrected poses [N, 4, 4] from the given ones [N, 4, 4]."""
        out = c2w.clone()
        for f in self.frames:
            out[f] = self.pose(f, c2w[f].float()).to(out)
        return out

    def param_groups(self, lr_rotation: float, lr_translation: float) -> list[dict]:
        return [{"params": list(self.rotvecs), "name": "camera_rotation", "lr": lr_rotation, "base_lr": lr_rotation},
                {"params": list(self.translations), "name": "camera_translation", "lr": lr_translation,
                 "base_lr": lr_translation}]

    @torch.no_grad()
    def stats(self, c2w: Tensor) -> dict:
        """Size of the learned corrections (c2w [N, 4, 4]: the given poses): degrees and scene units (of the
        camera centres), mean and max over the corrected frames."""
        if not self.frames:
            return {"frames": 0}
        rot = torch.stack([p.detach() for p in self.rotvecs]).norm(dim=1) * (180.0 / math.pi)
        tr = torch.stack([self._delta(k, c2w[f].to(self.rotvecs[k]))[1] for k, f in enumerate(self.frames)]).norm(dim=1)
        return {"frames": len(self.frames), "rotation_deg_mean": float(rot.mean()), "rotation_deg_max": float(rot.max()),
                "translation_mean": float(tr.mean()), "translation_max": float(tr.max())}

    def state(self) -> dict:
        return {"frames": self.frames, "n_frames": self.n_frames, "pivots": self.pivots, "visits": self.visits,
                "rotvecs": torch.stack([p.detach().cpu() for p in self.rotvecs]).tolist() if self.frames else [],
                "translations": torch.stack([p.detach().cpu() for p in self.translations]).tolist()
                if self.frames else []}

    @classmethod
    def from_state(cls, state: dict) -> "CameraCorrections":
        out = cls(int(state["n_frames"]), [int(f) for f in state["frames"]], state.get("pivots"))
        out.visits = [int(v) for v in state.get("visits", out.visits)]
        with torch.no_grad():
            for k in range(len(out.frames)):
                out.rotvecs[k].copy_(torch.tensor(state["rotvecs"][k]))
                out.translations[k].copy_(torch.tensor(state["translations"][k]))
        return out


class ScaledGradientDescent(torch.optim.Optimizer):
    """Gradient descent whose step is scaled by one running RMS of each group's gradients (all frames together).

    Adam normalises every coordinate of every frame by its own history: a direction the images barely constrain
    (a turn traded against a sideways move, the orbit about what the camera sees) then moves as fast as a
    well-measured one, and with a few dozen visits per frame its noisy gradient random-walks the pose by about
    the step size. One scale per group keeps the gradient's direction and the frames' relative sizes (what plain
    gradient descent would do), and the RMS only makes the step size independent of the loss's units."""

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.95, eps: float = 1e-20):
        super().__init__(params, {"lr": lr, "beta": beta, "eps": eps})
        for g in self.param_groups:
            g.setdefault("sq", 0.0)
            g.setdefault("t", 0)

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            grads = [p.grad for p in g["params"] if p.grad is not None]
            if not grads:
                continue
            sq = float(sum(x.square().sum() for x in grads)) / sum(x.numel() for x in grads)
            g["t"] += 1
            g["sq"] = g["beta"] * g["sq"] + (1 - g["beta"]) * sq
            rms = math.sqrt(g["sq"] / (1 - g["beta"] ** g["t"])) + g["eps"]
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-g["lr"] / rms)


def pivot_depths(scene: SceneData, frames: list[int], fallback: float) -> list[float]:
    """Per frame, how far in front of the camera its rotation should turn: the median of its depth map, else the
    median depth of the scene's points that it sees, else ``fallback``."""
    out = []
    for i in frames:
        d = None
        if scene.depths is not None:
            valid = scene.depths[i][scene.depths[i] > 0]
            if valid.numel():
                d = float(valid.float().median())
        if d is None and scene.points is not None and len(scene.points):
            w2c = torch.linalg.inv(scene.cameras.c2w[i].double())
            p = scene.points.double() @ w2c[:3, :3].T + w2c[:3, 3]
            K = scene.cameras.K[i].double()
            front = p[:, 2] > 1e-6
            uv = (p[front] @ K.T)[:, :2] / p[front, 2:3]
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < scene.cameras.width) & (uv[:, 1] >= 0) & (
                uv[:, 1] < scene.cameras.height)
            if inside.any():
                d = float(p[front][inside, 2].median())
        out.append(d if d is not None and math.isfinite(d) else float(fallback))
    return out


def camera_lr(base: float, step: int, total: int, start: int = 0, ramp: int = 0, final_fraction: float = 0.01) -> float:
    """Poses hold still for ``start`` steps (the Gaussians first agree on a rough scene), the rate then rises
    linearly over ``ramp`` steps and decays exponentially to ``base * final_fraction`` at the end of the run."""
    if step < start:
        return 0.0
    if ramp > 0 and step < start + ramp:
        return base * (step - start + 1) / ramp
    t = min((step - start - ramp) / max(total - start - ramp, 1), 1.0)
    return base * final_fraction ** t


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
