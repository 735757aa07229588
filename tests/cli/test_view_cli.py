"""ff-view and ff-train --view on bad input: a missing checkpoint or a busy port is one 'error:' line and exit code 2,
before anything is served or trained."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from featurefields.cli.view import main as ff_view


def run(main, *argv) -> int:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_checkpoint(tmp_path, capsys):
    assert run(ff_view, tmp_path / "nope" / "checkpoint.pt", "--port", "0") == 2
    assert "checkpoint not found" in one_error(capsys)


def test_port_in_use(oracle, busy_port, capsys):
    assert run(ff_view, oracle.checkpoint, "--port", busy_port) == 2
    assert f"127.0.0.1:{busy_port}" in one_error(capsys)


def test_bad_options(oracle, capsys):
    assert run(ff_view, oracle.checkpoint, "--max-size", "4") == 2
    assert "--max-size" in one_error(capsys)
    assert run(ff_view, oracle.checkpoint, "--port", "70000") == 2
    assert "70000" in one_error(capsys)
    assert run(ff_view, oracle.checkpoint, "--target-fps", "nan") == 2
    assert "--target-fps" in one_error(capsys)


def test_out_that_would_damage_its_inputs_is_refused(oracle, tmp_path, capsys):
    """The output-folder guard (featurefields/guard.py) covers ff-view too, before anything loads or is served."""
    ckpt_dir = oracle.checkpoint.parent if oracle.checkpoint.is_file() else oracle.checkpoint
    assert run(ff_view, oracle.checkpoint, "--port", "0", "--out", ckpt_dir) == 2
    assert "an input of this command" in one_error(capsys)
    (tmp_path / "a_file").write_text("x")
    assert run(ff_view, oracle.checkpoint, "--port", "0", "--out", tmp_path / "a_file") == 2
    assert "a_file" in one_error(capsys)


def test_train_with_view_on_a_busy_port_stops_before_training(tiny_scene, tmp_path, busy_port):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "featurefields.cli.train", str(tiny_scene), "--out", str(out),
                           "--view", str(busy_port), "--iterations", "5", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(busy_port) in lines[0], proc.stderr
    assert not out.exists()


def test_help_teaches_with_examples():
    proc = subprocess.run([sys.executable, "-m", "featurefields.cli.view", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "examples:" in proc.stdout and "ff-train scenes/tabletop --view" in proc.stdout
