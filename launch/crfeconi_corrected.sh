#!/usr/bin/env bash
# The CrFeCoNi strategies compared again with the production training of inputs/crfeconi.toml
# (docs/reproduction-crfeconi.md, "Active learning with the charge correction"): every model of
# every round trained with density sampling (density_fraction = 0.5) and fitted with the charge
# models of radial shells (charge_model, charge_shells_bohr = 0.3 0.6 1.0 1.6), which predict and
# evaluate apply.
#   bash launch/crfeconi_corrected.sh [STAGE ...]   stages: learn compare suite seeds rho
#                                                   (default: learn compare suite)
# learn:   bayesian (training seed 0), tessellation (T1 -> T2 -> T4) and random (pick seed 0),
#          every label copied from the pool (hpcdens learn --reuse-labels);
# compare: the learning curves of every learn run in runs/reproduction-crfeconi/corrected/ on the
#          12-cell test set (compositions a run trained on left out), with the spread over seeds;
# suite:   the 32-atom cells of launch/reproduce_crfeconi.sh (two compositions, and the
#          equiatomic one with a vacancy) labelled, and the last bayesian and T4 models on them;
# seeds:   random pick seeds 1-2 and bayesian training seeds 1-2, or the runs in $CRFECONI_MORE
#          (STRATEGY:SECTION:SEED, e.g. "tessellation:train:1 random:learn:1"), then compare;
# rho:     a rho-target model trained as bayesian AL3 was, on its 40 snapshots, evaluated on the
#          test set with and without the charge correction, and AL3's delta-rho model without it
#          (with it: the compare stage's row).
# Needs the pool and test stages of launch/reproduce_crfeconi.sh. Resumable; everything lands in
# runs/reproduction-crfeconi/corrected/. Cost on 2 cores (session t): the three learn runs 45 min,
# the comparison ~3 min per round (20 min), each 32-atom label ~5 min per core, the four 32-atom
# evaluations 5 min; session u: a learn run of the seeds stage 20-25 min, the rho stage 25 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction-crfeconi
OUT=runs/reproduction-crfeconi
C="$OUT/corrected"
NP="${HPCDENS_RANKS:-2}"
STAGES=("$@")
((${#STAGES[@]})) || STAGES=(learn compare suite)
for f in "$OUT/pool.h5" "$OUT/test.h5"; do
    [[ -f "$f" ]] || { echo "no $f: run launch/reproduce_crfeconi.sh pool test first" >&2; exit 2; }
done
mkdir -p "$C/inputs"

step() { printf '\n=== %s ===\n' "$*"; }
want() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

# run_input STRATEGY:SECTION:SEED -> a copy of crfeconi-STRATEGY.toml with the production
# [train] lines and "seed = SEED" in [SECTION]
run_input() {
    local IFS=:; set -- $1
    python - "$IN/crfeconi-$1.toml" "$2" "$3" "$C/inputs/$1-$2$3.toml" <<'PY'
import re, sys
src, section, seed, dst = sys.argv[1:]
text = open(src).read()
train = ["charge_model = true", "density_fraction = 0.5",
         "charge_shells_bohr = [0.3, 0.6, 1.0, 1.6]"]
edits = [("train", train), (section, [f"seed = {seed}"])]
for name, lines in edits:   # replace each key in [name], or add it there
    head, sep, rest = text.partition(f"\n[{name}]\n")
    for line in lines:
        key = line.split("=")[0].strip()
        rest, found = re.subn(rf"^{key} = .*$", line, rest, count=1, flags=re.M)
        rest = rest if found else line + "\n" + rest
    text = head + sep + rest
open(dst, "w").write(text)
PY
    echo "$C/inputs/$1-$2$3.toml"
}
run_dir() { local IFS=:; set -- $1; echo "$C/$1-$2$3"; }
learn() {
    for run in "$@"; do
        step "learn: $run -> $(run_dir "$run")"
        mpirun -n "$NP" hpcdens learn "$(run_input "$run")" --out "$(run_dir "$run")" \
            --reuse-labels "$OUT/pool.h5" --no-progress
    done
}
compare() {   # every learn run of $C that has a trained round (seeds of earlier calls too)
    step "learning curves on the test set (compositions a run trained on left out)"
    local dirs=()
    for d in "$C"/*/state.json; do
        compgen -G "$(dirname "$d")/round_*/model.pt" > /dev/null && dirs+=("$(dirname "$d")")
    done
    mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${dirs[@]}" \
        --config "$IN/crfeconi-test.toml" --out "$C/compare" --exclude-training
}
RUNS=("tessellation:train:0" "bayesian:train:0" "random:learn:0")
MORE=(${CRFECONI_MORE:-random:learn:1 random:learn:2 bayesian:train:1 bayesian:train:2})

want learn && learn "${RUNS[@]}"
want compare && compare
if want suite; then
    step "32-atom cells, one with a vacancy -> $C/suite"
    mkdir -p "$C/suite"
    for cells in large vacancy; do
        mpirun -n "$NP" hpcdens generate "$IN/crfeconi-$cells.toml" --out "$OUT/$cells.h5" \
            --extend --no-progress
    done
    last() { ls -d "$(run_dir "$1")"/round_* | tail -n 1; }
    for m in "AL:$(last bayesian:train:0)/model.pt" "T4:$(last tessellation:train:0)/model.pt"; do
        name="${m%%:*}"; model="${m#*:}"
        for cells in large vacancy; do
            [[ -f "$C/suite/$name-$cells/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate \
                "$model" "$OUT/$cells.h5" --config "$IN/crfeconi-$cells.toml" \
                --out "$C/suite/$name-$cells" --energy-samples 0 --overwrite
        done
    done
fi
if want seeds; then
    learn "${MORE[@]}"
    compare
fi
if want rho; then
    src="$(run_dir bayesian:train:0)"
    step "rho target on the AL3 snapshots of $src -> $C/rho"
    mkdir -p "$C/rho"
    sed 's/^target = .*/target = "rho"/' "$(run_input bayesian:train:0)" > "$C/inputs/rho.toml"
    if [[ ! -f "$C/rho/model.pt" ]]; then
        resume=(); [[ -f "$C/rho/model.pt.ckpt" ]] && resume=(--resume)
        mpirun -n "$NP" hpcdens train "$C/inputs/rho.toml" --data "$src/train.h5" \
            --out "$C/rho/model.pt" --no-progress "${resume[@]}"
    fi
    # rho with and without the correction; AL3's delta-rho model without it (with it: compare)
    for job in "rho:$C/rho/model.pt:" "rho-uncorrected:$C/rho/model.pt:--no-charge-correction" \
               "delta-uncorrected:$src/round_03/model.pt:--no-charge-correction"; do
        IFS=: read -r name model flag <<< "$job"
        [[ -f "$C/rho/$name/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$model" \
            "$OUT/test.h5" --config "$IN/crfeconi-test.toml" --out "$C/rho/$name" \
            --energy-samples 0 --overwrite ${flag:+"$flag"}
    done
fi
step "done"
echo "learning curves: $C/compare/ (compare_held_out.csv, learning_curves_held_out.png)"
echo "32-atom cells:   $C/suite/{AL,T4}-{large,vacancy}/evaluate.json"
echo "rho target:      $C/rho/{rho,rho-uncorrected,delta-uncorrected}/evaluate.json"
