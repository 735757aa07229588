"""The CPU kernels built for every SIMD width this machine runs (SSE2: 4 floats, AVX2: 8, AVX-512: 16), each held to
the PyTorch reference, forward and gradients.

The vector width is a compile-time choice (cuda_ext/include/ff/simd.h: chunks of a tile row, channel blocks), so the
installed extension exercises only its own; here ``native_harness.cpp`` is compiled with the kernels for each
``-march`` level the CPU supports and run on scenes dumped from Python. Widths the CPU lacks are still compiled (a
syntax or type error in that path fails here too) but not run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from featurefields.render import Projection, rasterize

from .helpers import random_colors, random_projection

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "cuda_ext"
# name: (-march, the CPU flags it needs to run)
WIDTHS = {
    "sse2": ("x86-64-v2", ("sse4_2",)),
    "avx2": ("x86-64-v3", ("avx2", "fma")),
    "avx512": ("x86-64-v4", ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd")),
}
CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CXX is None or os.uname().machine != "x86_64", reason="needs g++ on x86_64")]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory) -> dict[str, Path | None]:
    """name -> the built harness (None: compiled, but this CPU cannot run it)."""
    out = tmp_path_factory.mktemp("widths")
    flags = cpu_flags()
    built = {}
    for name, (march, need) in WIDTHS.items():
        exe = out / f"harness_{name}"
        cmd = [CXX, "-O2", "-std=c++17", "-fopenmp", "-fno-math-errno", f"-march={march}", f"-I{EXT / 'include'}",
               str(EXT / "cpu" / "rasterize.cpp"), str(EXT / "cpu" / "binning.cpp"),
               str(Path(__file__).with_name("native_harness.cpp")), "-o", str(exe)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name} ({march}) does not compile:\n{proc.stderr[-3000:]}"
        built[name] = exe if all(f in flags for f in need) else None
    return built


def dump_scene(d: Path, n: int, D: int, W: int, H: int, tile_size: int, k: int, seed: int):
    proj, opac = random_projection(n, W, H, dtype=torch.float32, seed=seed, opacity=(0.05, 0.99))
    colors = random_colors(n, D, dtype=torch.float32, seed=seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    bg = torch.rand(D, generator=g)
    v_image, v_alpha = torch.randn(H, W, D, generator=g), torch.randn(H, W, 1, generator=g)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"means2d": proj.means2d, "conics": proj.conics, "opacities": opac, "colors": colors, "background": bg,
              "depths": proj.depths, "radii": proj.radii.to(torch.int32), "v_image": v_image, "v_alpha": v_alpha}
    for name, t in arrays.items():
        t.detach().contiguous().numpy().tofile(d / f"{name}.bin")
    (d / "meta.txt").write_text(f"{n} {D} {W} {H} {tile_size} {k}\n")
    return proj, opac, colors, bg, v_image, v_alpha


def reference(proj, opac, colors, bg, v_image, v_alpha, W, H, k):
    leaves = [t.clone().requires_grad_() for t in (proj.means2d, proj.conics, opac, colors)]
    p = Projection(leaves[0], leaves[1], proj.depths, proj.radii)
    img, alpha = rasterize(p, leaves[2], leaves[3], W, H, background=bg, geometry_channels=k)
    grads = torch.autograd.grad((img * v_image).sum() + (alpha * v_alpha).sum(), leaves)
    return img.detach(), alpha.detach(), grads


def rel_err(a: np.ndarray, ref: torch.Tensor) -> float:
    ref = ref.detach().double().numpy().reshape(-1)
    scale = np.abs(ref).max()
    return float(np.abs(a.astype(np.float64).reshape(-1) - ref).max() / (scale if scale > 0 else 1.0))


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("D,k,tile_size", [(3, 3, 16), (20, 4, 16), (33, 33, 16), (130, 130, 16), (7, 7, 5),
                                           (40, 40, 32)])
def test_each_width_matches_reference(harnesses, tmp_path, width, D, k, tile_size):
    exe = harnesses[width]
    if exe is None:
        pytest.skip(f"this CPU cannot run the {width} build (compiled only)")
    W, H, n = 45, 34, 400
    scene = dump_scene(tmp_path, n, D, W, H, tile_size, k, seed=D + tile_size)
    subprocess.run([str(exe), str(tmp_path)], check=True, timeout=120)
    img, alpha, grads = reference(*scene, W, H, k)
    out = {name: np.fromfile(tmp_path / f"out_{name}.bin", dtype=np.float32)
           for name in ("image", "alpha", "v_means2d", "v_conics", "v_opacities", "v_colors")}
    assert 0.2 < float(alpha.mean()) < 0.999
    assert rel_err(out["image"], img) <= 1e-5
    assert rel_err(out["alpha"], alpha) <= 1e-5
    for name, ref in zip(("v_means2d", "v_conics", "v_opacities", "v_colors"), grads):
        assert rel_err(out[name], ref) <= 1e-4, name
