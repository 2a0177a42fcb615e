#!/usr/bin/env bash
# Weak scaling of `hpcdens predict`: the cell grows with the rank count (about ATOMS atoms per
# rank). Writes OUT/weak.csv, OUT/weak.png (efficiency = points per rank per second against the
# 1-rank run, and phase timings) and prints a table.
#
#   bash launch/weak_scaling.sh [OUT]              (default OUT=runs/scaling)
#
# Environment (defaults in brackets):
#   RANKS ["1 2 4"]          rank counts; on the 2-core development box 4 ranks are
#                            OVERSUBSCRIBED (2 ranks per core): efficiency then halves at best
#   ATOMS ["64 216"]         atoms per rank (the cell is the most cubic repetition of the 8-atom
#                            cell with at least ATOMS x ranks atoms)
#   SPACING [0.6]  REPEATS [2]  MODEL  LAUNCH ["mpirun -n"]  CORES   as in strong_scaling.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
OUT="${1:-runs/scaling}"
RANKS="${RANKS:-1 2 4}"
ATOMS="${ATOMS:-64 216}"
SPACING="${SPACING:-0.6}"
REPEATS="${REPEATS:-2}"
LAUNCH="${LAUNCH:-mpirun -n}"
mkdir -p "$OUT"
MODEL="${MODEL:-$OUT/bench-model.pt}"
[[ -f "$MODEL" ]] || python -m hpcdens.bench_predict random-model "$MODEL" --m 20 --hidden 64 64 --n-samples 10
CSV="$OUT/weak.csv"
rm -f "$CSV"
echo "weak scaling on ${CORES:-$(nproc)} cores, ranks: $RANKS (more ranks than cores = oversubscribed)"
for ((rep = 1; rep <= REPEATS; rep++)); do
    for atoms in $ATOMS; do
        for n in $RANKS; do
            $LAUNCH "$n" python -m hpcdens.bench_predict predict "$MODEL" --atoms-per-rank "$atoms" \
                --spacing-bohr "$SPACING" --csv "$CSV" --label "${atoms}/rank"
        done
    done
done
python -m hpcdens.bench_predict plot "$CSV" "$OUT/weak.png" --kind weak --cores "${CORES:-$(nproc)}"
python -m hpcdens.bench_predict table "$CSV" --kind weak
echo "wrote $CSV and $OUT/weak.png"
