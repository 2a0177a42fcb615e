#!/usr/bin/env bash
# Which acquisition score picks better training compositions? (docs/uncertainty.md, "Active
# learning by the energy uncertainty"; issue #14 item 5.) On the 8-atom SiGeSn study of
# docs/reproduction.md (inputs/reproduction/, PySCF): bayesian with the paper's density score
# and with [learn] score = "energy", each with training seeds 0 1 2, and random picks with seeds
# 0-4, every run to AL2 (3 pure elements + 3 picks = 6 compositions, max_rounds = 2); then the
# learning curves of all of them on the 45 test compositions (held out, and all 45).
#   bash launch/score_study.sh [OUT]          OUT default runs/score-study
# Resumable: finished labels, models, scores and evaluations are kept (learn, learn-compare).
# Cost on 2 cores: about 8 minutes per learn run (training dominates), 11 runs, plus about a
# minute per model for the comparison. $HPCDENS_RANKS ranks (default 2); $SEEDS / $RANDOM_SEEDS
# (default "0 1 2" / "0 1 2 3 4") choose the seeds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction
OUT="${1:-runs/score-study}"
NP="${HPCDENS_RANKS:-2}"
read -r -a SEEDS <<< "${SEEDS:-0 1 2}"
read -r -a RANDOM_SEEDS <<< "${RANDOM_SEEDS:-0 1 2 3 4}"
mkdir -p "$OUT/inputs"

step() { printf '\n=== %s ===\n' "$*"; }

# A copy of the study's learn input: strategy file, [learn] score, the seed of [train] (bayesian)
# or [learn] (random), max_rounds = 2.
variant() {   # variant STRATEGY SCORE SECTION SEED -> path of the copy
    local dst="$OUT/inputs/$1-$2-$3$4.toml"
    python - "$IN/sigesn-$1.toml" "$dst" "$2" "$3" "$4" <<'PY'
import re, sys
src, dst, score, section, seed = sys.argv[1:]
text = open(src).read()
text = re.sub(r"^max_rounds = \d+", "max_rounds = 2", text, count=1, flags=re.M)
text = text.replace("\n[learn]\n", f'\n[learn]\nscore = "{score}"\n', 1)
if section == "train" and not re.search(r"^\[train\][^\[]*^seed = ", text, flags=re.M | re.S):
    text = text.replace("\n[train]\n", f"\n[train]\nseed = {seed}\n", 1)
head, sep, rest = text.partition(f"\n[{section}]\n")
rest = re.sub(r"^seed = \d+", f"seed = {seed}", rest, count=1, flags=re.M)
open(dst, "w").write(head + sep + rest)
PY
    echo "$dst"
}

# interleaved, so that a partial run already compares the scores and has a random spread
RUNS=()
for i in $(seq 0 $(( ${#SEEDS[@]} > ${#RANDOM_SEEDS[@]} ? ${#SEEDS[@]} - 1 : ${#RANDOM_SEEDS[@]} - 1 ))); do
    if (( i < ${#SEEDS[@]} )); then
        RUNS+=("bayesian:density:train:${SEEDS[$i]}" "bayesian:energy:train:${SEEDS[$i]}")
    fi
    if (( i < ${#RANDOM_SEEDS[@]} )); then RUNS+=("random:density:learn:${RANDOM_SEEDS[$i]}"); fi
done
run_dir() { local IFS=:; set -- $1; echo "$OUT/$1-$2-$3$4"; }

step "1. test set: the 45 compositions k/8, 8-atom cells -> $OUT/test.h5"
mpirun -n "$NP" hpcdens generate "$IN/sigesn-test.toml" --out "$OUT/test.h5" --extend --no-progress

for run in "${RUNS[@]}"; do
    IFS=: read -r strategy score section seed <<< "$run"
    step "2. learn: $strategy, score $score, [$section] seed $seed -> $(run_dir "$run")"
    mpirun -n "$NP" hpcdens learn "$(variant "$strategy" "$score" "$section" "$seed")" \
        --out "$(run_dir "$run")" --no-progress
done

step "3. learning curves on the test set: held-out compositions, then all 45"
DIRS=()
for run in "${RUNS[@]}"; do DIRS+=("$(run_dir "$run")"); done
mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${DIRS[@]}" --config "$IN/sigesn-test.toml" \
    --out "$OUT/compare" --exclude-training
mpirun -n "$NP" hpcdens learn-compare "$OUT/test.h5" "${DIRS[@]}" --config "$IN/sigesn-test.toml" \
    --out "$OUT/compare-all"
step "done"
echo "tables: $OUT/compare/compare_held_out.csv, $OUT/compare-all/compare.csv"
