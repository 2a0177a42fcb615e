#!/usr/bin/env bash
# The generalisation suite of Pathrudkar et al. (2025) for SiGeSn, for any trained model(s):
#   bash launch/generalisation_sigesn.sh [--cases "vacancy64 divacancy64 ..."] [--no-charge-correction]
#                                        TAG=MODEL.pt [TAG=MODEL.pt ...]
# 1. labels every test cell of inputs/reproduction64/suite/ with PySCF (once; resumable; the cells
#    side by side, one rank each):
#    216-atom thermal cells at compositions k/6, mono- and di-vacancy cells (64 and 216 sites),
#    the 8-bin checkerboards at three compositions (64 and 216 sites; the 216-site cells are cut
#    a/8 off the half-cell planes so that every block holds 27 sites, docs/structures.md) and the
#    27-bin equiatomic 216-site cell;
# 2. evaluates each model on each cell: energy error, density NRMSE, relative L1, and the
#    per-region errors around each vacancy and at each segregation boundary (regions.csv); a model
#    with a charge model is evaluated with it (docs/charges.md), unless --no-charge-correction
#    (then for every TAG of this call: give those TAGs names of their own);
# 3. writes the table of every model x cell evaluated so far (any call, any --cases):
#    $OUT/generalisation/suite.csv and suite.md.
# Finished labels and evaluations are kept: started again, it does only what is missing.
# $HPCDENS_RANKS ranks (default 2); $SUITE_OUT (default runs/reproduction64); $SUITE_ENERGY_SAMPLES
# weight samples per energy error bar (default: all N_s; 0: none). 216-atom cells cost 30 to 45
# core-minutes of PySCF each (8-bin a: 27 SCF iterations, mono-vacancy 34); one Harris-Foulkes energy
# there costs about one SCF iteration, so one model on one cell with the error bar (N_s = 30) takes
# more than 20 minutes on 2 ranks, with SUITE_ENERGY_SAMPLES=0 about 2. The 64-atom cells: about 1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction64/suite
OUT="${SUITE_OUT:-runs/reproduction64}"
NP="${HPCDENS_RANKS:-2}"
CASES=(vacancy64 divacancy64 checkerboard64a checkerboard64b checkerboard64c
       large216 vacancy216 divacancy216 checkerboard216a checkerboard216b checkerboard216c
       checkerboard216-27bin)
ALL_CASES=("${CASES[@]}")   # the table lists every case evaluated so far, whatever --cases says
if [[ "${1:-}" == --cases ]]; then read -r -a CASES <<< "$2"; shift 2; fi
EVAL_ARGS=()
if [[ "${1:-}" == --no-charge-correction ]]; then EVAL_ARGS=(--no-charge-correction); shift; fi
if (($# == 0)); then
    echo "usage: $0 [--cases \"CASE ...\"] [--no-charge-correction] TAG=MODEL.pt [TAG=MODEL.pt ...]" >&2
    echo "cases: ${CASES[*]}" >&2
    exit 2
fi
for spec in "$@"; do
    [[ "$spec" == *=* && -f "${spec#*=}" ]] || { echo "error: '$spec' is not TAG=MODEL.pt with an existing model file" >&2; exit 2; }
done
mkdir -p "$OUT/suite" "$OUT/generalisation"

for case in "${CASES[@]}"; do
    [[ -f "$IN/$case.toml" ]] || { echo "error: no input $IN/$case.toml" >&2; exit 2; }
done
# Most cases are one cell, which `generate` labels on one rank whatever -n says (one task per
# snapshot): the cases run side by side instead, one rank each, $NP at a time, each logging to
# $OUT/suite/CASE.log. A failed case does not stop the others; the suite then stops before the
# evaluations, and started again labels only what is missing.
label() {
    echo "labelling: $1 ($(date +%H:%M:%S))"
    # --bind-to none: independent mpiruns would each pin their rank to core 0 (one core shared)
    if mpirun --bind-to none -n 1 hpcdens generate "$IN/$1.toml" --out "$OUT/suite/$1.h5" --extend --no-progress \
        >> "$OUT/suite/$1.log" 2>&1; then
        echo "labelled:  $1 ($(date +%H:%M:%S))"
    else
        echo "error: labelling $1 failed; the end of $OUT/suite/$1.log:" >&2
        tail -n 20 "$OUT/suite/$1.log" >&2
        return 1
    fi
}
export -f label
export IN OUT
printf '\n=== label %d cases -> %s/suite/CASE.h5, %d at a time ===\n' "${#CASES[@]}" "$OUT" "$NP"
printf '%s\n' "${CASES[@]}" | xargs -P "$NP" -I{} bash -c 'label "$1"' _ {} \
    || { echo "error: the suite is not fully labelled (see above); run again to resume" >&2; exit 1; }

for spec in "$@"; do
    tag="${spec%%=*}" model="${spec#*=}"
    for case in "${CASES[@]}"; do
        dir="$OUT/generalisation/$tag/$case"
        if [[ -f "$dir/evaluate.json" && "$dir/evaluate.json" -nt "$model" ]]; then
            echo "kept: $dir"; continue
        fi
        printf '\n=== evaluate %s on %s -> %s ===\n' "$tag" "$case" "$dir"
        mkdir -p "$dir"
        mpirun -n "$NP" hpcdens evaluate "$model" "$OUT/suite/$case.h5" --config "$IN/$case.toml" \
            --out "$dir" --overwrite ${SUITE_ENERGY_SAMPLES:+--energy-samples "$SUITE_ENERGY_SAMPLES"} \
            "${EVAL_ARGS[@]}"
    done
done
python launch/suite_table.py "$OUT/generalisation" "${ALL_CASES[@]}"
