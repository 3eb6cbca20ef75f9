#!/usr/bin/env bash
# Everything a lent GPU machine is needed for, in one device call (device tool: `run` with this
# script, timeout ~420 s): build normkit there with the CUDA kernels (sm_90), the GPU tests,
# compute-sanitizer memcheck and racecheck on a subset, the kernel benchmark against PyTorch eager,
# the host cost per call, Nsight Compute on the row-norm kernels. Logs and JSON go to $OUT; the
# end of each log is printed.
#   bash bench/cuda/gpu_session.sh [all|test|sanitize|bench|ncu]...
set -uo pipefail
phases=${*:-all}
has() { [[ " $phases " == *" all "* || " $phases " == *" $1 "* ]]; }
out=${OUT:-/tmp/nk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false CMAKE_BUILD_PARALLEL_LEVEL=16
t0=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
echo "::: build (sm_90 only, to save time)"
python3 -m pip install -q --no-build-isolation --no-deps . -Cbuild-dir=build/gpu \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
rm -f "$out/build.log"  # (the device tool brings back at most 8 files)
echo "built in $((SECONDS - t0)) s"
(cd /tmp && python3 -c "import normkit as nk; nk.show_config()")
if has test; then
  echo "::: GPU tests"
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py --maxfail=20 2>&1 \
    | tee "$out/test_cuda.log" | grep -E "FAILED|Error|passed|failed" | tail -25
  echo "tests done at $((SECONDS - t0)) s"
fi
if has bench; then
  echo "::: benchmark (CUDA events, L2 flushed, medians)"
  timeout 150 python3 bench/cuda/bench_cuda.py --reps 30 --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.txt"
  echo "::: host cost per call"
  timeout 60 python3 bench/cuda/host_cost.py --json "$out/host_cost.json" 2>&1
  echo "bench done at $((SECONDS - t0)) s"
fi
if has sanitize; then
  echo "::: compute-sanitizer memcheck / racecheck (PyTorch arrays, float32 and bfloat16, small cases)"
  for tool in memcheck racecheck; do
    timeout 75 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m pytest -q -p no:cacheprovider -m cuda \
      tests/test_cuda.py -k "torch and (f32 or bf16) and not 64bit and not reproducible and not 40000 and not 70001" \
      >"$out/sanitizer_$tool.log" 2>&1
    echo "$tool exit $? ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|passed|failed' "$out/sanitizer_$tool.log" | sort | uniq -c | tr '\n' ' '))"
  done
fi
if has ncu; then
  echo "::: Nsight Compute (row norms bf16, channel norms f32 256x64x56x56)"
  timeout 120 ncu --clock-control none -k regex:"fwd_cached|bwd_cached|col_reduce|nsc_stats|ncs_stats|bn_fin|apply_kernel" \
    -c 24 python3 - <<'PY' >"$out/ncu.txt" 2>&1
import torch, normkit as nk
bf = torch.bfloat16
for n in (1024, 4096):
    x = torch.randn(16384, n, device="cuda", dtype=bf); w = torch.randn(n, device="cuda", dtype=bf)
    y, m, r = nk.layer_norm_forward(x, w, w); nk.rms_norm(x, w); nk.layer_norm_backward(x, x, m, r, w)
x = torch.randn(256, 64, 56, 56, device="cuda")
xl = x.permute(0, 2, 3, 1).contiguous()
w = torch.ones(64, device="cuda")
y, m, r = nk.batch_norm_forward(xl, w, w, training=True, channel_axis=-1)
nk.batch_norm_backward(xl, xl, m, r, w, channel_axis=-1)
y, gm, gr = nk.group_norm_forward(x, 32, w, w)
nk.group_norm_backward(x, x, gm, gr, w, num_groups=32)
torch.cuda.synchronize()
PY
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Registers Per|Achieved Occupancy" "$out/ncu.txt" | head -120
fi
if has test; then
  echo "::: GPU tests (again, last): $(tail -1 "$out/test_cuda.log")"
  grep -E "^FAILED|^ERROR" "$out/test_cuda.log" | head -20
fi
echo "::: done in $((SECONDS - t0)) s"
