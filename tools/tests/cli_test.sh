#!/bin/sh
# CLI tests of `gradcomp`, one case per invocation:
#   cli_test.sh CASE GRADCOMP NPY_FIXTURE WORKDIR
# Exit 0 pass, 1 fail, 77 skipped (numpy_crosscheck without NumPy).
set -u
CASE=$1
GC=$2
FX=$3
WORK=$4
# fail, run, expect, expect_not; starts WORK afresh and enters it.
. "$(dirname "$0")/test_lib.sh"

same() {
  if ! "$FX" same "$1" "$2"; then fail "$1 and $2 differ"; fi
}

case "$CASE" in
help)
  for sub in list compress decompress roundtrip survey help; do
    run 0 "$GC" "$sub" --help
    expect out.txt "usage: gradcomp $sub"
    run 0 "$GC" "$sub" -h
    expect out.txt "usage: gradcomp $sub"
    run 0 "$GC" help "$sub"
    expect out.txt "usage: gradcomp $sub"
  done
  run 0 "$GC" --help
  expect out.txt "usage: gradcomp <command>"
  run 0 "$GC" help
  expect out.txt "usage: gradcomp <command>"
  # --help wins over missing or bad arguments.
  run 0 "$GC" compress --bogus --help
  expect out.txt "usage: gradcomp compress"
  ;;

unknown_command)
  run 2 "$GC" frobnicate
  expect err.txt "unknown command 'frobnicate'"
  expect err.txt "usage: gradcomp <command>"
  run 2 "$GC"
  run 2 "$GC" help frobnicate
  ;;

usage_errors)
  "$FX" normal x.npy 16 || fail "fixture"
  run 2 "$GC" roundtrip identity --input x.npy --bogus
  expect err.txt "unknown option --bogus"
  expect err.txt "usage: gradcomp roundtrip"
  run 2 "$GC" roundtrip identity
  expect err.txt "missing --input"
  run 2 "$GC" roundtrip --input x.npy
  expect err.txt "missing CASE"
  run 2 "$GC" compress identity --input x.npy
  expect err.txt "missing --payload"
  run 2 "$GC" compress identity --input
  expect err.txt "needs a value"
  run 2 "$GC" decompress identity --payload p.bin
  expect err.txt "missing --output"
  run 2 "$GC" roundtrip identity --input x.npy --step -1
  expect err.txt "--step must be an integer"
  run 2 "$GC" survey --n many
  run 2 "$GC" list topk sign
  ;;

list)
  run 0 "$GC" list
  for name in identity fp16 bf16 sign blocksign qsgd terngrad topk dgc randk threshold grbs rbgs \
              qsgd_topk qsgd_randk signtopk powersgd; do
    expect out.txt "$name: "
  done
  expect out.txt "density"
  expect out.txt "common options"
  expect out.txt "nonfinite"
  run 0 "$GC" list topk
  expect out.txt "topk: "
  expect out.txt "density"
  expect_not out.txt "powersgd"
  run 1 "$GC" list nosuch
  expect err.txt "gradcomp: invalid argument: unknown compressor 'nosuch'"
  ;;

roundtrip_identity)
  "$FX" normal x.npy 8x16 || fail "fixture"
  run 0 "$GC" roundtrip identity --input x.npy --output y.npy
  expect out.txt "case            identity:n=128,seed=0,nonfinite=error"
  expect out.txt "relative error  0"
  expect out.txt "max abs error   0"
  expect out.txt "payload bytes   544"
  # identity is exact and the output keeps the input's shape: the files are identical.
  same x.npy y.npy
  run 0 "$GC" roundtrip identity --input x.npy --json
  expect out.txt '"relative_error": 0,'
  expect out.txt '"payload_bytes": 544,'
  expect out.txt '"shape": [8, 16]'
  # A zero input has no relative error.
  "$FX" zeros z.npy 7 || fail "fixture"
  run 0 "$GC" roundtrip identity --input z.npy
  expect out.txt "relative error  n/a"
  run 0 "$GC" roundtrip identity --input z.npy --json
  expect out.txt '"relative_error": null'
  # 0-d and empty arrays.
  "$FX" normal s.npy "()" || fail "fixture"
  run 0 "$GC" roundtrip identity --input s.npy --output s2.npy
  same s.npy s2.npy
  "$FX" normal e.npy 0x3 || fail "fixture"
  run 0 "$GC" roundtrip identity --input e.npy --output e2.npy
  same e.npy e2.npy
  ;;

