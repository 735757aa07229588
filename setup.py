"""Build entry point: the package plus the native rasteriser ``featurefields._native`` from ``cuda_ext/``.

The CPU kernels are always built (C++17 + OpenMP). The CUDA kernels are added when a CUDA toolkit (nvcc) and a
CUDA build of PyTorch are both present, GPU or not, so a machine with nvcc but no GPU still compiles every ``.cu``
file. Environment:

  FF_BUILD_CUDA=1 / 0     force / skip the CUDA kernels (default: auto)
  TORCH_CUDA_ARCH_LIST    GPU architectures (default: the visible GPU's; without a GPU, FF_DEFAULT_ARCHS below)
  FF_CPU_ARCH=native      -march for the CPU kernels ("" for the compiler's default, e.g. to build portable wheels)

PyTorch must be installed first and the build must see it:
``pip install --no-build-isolation -e .`` (what ``scripts/install.sh`` does).
"""
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
EXT = ROOT / "cuda_ext"
FF_DEFAULT_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"  # Turing to Hopper; PTX lets newer GPUs JIT-compile


def _cuda_home() -> str | None:
    """The toolkit of the nvcc on PATH (its bin/ may be a wrapper script, so ask for a real toolkit layout)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    for cand in ("/usr/local/cuda",):
        if (Path(cand) / "bin" / "nvcc").exists():
            return cand
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = Path(os.path.realpath(nvcc)).parent.parent
        if (home / "include" / "cuda_runtime.h").exists():
            return str(home)
    return None


def native_extensions():
    try:
        import torch
    except ImportError:
        sys.exit("featurefields: building the native rasteriser needs PyTorch installed first, then "
                 "`pip install --no-build-isolation -e .` (see scripts/install.sh)")
    want = os.environ.get("FF_BUILD_CUDA", "auto").lower()
    cuda_home = _cuda_home()
    use_cuda = want in ("1", "true", "yes") or (want == "auto" and cuda_home is not None and torch.version.cuda)
    if use_cuda:
        if cuda_home is None:
            sys.exit("featurefields: FF_BUILD_CUDA=1 but no CUDA toolkit found (set CUDA_HOME)")
        os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = FF_DEFAULT_ARCHS
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    arch = os.environ.get("FF_CPU_ARCH", "native")
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-fno-math-errno", f"-DFF_CPU_ARCH_NAME={arch or 'default'}"]
    cxx += [f"-march={arch}"] if arch else []
    sources = [str(p.relative_to(ROOT)) for p in [EXT / "binding.cpp", *sorted((EXT / "cpu").glob("*.cpp"))]]
    kwargs = dict(include_dirs=[str(EXT / "include"), str(EXT)], extra_link_args=["-fopenmp"])
    if use_cuda:
        sources += [str(p.relative_to(ROOT)) for p in sorted((EXT / "cuda").glob("*.cu"))]
        nvcc = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        return [CUDAExtension("featurefields._native", sources, define_macros=[("FF_WITH_CUDA", None)],
                              extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)]
    return [CppExtension("featurefields._native", sources, extra_compile_args={"cxx": cxx}, **kwargs)]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None or _has_ninja_module())


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


setup(ext_modules=native_extensions(), cmdclass={"build_ext": build_ext_class()})
