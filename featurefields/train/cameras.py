"""Camera refinement during training (``--optimize-cameras``): a learned rigid correction per training frame.

Real poses (COLMAP's, a SLAM system's, a robot's forward kinematics) are never exact, and a pose a centimetre off
blurs every surface it sees. The native rasteriser differentiates the image with respect to the view matrix, so a
correction per frame can be learned with the Gaussians, from the same photometric (and depth) losses.

The correction of frame i is a rotation vector w_i (radians) and a translation r_i (scene units):
``R_i' = Exp(w_i) R_i`` (a turn about the camera's own centre, axes in the world frame) and ``t_i' = t_i + r_i``,
so the camera centre moves by exactly r_i and a small regulariser ``|w|^2 + |r / extent|^2`` keeps frames that
carry little information near where they were given. Exp is roma's rotation-vector map (the SO(3) exponential).
Each frame is its own parameter, so Adam only steps the frame a training step rendered (parameters without a
gradient are skipped), instead of coasting every frame on stale momentum.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data.scene import SceneData


class CameraCorrections(nn.Module):
    def __init__(self, n_frames: int, frames: list[int]):
        """``frames``: the frame indices that get a correction (the training frames); others stay as given."""
        super().__init__()
        self.n_frames = n_frames
        self.frames = list(frames)
        self.slot = {f: k for k, f in enumerate(self.frames)}
        self.rotvecs = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])
        self.translations = nn.ParameterList([nn.Parameter(torch.zeros(3)) for _ in self.frames])

    def pose(self, i: int, c2w: Tensor) -> Tensor:
        """Frame i's corrected camera-to-world [4, 4] (differentiable in the correction); c2w [4, 4] as given."""
        k = self.slot.get(i)
        if k is None:
            return c2w
        import roma

        R = roma.rotvec_to_rotmat(self.rotvecs[k].to(c2w))  # [3, 3]
        top = torch.cat([R @ c2w[:3, :3], (c2w[:3, 3] + self.translations[k].to(c2w))[:, None]], dim=1)
        return torch.cat([top, c2w[3:]], dim=0)

    def regularizer(self, i: int, extent: float) -> Tensor:
        k = self.slot[i]
        return self.rotvecs[k].square().sum() + (self.translations[k] / extent).square().sum()

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
    def stats(self) -> dict:
        """Size of the learned corrections: degrees and scene units, mean and max over the corrected frames."""
        if not self.frames:
            return {"frames": 0}
        rot = torch.stack([p.detach() for p in self.rotvecs]).norm(dim=1) * (180.0 / math.pi)
        tr = torch.stack([p.detach() for p in self.translations]).norm(dim=1)
        return {"frames": len(self.frames), "rotation_deg_mean": float(rot.mean()), "rotation_deg_max": float(rot.max()),
                "translation_mean": float(tr.mean()), "translation_max": float(tr.max())}

    def state(self) -> dict:
        return {"frames": self.frames, "n_frames": self.n_frames,
                "rotvecs": torch.stack([p.detach().cpu() for p in self.rotvecs]).tolist() if self.frames else [],
                "translations": torch.stack([p.detach().cpu() for p in self.translations]).tolist()
                if self.frames else []}

    @classmethod
    def from_state(cls, state: dict) -> "CameraCorrections":
        out = cls(int(state["n_frames"]), [int(f) for f in state["frames"]])
        with torch.no_grad():
            for k in range(len(out.frames)):
                out.rotvecs[k].copy_(torch.tensor(state["rotvecs"][k]))
                out.translations[k].copy_(torch.tensor(state["translations"][k]))
        return out


def decayed_lr(base: float, step: int, total: int, final_fraction: float = 0.01) -> float:
    """Exponential decay from ``base`` to ``base * final_fraction`` over the run (as the means' rate decays)."""
    t = min(step / max(total, 1), 1.0)
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
