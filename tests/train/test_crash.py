"""kill -9 a training at random moments, ten times: during teacher extraction, between steps, in the middle of a
checkpoint write, and at random wall-clock times. After each kill the folder must be either resumable (a complete
checkpoint.pt) or cleanly restartable (no checkpoint yet), the next run must finish, and nothing may be left behind
(no temporary file or folder anywhere under the output).

The trainings run in processes forked from a forkserver that has already imported featurefields (a fresh Python
would spend seconds importing torch for each of the ten), on a 16x12 scene with the cheap sift teacher. Kills at
a named moment come from inside the child (os.kill(SIGKILL) in a wrapper around the write or step), so they land
exactly there; the random ones come from outside (Process.kill, which is SIGKILL)."""
from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from featurefields.cli.train import main as ff_train
from featurefields.io import is_temporary
from featurefields.train.checkpoint import load_checkpoint
from tests.conftest import write_tiny_nerfstudio

ITERATIONS, SAVE_EVERY = 20, 5
KILLS = ["extract", "checkpoint", "step", "random"] * 2 + ["extract", "checkpoint"]  # ten kills


def train_args(scene: Path, out: Path) -> list[str]:
    return [str(scene), "--out", str(out), "--teacher", "sift", "--iterations", str(ITERATIONS), "--save-every",
            str(SAVE_EVERY), "--init-points", "100", "--sh-degree", "0", "--no-progress"]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(argv: list[str], phase: str, k: int) -> None:
    """A training that SIGKILLs itself at the k-th cache file write, checkpoint write or step (phase)."""
    import torch

    torch.set_num_threads(1)  # tiny images: threads only contend with the test process
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    calls = [0]
    if phase == "extract":  # half-way through writing a teacher-cache entry (its temporary folder exists)
        from featurefields.teachers import cache

        real_save = cache.np.save

        def save(file, arr, allow_pickle=False):
            calls[0] += 1
            if calls[0] == k:
                Path(file).write_bytes(b"\x93NUMPY half a file")
                _die()
            return real_save(file, arr, allow_pickle=allow_pickle)

        cache.np.save = save
    elif phase == "checkpoint":  # half of the checkpoint's bytes are on disk, in its temporary file
        from featurefields.train import checkpoint

        real_torch_save = checkpoint.torch.save

        def torch_save(obj, f, *args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                buf = io.BytesIO()
                real_torch_save(obj, buf)
                Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
                _die()
            return real_torch_save(obj, f, *args, **kwargs)

        checkpoint.torch.save = torch_save
    elif phase == "step":  # between two optimisation steps
        from featurefields.train.trainer import Trainer

        real_step = Trainer.train_step

        def train_step(self, i, step):
            if step == k:
                _die()
            return real_step(self, i, step)

        Trainer.train_step = train_step
    ff_train(argv)


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.startswith(".") or is_temporary(p.name))


@pytest.mark.slow
def test_ten_kills_leave_a_resumable_or_restartable_folder(tmp_path):
    scene = write_tiny_nerfstudio(tmp_path / "scene", semantics=False)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["featurefields.cli.train", "featurefields.train.trainer", "featurefields.teachers.sift",
                                "tests.train.test_crash"])
    rng = random.Random(14)
    outcomes = []
    for n, phase in enumerate(KILLS):
        out = tmp_path / f"run{n}"
        # extract: 6 frames x (features, valid) files; checkpoint: the saves at steps 5, 10, 15 and the final one
        k = {"extract": lambda: rng.randint(1, 12), "checkpoint": lambda: rng.randint(1, ITERATIONS // SAVE_EVERY),
             "step": lambda: rng.randint(0, ITERATIONS - 1), "random": lambda: 0}[phase]()
        p = ctx.Process(target=_child, args=(train_args(scene, out), phase, k))
        p.start()
        if phase == "random":  # at a random time after the training loop began (config.json is its first write)
            t0 = time.monotonic()
            while not (out / "config.json").exists() and p.is_alive() and time.monotonic() - t0 < 120:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.0))
            p.kill()
        p.join(300)
        assert p.exitcode in ((-signal.SIGKILL, 0) if phase == "random" else (-signal.SIGKILL,)), (phase, p.exitcode)
        stray = leftovers(out) if out.exists() else []
        if phase in ("extract", "checkpoint"):
            assert stray, f"the {phase} kill should have left its temporary behind"
        ckpt = out / "checkpoint.pt"
        resumable = ckpt.exists()
        if resumable:
            step = load_checkpoint(ckpt)["step"]  # never half-written: the old checkpoint or the new one
            assert 0 < step <= ITERATIONS and step % SAVE_EVERY == 0
        with pytest.raises(SystemExit) as e:
            ff_train(train_args(scene, out) + (["--resume"] if resumable else []))
        assert e.value.code == 0, (phase, k, resumable)
        assert leftovers(out) == [], (phase, k, stray)
        assert load_checkpoint(ckpt)["step"] == ITERATIONS and (out / "metrics.json").is_file()
        outcomes.append((phase, k, "resumed" if resumable else "restarted", len(stray)))
    print("kills (phase, at, recovery, temporaries left by the kill):", outcomes)
    assert len(outcomes) == 10
    assert {o[2] for o in outcomes} == {"resumed", "restarted"}, outcomes  # both recoveries were exercised
