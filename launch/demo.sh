#!/usr/bin/env bash
# The main job end to end on the embedded PySCF backend with tiny cells (inputs/demo.toml):
# install (idempotent), then every stage of the pipeline that this version has, on
# $HPCDENS_DEMO_RANKS MPI ranks (default 2). Output goes to runs/demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
INPUT=inputs/demo.toml
OUT=runs/demo
NP="${HPCDENS_DEMO_RANKS:-2}"
mkdir -p "$OUT"

step() { printf '\n=== %s ===\n' "$*"; }

step "1. structures: compositions x snapshots -> $OUT/structures.extxyz"
hpcdens structures "$INPUT" --overwrite

step "2. DFT training set on $NP ranks (PySCF) -> $OUT/train.h5"
mpirun -n "$NP" hpcdens generate "$INPUT" --overwrite

step "3. Bayesian neural network on $NP ranks -> $OUT/model.pt"
mpirun -n "$NP" hpcdens train "$INPUT" --overwrite

step "4. Bayesian active learning on $NP ranks: 2 rounds from the pure elements -> $OUT/learn/"
mpirun -n "$NP" hpcdens learn "$INPUT" --overwrite

step "5. a 64-atom cell (8x the training cells, Si0.375Ge0.625, unseen): DFT label on $NP ranks"
mpirun -n "$NP" hpcdens generate inputs/demo-large.toml --out "$OUT/large.h5" --overwrite --no-progress

step "6. the last active-learning model on that cell: prediction on $NP ranks, Harris-Foulkes energy, error vs DFT"
MODEL="$(ls -d "$OUT"/learn/round_*/model.pt | tail -n 1)"
mpirun -n "$NP" hpcdens evaluate "$MODEL" "$OUT/large.h5" --config inputs/demo-large.toml \
    --out "$OUT/evaluate_large" --overwrite
hpcdens export "$OUT"/evaluate_large/predictions/*.h5 --cube "$OUT/large_predicted.cube" --overwrite

step "done"
echo "files under $OUT/:"
echo "  structures.extxyz, train.h5 (DFT labels), model.pt (+ .ckpt)      steps 1-3"
echo "  learn/: state.json (journal), rounds.csv, scores.png, learning_curve.png,"
echo "          round_NN/model.pt, train.h5                               step 4"
echo "  large.h5 (DFT label of the 64-atom cell)                          step 5"
echo "  evaluate_large/: evaluate.csv/json (energy error vs DFT), parity.png,"
echo "          predictions/*.h5; large_predicted.cube (VESTA, ASE)        step 6"
