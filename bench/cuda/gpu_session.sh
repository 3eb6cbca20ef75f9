#!/usr/bin/env bash
# What a lent GPU machine is needed for (device tool: `run` with this script). Builds normkit
# there with the CUDA kernels (incremental in build/gpu when the machine still has it), then one
# phase or all: the GPU tests, compute-sanitizer (memcheck and racecheck) on a subset, the GPU
# benchmark. Logs and JSON go to $OUT; the end of each log is printed.
#   bash bench/cuda/gpu_session.sh [all|test|sanitize|bench] [quick]
# A call may run 10 minutes at most: the first build takes a few; split the phases over calls
# if they do not fit.
set -uo pipefail
phase=${1:-all}
out=${OUT:-/tmp/nk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NORMKIT_CUDA_UNVALIDATED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "::: build (sm_90 only, to save time)"
python3 -m pip install -q --no-build-isolation --no-deps . -Cbuild-dir=build/gpu \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
(cd /tmp && python3 -c "import normkit as nk; nk.show_config()")
if [ "$phase" = all ] || [ "$phase" = test ]; then
  echo "::: GPU tests"
  python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" | tail -25
fi
if [ "$phase" = all ] || [ "$phase" = sanitize ]; then
  echo "::: compute-sanitizer memcheck / racecheck (PyTorch arrays, float32 and bfloat16)"
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest -q -p no:cacheprovider -m cuda \
      tests/test_cuda.py -k "torch and (f32 or bf16) and not 64bit and not reproducible" \
      >"$out/sanitizer_$tool.log" 2>&1
    echo "$tool exit $? ($(grep 'ERROR SUMMARY' "$out/sanitizer_$tool.log" | sort | uniq -c | tr '\n' ' '))"
  done
fi
if [ "$phase" = all ] || [ "$phase" = bench ]; then
  [ "${2:-}" = quick ] && q=--quick || q=
  echo "::: benchmark"
  python3 bench/cuda/bench_cuda.py $q --json "$out/bench_cuda.json"
fi
