# Shared helpers of the CLI test drivers (cli_test.sh, simulate_test.sh); sourced, not run.
# The driver sets WORK before sourcing: this file starts it afresh and enters it.

rm -rf "$WORK"
mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1

FAILED=0
fail() {
  echo "FAIL: $*" >&2
  FAILED=1
}

# run EXPECTED_RC CMD...: runs CMD with stdout in out.txt and stderr in err.txt and checks
# the exit status.
run() {
  want=$1
  shift
  "$@" >out.txt 2>err.txt
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "'$*' exited $rc, expected $want"
    echo "--- stdout" >&2
    cat out.txt >&2
    echo "--- stderr" >&2
    cat err.txt >&2
  fi
}

# expect FILE TEXT: FILE contains TEXT (fixed string).
expect() {
  if ! grep -F -q -- "$2" "$1"; then
    fail "$1 does not contain '$2'"
    echo "--- $1" >&2
    cat "$1" >&2
  fi
}

# expect_not FILE TEXT: FILE does not contain TEXT (fixed string).
expect_not() {
  if grep -F -q -- "$2" "$1"; then
    fail "$1 contains '$2'"
  fi
}