compress_decompress_matches_roundtrip)
  "$FX" normal x.npy 8x16 7 || fail "fixture"
  for c in identity fp16 sign "topk:density=0.1" "topk:k=5,n=128"; do
    run 0 "$GC" roundtrip "$c" --input x.npy --output rt.npy --step 3 --tensor-id 2
    run 0 "$GC" compress "$c" --input x.npy --payload p.bin --step 3 --tensor-id 2
    run 0 "$GC" decompress "$c" --payload p.bin --output d.npy --shape 8x16 --step 3 --tensor-id 2
    same rt.npy d.npy
  done
  # 1-D input: decompress without --shape gives (n,) which is the input's shape.
  "$FX" normal v.npy 100 || fail "fixture"
  run 0 "$GC" roundtrip "topk:density=0.05" --input v.npy --output rt.npy
  run 0 "$GC" compress "topk:density=0.05" --input v.npy --payload p.bin
  run 0 "$GC" decompress "topk:density=0.05" --payload p.bin --output d.npy
  same rt.npy d.npy
  # The context must match the compress call.
  run 0 "$GC" compress sign --input v.npy --payload p.bin --step 4
  run 1 "$GC" decompress sign --payload p.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  expect err.txt "step"
  ;;

shape_and_n)
  "$FX" normal x.npy 8x16 || fail "fixture"
  run 1 "$GC" roundtrip "topk:n=100" --input x.npy
  expect err.txt "gradcomp: invalid argument"
  expect err.txt "CASE 'topk:n=100' says n = 100 but x.npy holds n = 128"
  run 0 "$GC" roundtrip "topk:n=128" --input x.npy
  # Compressors that use the layout get the array's shape; others do not.
  run 0 "$GC" roundtrip identity --input x.npy --json
  expect_not out.txt "shapes="
  # blocksign may still be pending; only check the case string when it runs.
  "$GC" roundtrip blocksign --input x.npy --json >bs.txt 2>bs_err.txt
  if [ $? -eq 0 ]; then expect bs.txt "shapes=8x16"; else expect bs_err.txt "gradcomp: "; fi
  run 1 "$GC" decompress identity --payload p0.bin --output d.npy
  expect err.txt "gradcomp: I/O error"
  run 0 "$GC" compress identity --input x.npy --payload p.bin
  run 1 "$GC" decompress identity --payload p.bin --output d.npy --shape 5x5
  expect err.txt "--shape 5x5 holds 25 elements"
  run 1 "$GC" decompress "identity:n=7" --payload p.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  run 1 "$GC" decompress sign --payload p.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  run 1 "$GC" roundtrip "topk:density=2" --input x.npy
  expect err.txt "gradcomp: invalid argument: topk: density"
  ;;

truncated_payload)
  "$FX" normal x.npy 64 || fail "fixture"
  run 0 "$GC" compress "topk:density=0.25" --input x.npy --payload p.bin
  size=$(wc -c <p.bin)
  head -c $((size - 1)) p.bin >t.bin
  run 1 "$GC" decompress "topk:density=0.25" --payload t.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  run 1 "$GC" decompress "topk:density=0.25,n=64" --payload t.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  head -c 10 p.bin >h.bin
  run 1 "$GC" decompress "topk:density=0.25" --payload h.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  run 1 "$GC" decompress "topk:density=0.25,n=64" --payload h.bin --output d.npy
  expect err.txt "gradcomp: corrupt payload"
  if [ -e d.npy ]; then fail "d.npy written despite the error"; fi
  ;;

