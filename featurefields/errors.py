"""User-facing errors: one line that names the culprit, exit code 2, no traceback.

Library code raises :class:`FFError` (or a subclass) for anything a user can fix: a missing file, malformed JSON,
a NaN pose. The CLI entry points wrap ``main`` with :func:`cli_entry`, which prints ``error: <message>`` to stderr and
exits with :data:`EXIT_USAGE`; so does a write the system refuses half-way (disk full, quota, permissions taken
away during the run), since the user can fix that too. Programming errors keep their tracebacks and exit code 1.
"""
from __future__ import annotations

import errno
import functools
import sys
from typing import Callable

EXIT_USAGE = 2
_SYSTEM_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class FFError(Exception):
    """An error caused by the user's input; its message is printed as is, on one line."""


class DataError(FFError):
    """A scene folder, image, pose or intrinsics file that cannot be used."""


class ConfigError(FFError):
    """Options that contradict each other or the data (e.g. teacher/feature-dim mismatch on resume)."""


def one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Turn FFError (and Ctrl-C) into a one-line message and a non-zero exit code."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            code = main(*args, **kwargs)
        except FFError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except OSError as e:
            if e.errno not in _SYSTEM_REFUSALS:
                raise
            print(f"error: {e.filename or 'writing'}: {e.strerror}", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        raise SystemExit(code or 0)

    return wrapper
