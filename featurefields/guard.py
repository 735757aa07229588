"""The output-folder guard every command writes through: nothing it reads is damaged, a failure writes nothing.

Use it in three steps, so every check happens before any work starts and nothing is written before the work
succeeded::

    out = OutputFolder(args.out, inputs=[args.checkpoint, args.scene])   # checks only, writes nothing
    ...                                                                  # load, validate, compute
    out.refuse_inputs(engine.scene_root)                                 # inputs learnt on the way
    with out as folder:                                                  # staging folder inside args.out
        write_json(folder / "result.json", ...)                          # ... committed when the block succeeds

What it guarantees:

- **Refuses** an output folder that is an existing file, lies under a file, is read-only (no write permission,
  or no write bits at all even for root), cannot be written (a read-only mount, ``/proc``), or is the folder of
  any input the command reads (or inside an input folder), before anything is loaded.
- **Stages**: inside ``with``, files go to a hidden staging folder in the destination and are renamed into place
  only when the block succeeds (each rename atomic); on an error the staging folder is removed, and so is the
  destination if the command created it. Training, whose checkpoints must appear while it runs, uses
  ``staged=False`` and writes each file atomically (:func:`featurefields.io.atomic_path`).
- **Cleans**: on entry it removes the temporaries that dead processes left in the folder (``kill -9``, power
  loss): staging folders, ``.checkpoint.pt.*.tmp.pt``, ``cache/**/.tmp-*``; those of live processes are kept.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError
from .io import clean_stale_temporaries, one_reason, temp_dir, temp_name

VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")


class OutputFolder:
    """A command's output folder, checked at construction (see the module docstring).

    ``flag`` names the option in messages (``--out``, ``--cache-dir``); ``inputs`` are the files and folders the
    command reads (None entries are skipped); ``files`` are names the command will write (each must not be an
    existing folder); ``staged=False`` writes straight into the folder; ``clean_depth``: how many levels of
    subfolders :meth:`open` searches for stale temporaries (2 reaches ``cache/ab/``)."""

    def __init__(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                 flag: str = "--out", files: Iterable[str] = (), staged: bool = True, clean_depth: int = 2):
        self.flag = flag
        self.clean_depth = clean_depth
        self.path = Path(os.path.abspath(Path(path).expanduser()))
        self.staged = staged
        self._stage: Path | None = None
        self._created = False
        check_writable_folder(self.path, flag)
        for name in files:
            target = self.path / name
            if target.is_dir():
                raise ConfigError(f"{flag} {self.path}: {name} there is a folder, so it cannot be written")
        self.refuse_inputs(*inputs)

    def refuse_inputs(self, *inputs: str | os.PathLike | None) -> None:
        """Refuse (ConfigError) if this folder is the folder of an input file, or an input folder or inside one."""
        out = Path(os.path.realpath(self.path))
        for p in inputs:
            if p is None or str(p) == "":
                continue
            src = Path(os.path.realpath(Path(p).expanduser()))
            folder = src if src.is_dir() else src.parent
            if out == folder or (src.is_dir() and src in out.parents):
                where = "the folder of" if not src.is_dir() else ("the input folder" if out == src else "inside")
                raise ConfigError(f"{self.flag} {self.path}: is {where} {p}, an input of this command; writing there "
                                  f"could overwrite what it reads: choose another {self.flag}")

    # ---- writing --------------------------------------------------------------------------------------------
    def open(self) -> Path:
        """Create the folder, remove dead processes' temporaries in it, and return where to write (the staging
        folder when staged)."""
        if self._stage is not None:
            return self._stage
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{self.flag} {self.path}: cannot create it ({one_reason(e)})") from None
        clean_stale_temporaries(self.path, depth=self.clean_depth)
        if not self.staged:
            return self.path
        self._stage = temp_dir(self.path, "staging")
        return self._stage

    @property
    def dir(self) -> Path:
        """Where to write now: the staging folder while open and staged, else the folder itself."""
        return self._stage if self._stage is not None else self.path

    def commit(self) -> None:
        """Move every staged file to its place (replacing older ones, one atomic rename each)."""
        stage = self._stage
        if stage is None:
            return
        moves = [(Path(root) / name, self.path / Path(root).relative_to(stage) / name)
                 for root, _dirs, names in os.walk(stage) for name in names]
        for _, target in moves:  # checked before the first rename, so a refusal still leaves nothing half-done
            if target.is_dir():
                self.abort()
                raise ConfigError(f"{self.flag} {self.path}: {target.relative_to(self.path)} there is a folder, so "
                                  "it cannot be replaced by a file")
        self._stage = None
        for src, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, target)
        shutil.rmtree(stage, ignore_errors=True)

    def abort(self) -> None:
        """Drop what was staged; remove the folder too if this command created it and it is empty."""
        stage, self._stage = self._stage, None
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if self._created:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, staged={self.staged})"


def check_writable_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse (ConfigError naming ``flag``) a folder that cannot be created or written; writes nothing that
    stays (a probe file is created and removed in the nearest existing folder)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    real = Path(os.path.realpath(path))
    for root in VIRTUAL_ROOTS:
        if real == Path(root) or Path(root) in real.parents:
            raise ConfigError(f"{flag} {path}: is under {root}, a virtual file system, not a place for outputs")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is a file, not a folder")
    anc = path
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{flag} {path}: {anc} is a file, not a folder")
    mode = anc.stat().st_mode
    if not os.access(anc, os.W_OK | os.X_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{flag} {path}: {'it' if anc == path else anc} is read-only")
    prefix, suffix = temp_name("probe")
    try:
        fd, probe = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write in {anc} ({one_reason(e)})") from None
    return path
