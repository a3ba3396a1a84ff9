#!/usr/bin/env bash
# The convergence benchmark of docs/convergence.md: every preset of the seed papers trains the same
# ResNet on Fashion-MNIST with P ranks, the same seed, epochs and learning-rate schedule, then the
# same for sgdm, dgc and gmc on the label-skewed split. Writes one gradcomp-train JSON per run.
#
# Usage: scripts/convergence.sh TRAIN_BINARY OUT_DIR [extra gradcomp-train options]
# Environment: RANKS (4), MODEL (resnet8), EPOCHS (5), TRAIN (20000), BATCH (32), LR (0.05).
set -euo pipefail
BIN=${1:?usage: scripts/convergence.sh TRAIN_BINARY OUT_DIR}
OUT=${2:?usage: scripts/convergence.sh TRAIN_BINARY OUT_DIR}
shift 2
RANKS=${RANKS:-4} MODEL=${MODEL:-resnet8} EPOCHS=${EPOCHS:-5} TRAIN=${TRAIN:-20000}
BATCH=${BATCH:-32} LR=${LR:-0.05}
mkdir -p "$OUT"
common=(--model "$MODEL" --epochs "$EPOCHS" --train-subset "$TRAIN" --batch "$BATCH" --lr "$LR"
  --lr-schedule cosine --warmup-epochs 0.5 --seed 1 --progress lines "$@")
run() {  # run NAME SPLIT PRESET
  local name=$1 split=$2 preset=$3
  [[ -s "$OUT/$name.json" ]] && { echo "skip $name (done)"; return 0; }
  echo "=== $name: $preset ($split) $(date -u +%H:%M:%S)"
  mpiexec -n "$RANKS" --allow-run-as-root --oversubscribe --bind-to none \
    "$BIN" "${common[@]}" --split "$split" --preset "$preset" --json "$OUT/$name.json.tmp" &&
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}
run sgdm iid "sgdm:momentum=0.9"
run ef-sgd iid "ef-sgd:momentum=0.9"
run signum-mv iid "signum-mv"
run dist-ef-sgdm iid "dist-ef-sgdm"
run dgc iid "dgc:density=0.001"
run qsparse-local iid "qsparse-local"
run pqasgd iid "pqasgd"
run cser iid "cser"
run gmc iid "gmc"
run gmc+ iid "gmc+"
run powersgd iid "powersgd"
run sgdm-noniid noniid "sgdm:momentum=0.9"
run dgc-noniid noniid "dgc:density=0.001"
run gmc-noniid noniid "gmc"
