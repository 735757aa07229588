"""Every bad input to ff-train: one-line error naming the culprit, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tiny_nerfstudio


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "featurefields.cli.train", *args, "--no-progress", "--init-points", "200"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_clean_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def case_missing_path(root: Path) -> tuple[Path, str]:
    return root / "does_not_exist", "does_not_exist"


def case_empty_folder(root: Path) -> tuple[Path, str]:
    (root / "empty").mkdir()
    return root / "empty", "empty"


def case_malformed_json(root: Path):
    scene = write_tiny_nerfstudio(root / "s")
    (scene / "transforms.json").write_text('{"frames": [ {"file_path": ')
    return scene, "transforms.json"


def case_corrupt_image(root: Path):
    scene = write_tiny_nerfstudio(root / "s")
    (scene / "images" / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return scene, "f2.png"


def case_missing_image(root: Path):
    scene = write_tiny_nerfstudio(root / "s")
    (scene / "images" / "f3.png").unlink()
    return scene, "f3.png"


def case_nan_pose(root: Path):
    scene = write_tiny_nerfstudio(root / "s")
    edit_json(scene / "transforms.json", lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan")))
    return scene, "f1.png"


def case_non_rigid_pose(root: Path):
    scene = write_tiny_nerfstudio(root / "s")

    def scale(m):
        t = np.array(m["frames"][4]["transform_matrix"])
        t[:3, :3] *= 2.0
        m["frames"][4]["transform_matrix"] = t.tolist()

    edit_json(scene / "transforms.json", scale)
    return scene, "f4.png"


def case_mismatched_sizes(root: Path):
    from PIL import Image

    scene = write_tiny_nerfstudio(root / "s")
    Image.new("RGB", (20, 12)).save(scene / "images" / "f5.png")
    return scene, "f5.png"


CASES = [case_missing_path, case_empty_folder, case_malformed_json, case_corrupt_image, case_missing_image,
         case_nan_pose, case_non_rigid_pose, case_mismatched_sizes]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_scene(tmp_path, case):
    scene, culprit = case(tmp_path)
    out = tmp_path / "out"
    res = run_train(str(scene), "--out", str(out), "--iterations", "2", cwd=tmp_path)
    assert_clean_error(res, culprit)
    assert not out.exists(), "nothing may be written for bad input"


def test_bad_options(tmp_path):
    scene = write_tiny_nerfstudio(tmp_path / "s")
    res = run_train(str(scene), "--teacher", "nonsense", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert_clean_error(res, "nonsense")
    res = run_train(str(scene), "--background", "purple", cwd=tmp_path)
    assert_clean_error(res, "purple")
    res = run_train(str(scene), "--iterations", "0", cwd=tmp_path)
    assert_clean_error(res, "--iterations")
    res = run_train(str(scene), "--holdout", "middle:3", "--out", str(tmp_path / "h"), cwd=tmp_path)
    assert_clean_error(res, "middle:3")
    assert not (tmp_path / "h").exists()


def test_resume_with_other_feature_width(tmp_path):
    scene = write_tiny_nerfstudio(tmp_path / "s")
    out = tmp_path / "out"
    res = run_train(str(scene), "--out", str(out), "--iterations", "3", "--latent-dim", "4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    before = (out / "checkpoint.pt").read_bytes()
    res = run_train(str(scene), "--out", str(out), "--iterations", "6", "--latent-dim", "8", "--resume",
                    cwd=tmp_path)
    assert_clean_error(res, "checkpoint.pt", "labels")
    assert (out / "checkpoint.pt").read_bytes() == before
    # and running into a finished run's folder without --resume is refused rather than overwriting it
    res = run_train(str(scene), "--out", str(out), "--iterations", "3", cwd=tmp_path)
    assert_clean_error(res, "--resume")