malformed_npy)
  for kind in magic version header-length dict missing-key dtype big-endian fortran \
              negative-shape truncated trailing; do
    "$FX" malformed "$kind" "$kind.npy" || fail "fixture $kind"
    run 1 "$GC" roundtrip identity --input "$kind.npy"
    expect err.txt "gradcomp: invalid argument: $kind.npy: "
    run 1 "$GC" compress identity --input "$kind.npy" --payload p.bin
  done
  run 1 "$GC" roundtrip identity --input dtype.npy
  expect err.txt "only float32"
  run 1 "$GC" roundtrip identity --input no-such-file.npy
  expect err.txt "gradcomp: I/O error: no-such-file.npy"
  ;;

survey)
  "$GC" survey --n 1000 --seed 3 --json >out.txt 2>err.txt
  rc=$?
  expect out.txt '"n": 1000, "seed": 3'
  expect out.txt '{"name": "identity", "case": "identity:n=1000,seed=0,nonfinite=error", "ok": true, "payload_bytes": 4032, "payload_bound": 4032, "ratio": 0.9920634920634921, "relative_error": 0,'
  expect out.txt '"name": "powersgd"'
  "$GC" survey --n 1000 --seed 3 --json >out.txt 2>err.txt
  expect out.txt '"name": "topk", "case": "topk:n=1000,seed=0,density=0.001,nonfinite=error", "ok": true, "payload_bytes": 40, "payload_bound": 40, "ratio": 100,'
  failed=$(sed -n 's/.*"failed": \([0-9]*\).*/\1/p' out.txt)
  if [ "$failed" = "0" ]; then want=0; else want=1; fi
  if [ "$rc" -ne "$want" ]; then fail "survey exited $rc with $failed failures"; fi
  "$GC" survey --n 1000 >table.txt 2>err.txt
  expect table.txt "compressor"
  expect table.txt "identity:n=1000,seed=0,nonfinite=error"
  "$GC" survey --n 1000 --markdown >md.txt 2>err.txt
  expect md.txt "| compressor |"
  run 2 "$GC" survey --json --markdown
  ;;

numpy_crosscheck)
  # Optional: only when some python3 on PATH (or /usr/bin/python3) has NumPy.
  PY=""
  for p in python3 /usr/bin/python3; do
    if "$p" -c "import numpy" >/dev/null 2>&1; then PY=$p; break; fi
  done
  if [ -z "$PY" ]; then
    echo "SKIP: no python3 with numpy" >&2
    exit 77
  fi
  "$FX" normal x.npy 3x5 || fail "fixture"
  "$PY" - <<'EOF' || fail "numpy cannot read our file or numpy's file"
import numpy as np
a = np.load("x.npy")
assert a.dtype == np.float32 and a.shape == (3, 5), (a.dtype, a.shape)
np.save("n.npy", (np.arange(24, dtype=np.float32) - 3.5).reshape(2, 3, 4))
np.save("s.npy", np.float32(2.5))
np.save("e.npy", np.zeros((0, 4), np.float32))
np.save("f8.npy", np.zeros(3))
np.save("fo.npy", np.asfortranarray(np.ones((2, 3), np.float32)))
EOF
  for f in n s e; do
    run 0 "$GC" roundtrip identity --input $f.npy --output $f.out.npy
  done
  "$PY" - <<'EOF' || fail "numpy reads our outputs differently"
import numpy as np
for f in "nse":
    a, b = np.load(f + ".npy"), np.load(f + ".out.npy")
    assert b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b), f
EOF
  run 1 "$GC" roundtrip identity --input f8.npy
  expect err.txt "float64"
  run 1 "$GC" roundtrip identity --input fo.npy
  expect err.txt "fortran_order"
  ;;

*)
  echo "unknown test case $CASE" >&2
  exit 1
  ;;
esac
exit $FAILED
