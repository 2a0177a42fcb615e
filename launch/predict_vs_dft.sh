#!/usr/bin/env bash
# Prediction against DFT on the same cell and ranks, in one run (issue #16 targets; docs/scaling.md,
# "Prediction against the SCF"): the 64-atom Si0.5Ge0.5 diamond cell of `hpcdens bench dft --cells
# SiGe64` (a = 5.54 A, 0.4 Bohr) is converged once by the DFT backend on $RANKS ranks, then
# predicted on the DFT's own mesh by `mpirun -n $RANKS hpcdens predict` in the full mode (all N_s
# samples), the fast mode (--samples $FAST) and the posterior-mean mode, $REPEATS times each. The
# prediction times are whole command wall times (mpirun, imports, model read, file write: what a
# user waits for); the table gives each as a ratio to the SCF's wall time.
#
#   ASE_SPARC_COMMAND=/path/to/sparc bash launch/predict_vs_dft.sh [MODEL]
# MODEL defaults to an untrained production-size model (M = 55, 128-128-64, N_s = 30: the cost
# does not depend on the weights). Environment: BACKEND (sparc; pyscf runs the SCF in one process
# with $OMP_NUM_THREADS threads), RANKS (2), FAST (10), REPEATS (3), OUT (runs/predict-vs-dft).
# Resumable: the SCF's row (OUT/dft.json) is kept; the predictions are timed again.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source launch/env.sh
BACKEND=${BACKEND:-sparc}; RANKS=${RANKS:-2}; FAST=${FAST:-10}; REPEATS=${REPEATS:-3}
OUT=${OUT:-runs/predict-vs-dft}
mkdir -p "$OUT"
MODEL=${1:-$OUT/model-m55-128-128-64-ns30.pt}
[[ -f $MODEL ]] || python -m hpcdens.commands.bench random-model "$MODEL" --m 55 \
    --hidden 128 128 64 --n-samples 30
DFT=$OUT/dft-$BACKEND-$RANKS.json
if [[ ! -f $DFT ]]; then
    echo "[predict_vs_dft] SCF of SiGe64 with $BACKEND on $RANKS ranks, $(date +%T)"
    hpcdens bench dft --backends "$BACKEND" --cells SiGe64 --ranks "$RANKS" --json "$DFT.tmp" \
        --structures "$OUT"
    mv "$DFT.tmp" "$DFT"
fi
read -r -a SHAPE <<< "$(python -c "import json,sys; r=json.load(open(sys.argv[1]))[0]
sys.exit('the SCF did not run: ' + r['skipped']) if 'skipped' in r else print(r['mesh'].replace('x',' '))" "$DFT")"
TIMES=$OUT/times-$RANKS.csv
echo "mode,repeat,wall_s" > "$TIMES"
for rep in $(seq 1 "$REPEATS"); do
    for mode in all "$FAST" mean; do
        extra=(); [[ $mode != all ]] && extra=(--samples "$mode")
        t0=$(date +%s.%N)
        mpirun -n "$RANKS" hpcdens predict "$MODEL" "$OUT/SiGe64.extxyz" --shape "${SHAPE[@]}" \
            --out "$OUT/pred-$mode.h5" --overwrite "${extra[@]}" > "$OUT/pred-$mode.log" 2>&1
        t1=$(date +%s.%N)
        echo "$mode,$rep,$(python -c "print(f'{$t1 - $t0:.3f}')")" >> "$TIMES"
        echo "[predict_vs_dft] predict, samples $mode, repeat $rep: $(tail -1 "$TIMES" | cut -d, -f3) s"
    done
done
python - "$DFT" "$TIMES" <<'PY'
import csv, json, sys
dft = json.load(open(sys.argv[1]))[0]
best = {}
for r in csv.DictReader(open(sys.argv[2])):
    best[r["mode"]] = min(best.get(r["mode"], float("inf")), float(r["wall_s"]))
print(f"\nSiGe64 ({dft['atoms']} atoms, {dft['mesh']} points), {dft['ranks']} ranks")
print(f"| run | wall s | DFT / run |\n|---|---|---|")
print(f"| {dft['backend']} SCF ({dft['iterations']} iterations) | {dft['wall_s']:.1f} | 1 |")
for mode, t in best.items():
    name = {"all": "predict, full (all N_s samples)", "mean": "predict, posterior mean"}.get(
        mode, f"predict, fast (--samples {mode})")
    print(f"| {name}, best of {sum(1 for _ in csv.DictReader(open(sys.argv[2])) if _['mode'] == mode)} "
          f"| {t:.2f} | {dft['wall_s'] / t:.1f}x |")
PY
