"""ff-grasp and ff-eval grasp/locate end to end on the robot oracle, and every bad input: one error line, exit 2."""
from __future__ import annotations

import json

import pytest


def run(main, *argv) -> int:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code


def test_ff_grasp_writes_world_frame_grasps_a_ply_and_a_picture(robot_oracle, tmp_path, capsys):
    import open3d as o3d
    from PIL import Image

    from featurefields.cli.grasp import main

    out = tmp_path / "g"
    assert run(main, robot_oracle.checkpoint, "can", "--k", "3", "--out", out) == 0
    data = json.loads((out / "grasps.json").read_text())
    assert len(data["grasps"]) == 3 and data["gripper"]["name"] == "panda" and "world" in data["frame"]
    g = data["grasps"][0]
    assert len(g["pose"]) == 4 and g["width"] <= data["gripper"]["max_width"] and g["scores"]["force_closure"]
    assert data["located"][0]["num_points"] > 100
    mesh = o3d.io.read_triangle_mesh(str(out / "grasps.ply"))
    assert len(mesh.triangles) == 3 * 3 * 12  # three grasps, three boxes each
    assert Image.open(out / "grasps.png").size[0] == 3 * 200  # three views of the 200x150 scene
    assert "3 grasps of 'can'" in capsys.readouterr().err


def test_ff_grasp_bad_inputs(robot_oracle, tmp_path, capsys):
    from featurefields.cli.grasp import main

    (tmp_path / "half.json").write_text(json.dumps({"max_width": 0.08}))
    (tmp_path / "neg.json").write_text(json.dumps({"max_width": -0.08, "finger_length": 0.05, "finger_width": 0.02,
                                                   "finger_thickness": 0.01, "palm": [0.1, 0.05, 0.05]}))
    cases = [
        (["spaceship"], "spaceship"),
        (["can", "--gripper", "claw"], "unknown gripper 'claw'"),
        (["can", "--gripper", tmp_path / "half.json"], "missing finger_length"),
        (["can", "--gripper", tmp_path / "neg.json"], "max_width must be a positive number"),
        (["can", "--gripper", tmp_path / "none.json"], "file not found"),
        (["can", "--k", "0"], "--k"),
        (["can", "--approach", "sideways"], "--approach"),
        (["can", "--workspace", "0,0,0,1,1"], "--workspace"),
        ([""], "empty query"),
        (["mug \udcff"], "query"),  # not valid UTF-8 (as argv decodes $'mug \\xff')
        (["can", "--k", "nan"], "--k"),
        (["can", "--scene", tmp_path / "gone"], "no such folder"),
    ]
    for argv, needle in cases:
        code = run(main, robot_oracle.checkpoint, *argv, "--out", tmp_path / "o")
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and needle in lines[0], (argv, err)
    assert not (tmp_path / "o").exists()


def test_ff_eval_grasp_and_locate_on_one_object(robot_oracle, tmp_path, capsys):
    from featurefields.cli.eval import main

    out = tmp_path / "e"
    assert run(main, "grasp", robot_oracle.checkpoint, "--labels", "can", "--parts", "", "--k", "2",
               "--out", out, "--no-progress") == 0
    summary = json.loads((out / "grasp_summary.json").read_text())
    row = summary["objects"]["can"]
    assert row["fits"] and row["num_grasps"] == 2 and row["top5_any"] in (True, False)
    per = json.loads((out / "grasp_can.json").read_text())
    assert per["grasps"][0]["sim"]["object_mass_kg"] > 0 and "gt_force_closure" in per["grasps"][0]
    assert "| can |" in capsys.readouterr().out
    assert run(main, "locate", robot_oracle.checkpoint, "--labels", "can", "--parts", "mug handle",
               "--out", out) == 0
    loc = json.loads((out / "locate.json").read_text())
    assert loc["per_query"]["can"]["centroid_error_m"] < 0.015 and "precision_3d" in loc["per_query"]["mug handle"]


def test_robot_clis_refuse_an_out_that_would_damage_their_inputs(robot_oracle, tmp_path, capsys):
    """The output-folder guard of issue 14 covers ff-grasp and ff-eval grasp/locate: --out in the checkpoint's
    folder, or an existing file, is refused up front and nothing is written."""
    from featurefields.cli.eval import main as eval_main
    from featurefields.cli.grasp import main as grasp_main

    ckpt_dir = robot_oracle.checkpoint.parent if robot_oracle.checkpoint.is_file() else robot_oracle.checkpoint
    before = sorted(p.name for p in ckpt_dir.iterdir())
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for main, argv in [(grasp_main, [robot_oracle.checkpoint, "can"]),
                       (eval_main, ["grasp", robot_oracle.checkpoint, "--labels", "can", "--no-progress"]),
                       (eval_main, ["locate", robot_oracle.checkpoint, "--labels", "can"])]:
        for out, needle in [(ckpt_dir, "an input of this command"), (a_file, "a_file")]:
            code = run(main, *argv, "--out", out)
            err = capsys.readouterr().err
            lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert code == 2 and len(lines) == 1 and needle in lines[0], (argv, out, err)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == before and a_file.read_text() == "x"
    assert run(eval_main, "grasp", robot_oracle.checkpoint, "--density", "-1", "--out", tmp_path / "o") == 2
    assert "--density" in capsys.readouterr().err and not (tmp_path / "o").exists()
