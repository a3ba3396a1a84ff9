#!/usr/bin/env bash
# The main job. For now: builds the `release` preset, runs the validation suite (the reference
# tests, label `reference`) and prints its summary, then prints the compressor survey table of
# `gradcomp survey` (every compressor: ratio, error). Later issues turn it into the per-device
# report (validation + benchmarks + collectives + plots).
# Usage: scripts/run-main.sh [--full] [--help]
#   --full   reserved for the full per-device report (a later issue); today it runs the same job.
# Environment: GRADCOMP_JOBS (default: nproc), GRADCOMP_SKIP_DEPS=1 (do not touch apt).
set -euo pipefail

FULL=0
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    -h | --help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup-deps.sh
source "$ROOT/scripts/setup-deps.sh"
cd "$ROOT"

t_start=$SECONDS
gc_ensure_packages "${GRADCOMP_PACKAGES[@]}"
JOBS="${GRADCOMP_JOBS:-$(gc_jobs)}"
PRESET=release
BUILD="$ROOT/build/$PRESET"

if ((FULL)); then
  gc_log "--full: the full per-device report arrives with a later issue; running the current job"
fi

gc_log "cmake --preset $PRESET"
cmake --preset "$PRESET"
gc_log "cmake --build --preset $PRESET -j $JOBS"
cmake --build --preset "$PRESET" -j "$JOBS"

rc=0
gc_log "validation: ctest --preset $PRESET -L reference -j $JOBS"
ctest --preset "$PRESET" -L reference -j "$JOBS" || rc=$?

echo
echo "==================== compressor survey ===================="
SURVEY="$BUILD/tools/gradcomp"
if [[ -x "$SURVEY" ]]; then
  "$SURVEY" survey || rc=$?
else
  echo "(not available: $SURVEY was not built; the gradcomp CLI is not in this checkout yet)"
fi

echo
if ((rc == 0)); then
  echo "RESULT: PASS  ($((SECONDS - t_start)) s)"
else
  echo "RESULT: FAIL  ($((SECONDS - t_start)) s)"
fi
exit "$rc"
