#!/usr/bin/env bash
# Training levers for the CrFeCoNi delta-rho model's under-fitted semicore peaks
# (docs/reproduction-crfeconi.md, "Training levers"): the bayesian run's last training set
# (AL3, 20 compositions) trained again with [train] settings changed one at a time, and T4's
# (tessellation round 3) with the chosen one, and the bayesian and random learn runs again with it
# (picks made by the better-trained models; labels from the pool), each last model evaluated on
# the 12-composition test set (density and Harris-Foulkes energy).
#   bash launch/crfeconi_levers.sh [VARIANT ...]   (default: all below)
# Needs the pool, test and learn stages of launch/reproduce_crfeconi.sh. Results in
# runs/reproduction-crfeconi/levers/<variant>/{model.pt,test/evaluate.json}; resumable.
# Cost on 2 cores: 3-10 min of training and ~5 min of evaluation per variant.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction-crfeconi
OUT=runs/reproduction-crfeconi
NP="${HPCDENS_RANKS:-2}"
AL="$OUT/bayesian-train0/train.h5"
T4="$OUT/tessellation-train0/train.h5"
declare -A TRAIN=(   # variant -> [train] lines added to crfeconi-bayesian.toml's
    [grid]='kl_divisor = "grid"'
    [dens50]='density_fraction = 0.5'
    [grid-dens50]=$'kl_divisor = "grid"\ndensity_fraction = 0.5'
    [dens80]='density_fraction = 0.8'
    [dens50-e80]=$'density_fraction = 0.5\nepochs = 80'
    [dens50-p24k]=$'density_fraction = 0.5\npoints_per_snapshot = 24000'
    [T4-dens50]='density_fraction = 0.5'
    [T4-dens80-p24k]=$'density_fraction = 0.8\npoints_per_snapshot = 24000'
    [T4-dens50-lr3]=$'density_fraction = 0.5\nlr_patience = 3'
    [T4-dens50-s1]=$'density_fraction = 0.5\nseed = 1'
    [T4-dens50-s2]=$'density_fraction = 0.5\nseed = 2'
    [T4-dens50-clip]='density_fraction = 0.5'   # T4-dens50 trained again with gradient clipping
    [T4-dens50-beta]=$'density_fraction = 0.5\nnll_beta = 0.5'   # beta-NLL (docs/model.md)
    [AL-dens50]='density_fraction = 0.5'
    [random-dens50]='density_fraction = 0.5'
)
declare -A DATA=([T4-dens50]="$T4" [T4-dens80-p24k]="$T4" [T4-dens50-lr3]="$T4"
                [T4-dens50-s1]="$T4" [T4-dens50-s2]="$T4"
                [T4-dens50-clip]="$T4"
                [T4-dens50-beta]="$T4")   # variant -> training set (default: AL3's)
declare -A LEARN=([AL-dens50]=bayesian [random-dens50]=random)   # variants that run hpcdens learn
VARIANTS=("$@")
((${#VARIANTS[@]})) || VARIANTS=(grid dens50 grid-dens50 dens80 dens50-e80 dens50-p24k T4-dens50
    T4-dens80-p24k T4-dens50-lr3 T4-dens50-s1 T4-dens50-s2 AL-dens50 random-dens50
    T4-dens50-clip T4-dens50-beta)
for f in "$AL" "$T4"; do
    [[ -f "$f" ]] || { echo "no $f: run launch/reproduce_crfeconi.sh pool test learn first" >&2; exit 2; }
done

for v in "${VARIANTS[@]}"; do
    [[ -n "${TRAIN[$v]+x}" ]] || { echo "unknown variant $v (known: ${!TRAIN[*]})" >&2; exit 2; }
    D="$OUT/levers/$v"
    mkdir -p "$D"
    python - "$IN/crfeconi-${LEARN[$v]:-bayesian}.toml" "${TRAIN[$v]}" "$D/input.toml" <<'PY'
import re, sys
src, extra, dst = sys.argv[1:]
head, sep, rest = open(src).read().partition("\n[train]\n")
for line in extra.splitlines():   # replace the key in [train], or add it there
    key = line.split("=")[0].strip()
    rest, found = re.subn(rf"^{key} = .*$", line, rest, count=1, flags=re.M)
    rest = rest if found else line + "\n" + rest
open(dst, "w").write(head + sep + rest)
PY
    printf '\n=== %s: %s ===\n' "$v" "${TRAIN[$v]//$'\n'/, }"
    MODEL="$D/model.pt"
    if [[ -n "${LEARN[$v]+x}" ]]; then   # resumes by itself; its last round's model
        mpirun -n "$NP" hpcdens learn "$D/input.toml" --out "$D/learn" --reuse-labels "$OUT/pool.h5" \
            --no-progress
        MODEL="$(ls -d "$D"/learn/round_* | tail -n 1)/model.pt"
    elif [[ ! -f "$MODEL" ]]; then
        RESUME=(); [[ -f "$MODEL.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$D/input.toml" --data "${DATA[$v]:-$AL}" --out "$MODEL" \
            --no-progress "${RESUME[@]}"
    fi
    [[ -f "$D/test/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$MODEL" "$OUT/test.h5" \
        --config "$IN/crfeconi-test.toml" --out "$D/test" --energy-samples 0 --overwrite
done
python launch/levers_table.py "$OUT/rho-model/test-delta" "$OUT"/levers/*/test
