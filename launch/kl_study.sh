#!/usr/bin/env bash
# Does the KL weight decide how far the epistemic uncertainty sees unseen compositions? (issue #14:
# unseen vs trained composition epistemic ratio >= 2; docs/uncertainty.md, "KL weight".) One
# training set trained with several [train] kl_divisor values (N of the loss KL/N + mean NLL:
# smaller N = more KL weight = a posterior closer to the prior), each evaluated on one test set,
# then a table: held-out energy and density errors, the mean epistemic std on held-out vs trained
# compositions, the energy error bar and the coverages.
#   bash launch/kl_study.sh CONFIG TRAIN.h5 TEST.h5 OUT
#   e.g. bash launch/kl_study.sh inputs/kl-study/sigesn8-al2.toml \
#            runs/score-study/bayesian-density-train0/train.h5 runs/score-study/test.h5 runs/kl-study
# Environment: DIVISORS ("sampled 20000 110000 55000"), SEEDS ("0": [train] seed of each model),
# HPCDENS_RANKS (2), ENERGY_SAMPLES (10). Resumable: finished models and evaluations are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source launch/env.sh
CONFIG=$1; TRAIN=$2; TEST=$3; OUT=$4
NP=${HPCDENS_RANKS:-2}
read -r -a DIVISORS <<< "${DIVISORS:-sampled 20000 110000 55000}"
read -r -a SEEDS <<< "${SEEDS:-0}"
mkdir -p "$OUT"
EVALS=()
for seed in "${SEEDS[@]}"; do
    for div in "${DIVISORS[@]}"; do
        run="$OUT/kl-$div-seed$seed"
        mkdir -p "$run"
        value=$div; [[ $div =~ ^[0-9]+$ ]] || value="\"$div\""
        python - "$CONFIG" "$run/input.toml" "$value" "$seed" <<'PY'
import re, sys
src, dst, value, seed = sys.argv[1:]
text = open(src).read()
head, sep, rest = text.partition("\n[train]\n")
assert sep, "the config needs a [train] section"
rest = re.sub(r"^(kl_divisor|seed) = .*\n", "", rest, flags=re.M)
open(dst, "w").write(f"{head}{sep}kl_divisor = {value}\nseed = {seed}\n{rest}")
PY
        if [[ ! -f $run/model.pt ]]; then
            echo "[kl_study] train kl_divisor = $div, seed $seed, $(date +%T)"
            resume=(); [[ -f $run/model.pt.ckpt ]] && resume=(--resume)
            mpirun -n "$NP" hpcdens train "$run/input.toml" --data "$TRAIN" --out "$run/model.pt" \
                --no-progress "${resume[@]}" > "$run/train.log" 2>&1
        fi
        if [[ ! -f $run/evaluate/evaluate.json ]]; then
            echo "[kl_study] evaluate kl_divisor = $div, seed $seed, $(date +%T)"
            mpirun -n "$NP" hpcdens evaluate "$run/model.pt" "$TEST" --config "$run/input.toml" \
                --out "$run/evaluate" --overwrite --energy-samples "${ENERGY_SAMPLES:-10}" \
                > "$run/evaluate.log" 2>&1
        fi
        EVALS+=("$run")
    done
done
python launch/kl_table.py "$TRAIN" "${EVALS[@]}" | tee "$OUT/table.md"
