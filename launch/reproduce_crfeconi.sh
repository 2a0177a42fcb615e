#!/usr/bin/env bash
# The CrFeCoNi study on a workstation budget (docs/reproduction-crfeconi.md): Bayesian active
# learning vs tessellation (T1 -> T2 -> T4) vs random on 16-atom fcc CrFeCoNi cells with thermal
# snapshots (SevenNet-0 MD at the paper's 5000 K, the mlip extra), labelled with the embedded PySCF
# backend (semicore GTH pseudopotentials) at the paper's 0.2 Bohr, delta-rho models.
#   bash launch/reproduce_crfeconi.sh [STAGE ...]   stages: pool test learn compare rho suite checks
#                                                   (default: all; "seeds" adds more seeds)
# 1. pool:    the 35 compositions k/4 x 2 snapshots, labelled once (runs/reproduction-crfeconi/pool.h5);
# 2. test:    12 random compositions, one snapshot each (test.h5);
# 3. learn:   bayesian, tessellation and random (seed 0), every label copied from the pool
#             (hpcdens learn --reuse-labels), none computed twice;
# 4. compare: learning curves of every run on the test set (compositions a run trained on left out),
#             energy errors in Ha/atom and Ha/electron;
# 5. rho:     a rho model trained on the bayesian run's last training set, beside its delta-rho
#             model, both on the test set (the paper: delta-rho halves the maximum energy error);
# 6. suite:   generalisation to 32-atom cells (twice the training cells; the paper's cell): two
#             compositions and the equiatomic one with a vacancy, for the last bayesian model, T4
#             and the rho model;
# 7. checks:  SAD grid charge of every labelled cell, and how much Eq. 9 rescales each prediction;
# seeds:      (not in the default stages) random seeds 1-2 and bayesian [train] seeds 1-2, then
#             compare again.
# Everything lands in runs/reproduction-crfeconi/; started again, every stage resumes (finished
# labels, models and evaluations are kept). $HPCDENS_RANKS ranks (default 2). Cost on 2 cores:
# one label ~1 min per core (16 atoms, 69 x 69 x 35 points, ~45 SCF iterations): pool ~40 min,
# test set ~7 min; each learn run 10-20 min; each model on the test set ~2 min; the three 32-atom
# labels of the suite ~6 min each per core.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HPCDENS_EXTRAS=mlip bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction-crfeconi
OUT=runs/reproduction-crfeconi
NP="${HPCDENS_RANKS:-2}"
STAGES=("$@")
((${#STAGES[@]})) || STAGES=(pool test learn compare rho suite checks)
mkdir -p "$OUT/inputs"

step() { printf '\n=== %s ===\n' "$*"; }
want() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

# A copy of an input with "key = value" replaced in [section]: [learn] seed, [train] seed or
# [model] target.
variant() {   # variant SRC SECTION KEY VALUE DST -> DST
    python - "$@" <<'PY'
import re, sys
src, section, key, value, dst = sys.argv[1:]
text = open(src).read()
head, sep, rest = text.partition(f"\n[{section}]\n")
rest = re.sub(rf"^{key} = .*$", f"{key} = {value}", rest, count=1, flags=re.M)
open(dst, "w").write(head + sep + rest)
PY
    echo "$5"
}
run_dir() { local IFS=:; set -- $1; echo "$OUT/$1-$2$3"; }
learn_input() {   # learn_input STRATEGY:SECTION:SEED -> input file
    local IFS=:; set -- $1
    variant "$IN/crfeconi-$1.toml" "$2" seed "$3" "$OUT/inputs/crfeconi-$1-$2$3.toml"
}
learn() {
    for run in "$@"; do
        step "3. learn: $run -> $(run_dir "$run")"
        mpirun -n "$NP" hpcdens learn "$(learn_input "$run")" --out "$(run_dir "$run")" \
            --reuse-labels "$OUT/pool.h5" --no-progress
    done
}
compare() {
    step "4. learning curves on the test set (compositions a run trained on left out)"
    local dirs=()
    for run in "$@"; do dirs+=("$(run_dir "$run")"); done
    mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${dirs[@]}" --config "$IN/crfeconi-test.toml" \
        --out "$OUT/compare" --exclude-training
}
RUNS=("bayesian:train:0" "tessellation:train:0" "random:learn:0")
MORE=("random:learn:1" "bayesian:train:1" "random:learn:2" "bayesian:train:2")

if want pool; then
    step "1. label pool: 35 compositions k/4 x 2 thermal snapshots -> $OUT/pool.h5"
    mpirun -n "$NP" hpcdens generate "$IN/crfeconi-pool.toml" --out "$OUT/pool.h5" --extend --no-progress
fi
if want test; then
    step "2. test set: 12 random compositions, 16 atoms -> $OUT/test.h5"
    mpirun -n "$NP" hpcdens generate "$IN/crfeconi-test.toml" --out "$OUT/test.h5" --extend --no-progress
fi
want learn && learn "${RUNS[@]}"
want compare && compare "${RUNS[@]}"
AL="$(run_dir bayesian:train:0)"
R="$OUT/rho-model"
last_round() { ls -d "$AL"/round_* | tail -n 1; }   # the bayesian run's last round
if want rho; then
    LAST="$(last_round)"
    step "5. rho vs delta-rho: a rho model on $LAST's training set -> $R"
    mkdir -p "$R"
    variant "$IN/crfeconi-bayesian.toml" model target '"rho"' "$OUT/inputs/crfeconi-rho.toml" >/dev/null
    if [[ ! -f "$R/model.pt" ]]; then
        RESUME=(); [[ -f "$R/model.pt.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$OUT/inputs/crfeconi-rho.toml" --data "$AL/train.h5" \
            --out "$R/model.pt" --no-progress "${RESUME[@]}"
    fi
    for m in "delta:$LAST/model.pt" "rho:$R/model.pt"; do
        name="${m%%:*}"; model="${m#*:}"
        [[ -f "$R/test-$name/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$model" "$OUT/test.h5" \
            --config "$IN/crfeconi-test.toml" --out "$R/test-$name" --energy-samples 0 --overwrite
    done
fi
if want suite; then
    step "6. generalisation: 32-atom cells, one with a vacancy -> $OUT/suite"
    for cells in large vacancy; do
        mpirun -n "$NP" hpcdens generate "$IN/crfeconi-$cells.toml" --out "$OUT/$cells.h5" --extend --no-progress
    done
    for m in "AL:$(last_round)/model.pt" "T4:$(run_dir tessellation:train:0)/round_03/model.pt" "rho:$R/model.pt"; do
        name="${m%%:*}"; model="${m#*:}"
        for cells in large vacancy; do
            [[ -f "$OUT/suite/$name-$cells/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$model" \
                "$OUT/$cells.h5" --config "$IN/crfeconi-$cells.toml" --out "$OUT/suite/$name-$cells" \
                --energy-samples 0 --overwrite
        done
    done
fi
if want checks; then
    step "7. SAD charge of every labelled cell; Eq. 9 rescaling of the delta-rho predictions"
    python launch/charge_checks.py "$OUT"
fi
if want seeds; then
    learn "${MORE[@]}"
    compare "${RUNS[@]}" "${MORE[@]}"
fi
step "done"
echo "learning curves: $OUT/compare/ (compare_held_out.csv, learning_curves_held_out.png)"
echo "rho vs delta-rho: $OUT/rho-model/test-{delta,rho}/evaluate.json"
echo "32-atom cells:    $OUT/suite/{AL,T4,rho}-{large,vacancy}/evaluate.json"
