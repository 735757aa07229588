"""Atomic file output and image input shared by every module that touches disk.

Outputs are written to a temporary file beside the target and renamed into place, so an interrupted run never
leaves a half-written checkpoint, PLY, JSON or PNG behind. Every temporary file or folder featurefields makes is
named ``.<what>.<pid>-<random>.tmp[<suffix>]`` (:func:`temp_name`), so a later run can tell its own leftovers
from a live writer's: :func:`clean_stale_temporaries` removes those whose process is gone (``kill -9``, power
loss) and leaves those of running processes alone.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import DataError


def temp_name(what: str) -> tuple[str, str]:
    """(prefix, suffix) for ``tempfile.mkstemp``/``mkdtemp``: ``.<what>.<pid>-<random>.tmp``."""
    return f".{what}.{os.getpid()}-", ".tmp"


def temp_dir(parent: str | os.PathLike, what: str) -> Path:
    """A new, empty temporary folder in ``parent`` under the shared temporary-name grammar."""
    prefix, suffix = temp_name(what)
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The data reaches the disk (fsync) before the rename, so after a crash ``path`` holds either the old or the
    new complete file, never a prefix of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temp_name(path.name)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # file systems without fsync (some FUSE mounts): the rename is still atomic
        pass
    finally:
        os.close(fd)


# .<what>.<pid>-<8 random>.tmp[<suffix>] (mkstemp's random part is 8 characters of [a-z0-9_])
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)-[a-z0-9_]{8}\.tmp(\.[^/]*)?$")
# what earlier versions wrote, without a pid: .<name>.<random>.tmp<suffix> and the cache's .tmp-/.old- folders
_LEGACY = re.compile(r"^(\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?|\.(tmp|old)-[0-9a-f]{16}-[a-z0-9_]{8}"
                     r"|\..+\.(tmp|old)-[a-z0-9_]{8})$")


def is_temporary(name: str) -> bool:
    """Is ``name`` (a file or folder name) one of featurefields' temporaries?"""
    return bool(_TEMP.match(name) or _LEGACY.match(name))


def _owner_alive(name: str) -> bool:
    m = _TEMP.match(name)
    if m is None:  # legacy names carry no pid; no version that wrote them is still running after an upgrade
        return False
    pid = int(m["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temporaries(root: str | os.PathLike, depth: int = 2, prefix: str = "") -> list[Path]:
    """Remove the temporaries that dead processes left in ``root`` and in its (non-temporary) subfolders down to
    ``depth`` levels (only names starting with ``prefix``, in ``root`` itself); returns what was removed.
    Temporaries of live processes are left alone."""
    root = Path(root)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(prefix):
            continue
        if is_temporary(e.name):
            if _owner_alive(e.name):
                continue
            p = Path(e.path)
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
        elif depth > 0 and e.is_dir(follow_symlinks=False):
            removed += clean_stale_temporaries(e.path, depth - 1)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None


@contextlib.contextmanager
def open_image(path: str | os.PathLike):
    """``PIL.Image.open`` with every way a file can fail turned into a DataError naming it: missing, corrupt,
    truncated, or a header claiming more pixels than PIL's decompression-bomb limit (checked before decoding)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path}: image too large to decode safely ({one_reason(e)})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: corrupt or unreadable image ({one_reason(e)})") from None


def read_image(path: str | os.PathLike, *, mode: str | None = None) -> np.ndarray:
    """Read an image as a numpy array; ``mode`` ('RGB', 'RGBA', 'L', 'I;16') converts it.

    16-bit PNGs (depth) come back as uint16, everything else as uint8.
    """
    with open_image(path) as im:
        im.load()
        if mode is not None and im.mode != mode:
            im = im.convert(mode)
        return np.asarray(im)


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 RGB/RGBA/L or uint16 L as PNG (or whatever the suffix says), atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format=_pil_format(path))


def _pil_format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")


def one_reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def read_plyfile(path: str | os.PathLike, what: str = "PLY file"):
    """``plyfile.PlyData`` of ``path``, or a DataError naming it: missing, truncated, malformed, or a header that
    claims more elements than the file can hold (checked first, so a forged count cannot exhaust memory)."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    _check_ply_header(path, what)
    try:
        with warnings.catch_warnings():  # (numpy warns on short ASCII rows; the error below says it instead)
            warnings.simplefilter("ignore")
            return PlyData.read(str(path))
    except Exception as e:  # noqa: BLE001 - plyfile raises a variety of errors (and numpy's) on corrupt input
        raise DataError(f"{path}: not a readable {what} ({one_reason(e)})") from None


def _check_ply_header(path: Path, what: str) -> None:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a readable {what} (no 'ply ... end_header' header)")
    body = path.stat().st_size - (head.find(b"\n", end) + 1)
    fmt, need, count, row = "", 0, 0, 0
    try:
        lines = head[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a readable {what} (header is not ASCII text)") from None
    for line in lines + ["element"]:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format" and len(tok) > 1:
            fmt = tok[1]
        elif tok[0] == "element":
            need += count * max(row, 1)
            count, row = (int(tok[2]) if len(tok) > 2 and tok[2].isdigit() else 0), 0
        elif tok[0] == "property" and len(tok) > 2:
            # ascii rows take at least two characters per value; binary ones the value's size (a list its count)
            row += 2 if fmt == "ascii" else _PLY_SIZES.get(tok[2] if tok[1] == "list" else tok[1], 1)
    if need > body:
        raise DataError(f"{path}: not a readable {what} (its header promises {need:,} bytes of data, the file holds "
                        f"{max(body, 0):,}; truncated?)")
