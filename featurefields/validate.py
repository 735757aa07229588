"""The one validation layer for user-facing values: CLI options, scene and camera JSON, checkpoints, selections.

Every value a user can hand featurefields passes one of these checks before any work starts and before anything
is written. Each returns the value converted (an ``int``, a ``float``, a tensor) or raises a one-line error that
names the culprit (``what``: the flag, file or key) and says what was expected; ``error`` picks the class
(:class:`ConfigError` for options, :class:`DataError` for files). Scene- and camera-specific checks built on these
live in :mod:`featurefields.data.validate`.

For argparse, :func:`arg` wraps a check as a ``type=`` so bad options are refused while parsing::

    p.add_argument("--threshold", type=arg(number, lo=0, hi=1))
    p.add_argument("--views", type=arg(integer, lo=1, hi=1000))
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ConfigError, DataError, FFError

MAX_IMAGE_SIDE = 16384  # pixels: larger renders or camera files are refused rather than allocated
MAX_IMAGE_PIXELS = 1 << 26  # 67 M pixels (8192 x 8192) per rendered or loaded view


def number(value: Any, what: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, error: type[FFError] = ConfigError) -> float:
    """A finite float (bools refused; numeric strings such as "0.5" accepted) in [lo, hi] ((lo, hi) if open)."""
    if isinstance(value, bool):
        raise error(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{what}: expected a number, got {_show(value)}") from None
    if not math.isfinite(out):
        raise error(f"{what}: {out} is not a finite number")
    _range(out, what, lo, hi, lo_open, hi_open, error)
    return out


def integer(value: Any, what: str, *, lo: int | None = None, hi: int | None = None,
            error: type[FFError] = ConfigError) -> int:
    """A whole number (5, 5.0 and "5" are; 5.5, NaN, True are not) in [lo, hi]."""
    if isinstance(value, bool):
        raise error(f"{what}: expected a whole number, got {value!r}")
    if isinstance(value, int):
        out = value
    else:
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise error(f"{what}: expected a whole number, got {_show(value)}") from None
        if not math.isfinite(f) or f != int(f):
            raise error(f"{what}: expected a whole number, got {_show(value)}")
        out = int(f)
    _range(out, what, lo, hi, False, False, error)
    return out


def choice(value: Any, what: str, options: Sequence, error: type[FFError] = ConfigError):
    if value not in options:
        raise error(f"{what}: {_show(value)} is not one of {', '.join(map(str, options))}")
    return value


def text(value: Any, what: str, *, max_chars: int | None = None, error: type[FFError] = ConfigError) -> str:
    """A string that is valid UTF-8. Command-line bytes that are not arrive as lone surrogates (Python's
    surrogateescape) and would fail much later, when encoded for a text model or written to JSON."""
    if not isinstance(value, str):
        raise error(f"{what}: expected text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = value[e.start:e.end].encode("utf-8", "surrogateescape")
        raise error(f"{what}: not valid UTF-8 text (byte {bad[:1]!r} at character {e.start})") from None
    if max_chars is not None and len(value) > max_chars:
        raise error(f"{what}: {len(value)} characters; the limit is {max_chars}")
    return value


def image_size(width: Any, height: Any, what: str, error: type[FFError] = DataError) -> tuple[int, int]:
    """(width, height) in pixels: whole, positive, each at most MAX_IMAGE_SIDE and together at most
    MAX_IMAGE_PIXELS, so an absurd camera file is refused instead of allocated."""
    w = integer(width, f"{what}: width", lo=1, hi=MAX_IMAGE_SIDE, error=error)
    h = integer(height, f"{what}: height", lo=1, hi=MAX_IMAGE_SIDE, error=error)
    if w * h > MAX_IMAGE_PIXELS:
        raise error(f"{what}: {w}x{h} pixels is more than the limit of {MAX_IMAGE_PIXELS:,} per view")
    return w, h


def mapping(value: Any, what: str, error: type[FFError] = DataError) -> Mapping:
    if not isinstance(value, Mapping):
        raise error(f"{what}: expected an object (dict), got {type(value).__name__}")
    return value


def tensor(value: Any, what: str, shape: Sequence[int | None], *, kind: str = "float", finite: bool = True,
           error: type[FFError] = DataError):
    """A torch tensor of ``shape`` (None: any size in that dimension) and dtype ``kind`` ('float', 'bool',
    'int'), finite if asked; says which entry is NaN/inf when one is."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise error(f"{what}: expected a tensor, got {type(value).__name__}")
    if value.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, value.shape)):
        want = "x".join("N" if s is None else str(s) for s in shape) or "a scalar"
        raise error(f"{what}: shape {'x'.join(map(str, value.shape)) or 'scalar'}, expected {want}")
    ok = {"float": value.is_floating_point(), "bool": value.dtype == torch.bool,
          "int": not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool}[kind]
    if not ok:
        raise error(f"{what}: dtype {str(value.dtype).replace('torch.', '')}, expected {kind}")
    if finite and kind == "float" and value.numel():
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise error(f"{what}: {int(bad.sum())} of {value.numel()} values are NaN/inf")
    return value


def arg(check: Callable[..., Any], **options) -> Callable[[str], Any]:
    """An argparse ``type=`` running ``check(text, what, **options)``; argparse names the flag in the message."""

    def parse(text_value: str):
        try:
            return check(text_value, "value", **options)
        except FFError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value: ")) from None

    parse.__name__ = check.__name__  # argparse says "invalid <name> value" only when no message is given
    return parse


def _range(v: float, what: str, lo, hi, lo_open: bool, hi_open: bool, error) -> None:
    below = lo is not None and (v <= lo if lo_open else v < lo)
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if below or above:
        if lo is not None and hi is not None:
            span = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
        elif lo is not None:
            span = f"{'>' if lo_open else '>='} {_fmt(lo)}"
        else:
            span = f"{'<' if hi_open else '<='} {_fmt(hi)}"
        raise error(f"{what}: {_fmt(v)} is out of range (must be {span})")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."
