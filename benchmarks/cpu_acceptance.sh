#!/usr/bin/env bash
# Every acceptance measurement of issue 17 (native CPU rasteriser) in one run, side by side, on this machine:
#   1. the machine and the extension's build (benchmarks/machine.py)
#   2. extension variants: AVX2-only (-march=haswell) and SSE (-march=x86-64-v2) built into build/variants/, the
#      AVX-512 kernels (-march=x86-64-v4) compiled (and run only where the CPU has AVX-512)
#   3. rasteriser, D = 32, 128, 512, N = 100k, 256x256: native (this build and the variants, 1 and 2 threads) and the
#      torch reference; pairs, ns per pair, FLOP rate and peak fraction      -> cpu_acceptance_rasterize.json
#   4. the demo trained end to end, native and torch backends                  -> cpu_acceptance_train.json
#   5. a demo training step alone and beside a CPU-bound process, governor on/off -> cpu_acceptance_sharing.json
#   6. the acceptance table, each point met or not                             -> cpu_acceptance.json
# About 25 minutes on the 2-core reference machine when it is otherwise idle (the torch training alone ~12 min).
#
#   bash benchmarks/cpu_acceptance.sh            # PYTHON=... to use another interpreter (default .venv/bin/python)
#   QUICK=1 bash benchmarks/cpu_acceptance.sh    # a smoke run: 200 training steps, 2 repeats (not a result)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RES=benchmarks/results
WORK=$(mktemp -d /tmp/ff_cpu_acceptance.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
REPEATS=5 TRAIN_QUICK=()
if [ "${QUICK:-0}" = 1 ]; then REPEATS=2 TRAIN_QUICK=(--quick); fi
START=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - START )) s] $*"; }

stamp "machine"
"$PY" benchmarks/machine.py | tee "$WORK/machine.json"

stamp "extension variants"
VARIANTS=()
for arch in haswell x86-64-v2; do
  dir=build/variants/$arch
  so=$(ls "$dir"/featurefields/_native*.so 2>/dev/null | head -n 1 || true)
  if [ -z "$so" ] || [ -n "$(find cuda_ext setup.py -newer "$so" -print -quit)" ]; then
    FF_BUILD_CUDA=0 FF_CPU_ARCH=$arch "$PY" setup.py -q build_ext -b "$dir" -t "$dir/tmp" >/dev/null
  fi
  VARIANTS+=(--variant "$arch=$dir")
done
for f in cuda_ext/cpu/rasterize.cpp cuda_ext/cpu/diagnostics.cpp; do  # AVX-512: compiled here, whatever the CPU
  g++ -std=c++17 -O2 -fopenmp -march=x86-64-v4 -Icuda_ext/include -Icuda_ext/cpu -c "$f" -o "$WORK/avx512.o"
done
echo "AVX-512 kernels (-march=x86-64-v4) compile"

stamp "rasteriser"
"$PY" benchmarks/rasterize.py --out "$RES/cpu_acceptance_rasterize.json" --dims 32 128 512 --counts 100000 \
  --sizes 256 --threads 2 --threads 1 "${VARIANTS[@]}" --repeats "$REPEATS"

stamp "demo training, native and torch backends"
"$PY" benchmarks/train.py --out "$RES/cpu_acceptance_train.json" --only demo --backend native --backend torch \
  --keep "$WORK/train" "${TRAIN_QUICK[@]}"

stamp "training step beside a CPU-bound process"
"$PY" benchmarks/train_sharing.py --out "$RES/cpu_acceptance_sharing.json" \
  --checkpoint "$WORK/train/demo-native/checkpoint.pt" --steps "$([ "${QUICK:-0}" = 1 ] && echo 20 || echo 60)"

stamp "acceptance table"
"$PY" benchmarks/cpu_acceptance.py --machine "$WORK/machine.json" --out "$RES/cpu_acceptance.json" \
  --seconds "$(( $(date +%s) - START ))"
