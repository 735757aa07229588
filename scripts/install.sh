#!/usr/bin/env bash
# Set up a fresh machine for featurefields: system libraries for open3d, a virtual environment in .venv with
# PyTorch and the package (editable, with test extras). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# open3d needs libusb to import, and Vulkan + Mesa for its headless OffscreenRenderer; MuJoCo renders its pictures
# headless through EGL with Mesa's software OpenGL; the viewer's browser tests drive Debian's chromium through
# playwright (playwright's own browser downloads are never used).
need=()
for pkg in libusb-1.0-0 libvulkan1 mesa-vulkan-drivers libegl1 libegl-mesa0 libgl1-mesa-dri chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# pip, without the machine-specific noise of index folders that do not exist (exit status kept). Large wheels
# (open3d is 400 MB) can lose their connection half-way: pip resumes a broken download many times over, and a
# failed install is tried again from where its cache left off.
export PIP_RESUME_RETRIES=${PIP_RESUME_RETRIES:-50} PIP_RETRIES=${PIP_RETRIES:-10} PIP_TIMEOUT=${PIP_TIMEOUT:-60}
pip_install() {
  local attempt status
  for attempt in 1 2 3; do
    set +e
    python -m pip install -q "$@" 2>&1 | { grep -v -e "is neither a file nor a directory" -e "^ *$" || true; }
    status=${PIPESTATUS[0]}
    set -e
    [ "$status" = 0 ] && return 0
    [ "$attempt" = 3 ] || echo "pip install failed (exit $status); trying again ($((attempt + 1)) of 3)"
  done
  return "$status"
}

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
pip_install --upgrade pip
# PyTorch first, pinned to the wheels this project is tested with (they lie on disk on the CI machines).
pip_install "torch==2.14.1" "torchvision==0.29.1"
# The package builds its native rasteriser (cuda_ext/) against that PyTorch, so no isolated build environment; CUDA
# kernels are compiled too wherever nvcc is found (see setup.py). ninja compiles the sources in parallel.
pip_install setuptools wheel ninja
echo "building featurefields and its native rasteriser (a few minutes the first time)"
pip_install --no-build-isolation -e ".[test]"
python -c "import featurefields._native as n; print('native rasteriser built:', 'CPU + CUDA' if n.has_cuda() else 'CPU')"
echo "featurefields installed in .venv (activate with: . .venv/bin/activate)"
