#!/usr/bin/env bash
# The reproduction study at the paper's scale (docs/reproduction.md, "64-atom cells"): Bayesian
# active learning vs tessellation vs random on 64-atom SiGeSn cells with thermal snapshots
# (SevenNet-0 MD at 2400 K, the mlip extra), labelled with the embedded PySCF backend.
#   bash launch/reproduce_sigesn64.sh [STAGE ...]   stages: pool test learn compare suite (default),
#                                                   vacancy, delta, beta, ensemble, dens, dens216
# 1. pool:    the 15 compositions k/4 x 4 snapshots, labelled once (runs/reproduction64/pool.h5);
# 2. test:    the 45 compositions k/8, one snapshot each (test.h5);
# 3. learn:   bayesian with 3 training seeds, random with 5 seeds, tessellation once, then
#             bayesian with pick = "separated" (sigesn-bayesian-separated.toml); every label
#             is copied from the pool (hpcdens learn --reuse-labels), none is computed twice;
# 4. compare: learning curves of every run on the test set (held-out compositions, and all 45),
#             without and with the atomic-charge correction (compare/, compare-charges/);
# 5. suite:   the generalisation suite (launch/generalisation_sigesn.sh) for AL2, T2, T4 and
#             random with 6 compositions, each also with its charge model (charges/TAG.pt);
# 6. vacancy: the data lever for vacancy cells (not in the default stages): AL2's 24 pool
#             snapshots plus one 63-atom mono-vacancy thermal snapshot per AL2 composition (6 new
#             labels), trained with AL2's settings, on the test set and the 64-site suite cells.
# 7. delta:   the model lever (not in the default stages): AL2's training set (al2.h5) trained
#             with target rho (al2/) and with target delta_rho (al2-delta/), same seed and split,
#             both on the test set and the 64-site suite cells. No new DFT.
# 8. beta:    the loss lever (not in the default stages): AL2's training set trained with the
#             beta-NLL loss ([train] nll_beta = 0.5, al2-beta/), otherwise as al2/; the same cells;
#             then both losses with training seeds 1 and 2 on the test set (al2[-beta]-train<seed>/).
# 9. ensemble: the three beta-NLL trainings of stage 8 (training seeds 0, 1, 2) as one model
#             (hpcdens ensemble -> al2-beta-ens/), on the test set and the 64-site suite cells.
# 10. dens:   the sampling lever (not in the default stages): stage 9 with half of each training
#             snapshot's points drawn by SAD density (sigesn-al2-beta-dens.toml, al2-beta-dens*/).
# 11. dens216: the three trainings of stage 10 on the 216-site suite cells (mono- and di-vacancy,
#             the three 8-bin and the 27-bin checkerboards, four thermal cells at k/6); 30-45
#             core-minutes of PySCF per cell, labelled side by side, one rank each.
# Everything lands in runs/reproduction64/; started again, every stage resumes (finished labels,
# models and evaluations are kept). $HPCDENS_RANKS ranks (default 2). Cost on 2 cores: pool about
# 35 min, test set 25 min, each learn run 15-40 min, each model on the test set about 20 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HPCDENS_EXTRAS=mlip bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction64
OUT=runs/reproduction64
NP="${HPCDENS_RANKS:-2}"
STAGES=("$@")
((${#STAGES[@]})) || STAGES=(pool test learn compare suite)
BAYES_TRAIN_SEEDS=(0 1 2)
RANDOM_SEEDS=(0 1 2 3 4)
mkdir -p "$OUT/inputs"

step() { printf '\n=== %s ===\n' "$*"; }
want() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

# A copy of a learn input with another seed: [learn] seed (random picks) or [train] seed.
variant() {   # variant STRATEGY SECTION SEED -> path of the copy
    local src="$IN/sigesn-$1.toml" dst="$OUT/inputs/sigesn-$1-$2$3.toml"
    python - "$src" "$dst" "$2" "$3" <<'PY'
import re, sys
src, dst, section, seed = sys.argv[1:]
text = open(src).read()
head, sep, rest = text.partition(f"\n[{section}]\n")
rest = re.sub(r"^seed = \d+", f"seed = {seed}", rest, count=1, flags=re.M)
open(dst, "w").write(head + sep + rest)
PY
    echo "$dst"
}

# Baselines first, then the seeds interleaved, so that a partial run already compares strategies.
RUNS=("bayesian:train:0" "tessellation:train:0")
for i in "${!RANDOM_SEEDS[@]}"; do
    RUNS+=("random:learn:${RANDOM_SEEDS[$i]}")
    ((i + 1 < ${#BAYES_TRAIN_SEEDS[@]})) && RUNS+=("bayesian:train:${BAYES_TRAIN_SEEDS[$((i + 1))]}")
done
RUNS+=("bayesian-separated:train:0")   # the pick lever: picks from separate regions ([learn] pick)
run_dir() { local IFS=:; set -- $1; echo "$OUT/$1-$2$3"; }

if want pool; then
    step "1. label pool: 15 compositions k/4 x 4 thermal snapshots -> $OUT/pool.h5"
    mpirun -n "$NP" hpcdens generate "$IN/sigesn-pool.toml" --out "$OUT/pool.h5" --extend --no-progress
fi
if want test; then
    step "2. test set: 45 compositions k/8, 64 atoms -> $OUT/test.h5"
    mpirun -n "$NP" hpcdens generate "$IN/sigesn-test.toml" --out "$OUT/test.h5" --extend --no-progress
fi
if want learn; then
    for run in "${RUNS[@]}"; do
        IFS=: read -r strategy section seed <<< "$run"
        step "3. learn: $strategy, [$section] seed $seed -> $(run_dir "$run")"
        mpirun -n "$NP" hpcdens learn "$(variant "$strategy" "$section" "$seed")" \
            --out "$(run_dir "$run")" --reuse-labels "$OUT/pool.h5" --no-progress
    done
fi
if want compare; then
    step "4. learning curves on the test set: held-out compositions, then all 45"
    DIRS=()   # the learn runs started so far (a partial learn stage compares what it has)
    for run in "${RUNS[@]}"; do
        if [[ -f "$(run_dir "$run")/state.json" ]]; then DIRS+=("$(run_dir "$run")")
        else echo "not started yet, left out: $(run_dir "$run")"; fi
    done
    mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${DIRS[@]}" --config "$IN/sigesn-test.toml" \
        --out "$OUT/compare" --exclude-training --no-charge-correction
    step "4b. the same with the atomic-charge correction (a charge model fitted per round)"
    mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${DIRS[@]}" --config "$IN/sigesn-test.toml" \
        --out "$OUT/compare-charges" --charge-model --exclude-training
fi
if want suite; then
    step "5. generalisation suite: AL2, T2, T4, random with 6 compositions, without and with the charge correction"
    PLAIN=() SPECS=()
    for spec in "AL2=bayesian-train0/round_02" "T2=tessellation-train0/round_02" \
                "T4=tessellation-train0/round_03" "random6=random-learn0/round_02"; do
        tag=${spec%%=*} model="$OUT/${spec#*=}/model.pt" charged="$OUT/charges/${spec%%=*}.pt"
        mkdir -p "$OUT/charges"
        [[ -f "$charged" && "$charged" -nt "$model" ]] \
            || mpirun -n "$NP" hpcdens charges "$model" --out "$charged"
        PLAIN+=("$tag=$model") SPECS+=("$tag-charges=$charged")
    done
    bash launch/generalisation_sigesn.sh --no-charge-correction "${PLAIN[@]}"
    bash launch/generalisation_sigesn.sh "${SPECS[@]}"
fi
if want vacancy; then
    V="$OUT/vacancy-lever"
    step "6. vacancy snapshots: AL2's pool snapshots + 6 mono-vacancy snapshots -> $V"
    mkdir -p "$V"
    mpirun -n "$NP" hpcdens generate "$IN/sigesn-al2.toml" --out "$V/al2.h5" --reuse "$OUT/pool.h5" \
        --extend --no-progress
    mpirun -n "$NP" hpcdens generate "$IN/sigesn-al2-vacancy.toml" --out "$V/vacancy.h5" --extend \
        --no-progress
    if [[ ! -f "$V/model.pt" ]]; then
        RESUME=(); [[ -f "$V/model.pt.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$IN/sigesn-al2-vacancy.toml" --data "$V/al2.h5" "$V/vacancy.h5" \
            --out "$V/model.pt" --no-progress "${RESUME[@]}"
    fi
    [[ -f "$V/test45/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$V/model.pt" "$OUT/test.h5" \
        --config "$IN/sigesn-test.toml" --out "$V/test45" --energy-samples 0 --overwrite
    bash launch/generalisation_sigesn.sh \
        --cases "vacancy64 divacancy64 checkerboard64a checkerboard64b checkerboard64c" \
        "AL2-64=$OUT/bayesian-train0/round_02/model.pt" "AL2vac-64=$V/model.pt"
fi
# AL2's training set (al2.h5) trained with input $2 (default: sigesn-$1.toml) into $OUT/$1, then
# evaluated on the test set: the model levers. al2.h5 and test.h5 are labelled first if missing
# (al2.h5 copied from the pool when there is one), so these stages also run on their own.
lever_model() {
    local D="$OUT/$1" input="${2:-$IN/sigesn-$1.toml}"
    local POOL=(); [[ -f "$OUT/pool.h5" ]] && POOL=(--reuse "$OUT/pool.h5")  # else: labelled here
    [[ -f "$OUT/al2.h5" ]] || mpirun -n "$NP" hpcdens generate "$IN/sigesn-al2.toml" --out "$OUT/al2.h5" \
        "${POOL[@]}" --extend --no-progress
    [[ -f "$OUT/test.h5" ]] || mpirun -n "$NP" hpcdens generate "$IN/sigesn-test.toml" \
        --out "$OUT/test.h5" --extend --no-progress
    mkdir -p "$D"
    if [[ ! -f "$D/model.pt" ]]; then
        RESUME=(); [[ -f "$D/model.pt.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$input" --data "$OUT/al2.h5" \
            --out "$D/model.pt" --no-progress "${RESUME[@]}"
    fi
    [[ -f "$D/test45/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$D/model.pt" \
        "$OUT/test.h5" --config "$IN/sigesn-test.toml" --out "$D/test45" --energy-samples 0 --overwrite
}
# al2/ and the lever's model $1 (input sigesn-$1.toml) on the test set and the 64-site suite cells.
lever_vs_al2() {
    lever_model al2
    lever_model "$1"
    bash launch/generalisation_sigesn.sh --cases "vacancy64 divacancy64 checkerboard64a checkerboard64b \
checkerboard64c" "AL2-64=$OUT/al2/model.pt" "$2=$OUT/$1/model.pt"
}
# The directory of input sigesn-$1.toml's model with training seed $2: $OUT/$1 for seed 0,
# $OUT/$1-train$2 for the others (each trained and evaluated on the test set by seed_model).
seed_dir() { if (($2 == 0)); then echo "$1"; else echo "$1-train$2"; fi; }
seed_model() {
    if (($2 == 0)); then lever_model "$1"
    else lever_model "$(seed_dir "$1" "$2")" "$(variant "$1" train "$2")"; fi
}
if want delta; then
    step "7. delta-rho vs rho on AL2's training set -> $OUT/al2, $OUT/al2-delta"
    lever_vs_al2 al2-delta AL2delta-64
fi
if want beta; then
    step "8. beta-NLL (nll_beta = 0.5) vs the paper's loss on AL2's training set -> $OUT/al2-beta"
    lever_vs_al2 al2-beta AL2beta-64
    for seed in "${BAYES_TRAIN_SEEDS[@]:1}"; do   # other training seeds (split, points, weights)
        step "8. training seed $seed: beta-NLL and the paper's loss"
        seed_model al2-beta "$seed"
        seed_model al2 "$seed"
    done
fi
# Input sigesn-$1.toml trained with every seed of BAYES_TRAIN_SEEDS (seed_model); sets MEMBERS
# (their model files) and TAGS (TAG=MODEL for the suite: $2-64[-train<seed>]).
seed_models() {
    local seed dir
    MEMBERS=() TAGS=()
    for seed in "${BAYES_TRAIN_SEEDS[@]}"; do
        seed_model "$1" "$seed"
        dir="$(seed_dir "$1" "$seed")"
        MEMBERS+=("$OUT/$dir/model.pt")
        TAGS+=("$2-64${dir#"$1"}=$OUT/$dir/model.pt")
    done
}
# An ensemble of input sigesn-$1.toml's trainings with BAYES_TRAIN_SEEDS -> $OUT/$1-ens, on the
# test set and the 64-site suite cells (tags $2-64[-train<seed>], $2-ens3) with its members.
ensemble_of() {
    local E="$OUT/$1-ens"
    seed_models "$1" "$2"
    mkdir -p "$E"
    [[ -f "$E/model.pt" ]] || hpcdens ensemble "${MEMBERS[@]}" --out "$E/model.pt"
    [[ -f "$E/test45/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$E/model.pt" \
        "$OUT/test.h5" --config "$IN/sigesn-test.toml" --out "$E/test45" --energy-samples 0 --overwrite
    bash launch/generalisation_sigesn.sh --cases "vacancy64 divacancy64 checkerboard64a \
checkerboard64b checkerboard64c" "${TAGS[@]}" "$2-ens3=$E/model.pt"
}
if want ensemble; then
    step "9. an ensemble of the beta-NLL trainings with training seeds ${BAYES_TRAIN_SEEDS[*]} -> $OUT/al2-beta-ens"
    ensemble_of al2-beta AL2beta
fi
if want dens; then
    step "10. beta-NLL with half the training points drawn by SAD density, seeds ${BAYES_TRAIN_SEEDS[*]}"
    ensemble_of al2-beta-dens AL2betadens
fi
if want dens216; then
    step "11. the density-draw models of stage 10 (seeds ${BAYES_TRAIN_SEEDS[*]}) on the 216-site suite cells"
    seed_models al2-beta-dens AL2betadens
    bash launch/generalisation_sigesn.sh --cases "vacancy216 divacancy216 checkerboard216a \
checkerboard216b checkerboard216c checkerboard216-27bin large216" "${TAGS[@]}"
fi
step "done"
echo "learning curves: $OUT/compare/ (compare_held_out.csv, learning_curves_held_out.png)"
echo "generalisation:  $OUT/generalisation/suite.md"
