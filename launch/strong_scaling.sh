#!/usr/bin/env bash
# Strong scaling of `hpcdens predict`: fixed cells, growing rank counts. Writes OUT/strong.csv
# (one row per run), OUT/strong.png (speed-up vs 1 rank and phase timings) and prints a table.
#
#   bash launch/strong_scaling.sh [OUT]            (default OUT=runs/scaling)
#
# Environment (defaults in brackets):
#   RANKS ["1 2 4"]          rank counts; on the 2-core development box 4 ranks are
#                            OVERSUBSCRIBED (2 ranks per core), so expect no gain beyond 2
#   SUPERCELLS ["2x2x2 3x3x3 4x4x4"]  repetitions of the 8-atom SiGe diamond cell
#   SPACING [0.6]            grid spacing, Bohr
#   REPEATS [2]              runs per (cell, ranks); the plot and table use the fastest
#   MODEL                    model file; default: an untrained M=20, 64x64, N_s=10 model
#   LAUNCH ["mpirun -n"]     launcher followed by the rank count (srun: "srun -n")
#   CORES [$(nproc)]         cores available (caps the ideal line of the plot)
# Ratios are against the 1-rank run of the same script run: the box is shared and noisy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
OUT="${1:-runs/scaling}"
RANKS="${RANKS:-1 2 4}"
SUPERCELLS="${SUPERCELLS:-2x2x2 3x3x3 4x4x4}"
SPACING="${SPACING:-0.6}"
REPEATS="${REPEATS:-2}"
LAUNCH="${LAUNCH:-mpirun -n}"
mkdir -p "$OUT"
MODEL="${MODEL:-$OUT/bench-model.pt}"
[[ -f "$MODEL" ]] || python -m hpcdens.bench_predict random-model "$MODEL" --m 20 --hidden 64 64 --n-samples 10
CSV="$OUT/strong.csv"
rm -f "$CSV"
echo "strong scaling on ${CORES:-$(nproc)} cores, ranks: $RANKS (more ranks than cores = oversubscribed)"
for ((rep = 1; rep <= REPEATS; rep++)); do
    for cell in $SUPERCELLS; do
        for n in $RANKS; do
            # shellcheck disable=SC2086
            $LAUNCH "$n" python -m hpcdens.bench_predict predict "$MODEL" --supercell ${cell//x/ } \
                --spacing-bohr "$SPACING" --csv "$CSV" --label "$cell"
        done
    done
done
python -m hpcdens.bench_predict plot "$CSV" "$OUT/strong.png" --kind strong --cores "${CORES:-$(nproc)}"
python -m hpcdens.bench_predict table "$CSV" --kind strong
echo "wrote $CSV and $OUT/strong.png"
