"""The output-folder guard: what it refuses, staging (all files or none), and cleaning up after killed runs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from featurefields.errors import ConfigError
from featurefields.guard import OutputFolder, check_writable_folder
from featurefields.io import atomic_path, clean_stale_temporaries, is_temporary, temp_dir, write_json


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("kind", ["file", "under_file", "read_only", "proc", "sys"])
def test_refuses_folders_that_cannot_take_outputs(tmp_path, kind):
    f = tmp_path / "a_file"
    f.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)  # no write bits: refused even for root, who could write there anyway
    path = {"file": f, "under_file": f / "sub", "read_only": ro / "sub", "proc": "/proc/ff_out",
            "sys": "/sys/kernel/ff"}[kind]
    needle = {"file": "is a file", "under_file": "is a file", "read_only": "read-only", "proc": "virtual file system",
              "sys": "virtual file system"}[kind]
    with pytest.raises(ConfigError, match=needle) as e:
        OutputFolder(path, flag="--cache-dir")
    assert str(e.value).startswith("--cache-dir ") and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "ro"] and not any(ro.iterdir())


def test_refuses_the_folders_of_its_inputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(b"ckpt")
    scene = tmp_path / "scene"
    scene.mkdir()
    with pytest.raises(ConfigError, match="the folder of .*checkpoint.pt"):
        OutputFolder(run, inputs=[ckpt])
    with pytest.raises(ConfigError, match="the folder of"):
        OutputFolder(str(run) + "/./", inputs=[ckpt])  # spelt differently, same folder
    os.symlink(run, tmp_path / "link")
    with pytest.raises(ConfigError, match="the folder of"):
        OutputFolder(tmp_path / "link", inputs=[ckpt])  # through a symbolic link
    with pytest.raises(ConfigError, match="input folder"):
        OutputFolder(scene, inputs=[scene])
    with pytest.raises(ConfigError, match="inside"):
        OutputFolder(scene / "out", inputs=[None, scene])
    out = OutputFolder(tmp_path / "elsewhere", inputs=[ckpt, scene, None])  # anywhere else is fine
    with pytest.raises(ConfigError, match="input"):  # inputs learnt later are refused the same way
        OutputFolder(run / "sub").refuse_inputs(run / "sub" / "scene.json")
    out.refuse_inputs(tmp_path / "other" / "x.json")
    assert ckpt.read_bytes() == b"ckpt"


def test_a_planned_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "out" / "checkpoint.pt").mkdir(parents=True)
    with pytest.raises(ConfigError, match="checkpoint.pt there is a folder"):
        OutputFolder(tmp_path / "out", files=["checkpoint.pt"])


def test_staged_files_appear_together_or_not_at_all(tmp_path):
    out = OutputFolder(tmp_path / "new")
    with pytest.raises(RuntimeError):
        with out as folder:
            write_json(folder / "a.json", {"a": 1})
            raise RuntimeError("the command fails half-way")
    assert not (tmp_path / "new").exists()  # created by the command, removed with what it staged

    existing = tmp_path / "old"
    existing.mkdir()
    write_json(existing / "a.json", {"v": "old"})
    with pytest.raises(RuntimeError):
        with OutputFolder(existing) as folder:
            write_json(folder / "a.json", {"v": "new"})
            raise RuntimeError
    assert (existing / "a.json").read_text().count("old") == 1 and os.listdir(existing) == ["a.json"]

    with OutputFolder(existing) as folder:
        assert folder != existing and folder.parent == existing
        write_json(folder / "a.json", {"v": "new"})
        write_json(folder / "sub" / "b.json", {"b": 2})
        assert not (existing / "sub").exists()  # nothing visible before the block succeeds
    assert '"new"' in (existing / "a.json").read_text() and (existing / "sub" / "b.json").is_file()
    assert sorted(os.listdir(existing)) == ["a.json", "sub"]


def test_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead, live = dead_pid(), os.getpid()
    (tmp_path / "cache" / "ab").mkdir(parents=True)
    stale = [tmp_path / f".checkpoint.pt.{dead}-abcd1234.tmp.pt",  # a checkpoint write killed mid-way
             tmp_path / f".staging.{dead}-x1y2z3w4.tmp",  # a killed command's staging folder
             tmp_path / "cache" / "ab" / f".ab12cd34ef56ab78.{dead}-qwertyui.tmp",  # a cache entry being written
             tmp_path / ".checkpoint.pt.k2j4h5g6.tmp.pt",  # names of earlier versions (no pid)
             tmp_path / "cache" / "ab" / ".tmp-0123456789abcdef-a1b2c3d4"]
    kept = [tmp_path / f".field.ply.{live}-abcd1234.tmp.ply", tmp_path / "checkpoint.pt",
            tmp_path / ".hidden_user_file", tmp_path / "cache" / "ab" / "ab12cd34ef56ab78"]
    for p in stale[1:3] + stale[4:] + kept[3:]:
        p.mkdir()
    for p in stale[:1] + stale[3:4] + kept[:3]:
        p.write_text("x")
    assert all(is_temporary(p.name) for p in stale) and not any(is_temporary(p.name) for p in kept[1:])
    removed = clean_stale_temporaries(tmp_path, depth=2)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_a_killed_write_is_cleaned_by_the_next_command(tmp_path):
    code = ("import os, signal, sys; from featurefields.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half a checkpoint'); os.kill(os.getpid(), signal.SIGKILL)\n")
    target = tmp_path / "out" / "checkpoint.pt"
    res = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == -9
    left = os.listdir(tmp_path / "out")
    assert len(left) == 1 and is_temporary(left[0]) and not target.exists()
    with OutputFolder(tmp_path / "out") as folder:
        write_json(folder / "x.json", {})
    assert os.listdir(tmp_path / "out") == ["x.json"]


def test_atomic_path_and_temp_dir_names_carry_the_pid(tmp_path):
    with atomic_path(tmp_path / "x.json") as tmp:
        assert is_temporary(tmp.name) and f".{os.getpid()}-" in tmp.name
        tmp.write_text("{}")
    d = temp_dir(tmp_path, "cache-entry")
    assert is_temporary(d.name) and d.is_dir()
    assert check_writable_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b" and not (tmp_path / "a").exists()


def test_a_write_the_system_refuses_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    import errno

    from featurefields.errors import cli_entry

    @cli_entry
    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/checkpoint.pt")

    @cli_entry
    def bug():
        raise ZeroDivisionError("a bug")

    with pytest.raises(SystemExit) as e:
        disk_full()
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: /data/out/checkpoint.pt: No space left on device\n"
    with pytest.raises(ZeroDivisionError):  # exit code 1 with a traceback: what a bug looks like
        bug()
