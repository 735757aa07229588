"""Command-line entry points, one per verb (ff-train, ff-scene, ...)."""
from __future__ import annotations

import argparse

from ..errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a one-line ConfigError (exit code 2) instead of usage + error."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see --help)")
