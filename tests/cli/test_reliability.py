"""Issue 14, every class of damaged input, through the real CLI entry points (in-process, so it stays quick):
one ``error:`` line naming the culprit, exit code 2, no traceback, nothing written and nothing read damaged; or,
where the input is legitimate, a correct result."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from featurefields.cli.edit import main as ff_edit
from featurefields.cli.eval import main as ff_eval
from featurefields.cli.export import main as ff_export
from featurefields.cli.query import main as ff_query
from featurefields.cli.scene import main as ff_scene
from featurefields.cli.train import main as ff_train
from tests.conftest import write_tiny_nerfstudio

FAST = ["--iterations", "3", "--init-points", "100", "--no-progress"]
NON_UTF8 = b"mug \xff".decode("utf-8", "surrogateescape")  # how Python hands over a non-UTF-8 argument


def run(main, *argv) -> int:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code


def snapshot(path: Path):
    """None if absent; else every file under it (hidden ones too) with a digest of its bytes."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def refused(capfd, main, argv, *needles, untouched=()):
    """Exit 2 with exactly one line on stderr (C-level output included), ``error: ...`` naming every needle;
    every path in ``untouched`` byte-identical afterwards (absent ones still absent)."""
    before = [snapshot(p) for p in untouched]
    code = run(main, *argv)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    for p, b in zip(untouched, before):
        assert snapshot(p) == b, f"{p} changed"
    return lines[0]


def edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# ---- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture
def run_copy(oracle, tmp_path):  # noqa: F811 - the session oracle from tests/conftest.py
    """A copy of the oracle's run folder (checkpoint.pt + field.ply), so a refusal that failed could not hurt it."""
    from featurefields.fields.ply import write_ply

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(oracle.checkpoint, run_dir / "checkpoint.pt")
    write_ply(run_dir / "field.ply", oracle.field)
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step colour-only training of a 16x12 scene: (scene, run folder) to resume from."""
    root = tmp_path_factory.mktemp("tiny_run")
    scene = write_tiny_nerfstudio(root / "scene", semantics=False)
    assert run(ff_train, scene, "--out", root / "run", *FAST) == 0
    return scene, root / "run"


def broken_checkpoint(tiny_run, tmp_path, fn) -> Path:
    """A copy of the tiny run whose checkpoint ``fn`` edits (the state dict, in place)."""
    out = tmp_path / "run"
    shutil.copytree(tiny_run[1], out)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    fn(state)
    torch.save(state, out / "checkpoint.pt")
    return out


# ---- 1. data safety -------------------------------------------------------------------------------------------
def test_no_command_writes_into_the_folder_of_what_it_reads(oracle, run_copy, tmp_path, capfd):
    ck = run_copy / "checkpoint.pt"
    refused(capfd, ff_edit, [ck, "mug", "--delete", "--out", run_copy], "--out", "the folder of", "checkpoint.pt",
            untouched=[run_copy])
    refused(capfd, ff_query, [ck, "mug", "--out", run_copy], "the folder of", untouched=[run_copy])
    refused(capfd, ff_export, [ck, "mug", "--out", run_copy], "the folder of", untouched=[run_copy])
    refused(capfd, ff_eval, ["segmentation", ck, "--out", run_copy], "the folder of", untouched=[run_copy])
    # the scene a checkpoint records is an input too, even when it is not named on the command line
    scene = tmp_path / "scene"
    shutil.copytree(oracle.scene, scene)
    refused(capfd, ff_query, [ck, "mug", "--scene", scene, "--out", scene], "input folder", untouched=[scene])
    refused(capfd, ff_train, [scene, "--out", scene / "run", *FAST], "inside", untouched=[scene])
    cam = tmp_path / "cams" / "cam.json"
    cam.parent.mkdir()
    cam.write_text("{}")
    refused(capfd, ff_export, [ck, "mug", "--camera", cam, "--out", cam.parent], "cam.json", untouched=[cam.parent])
    # elsewhere it works, and the source stays as it was
    assert run(ff_edit, ck, "mug", "--delete", "--negatives", "scene", "--out", tmp_path / "no_mug") == 0
    assert snapshot(ck) == snapshot(oracle.checkpoint)
    assert sorted(os.listdir(tmp_path / "no_mug")) == ["checkpoint.pt", "edit.json", "field.ply"]


def test_resume_with_arrays_of_different_lengths_changes_nothing(tiny_run, tmp_path, capfd):
    def short(state):
        state["field"]["params"]["features"] = state["field"]["params"]["features"][:-10]

    out = broken_checkpoint(tiny_run, tmp_path, short)
    refused(capfd, ff_train, [tiny_run[0], "--out", out, "--resume", *FAST[2:], "--iterations", "6"],
            "checkpoint.pt", "features", "shape", untouched=[out])


def test_export_checks_views_cameras_and_selection_before_writing(oracle, tmp_path, capfd):
    out = tmp_path / "x"
    ck = oracle.checkpoint
    refused(capfd, ff_export, [ck, "mug", "--views", "frame_99", "--out", out], "frame_99", untouched=[out])
    refused(capfd, ff_export, [ck, "mug", "--camera", tmp_path / "nope.json", "--out", out], "nope.json",
            untouched=[out])
    refused(capfd, ff_export, [ck, "mug", "--threshold", "1", "--out", out], "selects no Gaussians",
            untouched=[out])


# ---- 2. tracebacks turned into one line -----------------------------------------------------------------------
def bad_out(kind: str, tmp_path: Path) -> tuple[Path, str]:
    if kind == "file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file", "is a file"
    if kind == "read_only":
        ro = tmp_path / "ro"
        ro.mkdir()
        os.chmod(ro, 0o555)
        return ro / "sub", "read-only"
    return Path("/proc/ff_out"), "virtual file system"


@pytest.mark.parametrize("kind", ["file", "read_only", "proc"])
def test_bad_output_folders_in_every_cli(oracle, tmp_path, capfd, kind):
    out, needle = bad_out(kind, tmp_path)
    ck = oracle.checkpoint
    before = snapshot(tmp_path)
    missing_scene = tmp_path / "not_loaded"  # the guard runs before the scene is even looked at
    for main, argv in ((ff_train, [missing_scene, "--out", out, *FAST]),
                       (ff_train, [missing_scene, "--out", tmp_path / "o", "--cache-dir", out, *FAST]),
                       (ff_query, [ck, "mug", "--out", out]), (ff_edit, [ck, "mug", "--delete", "--out", out]),
                       (ff_export, [ck, "mug", "--out", out]), (ff_eval, ["segmentation", ck, "--out", out]),
                       (ff_scene, ["tabletop", "--out", out, "--views", "2", "--width", "16", "--height", "12",
                                   "--quiet"])):
        flag = "--cache-dir" if "--cache-dir" in argv else "--out"
        refused(capfd, main, argv, f"{flag} {out}", needle)
    assert snapshot(tmp_path) == before


def test_queries_that_are_not_utf8(oracle, tmp_path, capfd):
    for main, extra in ((ff_query, []), (ff_edit, ["--delete"]), (ff_export, [])):
        refused(capfd, main, [oracle.checkpoint, NON_UTF8, *extra, "--out", tmp_path / "o"], "not valid UTF-8",
                untouched=[tmp_path / "o"])


def png_claiming(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels with almost no data: PIL's decompression-bomb case."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def as_blender(root: Path, angle) -> Path:
    """The tiny scene rewritten as a NeRF-synthetic Blender scene with the given camera_angle_x."""
    meta = json.loads((root / "transforms.json").read_text())
    (root / "transforms.json").unlink()
    frames = [{"file_path": f["file_path"][:-4], "transform_matrix": f["transform_matrix"]} for f in meta["frames"]]
    for split, fr in (("train", frames[:4]), ("test", frames[4:])):
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": fr}))
    return root


def no_focal(angle):
    def fn(m, root):
        del m["fl_x"], m["fl_y"]
        m["camera_angle_x"] = angle
    return fn


def same_file_for_every_frame(m, root):
    m["frames"] = [dict(m["frames"][i % 6], file_path="images/f0.png") for i in range(47)]


def depth_in_the_wrong_unit(m, root):
    from PIL import Image

    (root / "depth").mkdir()
    for i, f in enumerate(m["frames"]):
        Image.fromarray(np.full((12, 16), 2000, np.uint16)).save(root / "depth" / f"f{i}.png")
        f["depth_file_path"] = f"depth/f{i}.png"
    m["depth_unit_scale_factor"] = -0.001


SCENES = {  # name: (edit of transforms.json, or a Blender angle), culprit named in the message
    "camera_angle_x_0": (no_focal(0), "camera_angle_x=0"),
    "camera_angle_x_pi": (no_focal(3.14159), "camera_angle_x=3.14159"),
    "blender_angle_0": (0, "camera_angle_x=0"),
    "blender_angle_pi": (3.14159, "camera_angle_x=3.14159"),
    "bomb_header": (lambda m, r: (png_claiming(r / "images" / "f2.png", 30000, 30000), m.pop("w"), m.pop("h")),
                    "f2.png: image too large"),
    "47_frames_one_image": (same_file_for_every_frame, "listed twice"),
    "fl_x_1e-300": (lambda m, r: m.update(fl_x=1e-300), "fl_x=1e-300"),
    "negative_depth_unit": (depth_in_the_wrong_unit, "depth_unit_scale_factor=-0.001"),
    "escaping_path": (lambda m, r: m["frames"][1].update(file_path="../../../../etc/passwd"),
                      "'../../../../etc/passwd' leads outside the scene folder"),
}


@pytest.mark.parametrize("case", sorted(SCENES))
def test_bad_scenes_are_refused_before_anything_is_written(tmp_path, capfd, case):
    edit, culprit = SCENES[case]
    root = write_tiny_nerfstudio(tmp_path / "scene", semantics=False)
    if callable(edit):
        edit_json(root / "transforms.json", lambda m: edit(m, root))
    else:
        as_blender(root, edit)
    refused(capfd, ff_train, [root, "--out", tmp_path / "out", *FAST], culprit, untouched=[tmp_path / "out", root])


def test_files_outside_the_scene_need_the_explicit_option(tmp_path, capfd):
    root = write_tiny_nerfstudio(tmp_path / "scene", semantics=False)
    (tmp_path / "elsewhere").mkdir()
    shutil.move(root / "images" / "f1.png", tmp_path / "elsewhere" / "f1.png")
    edit_json(root / "transforms.json", lambda m: m["frames"][1].update(file_path="../elsewhere/f1.png"))
    refused(capfd, ff_train, [root, "--out", tmp_path / "o1", *FAST], "--allow-outside-scene")
    assert run(ff_train, root, "--out", tmp_path / "o2", "--allow-outside-scene", *FAST) == 0
    assert json.loads((tmp_path / "o2" / "config.json").read_text())["allow_outside_scene"] is True


CAMERAS = {  # camera file -> culprit; c2w places the camera 1.5 m in front of the origin
    "w_1e30": ({"fl_x": 50, "width": 1e30, "height": 48}, "width: 1e+30 is out of range"),
    "60000x60000": ({"fl_x": 50, "width": 60000, "height": 60000}, "width: 60000 is out of range"),
    "zero_focal": ({"fl_x": 0, "width": 64, "height": 48}, "focal length fl_x=0 is not positive"),
    "negative_focal": ({"fl_x": -50, "width": 64, "height": 48}, "focal length fl_x=-50 is not positive"),
    "bottom_row": ({"fl_x": 50, "width": 64, "height": 48, "c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1.5],
                                                                   [0, 0, 1, 1]]}, "bottom row"),
}


@pytest.mark.parametrize("case", sorted(CAMERAS))
def test_bad_camera_files(oracle, tmp_path, capfd, case):
    cam, culprit = CAMERAS[case]
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps({"c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1.5], [0, 0, 0, 1]], **cam}))
    out = tmp_path / "q"
    refused(capfd, ff_query, [oracle.checkpoint, "mug", "--camera", path, "--out", out], path.name, culprit,
            untouched=[out])
    refused(capfd, ff_query, [oracle.checkpoint, "--view", path, "--point", "5,5", "--out", out], culprit,
            untouched=[out])


@pytest.mark.parametrize("edit, culprit", [
    (lambda s: s.pop("field"), "holds no field"),
    (lambda s: s["field"]["params"].__setitem__("means", "oops"), "params.means: expected a tensor, got str"),
    (lambda s: s["field"]["params"]["means"].__setitem__((5, 1), float("nan")), "means: 1 of"),
], ids=["no_field", "string_for_tensor", "nan_means"])
def test_resume_from_broken_checkpoints(tiny_run, tmp_path, capfd, edit, culprit):
    out = broken_checkpoint(tiny_run, tmp_path, edit)
    refused(capfd, ff_train, [tiny_run[0], "--out", out, "--resume", *FAST[2:], "--iterations", "6"], culprit,
            "checkpoint.pt", untouched=[out])


def test_selection_file_without_a_mask(oracle, tmp_path, capfd):
    sel = tmp_path / "sel.pt"
    torch.save({"format": "featurefields-selection-1", "meta": {}}, sel)
    refused(capfd, ff_edit, [oracle.checkpoint, "--selection", sel, "--delete", "--out", tmp_path / "e"],
            "sel.pt: selection file holds no mask", untouched=[tmp_path / "e"])


# ---- 3. accepted silently before, refused now -----------------------------------------------------------------
def test_resume_on_another_scene(tiny_run, tmp_path, capfd):
    other = write_tiny_nerfstudio(tmp_path / "other", n=7, semantics=False)
    out = tmp_path / "run"
    shutil.copytree(tiny_run[1], out)
    refused(capfd, ff_train, [other, "--out", out, "--resume", *FAST[2:], "--iterations", "6"], "another scene",
            untouched=[out])
    # the same scene, moved elsewhere, is still its scene: resuming works
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run[0], moved)
    assert run(ff_train, moved, "--out", out, "--resume", *FAST[2:], "--iterations", "5") == 0
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 5


@pytest.mark.parametrize("option, culprit", [
    (["--teacher-weight", "labels=nan"], "--teacher-weight labels: nan is not a finite number"),
    (["--depth-weight", "nan"], "--depth-weight: nan is not a finite number"),
    (["--latent-dim", "-3"], "--latent-dim: -3 is out of range"),
    (["--feature-samples", "-1"], "--feature-samples: -1 is out of range"),
    (["--teacher-weight", "sift=2"], "--teacher-weight sift: sift is not a teacher of this run"),
], ids=["teacher_weight_nan", "depth_weight_nan", "latent_dim", "feature_samples", "weight_for_no_teacher"])
def test_bad_training_options(tiny_run, tmp_path, capfd, option, culprit):
    refused(capfd, ff_train, [tiny_run[0], "--out", tmp_path / "o", *option, *FAST], culprit,
            untouched=[tmp_path / "o"])


def test_nan_means_are_refused_by_queries_too(oracle, tmp_path, capfd):
    state = torch.load(oracle.checkpoint, weights_only=False)
    state["field"]["params"]["means"][3, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    refused(capfd, ff_query, [tmp_path / "nan.pt", "mug", "--out", tmp_path / "q"], "nan.pt", "NaN",
            untouched=[tmp_path / "q"])


def test_view_minus_one_is_not_the_last_frame(oracle, tmp_path, capfd):
    refused(capfd, ff_query, [oracle.checkpoint, "--view", "-1", "--point", "5,5", "--out", tmp_path / "q"],
            "frame -1 does not exist", untouched=[tmp_path / "q"])


def test_eval_without_objects_json(oracle, tmp_path, capfd):
    scene = tmp_path / "scene"
    shutil.copytree(oracle.scene, scene)
    (scene / "objects.json").unlink()
    out = tmp_path / "ev"
    refused(capfd, ff_eval, ["segmentation", oracle.checkpoint, "--scene", scene, "--out", out, "--lift", "features"],
            "objects.json not found", "--2d-only", untouched=[out])
    assert run(ff_eval, "segmentation", oracle.checkpoint, "--scene", scene, "--out", out, "--2d-only",
               "--labels", "mug") == 0
    err = capfd.readouterr().err
    assert "3D not evaluated" in err and "all targets met" not in err
    assert "mean_precision_3d" not in json.loads((out / "segmentation.json").read_text())


# ---- 4. no hangs ----------------------------------------------------------------------------------------------
def test_novel_views_are_bounded(oracle, tmp_path, capfd):
    refused(capfd, ff_query, [oracle.checkpoint, "mug", "--views", "novel:100000000", "--out", tmp_path / "q"],
            "novel:N with N between 1 and", untouched=[tmp_path / "q"])


# ---- 5. messages that name the culprit ------------------------------------------------------------------------
def test_shape_mismatch_names_the_checkpoint(oracle, tmp_path, capfd):
    state = torch.load(oracle.checkpoint, weights_only=False)
    state["field"]["params"]["opacity_logits"] = state["field"]["params"]["opacity_logits"][:-10]
    torch.save(state, tmp_path / "short.pt")
    for main, extra in ((ff_query, []), (ff_edit, ["--delete"])):
        refused(capfd, main, [tmp_path / "short.pt", "mug", *extra, "--out", tmp_path / "o"], "short.pt",
                "opacity_logits", untouched=[tmp_path / "o"])


def test_a_missing_scene_folder_is_called_missing(oracle, tmp_path, capfd):
    refused(capfd, ff_query, [oracle.checkpoint, "mug", "--scene", tmp_path / "nowhere", "--out", tmp_path / "q"],
            f"--scene {tmp_path / 'nowhere'}: no such folder", untouched=[tmp_path / "q"])


def test_a_truncated_mesh_gives_one_line(oracle, tmp_path, capfd):
    scene = tmp_path / "scene"
    shutil.copytree(oracle.scene, scene)
    mesh = scene / "meshes" / "mug.ply"
    mesh.write_bytes(mesh.read_bytes()[: mesh.stat().st_size // 2])
    refused(capfd, ff_eval, ["segmentation", oracle.checkpoint, "--scene", scene, "--out", tmp_path / "e"],
            "mug.ply", untouched=[tmp_path / "e"])  # (refused() also asserts no stray 'RPly:' line)
