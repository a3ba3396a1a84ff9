#!/usr/bin/env bash
# Runs the GPU suites under NVIDIA compute-sanitizer: memcheck (out-of-bounds and misaligned
# accesses, leaks) and racecheck (shared-memory races), on a machine with a CUDA device.
#
#   scripts/gpu-sanitize.sh [build-dir]         (default: build-cuda)
#
# The build dir must be configured with CUDA (GRADCOMP_ENABLE_CUDA=ON; docs/cuda.md). Exit code:
# 0 all clean, 1 a tool reported errors or a suite failed, 77 no CUDA device (nothing ran).
# The NCCL test runs under memcheck only (racecheck does not follow NCCL's kernels usefully) with
# two ranks; set GRADCOMP_SANITIZE_NCCL=0 to leave it out.
set -euo pipefail
build=${1:-build-cuda}
cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
unit="$build/validation/unit_cuda/gradcomp_unit_cuda"
nccl="$build/validation/unit_cuda/gradcomp_nccl_comm_test"
bench="$build/bench/cuda/gradcomp-cuda-bench"
[[ -x "$unit" ]] || { echo "gpu-sanitize: $unit not built (cmake --build $build --target gradcomp_unit_cuda)" >&2; exit 1; }
set +e
"$unit" --probe
probe=$?
set -e
if [[ $probe -eq 77 ]]; then exit 77; fi
[[ $probe -eq 0 ]] || exit 1
[[ -x "$cs" ]] || { echo "gpu-sanitize: compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2; exit 1; }

status=0
run() {  # run <label> <command...>
  echo "== $1"
  shift
  if ! "$@"; then echo "== FAILED: $*"; status=1; fi
}
# Smaller sizes keep racecheck (slow: it instruments every shared access) within minutes.
run "memcheck unit_cuda" "$cs" --tool memcheck --leak-check full --error-exitcode 1 "$unit"
run "racecheck unit_cuda" "$cs" --tool racecheck --error-exitcode 1 "$unit" \
    --gtest_filter='All/CudaVsRef.*:CudaDeviceApi.*:CudaBadInput.*'
run "initcheck unit_cuda (device API)" "$cs" --tool initcheck --error-exitcode 1 "$unit" \
    --gtest_filter='CudaDeviceApi.*'
if [[ -x "$bench" ]]; then
  run "memcheck bench" "$cs" --tool memcheck --error-exitcode 1 "$bench" --n=100003 --reps=1
fi
if [[ -x "$nccl" && "${GRADCOMP_SANITIZE_NCCL:-1}" != 0 ]]; then
  run "memcheck nccl_comm (2 ranks)" mpiexec -n 2 --allow-run-as-root --oversubscribe --bind-to none \
      "$cs" --tool memcheck --error-exitcode 1 "$nccl"
fi
exit $status
