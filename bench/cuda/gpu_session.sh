#!/usr/bin/env bash
# Everything a lent GPU machine is needed for, in one call (device tool: `run` with this script):
# build normkit there with the CUDA kernels, run the GPU tests, compute-sanitizer (memcheck and
# racecheck) on a subset, and the GPU benchmark. Logs and JSON go to $OUT.
#   bash bench/cuda/gpu_session.sh [quick]
set -uo pipefail
out=${OUT:-/tmp/nk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NORMKIT_CUDA_UNVALIDATED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "::: build (sm_90 only, to save time)"
python3 -m pip install -q --no-build-isolation --no-deps . -Cbuild-dir=/tmp/nk-build \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
cd /tmp && python3 -c "import normkit as nk; nk.show_config()" && cd - >/dev/null
echo "::: GPU tests"
python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" | tail -25
echo "::: compute-sanitizer memcheck / racecheck (float32 and bfloat16, every kernel path)"
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest -q -p no:cacheprovider -m cuda \
    tests/test_cuda.py -k "torch and (f32 or bf16) and not 64bit and not reproducible" >"$out/sanitizer_$tool.log" 2>&1
  echo "$tool exit $? ($(grep -c 'ERROR SUMMARY' "$out/sanitizer_$tool.log") summaries; $(grep 'ERROR SUMMARY' "$out/sanitizer_$tool.log" | sort | uniq -c | tr '\n' ' '))"
done
[ "${1:-}" = quick ] && q=--quick || q=
echo "::: benchmark"
python3 bench/cuda/bench_cuda.py $q --json "$out/bench_cuda.json"
