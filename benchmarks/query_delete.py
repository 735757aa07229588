"""Delete an object with ff-edit and measure it: the object's query mask area in the held-out views before and
after, and the PSNR of everything else (outside its ground-truth mask dilated by a few pixels).

    python benchmarks/query_delete.py CHECKPOINT --label mug --edit-out outputs/no_mug \
        --out benchmarks/results/query_delete_tabletop.json

Runs ``ff-edit CHECKPOINT LABEL --delete --out EDIT_OUT`` (the CLI, default options) unless --edit-out already
holds an edited checkpoint, then compares both fields on the scene's held-out views
(:func:`featurefields.query.evaluate.evaluate_delete`); a picture (ground truth | original | edited) is written
beside the JSON. Targets: mask area after / before <= 5 %, |PSNR change outside| <= 0.5 dB in every view.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featurefields.cli.edit import main as ff_edit  # noqa: E402
from featurefields.io import read_json  # noqa: E402
from featurefields.query import QueryEngine  # noqa: E402
from featurefields.query.evaluate import evaluate_delete  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--label", default="mug")
    p.add_argument("--edit-out", required=True, help="where ff-edit writes (or has written) the edited field")
    p.add_argument("--out", required=True, help="JSON result")
    p.add_argument("--dilate", type=int, default=3, help="pixels the ground-truth mask is grown by (default 3)")
    args = p.parse_args()
    edited_ckpt = Path(args.edit_out) / "checkpoint.pt"
    cmd = [args.checkpoint, args.label, "--delete", "--out", args.edit_out]
    if not edited_ckpt.is_file():
        t0 = time.perf_counter()
        try:
            ff_edit(cmd)
        except SystemExit as e:
            if e.code:
                raise
        print(f"ff-edit took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    original = QueryEngine.from_checkpoint(args.checkpoint)
    edited = QueryEngine.from_checkpoint(edited_ckpt, scene=original.scene)
    # delete.json + delete_grid.png (ground truth | original | edited) go beside the edited field
    result = evaluate_delete(original, edited, args.label, dilate_px=args.dilate, out_dir=args.edit_out)
    result = {"command": "ff-edit " + " ".join(cmd), "edit": read_json(Path(args.edit_out) / "edit.json"), **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_view", "edit")}, indent=1))
    print(f"wrote {args.out} (picture: {Path(args.edit_out) / 'delete_grid.png'})")

if __name__ == "__main__":
    main()
