"""``ff-scene`` command line: help that teaches, one-line errors with exit code 2, a working tiny run."""
from __future__ import annotations

import pytest

from featurefields.cli.scene import main
from featurefields.io import read_json


def _run(argv) -> int:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code


def test_help_teaches(capsys):
    assert _run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "ff-scene tabletop --seed 0 --out scenes/tabletop" in out
    assert "transforms.json" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["tabletop"],  # --out missing
        ["nosuchscene", "--out", "X"],
        ["tabletop", "--out", "X", "--views", "0"],
        ["tabletop", "--out", "X", "--width", "abc"],
        ["tabletop", "--out", "X", "--height", "3"],
        ["tabletop", "--out", "X", "--seed", "-2"],
        ["tabletop", "--out", "X", "--points", "0"],
    ],
)
def test_bad_args_exit_2_with_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "X").exists()


def test_tiny_run(tmp_path, capsys):
    out = tmp_path / "tt"
    argv = ["tabletop", "--seed", "5", "--out", str(out), "--views", "2", "--width", "24", "--height", "18"]
    assert _run(argv + ["--points", "300", "--quiet"]) == 0
    tf = read_json(out / "transforms.json")
    assert tf["generator"] == {"name": "tabletop", "seed": 5, "version": 2}
    assert (tf["w"], tf["h"], len(tf["frames"])) == (24, 18, 2)
