#!/usr/bin/env bash
# The charge correction for the CrFeCoNi delta-rho model, of whole atoms and of radial shells of
# them (docs/reproduction-crfeconi.md, "The charge of each semicore shell"):
#   bash launch/crfeconi_shells.sh [T2|T4 ...]     (default: T2 T4)
# For each tessellation: its training set copied from the label pool (hpcdens generate --reuse;
# T2's labels may be made first and the pool then reuses them), a delta-rho model trained with
# density sampling (density_fraction = 0.5, the study's best setting), its 12 test-set
# predictions (hpcdens evaluate, no charge model), two copies of the model with a charge model
# (hpcdens charges: whole atoms; --shells $SHELLS) and launch/shell_correction.py on the
# predictions: Eq. 9 alone, the DFT oracles and the two fitted corrections, in Ha/atom and
# Ha/electron. Needs the pool and test stages of launch/reproduce_crfeconi.sh (T2 alone needs
# only its own labels: runs/reproduction-crfeconi/T2.h5 is labelled if missing). Resumable;
# results in runs/reproduction-crfeconi/shells/<T>/ (shells.json, shells.md).
# Cost on 2 cores: T2's 22 labels ~25 min (none when the pool exists), training 3-10 min, the
# evaluation ~5 min, each charge fit ~2 min, the table ~10 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/reproduction-crfeconi
OUT=runs/reproduction-crfeconi
NP="${HPCDENS_RANKS:-2}"
SHELLS=(${CRFECONI_SHELLS:-0.3 0.6 1.0 1.6})
SETS=("$@")
((${#SETS[@]})) || SETS=(T2 T4)
[[ -f "$OUT/test.h5" ]] || { echo "no $OUT/test.h5: run launch/reproduce_crfeconi.sh test first" >&2; exit 2; }
mkdir -p "$OUT/shells"

# A copy of an input with its [compositions] replaced by a tessellation (SRC T DST), or with
# "density_fraction = 0.5" added to [train] (SRC - DST).
edit() {
    python - "$@" <<'PY'
import re, sys
src, t, dst = sys.argv[1:]
text = open(src).read()
if t == "-":
    head, sep, rest = text.partition("\n[train]\n")
    text = head + sep + "density_fraction = 0.5\n" + rest
else:
    text = re.sub(r"^name = .*$", f'name = "crfeconi16-{t}"', text, count=1, flags=re.M)
    text = re.sub(r"^grid_resolution = .*$", f'tessellation = "{t}"', text, count=1, flags=re.M)
open(dst, "w").write(text)
PY
}
edit "$IN/crfeconi-bayesian.toml" - "$OUT/shells/dens50.toml"
for t in "${SETS[@]}"; do
    D="$OUT/shells/$t"
    mkdir -p "$D"
    printf '\n=== %s: training set, delta-rho model with density sampling ===\n' "$t"
    edit "$IN/crfeconi-pool.toml" "$t" "$D/labels.toml"
    REUSE=(); [[ -f "$OUT/pool.h5" ]] && REUSE=(--reuse "$OUT/pool.h5")
    [[ -f "$OUT/$t.h5" ]] || mpirun -n "$NP" hpcdens generate "$D/labels.toml" --out "$OUT/$t.h5" \
        --extend --no-progress "${REUSE[@]}"
    if [[ ! -f "$D/model.pt" ]]; then
        RESUME=(); [[ -f "$D/model.pt.ckpt" ]] && RESUME=(--resume)
        mpirun -n "$NP" hpcdens train "$OUT/shells/dens50.toml" --data "$OUT/$t.h5" \
            --out "$D/model.pt" --no-progress "${RESUME[@]}"
    fi
    [[ -f "$D/test/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate "$D/model.pt" \
        "$OUT/test.h5" --config "$IN/crfeconi-test.toml" --out "$D/test" --energy-samples 0 \
        --overwrite
    [[ -f "$D/atoms.pt" ]] || mpirun -n "$NP" hpcdens charges "$D/model.pt" --out "$D/atoms.pt"
    [[ -f "$D/shells.pt" ]] || mpirun -n "$NP" hpcdens charges "$D/model.pt" --out "$D/shells.pt" \
        --shells "${SHELLS[@]}"
    printf '\n=== %s: charge corrections on the 12 test cells ===\n' "$t"
    [[ -f "$D/shells.json" ]] || python launch/shell_correction.py "$D/test" "$OUT/test.h5" \
        "$IN/crfeconi-test.toml" --shells "${SHELLS[@]}" \
        --models "atom-krr=$D/atoms.pt" "shell-krr=$D/shells.pt" --json "$D/shells.json" \
        | tee "$D/shells.md"
done
