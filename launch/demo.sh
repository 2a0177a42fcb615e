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

step "4. prediction on $NP ranks for a 64-atom cell with 2 vacancies (8x the training cells) -> $OUT/pred_big.h5"
# The last structure of step 1 (a Ge8 snapshot), repeated 2x2x2, two atoms removed.
mpirun -n "$NP" hpcdens predict "$OUT/model.pt" "$OUT/structures.extxyz" --supercell 2 2 2 \
    --vacancies 2 --out "$OUT/pred_big.h5" --overwrite
hpcdens export "$OUT/pred_big.h5" --cube "$OUT/pred_big.cube" --overwrite

step "5. Harris-Foulkes energy of a predicted density against its DFT label"
mpirun -n "$NP" hpcdens predict "$OUT/model.pt" "$OUT/structures.extxyz" --out "$OUT/pred.h5" --overwrite
hpcdens energy "$OUT/pred.h5" --config "$INPUT" --reference "$OUT/train.h5" --key Si0_Ge1/s001 \
    --json "$OUT/energy.json" --overwrite

step "6. Bayesian active learning on $NP ranks: 2 rounds from the pure elements -> $OUT/learn/"
mpirun -n "$NP" hpcdens learn "$INPUT" --overwrite

step "done"
echo "files: $OUT/ (structures.extxyz, train.h5, model.pt, pred_big.h5, pred_big.cube, pred.h5,"
echo "       energy.json, learn/ with state.json, the round table and plots)"
