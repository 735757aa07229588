#!/usr/bin/env bash
# On a machine with a CUDA GPU: build with the CUDA kernels, run the CUDA tests, and benchmark every GPU backend
# (native, gsplat, torch). Writes benchmarks/results/gpu_<device>.json and benchmarks/results/gpu_<device>_tests.txt.
#   bash scripts/gpu_check.sh            # tests + the quick benchmark row (D=32, N=100k, 256 px)
#   bash scripts/gpu_check.sh --full     # tests + the whole benchmark grid
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
FF_BUILD_CUDA=1 "$PY" -m pip install -q --no-build-isolation --no-deps -e . 
name=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))")
mkdir -p benchmarks/results
"$PY" -m pytest -q -m cuda tests/render 2>&1 | tee "benchmarks/results/gpu_${name}_tests.txt"
quick=--quick
[ "${1:-}" = "--full" ] && quick=
"$PY" benchmarks/rasterize.py --device cuda $quick --out "benchmarks/results/gpu_${name}.json"
