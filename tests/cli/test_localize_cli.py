"""ff-localize and ff-eval localize end to end on the tiny localisation scene, and every bad input: one 'error:'
line naming the culprit, exit code 2, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurefields.cli.eval import main as ff_eval
from featurefields.cli.localize import main as ff_localize
from featurefields.localize.evaluate import pose_errors
from featurefields.scenegen.tabletop import HFOV_DEG
from tests.localize.test_localize import mondrian

from .test_query_cli import run


def test_ff_localize_writes_a_pose_and_a_picture(loc, tmp_path, capsys):
    view = loc.field.views("test")[1]
    image = loc.scene / view.name
    out = tmp_path / "where"
    assert run(ff_localize, loc.checkpoint, image, "--fov", HFOV_DEG, "--out", out) == 0
    pose = json.loads((out / "pose.json").read_text())
    rot, cm = pose_errors(np.array(pose["c2w"]), view.c2w.double().numpy())
    assert rot < 0.3 and cm < 0.5 and pose["success"] and pose["width"] == view.width
    assert np.allclose(pose["K"], view.K.numpy(), atol=1e-3)  # --fov 62 is the scene's own camera
    pic = np.asarray(Image.open(out / "localize.png"))
    assert pic.shape[1] > 3 * view.width and "NCC" in capsys.readouterr().err
    assert list((loc.checkpoint.parent / "cache").glob("localize_index_*.npz"))  # cached for the next image
    # the pose file is a camera file ff-query accepts
    from featurefields.fields.views import views_from_camera_file

    cam = views_from_camera_file(out / "pose.json")[0]
    assert cam.width == view.width and np.allclose(cam.c2w.numpy(), np.array(pose["c2w"]), atol=1e-6)


def test_ff_eval_localize(loc, tmp_path, capsys):
    out = tmp_path / "ev"
    assert run(ff_eval, "localize", loc.checkpoint, "--frames", "12", "--perturbations", "5/5",
               "--out", out, "--no-progress") == 0
    r = json.loads((out / "localize.json").read_text())
    s = r["summary"]
    assert s["frames"] == 1 and s["within_2cm_2deg"] == 1.0 and s["median_rotation_deg"] < 0.3
    assert [b["perturbation_deg"] for b in r["baseline"]] == [5.0] and r["baseline"][0]["frames"] == 1
    assert r["machine"]["cpu_count"] >= 1 and "simd" in r["machine"]
    assert (out / "localize_grid.png").is_file()
    assert "within (2 cm, 2 deg)" in capsys.readouterr().out


def bad_inputs(loc, tmp: Path):
    view = loc.field.views("test")[0]
    image = loc.scene / view.name
    other = tmp / "other.png"
    Image.fromarray(mondrian(view.height, view.width)).save(other)
    blank = tmp / "blank.png"
    Image.fromarray(np.full((view.height, view.width, 3), 128, np.uint8)).save(blank)
    junk = tmp / "junk.png"
    junk.write_text("this is not a PNG")
    K = view.K.tolist()
    negative = tmp / "neg.json"
    negative.write_text(json.dumps({"K": [[-K[0][0], 0, K[0][2]], K[1], K[2]]}))
    wrong_size = tmp / "size.json"
    wrong_size.write_text(json.dumps({"K": K, "width": 2 * view.width, "height": 2 * view.height}))
    doubled = tmp / "doubled.json"
    doubled.write_text(json.dumps({"K": [[2 * K[0][0], 0, 2 * K[0][2]], [0, 2 * K[1][1], 2 * K[1][2]], K[2]]}))
    small_depth = tmp / "d.png"
    Image.fromarray(np.ones((10, 10), np.uint16)).save(small_depth)
    ck, o = loc.checkpoint, tmp / "o"
    return [
        ([ck, other, "--fov", HFOV_DEG, "--out", o], "not of this scene"),
        ([ck, blank, "--fov", HFOV_DEG, "--out", o], "blank"),
        ([ck, junk, "--fov", HFOV_DEG, "--out", o], "junk.png"),
        ([ck, image, "--intrinsics", negative, "--out", o], "focal"),
        ([ck, image, "--intrinsics", wrong_size, "--out", o], "the intrinsics are for"),
        ([ck, image, "--intrinsics", doubled, "--out", o], "principal point"),
        ([ck, image, "--fov", "-5", "--out", o], "field of view"),
        ([ck, image, "--fov", HFOV_DEG, "--depth", small_depth, "--out", o], "depth is 10x10"),
        ([ck, tmp / "missing.png", "--fov", HFOV_DEG, "--out", o], "missing.png"),
        ([tmp / "nothing.pt", image, "--fov", HFOV_DEG, "--out", o], "nothing.pt"),
        ([ck, image, "--out", o], "--intrinsics"),
        ([ck, image, "--fov", HFOV_DEG, "--work-size", "4", "--out", o], "--work-size"),
    ]


def test_bad_inputs_fail_cleanly(loc, tmp_path, capsys):
    for argv, needle in bad_inputs(loc, tmp_path):
        code = run(ff_localize, *argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and needle in lines[0], (argv, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # failed runs write nothing
    code = run(ff_eval, "localize", loc.checkpoint, "--perturbations", "ten", "--out", tmp_path / "e")
    assert code == 2 and "--perturbations" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_a_real_process_exits_2_on_an_image_of_another_scene(loc, tmp_path):
    view = loc.field.views("test")[0]
    other = tmp_path / "other.png"
    Image.fromarray(mondrian(view.height, view.width, seed=3)).save(other)
    res = subprocess.run([sys.executable, "-m", "featurefields.cli.localize", str(loc.checkpoint), str(other),
                          "--fov", str(HFOV_DEG), "--out", str(tmp_path / "o"), "--no-progress"],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error:") and "no pose" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [["--help"], ["localize", "--help"]])
def test_help_teaches_with_examples(argv, capsys):
    main = ff_localize if argv == ["--help"] else ff_eval
    assert run(main, *argv) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--out" in out
