#!/usr/bin/env bash
# The main job: the per-device report. Builds the `release` preset, then on this machine runs
#   1. validation: gradcomp-validate, every implementation against the oracles (smoke tier),
#   2. a kernel benchmark: gradcomp-bench against the copy bandwidth measured in the same run,
#   3. a collective sweep: gradcomp-coll-perf with 2 MPI ranks, compressed vs dense allreduce,
#   4. a short training run: ResNet-8 on Fashion-MNIST, 2 ranks, sgdm + 3 compressed presets,
#   5. where a GPU is present: gradcomp-cuda-bench (cuda:native against the device copy bandwidth),
# and turns their JSON into reports/out/<device>/index.md with figures (reports/make_report.py).
# Usage: scripts/run-main.sh [--full] [--out DIR] [--help]
#   --full     the full version: CI validation tier, sizes up to 2^26, collectives up to 256 MiB,
#              ResNet-20 on 20,000 images for 5 epochs (about an hour on 2 cores)
#   --out DIR  where the JSON and the report go (default: reports/out)
# Environment: GRADCOMP_JOBS (default: nproc), GRADCOMP_SKIP_DEPS=1 (do not touch apt),
#              GRADCOMP_RANKS (MPI ranks for collectives and training, default 2).
set -euo pipefail

FULL=0
OUT_ROOT=""
while (($#)); do
  case "$1" in
    --full) FULL=1 ;;
    --out)
      OUT_ROOT=${2:?--out needs a directory}
      shift
      ;;
    -h | --help)
      sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $1 (try --help)" >&2
      exit 2
      ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup-deps.sh
source "$ROOT/scripts/setup-deps.sh"
cd "$ROOT"

t_start=$SECONDS
gc_ensure_packages "${GRADCOMP_PACKAGES[@]}"
JOBS="${GRADCOMP_JOBS:-$(gc_jobs)}"
RANKS="${GRADCOMP_RANKS:-2}"
PRESET=release
BUILD="$ROOT/build/$PRESET"
OUT_ROOT="${OUT_ROOT:-$ROOT/reports/out}"
RUN_DIR="$OUT_ROOT/json"  # this run's JSON; the report reads only these files
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
PY=/usr/bin/python3  # Debian's matplotlib is visible to this interpreter only
MPIRUN=(mpiexec -n "$RANKS" --allow-run-as-root --oversubscribe --bind-to none)

gc_log "cmake --preset $PRESET"
cmake --preset "$PRESET" >/dev/null
gc_log "cmake --build --preset $PRESET -j $JOBS"
cmake --build --preset "$PRESET" -j "$JOBS"

declare -a STEPS=()
rc=0
step() {  # step NAME COMMAND...: runs a step, records PASS/FAIL and its time, never aborts
  local name=$1 t0=$SECONDS
  shift
  gc_log "$name: $*"
  if "$@"; then
    STEPS+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    STEPS+=("FAIL  $name ($((SECONDS - t0)) s)")
    rc=1
  fi
}
need() {  # need BINARY: fails the step with a clear message when a part was not built
  [[ -x "$1" ]] || {
    echo "not built: $1 (a dependency is missing; see the cmake summary above)" >&2
    return 1
  }
}

VALIDATE="$BUILD/validation/driver/gradcomp-validate"
BENCH="$BUILD/bench/gradcomp-bench"
COLL="$BUILD/bench/coll/gradcomp-coll-perf"
TRAIN="$BUILD/bench/train/gradcomp-train"

if ((FULL)); then
  TIER=ci
  CUDA_N=67108864
  BENCH_ARGS=(--sizes=2^10,2^14,2^18,2^20,2^22,2^24,2^26 --benchmark_min_time=0.2)
  COLL_ARGS=(-b 4K -e 256M -f 4 -n 10 -w 3 -c 1)
  TRAIN_ARGS=(--model resnet20 --train-subset 20000 --epochs 5 --batch 32 --lr 0.05
    --lr-schedule cosine --warmup-epochs 0.5)
