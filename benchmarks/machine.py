"""The machine description every benchmark records (featurefields/machine.py), importable as ``machine`` from
benchmarks/ scripts.

    python benchmarks/machine.py            # prints the description as JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featurefields.machine import (SIMD_FLAGS, cpu, describe, load, native_build, peak_flops,  # noqa: E402,F401
                                   widest_float_lanes)

if __name__ == "__main__":
    print(json.dumps(describe(), indent=1))
