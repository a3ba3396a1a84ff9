#!/bin/sh
# CLI tests of `gradcomp presets` and `gradcomp simulate`, one case per invocation:
#   simulate_test.sh CASE GRADCOMP WORKDIR
# Exit 0 pass, 1 fail.
set -u
CASE=$1
GC=$2
WORK=$3
# fail, run, expect, expect_not; starts WORK afresh and enters it.
. "$(dirname "$0")/test_lib.sh"

case "$CASE" in
presets)
  run 0 "$GC" presets
  for p in sgdm ef-sgd signum-mv signsgd-mv dist-ef-sgdm dgc qsparse-local pqasgd \
    sparse-param-avg cser cser-pl m-cser gmc gmc+ def-a powersgd; do
    expect out.txt "$p: "
  done
  run 0 "$GC" presets dgc
  expect out.txt "warmup"
  expect out.txt "0.25/0.0625/0.015625/0.004/0.001"
  run 1 "$GC" presets nosuch
  expect err.txt "unknown preset 'nosuch'"
  run 0 "$GC" presets --help
  expect out.txt "usage: gradcomp presets"
  run 0 "$GC" help simulate
  expect out.txt "usage: gradcomp simulate"
  ;;
simulate_json)
  # sgdm on least squares, W 4 x 16 (n = 64): every worker sends and receives 32 + 4*64 = 288 B
  # per step. The same command twice writes the same bytes.
  run 0 "$GC" simulate sgdm --workers 4 --steps 20 --lr 0.05 --json a.json
  expect out.txt "gradcomp simulate: sgdm:"
  expect out.txt "worker 0 sent 5760 B and received 5760 B in 20 steps"
  run 0 "$GC" simulate sgdm --workers 4 --steps 20 --lr 0.05 --json b.json --quiet
  cmp -s a.json b.json || fail "two identical runs wrote different JSON"
  expect a.json '"format":"gradcomp-trajectory-1"'
  expect a.json '"bytes_up":[288,288,288,288]'
  expect a.json '"bytes_down":[288,288,288,288]'
  expect a.json '"n":64'
  # Another seed, another trajectory.
  run 0 "$GC" simulate sgdm --workers 4 --steps 20 --lr 0.05 --seed 2 --json c.json
  if cmp -s a.json c.json; then fail "--seed did not change the trajectory"; fi
  # Parameters on request, to stdout.
  run 0 "$GC" simulate "dgc:density=0.1" --objective mlp --split noniid --batch 8 --steps 3 \
    --params --json -
  expect out.txt '"params":['
  expect out.txt '"final_params":['
  expect out.txt '"objective":"mlp"'
  if command -v python3 >/dev/null 2>&1; then
    python3 - a.json <<'PY' || fail "a.json: structure check"
import json, sys
d = json.load(open(sys.argv[1]))
steps = d["steps"]
assert len(steps) == 20, len(steps)
assert [s["step"] for s in steps] == list(range(20))
assert steps[-1]["loss"] < d["initial_loss"] / 10, (steps[-1]["loss"], d["initial_loss"])
assert d["final_checksum"] == steps[-1]["checksum"]
assert all(len(s["checksum"]) == 16 for s in steps)
PY
  fi
  ;;
simulate_usage)
  run 0 "$GC" simulate --help
  expect out.txt "usage: gradcomp simulate"
  run 2 "$GC" simulate
  expect err.txt "missing PRESET"
  run 2 "$GC" simulate sgdm --objective cubic
  expect err.txt "--objective must be ls, logistic or mlp"
  run 2 "$GC" simulate sgdm --split sorted
  expect err.txt "--split must be iid or noniid"
  run 2 "$GC" simulate sgdm --workers many
  expect err.txt "--workers must be an integer"
  run 2 "$GC" simulate sgdm --skew 2
  expect err.txt "--skew must be a number in [0, 1]"
  run 2 "$GC" simulate sgdm --milestones 10,x
  expect err.txt "--milestones must be step numbers"
  run 2 "$GC" simulate sgdm --bogus
  expect err.txt "unknown option --bogus"
  run 1 "$GC" simulate nosuch
  expect err.txt "gradcomp: invalid argument: unknown preset 'nosuch'"
  run 1 "$GC" simulate sgdm --workers 0
  expect err.txt "need at least one worker"
  run 1 "$GC" simulate sgdm --batch 65
  expect err.txt "larger than worker 0's shard of 64 samples"
  run 1 "$GC" simulate sgdm --steps 2 --json no/such/dir/t.json
  expect err.txt "cannot write"
  ;;
*)
  echo "unknown case $CASE" >&2
  exit 1
  ;;
esac
exit $FAILED
