#!/usr/bin/env bash
# The reproduction study of docs/reproduction.md: Bayesian active learning vs the tessellation
# (T1, T2, T4) and random baselines over the SiGeSn ternary, on the embedded PySCF backend with
# 8-atom training cells (inputs/reproduction/), compared on 45 test compositions and on four
# generalisation cells of 64 atoms (larger cell, vacancy, di-vacancy, checkerboard).
# Everything lands in runs/reproduction/. Started again, every step resumes: finished DFT labels,
# trained models and evaluations are kept. About an hour on 2 cores ($HPCDENS_RANKS, default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction
OUT=runs/reproduction
NP="${HPCDENS_RANKS:-2}"
STRATEGIES=(bayesian tessellation random)
CASES=(large vacancy divacancy checkerboard)
mkdir -p "$OUT"

step() { printf '\n=== %s ===\n' "$*"; }

step "1. test set: the 45 compositions k/8 of the ternary, 8-atom cells, PySCF -> $OUT/test.h5"
mpirun -n "$NP" hpcdens generate "$IN/sigesn-test.toml" --out "$OUT/test.h5" --extend --no-progress

step "2. generalisation cells, 64 atoms, PySCF -> $OUT/{$(IFS=,; echo "${CASES[*]}")}.h5"
for case in "${CASES[@]}"; do
    mpirun -n "$NP" hpcdens generate "$IN/sigesn-$case.toml" --out "$OUT/$case.h5" --extend \
        --no-progress
done

step "3. active learning, three strategies -> $OUT/{$(IFS=,; echo "${STRATEGIES[*]}")}/"
for s in "${STRATEGIES[@]}"; do
    mpirun -n "$NP" hpcdens learn "$IN/sigesn-$s.toml" --out "$OUT/$s" --no-progress
done

step "4. learning curves on the test set: held-out compositions, then all 45"
LEARNED=()
for s in "${STRATEGIES[@]}"; do LEARNED+=("$OUT/$s"); done
mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${LEARNED[@]}" --config "$IN/sigesn-test.toml" \
    --out "$OUT/compare" --exclude-training
mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${LEARNED[@]}" --config "$IN/sigesn-test.toml" \
    --out "$OUT/compare"                       # the same evaluations, over all 45 compositions

step "5. generalisation: AL2 (bayesian, 6 compositions), random with 6, T4 (15) on the 64-atom cells"
for model in bayesian/round_02 random/round_02 tessellation/round_03; do
    mkdir -p "$OUT/generalisation/${model%%/*}"
    for case in "${CASES[@]}"; do
        mpirun -n "$NP" hpcdens evaluate "$OUT/$model/model.pt" "$OUT/$case.h5" \
            --config "$IN/sigesn-$case.toml" --out "$OUT/generalisation/${model%%/*}/$case" \
            --overwrite
    done
done

step "done"
echo "learning curves: $OUT/compare/ (compare_held_out.csv, learning_curves_held_out.png: the 30"
echo "                 held-out compositions; compare.csv, learning_curves.png: all 45)"
echo "generalisation:  $OUT/generalisation/<strategy>/<case>/evaluate.csv"
echo "per strategy:    $OUT/<strategy>/rounds.csv, scores.png, learning_curve.png"
