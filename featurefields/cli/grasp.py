"""ff-grasp: parallel-jaw grasps of what a phrase names in a trained feature field, in its metric world frame."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, cli_entry
from ..validate import arg, integer, text
from . import ArgParser

EXAMPLES = """\
examples:
  ff-grasp outputs/tabletop/checkpoint.pt "mug" --gripper panda --out outputs/grasp_mug
        the 10 best Panda grasps of the mug: grasps.json, grasps.ply, grasps.png
  ff-grasp outputs/tabletop/checkpoint.pt "mug handle" --approach top --k 3 --out outputs/grasp_handle
        a part: contacts only on the handle, the gripper coming from above (within 45 degrees)
  ff-grasp outputs/tabletop/checkpoint.pt "bottle" --gripper my_gripper.json --workspace -0.5,-0.4,0.7,0.5,0.4,1.2
        a gripper described in JSON (max_width, finger_length, finger_width, finger_thickness, palm [x, y, z],
        optional tip_depth, force, friction, clearance; metres and newtons), grasp centres inside a world box

how it works: the phrase is located (featurefields.robot.locate: one entry per instance, surface points with
normals fused from the training views), antipodal contact pairs are sampled on that surface within the friction
cone, scored by force closure and Ferrari-Canny epsilon (soft-finger contacts), turned into poses every 30 degrees
around the closing axis, and kept when the open gripper (finger and palm boxes, checked with FCL) touches neither
the scene (support, neighbours, the object itself) at the grasp nor along the last 10 cm of its approach. Ranked by
0.5 epsilon + 0.3 centring + 0.2 approach alignment.

grasp frame (grasps.json, world frame, metres): 4x4 "pose" whose columns are x = closing direction (first finger
towards the second), y = z cross x, z = approach direction (palm towards the object), and whose origin lies midway
between the two contacts; "opening" is how far apart the fingers approach, "width" the distance between contacts.
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="ff-grasp", description=__doc__, epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a trained run's checkpoint.pt (or its folder), or a splat .ply with features")
    p.add_argument("query", help="what to grasp: an object or a part ('mug', 'mug handle')")
    p.add_argument("--out", help="output folder (default: outputs/grasp/<query>)")
    p.add_argument("--gripper", default="panda",
                   help="panda (default), robotiq-2f-85, or a gripper JSON file")
    p.add_argument("--k", type=arg(integer, lo=1, hi=1000), default=10, help="how many grasps (default %(default)s)")
    p.add_argument("--approach", default="any", help="any (default) | top | x,y,z: where the gripper comes from")
    p.add_argument("--workspace", metavar="X0,Y0,Z0,X1,Y1,Z1", help="world box the grasp centres must lie in")
    p.add_argument("--scene", help="the training scene folder, if it moved since training")
    p.add_argument("--negatives", default="auto", help="auto | scene | canonical | 'a; b' (as ff-query)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..query.relevancy import split_positives
    from ..robot.gripper import load_gripper
    from .query import engine_scene_check, output_folder, parse_numbers, slug

    args.query = text(args.query, "query")
    split_positives(args.query)
    gripper = load_gripper(args.gripper)
    approach = args.approach if args.approach.strip().lower() in ("any", "top") else parse_numbers(
        args.approach, 3, "--approach")
    workspace = None
    if args.workspace:
        w = parse_numbers(args.workspace, 6, "--workspace")
        workspace = (w[:3], w[3:])
    engine_scene_check(args)
    out = output_folder(args, Path("outputs") / "grasp" / slug(args.query))  # checked before any work
    from ..fields.loading import load

    field = load(args.checkpoint, scene_root=args.scene)
    out.refuse_inputs(field.scene_root)
    field.text_teacher()  # a field that cannot answer text fails before any work
    result = field.grasps(args.query, gripper=gripper, k=args.k, approach=approach, workspace=workspace,
                          negatives=args.negatives)
    if not result:
        raise ConfigError(f"no grasp of {args.query!r}: {result.reason}")
    with out as folder:  # staged: grasps.json, .ply and .png appear together, or not at all
        _write(folder, args, field, result, gripper)
    best = result[0]
    print(f"{len(result)} grasps of {args.query!r} ({len(result.located)} instance(s)); best: score "
          f"{best.score:.2f}, width {best.width * 100:.1f} cm at {[round(float(x), 3) for x in best.position]}; "
          f"outputs in {out.path}/ (grasps.json, grasps.ply, grasps.png)", file=sys.stderr)
    return 0


def _write(out: Path, args, field, result, gripper) -> None:
    from ..io import write_json
    from ..robot.drawing import draw_grasps, grasps_ply

    write_json(out / "grasps.json", {
        "query": args.query, "checkpoint": str(args.checkpoint), "frame": "world (the field's metric frame), metres",
        "gripper": gripper.to_dict(), "grasp_frame": "columns x: closing, y: z cross x, z: approach; origin midway "
                                                      "between the contacts",
        "located": [loc.to_dict() for loc in result.located], "grasps": [g.to_dict() for g in result],
        "timings_s": result.timings})
    grasps_ply(out / "grasps.ply", result, gripper)
    draw_grasps(out / "grasps.png", field, result, gripper)


if __name__ == "__main__":
    main()
