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

step "4. the rest of the pipeline"
python - <<'PY'
from hpcdens.cli import NOT_YET
if NOT_YET:
    print("Not in this version yet (each arrives with its issue):")
    for name, what in NOT_YET.items():
        print(f"  hpcdens {name:<9} {what}")
PY
