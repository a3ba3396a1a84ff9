#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script and nothing else):
#   1. installs the missing Debian packages (scripts/setup-deps.sh),
#   2. `ci` preset: Release, -Wall -Wextra ... -Werror; build everything; ctest (all tests),
#   3. `asan` preset: AddressSanitizer + UBSan (-fno-sanitize-recover=all), -Werror; build;
#      ctest over the reference tests (label `reference`),
#   4. prints a PASS/FAIL line per step and exits non-zero if any step failed.
# Usage: scripts/run-tests.sh [--help]
# Environment: GRADCOMP_JOBS (default: nproc), GRADCOMP_SKIP_DEPS=1 (do not touch apt).
set -euo pipefail

case "${1:-}" in
  "") ;;
  -h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "unknown argument: $1 (try --help)" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup-deps.sh
source "$ROOT/scripts/setup-deps.sh"
cd "$ROOT"

t_start=$SECONDS
gc_ensure_packages "${GRADCOMP_PACKAGES[@]}"
JOBS="${GRADCOMP_JOBS:-$(gc_jobs)}"

declare -a SUMMARY=()
FAILED=0
# step NAME CMD...: runs CMD, records PASS/FAIL with its time; returns CMD's status.
step() {
  local name="$1" t0=$SECONDS rc=0
  shift
  gc_log "[$name] $*"
  "$@" || rc=$?
  if ((rc == 0)); then
    SUMMARY+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    SUMMARY+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)")
    FAILED=1
  fi
  return "$rc"
}
skip() { SUMMARY+=("SKIP  $1 (an earlier step of this preset failed)"); }

# A preset: configure, build, test; a failed step skips the rest of that preset only.
run_preset() {
  local p="$1"
  if ! step "$p: configure" cmake --preset "$p"; then
    skip "$p: build"
    skip "$p: test"
    return 0
  fi
  if ! step "$p: build" cmake --build --preset "$p" -j "$JOBS"; then
    skip "$p: test"
    return 0
  fi
  step "$p: test" ctest --preset "$p" -j "$JOBS" || true
}

run_preset ci     # Release + -Werror, every test
run_preset asan   # ASan + UBSan, reference tests (the asan test preset filters label 'reference')

echo
echo "==================== gradcomp test summary ===================="
printf '  %s\n' "${SUMMARY[@]}"
if ((FAILED)); then
  echo "RESULT: FAIL  ($((SECONDS - t_start)) s; logs above, build trees in build/ci and build/asan)"
  exit 1
fi
echo "RESULT: PASS  ($((SECONDS - t_start)) s)"
