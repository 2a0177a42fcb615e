#!/usr/bin/env bash
# Training levers for the CrFeCoNi delta-rho model's under-fitted semicore peaks
# (docs/reproduction-crfeconi.md, "Training levers"): the bayesian run's last training set
# (AL3, 20 compositions) trained again with [train] settings changed one at a time, each model
# evaluated on the 12-composition test set (density and Harris-Foulkes energy).
#   bash launch/crfeconi_levers.sh [VARIANT ...]   (default: all below)
# Needs the pool, test and learn stages of launch/reproduce_crfeconi.sh. Results in
# runs/reproduction-crfeconi/levers/<variant>/{model.pt,test/evaluate.json}; resumable.
# Cost on 2 cores: ~15 min of training and ~6 min of evaluation per variant.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction-crfeconi
OUT=runs/reproduction-crfeconi
NP="${HPCDENS_RANKS:-2}"
AL="$OUT/bayesian-train0"
declare -A TRAIN=(   # variant -> [train] lines added to crfeconi-bayesian.toml's
    [grid]='kl_divisor = "grid"'
    [dens50]='density_fraction = 0.5'
    [grid-dens50]=$'kl_divisor = "grid"\ndensity_fraction = 0.5'
)
VARIANTS=("$@")
((${#VARIANTS[@]})) || VARIANTS=(grid dens50 grid-dens50)
[[ -f "$AL/train.h5" ]] || { echo "no $AL/train.h5: run launch/reproduce_crfeconi.sh pool test learn first" >&2; exit 2; }

for v in "${VARIANTS[@]}"; do
    [[ -n "${TRAIN[$v]+x}" ]] || { echo "unknown variant $v (known: ${!TRAIN[*]})" >&2; exit 2; }
    D="$OUT/levers/$v"
    mkdir -p "$D"
    python - "$IN/crfeconi-bayesian.toml" "${TRAIN[$v]}" "$D/input.toml" <<'PY'
import sys
src, extra, dst = sys.argv[1:]
head, sep, rest = open(src).read().partition("\n[train]\n")
open(dst, "w").write(head + sep + extra + "\n" + rest)
PY
    printf '\n=== %s: %s ===\n' "$v" "${TRAIN[$v]//$'\n'/, }"
    if [[ ! -f "$D/model.pt" ]]; then
        RESUME=(); [[ -f "$D/model.pt.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$D/input.toml" --data "$AL/train.h5" --out "$D/model.pt" \
            --no-progress "${RESUME[@]}"
    fi
    [[ -f "$D/test/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$D/model.pt" "$OUT/test.h5" \
        --config "$IN/crfeconi-test.toml" --out "$D/test" --energy-samples 0 --overwrite
done
python launch/levers_table.py "$OUT/rho-model/test-delta" "$OUT"/levers/*/test
