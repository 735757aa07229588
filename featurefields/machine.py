"""What every timing records next to its numbers (the benchmarks, ``ff-eval localize``): the machine, how busy it
was, and what the native extension was compiled for. The same code measures 3x apart on two x86 machines (AVX-512
against AVX2), so a number without these is not comparable to anything. One description for every benchmark, so
their JSON files can be compared.

    python benchmarks/machine.py            # prints the description as JSON
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from . import allocator

SIMD_FLAGS = ("sse2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return out


def load() -> dict:
    """The load average and the instantaneous number of runnable tasks (ours included)."""
    try:
        la = Path("/proc/loadavg").read_text().split()
        return {"loadavg_1m": float(la[0]), "loadavg_5m": float(la[1]), "runnable": int(la[3].split("/")[0])}
    except (OSError, ValueError, IndexError):
        return {}


def cpu() -> dict:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    model = info.get("model name") or platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("CPU family:"):
                info["cpu family"] = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "cpu_family": info.get("cpu family"), "cpu_mhz": float(info.get("cpu MHz", 0) or 0),
            "cores": cores, "simd_flags": [f for f in SIMD_FLAGS if f in flags], "machine": platform.machine(),
            "hypervisor": "hypervisor" in flags}


def native_build() -> dict | None:
    """The SIMD set, -march and compiler of the imported native extension (None if it is not built)."""
    from .render import native

    mod = native.native_module()
    if mod is None:
        return None
    info = dict(mod.build_info()) if hasattr(mod, "build_info") else {}
    info["module"] = str(Path(mod.__file__).resolve())
    return info


def widest_float_lanes(cpu_desc: dict) -> int:
    """float32 lanes of the CPU's widest SIMD registers (AVX-512: 16, AVX/AVX2: 8, else 4)."""
    flags = cpu_desc["simd_flags"]
    return 16 if "avx512f" in flags else 8 if "avx" in flags else 4


def peak_flops(cores: int, cpu_desc: dict | None = None) -> float:
    """The machine's nominal peak for `cores` cores: cores x float lanes of its widest SIMD x 2 FMA units x 2 FLOPs
    per FMA x clock (NaN when the clock is unknown)."""
    cpu_desc = cpu_desc or cpu()
    mhz = cpu_desc["cpu_mhz"] or float("nan")
    return cores * widest_float_lanes(cpu_desc) * 2 * 2 * mhz * 1e6


def describe(threads: int | None = None) -> dict:
    import torch

    d = {"cpu": cpu(), "load": load(), "torch": torch.__version__,
         "torch_threads": threads if threads is not None else torch.get_num_threads(), "native": native_build(),
         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "allocator": allocator.tune()}
    d["nominal_peak_gflops"] = round(peak_flops(d["cpu"]["cores"], d["cpu"]) / 1e9, 1)
    return d
