"""Distil colour and teacher features into a Gaussian field from posed images.

Order of work is chosen so that bad input fails before anything is written: load and validate the scene, build the
teachers and their features, then create the output folder. Every file under the output folder is written
atomically; a checkpoint lets ``--resume`` continue exactly where a run stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import SceneData, load_scene
from ..data.scene import scene_fingerprint
from ..data.points import points_from_depth
from ..errors import ConfigError, DataError
from ..fields.density import DensityController
from ..fields.gaussians import FeatureLayout, GaussianField, TeacherSpec
from ..fields.init import check_points, knn_log_scales, random_points_near_focus, scene_extent, subsample
from ..fields.ply import write_ply
from ..fields.rendering import FieldRender, render_field
from ..guard import OutputFolder
from ..io import one_reason, write_image, write_json
from ..render.backends import resolve_backend
from ..teachers import (FeatureCache, Teacher, TeacherOutput, extract_features, make_teacher, teacher_options,
                        views_from_scene)
from ..teachers.segments import segment_ids
from ..threads import ThreadGovernor
from ..viz import FeaturePCA, colormap, labelled_row, segment_colors, stack_rows, to_uint8
from .cameras import CameraCorrections
from .checkpoint import load_checkpoint, save_checkpoint
from .config import DEFAULT_DEPTH_WEIGHT, TrainConfig
from .balance import FeatureCodes, balanced_sample
from .grouping import grouping_gap, grouping_loss, sample_pixels
from .losses import cosine_map, depth_loss, feature_loss, linear_cosine_loss, psnr, rgb_loss, ssim

CHECKPOINT = "checkpoint.pt"
GROUPING_DIM = 16  # width of the affinity features a mask teacher's head produces
PREVIEW_MIN_HEIGHT = 200  # pixels per preview panel, at least


@dataclass
class TeacherTargets:
    teacher: Teacher
    outputs: list[TeacherOutput]  # one per frame of the scene (float16, memory-mapped from the cache)
    _valid: dict = field(default_factory=dict)  # frame -> flat indices of its valid pixels [V] (computed once)
    _codes: FeatureCodes | None = None  # feature clusters, for balanced feature-loss samples (built on first use)

    def valid_pixels(self, i: int) -> Tensor:
        if i not in self._valid:
            self._valid[i] = torch.as_tensor(self.outputs[i].valid).reshape(-1).nonzero()[:, 0]
        return self._valid[i]

    def codes(self, i: int, frames: list[int], seed: int) -> Tensor:  # [h*w] feature cluster per pixel
        if self._codes is None:
            self._codes = FeatureCodes(self.outputs, frames, seed=seed)
        return self._codes.codes(i)

    @property
    def is_mask(self) -> bool:
        """Mask teachers (segments, SAM masks) give segment ids to group by, not features to regress."""
        return getattr(self.teacher, "kind", "features") == "masks"

    @property
    def field_dim(self) -> int:  # width of this teacher's decoder head
        return _field_dim(self.teacher)


def _field_dim(teacher: Teacher) -> int:
    """Mask teachers (segments, SAM masks) get a grouping head; feature teachers one of their own width."""
    return GROUPING_DIM if getattr(teacher, "kind", "features") == "masks" else teacher.dim


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: TrainConfig, scene: SceneData | None = None, resume: bool = False):
        self.cfg = cfg.validate()
        self.resume = resume
        self.out = Path(cfg.out)
        scene_root = Path(cfg.scene).parent if Path(cfg.scene).is_file() else Path(cfg.scene)
        inputs = [scene.root if scene is not None else scene_root] if (scene is not None or cfg.scene) else []
        self.output = OutputFolder(cfg.out, inputs=inputs, staged=False, files=[CHECKPOINT, "config.json"])
        self.cache_output = (OutputFolder(cfg.cache_dir, inputs=inputs, flag="--cache-dir", staged=False,
                                          clean_depth=1) if cfg.cache_dir else None)
        self.device = pick_device(cfg.device)
        self.backend = resolve_backend(cfg.backend, self.device)  # fails early, with the fix, if not available
        resume_state = self._resume_state()
        torch.manual_seed(cfg.seed)
        self.scene = scene if scene is not None else load_scene(
            cfg.scene, downscale=cfg.downscale, max_size=cfg.max_size, eval_every=cfg.eval_every,
            background=cfg.background, stride=cfg.stride, depth_scale=cfg.depth_scale, intrinsics=cfg.intrinsics,
            scale_from_depth=cfg.scale_from_depth, known_distance=cfg.known_distance,
            allow_outside_root=cfg.allow_outside_scene, holdout=cfg.holdout, undistort_cache=self._undistort_cache())
        self.output.refuse_inputs(self.scene.root)
        if self.cache_output is not None:
            self.cache_output.refuse_inputs(self.scene.root)
        for note in self.scene.notes:
            print(f"note: {note}")
        if not self.scene.train_idx:
            raise ConfigError(f"{cfg.scene}: no training frames")
        if resume_state is not None:
            self._check_scene_matches(resume_state)
        teachers = self._make_teachers()
        if resume_state is not None:
            self._check_teachers_match(resume_state, teachers)
        self.extent = scene_extent(self.scene.cameras[self.scene.train_idx])
        self.depth_weight = 0.0 if self.scene.depths is None else (
            DEFAULT_DEPTH_WEIGHT if cfg.depth_weight is None else cfg.depth_weight)
        self.background = torch.tensor(cfg.background, dtype=torch.float32, device=self.device)
        self.step = 0
        self.sample_gen = torch.Generator().manual_seed(cfg.seed)
        if resume_state is not None:
            self.field = GaussianField.from_state(resume_state["field"]).to(self.device)
            self.step = resume_state["step"]
        else:
            self.field = self._init_field(teachers).to(self.device)
        self.optimizer = self._make_optimizer()
        self.density = DensityController(cfg.density, self.extent)
        self.cameras = self._camera_corrections(resume_state)
        if resume_state is not None:
            fused = [g.get("fused") for g in self.optimizer.param_groups]
            try:
                self.optimizer.load_state_dict(resume_state["optimizer"])
            except (KeyError, ValueError, RuntimeError, TypeError) as e:
                raise DataError(f"{self.out / CHECKPOINT}: optimizer state does not fit the field "
                                f"({one_reason(e)})") from None
            for g, f in zip(self.optimizer.param_groups, fused):  # keep this run's kernel choice, not the saved one
                g["fused"] = f
        self.history: list[dict] = resume_state.get("history", []) if resume_state else []
        self.train_seconds = resume_state.get("train_seconds", 0.0) if resume_state else 0.0
        # Called with the trainer after every step, once the optimiser step and density control are done (the
        # field is consistent then): the live viewer snapshots the parameters here, and its pause blocks here.
        self.step_callbacks: list[Callable[[Trainer], None]] = []
        # Everything is checked; from here on the run writes, the teacher cache first.
        if self.depth_weight > 0:
            print(f"depth loss: weight {self.depth_weight:g} against the scene's metric depth maps")
        self.targets = self._teacher_targets(teachers)

    # ---- set-up ----------------------------------------------------------------------------------------------
    def _undistort_cache(self) -> Path | bool:
        """Where undistorted images are cached: --cache-dir, else OUT/cache when OUT exists already (a new run
        writes nothing into OUT before every check has passed, so it uses the user cache: see
        featurefields.data.undistort.default_undistort_cache, keyed by content like the teacher cache)."""
        if self.cfg.cache_dir:
            return Path(self.cfg.cache_dir) / "undistorted"
        return self.out / "cache" / "undistorted" if self.out.is_dir() else True

    def _resume_state(self) -> dict | None:
        ckpt = self.out / CHECKPOINT
        if self.resume:
            if not ckpt.exists():
                raise ConfigError(f"{ckpt}: nothing to resume (no checkpoint yet: the run stopped before its first "
                                  "save, or never ran); run again without --resume to start it afresh")
            state = load_checkpoint(ckpt)
            for key in ("step", "optimizer"):
                if key not in state:
                    raise DataError(f"{ckpt}: cannot be resumed: it has no '{key}' entry")
            return state
        if ckpt.exists():
            raise ConfigError(f"{self.out} already holds a trained run: pass --resume to continue it, or choose "
                              "another --out")
        return None

    def _check_scene_matches(self, state: dict) -> None:
        """A checkpoint continues only on the scene it was trained on (it may have moved, but not changed)."""
        rec, ckpt = state.get("scene") or {}, self.out / CHECKPOINT
        mine = scene_fingerprint(self.scene)
        if rec.get("fingerprint") is not None:
            if rec["fingerprint"] != mine:
                raise ConfigError(f"{ckpt}: was trained on another scene ({rec.get('root')}: "
                                  f"{rec.get('frames', '?')} frames) than {self.scene.root} ({len(self.scene)} frames, "
                                  "other frames or poses); resume it on its own scene or use a new --out")
        elif rec.get("root") is not None and Path(rec["root"]).resolve() != Path(self.scene.root).resolve():
            raise ConfigError(f"{ckpt}: was trained on {rec['root']}, not {self.scene.root}; resume it on its own "
                              "scene or use a new --out")

    def _check_teachers_match(self, state: dict, teachers: list[Teacher]) -> None:
        """A checkpoint's features only make sense for the teachers and widths it was trained with."""
        have = FeatureLayout.from_dict(state["field"]["layout"])
        want = self._layout(teachers)
        if self.cfg.latent_dim is None:  # not asked for: keep the checkpoint's
            want.latent_dim = have.latent_dim
        if self.cfg.feature_view_degree is None:
            want.view_degree = have.view_degree
        if (have.teachers, have.latent_dim, have.view_degree) != (want.teachers, want.latent_dim, want.view_degree):
            raise ConfigError(f"{self.out / CHECKPOINT}: its features are {_describe(have)}, but this run asks for "
                              f"{_describe(want)}; use a new --out or the same teachers, --latent-dim and "
                              "--feature-view-degree")

    def _make_teachers(self) -> list[Teacher]:
        names = self.cfg.teachers
        if names is None:
            names = ["labels"] if self.scene.semantics is not None else []
            if not names:
                print("note: no --teacher given and the scene has no semantic masks: training colour only")
        names = [str(n).strip().lower() for n in names]
        if len(set(names)) != len(names):
            raise ConfigError(f"teacher listed twice: {names}")
        self.cfg.check_teacher_names(names)
        teachers = []
        for name in names:
            takes = teacher_options(name)
            options = {"device": self.cfg.teacher_device} if self.cfg.teacher_device and (
                takes is None or "device" in takes) else {}
            if name in self.cfg.teacher_checkpoints:
                options["checkpoint"] = self.cfg.teacher_checkpoints[name]
            options.update(self.cfg.teacher_options.get(name, {}))
            teachers.append(make_teacher(name, **options))
        return teachers

    def _teacher_targets(self, teachers: list[Teacher]) -> list[TeacherTargets]:
        if self.cache_output is not None:
            self.cache_output.open()  # creates it and removes what killed runs left there
            cache = FeatureCache(self.cache_output.path)
        else:
            cache = FeatureCache(self.output.open() / "cache")
        views = views_from_scene(self.scene)
        return [TeacherTargets(t, extract_features(t, views, cache, progress=self.cfg.progress)) for t in teachers]

    def _layout(self, teachers: list[Teacher]) -> FeatureLayout:
        specs = [TeacherSpec(t.name, _field_dim(t)) for t in teachers]
        latent = self.cfg.latent_dim
        if latent is None:  # 16 latent channels per wide teacher, shared by all heads
            wide = sum(s.dim > 64 for s in specs)
            latent = min(64, 16 * wide) if wide else 0
        if not specs:
            latent = 0
        degree = self.cfg.feature_view_degree
        if degree is None:
            degree = 2 if any(getattr(t, "view_dependent", False) for t in teachers) else 0
        return FeatureLayout(specs, latent, self.cfg.decoder_hidden, degree if specs else 0)

    def _init_points(self) -> tuple[Tensor, Tensor, str]:
        s, how = self.scene, self.cfg.init
        if how == "auto":
            how = "depth" if s.depths is not None else "points" if s.points is not None else "random"
        if how == "depth":
            if s.depths is None:
                raise ConfigError(f"--init depth: {self.cfg.scene} has no depth maps")
            pts, cols = points_from_depth(s, max_points=self.cfg.init_points, seed=self.cfg.seed)
        elif how == "points":
            if s.points is None:
                raise ConfigError(f"--init points: {self.cfg.scene} has no point file")
            cols = s.point_colors if s.point_colors is not None else torch.full_like(s.points, 0.5)
            pts, cols = subsample(s.points, cols, self.cfg.init_points, self.cfg.seed)
        elif how == "random":
            pts, cols = random_points_near_focus(s.cameras[s.train_idx], self.cfg.init_points, self.cfg.seed)
        else:
            raise ConfigError(f"--init must be auto, depth, points or random, not {how!r}")
        check_points(pts, cols)
        return pts, cols, how

    def _init_field(self, teachers: list[Teacher]) -> GaussianField:
        pts, cols, how = self._init_points()
        print(f"init: {len(pts)} Gaussians from {how}")
        return GaussianField(pts, cols, knn_log_scales(pts), self._layout(teachers), self.cfg.sh_degree,
                             self.cfg.init_opacity, self.cfg.seed)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        lr = self.cfg.lr
        groups = [{"params": [getattr(self.field, name)], "name": name, "lr": getattr(lr, name)}
                  for name in GaussianField.param_names]
        groups[0]["lr"] = lr.means * self.extent
        groups.append({"params": list(self.field.decoder.parameters()), "name": "decoder", "lr": lr.decoder})
        groups = [g for g in groups if g["params"] and all(p.numel() for p in g["params"])]
        try:  # one fused kernel for all parameters: ~10x faster than the per-tensor loop on a CPU
            return torch.optim.Adam(groups, lr=0.0, eps=1e-15, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(groups, lr=0.0, eps=1e-15)

    def _camera_corrections(self, resume_state: dict | None) -> CameraCorrections | None:
        """The per-frame pose corrections, or None without --optimize-cameras."""
        saved = (resume_state or {}).get("cameras", {})
        if not self.cfg.optimize_cameras:
            if saved.get("optimized"):
                raise ConfigError(f"{self.out / CHECKPOINT} was trained with --optimize-cameras; pass it again to "
                                  "resume (its corrections would otherwise be dropped)")
            return None
        if saved.get("corrections"):
            cams = CameraCorrections.from_state(saved["corrections"])
            if cams.n_frames != len(self.scene) or cams.frames != list(self.scene.train_idx):
                raise ConfigError(f"{self.out / CHECKPOINT}: its camera corrections are for another set of frames")
        else:
            cams = CameraCorrections(len(self.scene), self.scene.train_idx)
        cams = cams.to(self.device).requires_grad_(False)  # Gauss-Newton steps of their own, not the loss's gradient
        print(f"cameras: refining {len(cams.frames)} training poses (--optimize-cameras)")
        return cams

    def _refine_pose(self, i: int, gt: Tensor, step: int) -> None:
        """A Gauss-Newton step of frame i's correction against the field as it is now (train/cameras.py)."""
        s, cfg = self.scene, self.cfg
        sh = min(cfg.sh_degree, step // max(cfg.sh_degree_every, 1))

        def render(c2w: Tensor):
            out = render_field(self.field, c2w, s.cameras.K[i].to(self.device), s.width, s.height,
                               background=self.background, sh_degree=sh, with_features=False,
                               backend=self.backend)
            return out.rgb, out.depth, out.alpha

        depth = s.depths[i].to(self.device) if s.depths is not None else None
        mask = s.masks[i].to(self.device) if s.masks is not None else None
        self.cameras.gauss_newton(i, s.cameras.c2w[i].to(self.device), render, gt, depth, self.depth_weight,
                                  self.extent, cfg.camera_regularizer, mask=mask)

    def camera_to_world(self, i: int) -> Tensor:
        """Frame i's pose as trained: the given one, corrected for training frames under --optimize-cameras."""
        c2w = self.scene.cameras.c2w[i].to(self.device)
        return self.cameras.pose(i, c2w) if self.cameras is not None else c2w

    def _means_lr(self, step: int) -> float:
        lr, t = self.cfg.lr, min(step / max(self.cfg.iterations, 1), 1.0)
        return self.extent * math.exp((1 - t) * math.log(lr.means) + t * math.log(lr.means_final))

    # ---- training --------------------------------------------------------------------------------------------
    def render(self, i: int, *, sh_degree: int | None = None, with_features: bool = True) -> FieldRender:
        cams = self.scene.cameras
        return render_field(self.field, self.camera_to_world(i), cams.K[i].to(self.device), cams.width,
                            cams.height, background=self.background, sh_degree=sh_degree,
                            with_features=with_features and bool(self.targets),
                            features_move_geometry=self.cfg.feature_moves_geometry, backend=self.backend)

    def latent_at_teacher_res(self, out: FieldRender, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
        """Rendered feature map resampled to a teacher's resolution: [h, w, F]."""
        fmap = out.features
        if fmap.shape[:2] != size:
            smooth = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
            fmap = F.interpolate(fmap.permute(2, 0, 1)[None], size=size, mode=mode, **smooth)[0].permute(1, 2, 0)
        return fmap

    def decoded(self, out: FieldRender, t: TeacherTargets, size: tuple[int, int]) -> Tensor:
        """Rendered features at the teacher's resolution, decoded to its width: [h, w, D]."""
        return self.field.decoder(self.latent_at_teacher_res(out, size), t.teacher.name)

    def feature_term(self, out: FieldRender, t: TeacherTargets, i: int, gen: torch.Generator) -> Tensor:
        """Feature loss of view i against teacher t, on a random subset of its valid pixels.

        Decoding every pixel to a wide teacher (384-D and up) costs far more than rasterising; a few thousand
        random pixels per step give the same expected gradient (as ray batches do for NeRF-style fields)."""
        target = t.outputs[i]
        h, w = target.features.shape[:2]
        if t.is_mask:  # pull pixels of one segment together, push segments apart (GARField-style grouping)
            ids = segment_ids(target).reshape(-1)
            idx = sample_pixels(ids.reshape(h, w), self.cfg.feature_samples or h * w, gen)
            latent = self.latent_at_teacher_res(out, (h, w), mode="nearest").reshape(h * w, -1)
            pred = self.field.decoder(latent[idx.to(self.device)], t.teacher.name)
            return grouping_loss(pred, ids[idx].to(self.device))
        valid = t.valid_pixels(i)
        if len(valid) == 0:
            return out.rgb.sum() * 0
        n = self.cfg.feature_samples
        if 0 < n < len(valid):
            codes = t.codes(i, self.scene.train_idx, self.cfg.seed) if self.cfg.feature_balance > 0 else None
            valid = balanced_sample(valid, codes, n, self.cfg.feature_balance, gen)
        # (index_select: several times faster than advanced indexing for gathering rows)
        feats = torch.index_select(torch.as_tensor(target.features).reshape(h * w, -1), 0, valid)
        feats = feats.to(self.device).float()
        latent = torch.index_select(self.latent_at_teacher_res(out, (h, w)).reshape(h * w, -1), 0,
                                    valid.to(self.device))
        head = self.field.decoder.linear_head(t.teacher.name)
        if self.cfg.feature_loss == "cosine" and head is not None:  # no [n, D] decoded block
            return linear_cosine_loss(latent, head.weight, head.bias, feats)
        pred = self.field.decoder(latent, t.teacher.name)
        return feature_loss(pred, feats, torch.ones(len(valid), dtype=torch.bool, device=self.device),
                            self.cfg.feature_loss)

    def train_step(self, i: int, step: int) -> dict[str, float]:
        cfg, s = self.cfg, self.scene
        gt = s.images[i].to(self.device).float() / 255
        out = self.render(i, sh_degree=min(cfg.sh_degree, step // max(cfg.sh_degree_every, 1)))
        pred = out.rgb
        if s.masks is not None:  # ignored pixels get no gradient
            pred = torch.where(s.masks[i].to(self.device)[..., None], pred, gt)
        loss = rgb_loss(pred, gt, cfg.lambda_dssim)
        stats = {"psnr": float(psnr(pred.detach(), gt))}
        if self.depth_weight > 0:
            d_loss = depth_loss(out.depth, out.alpha, s.depths[i].to(self.device))
            loss = loss + self.depth_weight * d_loss
            stats["depth"] = float(d_loss.detach())
        for t in self.targets:
            f_loss = self.feature_term(out, t, i, self.sample_gen)
            loss = loss + cfg.teacher_weights.get(t.teacher.name, 1.0) * f_loss
            stats[f"f_{t.teacher.name}"] = float(f_loss.detach())
        loss.backward()
        self.density.observe(out.means2d, out.radii, s.width, s.height)
        for g in self.optimizer.param_groups:
            if g["name"] == "means":
                g["lr"] = self._means_lr(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cameras is not None and step >= min(cfg.camera_warmup, cfg.iterations // 10) and self.cameras.due(i):
            self._refine_pose(i, gt, step)  # against the field just updated
            if cfg.camera_fix_gauge:
                self.cameras.remove_common_motion(s.cameras.c2w, self.extent)
        self.density.step(step + 1, self.field, self.optimizer)
        stats["loss"] = float(loss.detach())
        return stats

    def train(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        self.output.open()
        write_json(self.out / "config.json", cfg.to_dict())
        order: list[int] = []
        g = torch.Generator().manual_seed(cfg.seed + self.step)
        bar = tqdm(total=cfg.iterations, initial=self.step, desc="train", unit="it", dynamic_ncols=True,
                   disable=not cfg.progress)
        t0 = time.perf_counter()
        governor = ThreadGovernor()  # fewer threads while other processes keep cores busy (featurefields/threads.py)
        while self.step < cfg.iterations:
            governor.update()
            if not order:
                order = [self.scene.train_idx[j] for j in torch.randperm(len(self.scene.train_idx), generator=g)]
            stats = self.train_step(order.pop(), self.step)
            self.step += 1
            for callback in self.step_callbacks:
                callback(self)
            if self.step % 10 == 0 or self.step == cfg.iterations:
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", n=len(self.field),
                                refresh=False)
            if self.step % 50 == 0:
                self.history.append({"step": self.step, "n": len(self.field), **stats})
            bar.update(1)
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.iterations:
                self.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save()
        bar.close()
        governor.close()
        self.train_seconds += time.perf_counter() - t0
        self.save()
        return self.finish()

    # ---- outputs ---------------------------------------------------------------------------------------------
    def save(self) -> None:
        save_checkpoint(self.out / CHECKPOINT, {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "field": self.field.state(),
            "optimizer": self.optimizer.state_dict(),
            "teachers": [{"name": t.teacher.name, "dim": t.teacher.dim, "config": t.teacher.config()}
                         for t in self.targets],
            "scene": {"name": self.scene.name, "root": str(Path(self.scene.root).resolve()),
                      "world_from_scene": self.scene.world_from_scene.tolist(), "frames": len(self.scene),
                      "fingerprint": scene_fingerprint(self.scene), "frame_info": self.scene.frame_info},
            "cameras": self.camera_record(),
            "history": self.history,
            "train_seconds": self.train_seconds,
        })

    @torch.no_grad()
    def camera_record(self) -> dict:
        """The poses every later tool should use (as trained), by frame name; with the corrections to resume."""
        c2w = self.scene.cameras.c2w
        rec = {"frame_names": list(self.scene.frame_names), "optimized": self.cameras is not None}
        if self.cameras is not None:
            c2w = self.cameras.corrected(c2w.to(self.device)).cpu()
            rec["corrections"] = self.cameras.state()
        rec["c2w"] = c2w.tolist()
        return rec

    def finish(self) -> dict:
        write_ply(self.out / "field.ply", self.field, self.scene.world_from_scene)
        metrics = self.evaluate(write_previews=True)
        write_json(self.out / "metrics.json", metrics)
        return metrics

    @torch.no_grad()
    def evaluate(self, write_previews: bool = False) -> dict:
        s = self.scene
        per_view = []
        for i in s.test_idx:
            out = self.render(i)
            gt = s.images[i].to(self.device).float() / 255
            row = {"frame": s.frame_names[i], "psnr": float(psnr(out.rgb, gt)),
                   "ssim": float(ssim(out.rgb.clamp(0, 1), gt))}
            decoded = {}
            for t in self.targets:
                target = t.outputs[i]
                feats = torch.as_tensor(target.features).to(self.device).float()
                valid = torch.as_tensor(target.valid).to(self.device)
                decoded[t.teacher.name] = pred = self.decoded(out, t, tuple(feats.shape[:2]))
                if t.is_mask:
                    row[f"grouping_gap/{t.teacher.name}"] = grouping_gap(pred, segment_ids(target).to(self.device))
                    continue
                cos = cosine_map(pred, feats)[valid]
                row[f"feature_cosine/{t.teacher.name}"] = float(cos.mean()) if cos.numel() else float("nan")
            per_view.append(row)
            if write_previews:
                self._preview(i, out, gt, decoded)
        metrics: dict = {
            "scene": str(s.root), "step": self.step, "num_gaussians": len(self.field),
            "train_seconds": round(self.train_seconds, 1), "device": str(self.device), "backend": self.backend,
            "resolution": [s.width, s.height], "num_train_views": len(s.train_idx),
            "num_test_views": len(s.test_idx), "world_frame": s.frame_info,
        }
        if self.cameras is not None:
            metrics["camera_corrections"] = self.cameras.stats()
        keys = [k for k in (per_view[0] if per_view else {}) if k != "frame"]
        for k in keys:
            vals = [r[k] for r in per_view if not math.isnan(r[k])]
            metrics[k] = sum(vals) / len(vals) if vals else float("nan")
        metrics["per_view"] = per_view
        return metrics

    def _preview(self, i: int, out: FieldRender, gt: Tensor, decoded: dict[str, Tensor]) -> None:
        alpha = out.alpha.clamp_min(1e-6)
        depth = torch.where(out.alpha > 0.5, out.depth / alpha, torch.full_like(out.depth, float("nan")))
        gt_depth = self.scene.depths[i] if self.scene.depths is not None else None
        panels, labels = [to_uint8(gt), to_uint8(out.rgb)], ["ground truth", "render"]
        if gt_depth is not None:
            valid = gt_depth > 0
            lo, hi = float(gt_depth[valid].min()) if valid.any() else 0.0, float(gt_depth.max())
            panels.append(colormap(torch.where(valid, gt_depth, torch.nan), lo, hi))
            labels.append("depth (gt)")
        else:
            lo = hi = None
        panels.append(colormap(depth, lo, hi))
        labels.append("depth (render)")
        scale = max(1, -(-PREVIEW_MIN_HEIGHT // gt.shape[0]))  # small images are enlarged (nearest) to be legible
        rows = [labelled_row([_enlarge(p, scale) for p in panels], labels)]
        for t in self.targets:
            target = t.outputs[i]
            if t.is_mask:
                pred = F.normalize(decoded[t.teacher.name].cpu(), dim=-1)
                panels = [segment_colors(segment_ids(target)), FeaturePCA(pred)(pred)]
                rows.append(labelled_row([_enlarge(_fit(p, gt.shape), scale) for p in panels],
                                         [f"{t.teacher.name}: segments", f"{t.teacher.name}: render (PCA)"]))
                continue
            # Unit-normalised before PCA: the cosine loss leaves feature lengths free, the colours compare directions.
            feats = F.normalize(torch.as_tensor(target.features).float(), dim=-1)
            valid = torch.as_tensor(target.valid)
            pca = FeaturePCA(feats, valid)
            pred = F.normalize(decoded[t.teacher.name].cpu(), dim=-1)
            teacher_img = pca(feats)
            teacher_img[~valid.numpy()] = 0
            rows.append(labelled_row([_enlarge(_fit(teacher_img, gt.shape), scale),
                                      _enlarge(_fit(pca(pred), gt.shape), scale)],
                                     [f"{t.teacher.name}: teacher (PCA)", f"{t.teacher.name}: render (PCA)"]))
        name = Path(self.scene.frame_names[i]).stem
        write_image(self.out / "previews" / f"{name}.png", stack_rows(rows))


def _enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    return img if factor == 1 else img.repeat(factor, 0).repeat(factor, 1)


def _fit(img: np.ndarray, shape) -> np.ndarray:
    """A teacher-resolution panel resized (nearest) to the image's size."""
    from PIL import Image

    if img.shape[:2] == tuple(shape[:2]):
        return img
    return np.asarray(Image.fromarray(img).resize((shape[1], shape[0]), Image.NEAREST))


def _describe(layout: FeatureLayout) -> str:
    teachers = ", ".join(f"{t.name} ({t.dim}-D)" for t in layout.teachers) or "colour only"
    return (teachers + (f" through a {layout.latent_dim}-D latent" if layout.latent_dim else " at full width")
            + (f", view-dependent (SH degree {layout.view_degree})" if layout.view_degree else ""))


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    return Trainer(cfg, resume=resume).train()