else
  TIER=smoke
  CUDA_N=16777216
  BENCH_ARGS=(--sizes=2^14,2^18,2^20 --impls=kk:serial,ref:any --benchmark_min_time=0.02)
  COLL_ARGS=(-b 64K -e 16M -f 4 -n 5 -w 2 -c 1)
  TRAIN_ARGS=(--model resnet8 --train-subset 4096 --test-subset 2000 --epochs 3 --batch 32
    --lr 0.05 --lr-schedule cosine --warmup-epochs 0.5)
fi

run_validate() {
  need "$VALIDATE" || return 1
  local impl ok=0
  for impl in ref:any kk:serial; do
    "$VALIDATE" --impl="$impl" --json="$RUN_DIR/validate-${impl%%:*}.json" \
      --batch="$ROOT/validation/cases/test_all_$TIER" >"$RUN_DIR/validate-${impl%%:*}.log" || ok=1
    tail -n 3 "$RUN_DIR/validate-${impl%%:*}.log"
  done
  return "$ok"
}
run_bench() {
  need "$BENCH" || return 1
  "$BENCH" "${BENCH_ARGS[@]}" --benchmark_out="$RUN_DIR/bench.json" \
    --benchmark_out_format=json >"$RUN_DIR/bench.log"
}
run_coll() {
  need "$COLL" || return 1
  "${MPIRUN[@]}" "$COLL" "${COLL_ARGS[@]}" --compressor=topk:density=0.01 \
    --compressor=randk:density=0.01 --compressor=sign --compressor=blocksign \
    --json="$RUN_DIR/coll.json" | tail -n 12
}
run_train() {
  need "$TRAIN" || return 1
  local name preset ok=0
  for preset in "sgdm:momentum=0.9" "ef-sgd:momentum=0.9" "dgc:density=0.01,warmup=0.25/0.0625" \
    "powersgd"; do
    name=${preset%%:*}
    "${MPIRUN[@]}" "$TRAIN" "${TRAIN_ARGS[@]}" --preset "$preset" --seed 1 --progress lines \
      --json="$RUN_DIR/train-$name.json" || ok=1
  done
  return "$ok"
}
# GPU rows for the report where a GPU is present (CUDA build + device); a skip otherwise.
run_cuda_bench() {
  local cb="$BUILD/bench/cuda/gradcomp-cuda-bench" code=0
  if [[ ! -x "$cb" ]]; then
    echo "CUDA code not built: no GPU kernel rows"
    return 0
  fi
  "$cb" "--n=$CUDA_N" --reps=10 --json="$RUN_DIR/cuda-bench.json" >"$RUN_DIR/cuda-bench.log" ||
    code=$?
  if ((code == 77)); then
    cat "$RUN_DIR/cuda-bench.log"
    return 0
  fi
  tail -n 4 "$RUN_DIR/cuda-bench.log"
  return "$code"
}
make_report() {
  "$PY" "$ROOT/reports/make_report.py" --in "$RUN_DIR" --out "$OUT_ROOT"
}

step "validation ($TIER tier)" run_validate
step "kernel benchmark" run_bench
step "collectives ($RANKS ranks)" run_coll
step "training (ResNet, $RANKS ranks)" run_train
step "GPU kernel benchmark (where a GPU is present)" run_cuda_bench
step "report" make_report

echo
echo "==================== gradcomp main job ===================="
printf '%s\n' "${STEPS[@]}"
REPORT=$(ls -t "$OUT_ROOT"/*/index.md 2>/dev/null | head -n 1 || true)
if [[ -n "$REPORT" ]]; then
  echo "report: $REPORT"
fi
if ((rc == 0)); then
  echo "RESULT: PASS  ($((SECONDS - t_start)) s)"
else
  echo "RESULT: FAIL  ($((SECONDS - t_start)) s)"
fi
exit "$rc"
