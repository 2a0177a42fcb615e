# Shared body of launch/strong_scaling.sh and launch/weak_scaling.sh (sourced, not run).
# The caller sets CASES (its list of cells) and defines case_args CASE (the options of
# `hpcdens.bench.predict predict` for one cell) and case_label CASE, then calls
#   run_scaling KIND OUT            (KIND: strong or weak)
# which runs every (repeat, case, rank count), then writes OUT/KIND.csv, OUT/KIND.png and a table.
# Environment: RANKS ["1 2 4"], SPACING [0.6], REPEATS [2], MODEL [an untrained M=20, 64x64,
# N_s=10 model], LAUNCH ["mpirun -n"], CORES [$(nproc)] (see strong_scaling.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
RANKS="${RANKS:-1 2 4}"
SPACING="${SPACING:-0.6}"
REPEATS="${REPEATS:-2}"
LAUNCH="${LAUNCH:-mpirun -n}"
CORES="${CORES:-$(nproc)}"

run_scaling() {
    local kind="$1" out="$2" rep case n
    mkdir -p "$out"
    local model="${MODEL:-$out/bench-model.pt}"
    [[ -f "$model" ]] || python -m hpcdens.commands.bench random-model "$model" --m 20 \
        --hidden 64 64 --n-samples 10
    local csv="$out/$kind.csv"
    rm -f "$csv"
    echo "$kind scaling on $CORES cores, ranks: $RANKS (more ranks than cores = oversubscribed)"
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for case in $CASES; do
            for n in $RANKS; do
                # shellcheck disable=SC2046,SC2086
                $LAUNCH "$n" python -m hpcdens.commands.bench predict "$model" $(case_args "$case") \
                    --spacing-bohr "$SPACING" --csv "$csv" --label "$(case_label "$case")"
            done
        done
    done
    python -m hpcdens.commands.bench plot "$csv" "$out/$kind.png" --kind "$kind" --cores "$CORES"
    python -m hpcdens.commands.bench table "$csv" --kind "$kind"
    echo "wrote $csv and $out/$kind.png"
}
