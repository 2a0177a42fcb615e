#!/usr/bin/env bash
# Production-scale prediction on this machine (issue #16): SiGe diamond cells of 64, 4,096 and
# 32,768 atoms (2^3, 8^3, 16^3 conventional cells) with a vacancy cluster (the N atoms nearest the
# centre removed), predicted on N ranks at 0.4 Bohr with a production-size model (M = 55,
# 128-128-64, N_s = 30; untrained: the speed does not depend on the weights), in the fast-sample
# mode (--samples K) and in the full mode, streamed to a prediction file. Each run prints points/s,
# ms per atom, peak RSS per rank and phase timings; rows are appended to $OUT/large_cell.csv and a
# table of the per-atom cost against the 64-atom cell of the same mode and run, and of each phase's
# points/s/core (points / ranks / the phase's seconds, max over ranks), is printed at the end. Resumable: a (cell, mode) row already in the CSV is not run again.
#
#   bash launch/large_cell.sh                      # 2 ranks, fast K=10; full mode up to 4,096 atoms
#   RANKS=4 FULL_MAX=32768 bash launch/large_cell.sh
# Environment: RANKS (2), SPACING (0.4 Bohr), FAST (10), VOID (4 atoms), FULL_MAX (4096 atoms:
# the largest cell also run in the full mode), OUT (runs/large_cell).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/env.sh
RANKS=${RANKS:-2}; SPACING=${SPACING:-0.4}; FAST=${FAST:-10}; VOID=${VOID:-4}
FULL_MAX=${FULL_MAX:-4096}; OUT=${OUT:-runs/large_cell}
mkdir -p "$OUT"
MODEL=$OUT/model-m55-128-128-64-ns30.pt
[[ -f $MODEL ]] || python -m hpcdens.commands.bench random-model "$MODEL" --m 55 \
    --hidden 128 128 64 --n-samples 30
CSV=$OUT/large_cell.csv
run() {  # run REPS MODE(fast|full)
    local reps=$1 mode=$2 label="$2-$1"
    if [[ -f $CSV ]] && grep -q "^$label," "$CSV"; then echo "[large_cell] $label: in $CSV"; return; fi
    local extra=()
    [[ $mode == fast ]] && extra=(--samples "$FAST")
    echo "[large_cell] $label: $((8 * reps ** 3 - VOID)) atoms, $mode mode, $RANKS ranks, $(date +%T)"
    mpirun -n "$RANKS" hpcdens bench predict "$MODEL" --supercell "$reps" "$reps" "$reps" \
        --spacing-bohr "$SPACING" --vacancy-cluster "$VOID" --csv "$CSV" --label "$label" \
        "${extra[@]}"
}
for reps in 2 8 16; do
    run "$reps" fast
    (( 8 * reps ** 3 <= FULL_MAX )) && run "$reps" full
done
python - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
base = {r["label"].split("-")[0]: float(r["s_per_atom"]) for r in rows if r["label"].endswith("-2")}
print("| mode | atoms | grid | ranks | wall s | ms/atom | vs 64 atoms | points/s | peak RSS MB/rank "
      "| descriptors s (points/s/core) | network s (points/s/core) | write s | setup s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    mode = r["label"].split("-")[0]
    ratio = float(r["s_per_atom"]) / base[mode] if mode in base else float("nan")
    per_core = lambda phase: float(r["points"]) / int(r["ranks"]) / float(r[f"{phase}_s"])
    print(f"| {mode} | {r['atoms']} | {r['grid']} | {r['ranks']} | {float(r['wall_s']):.1f} | "
          f"{1e3 * float(r['s_per_atom']):.3f} | {ratio:.2f} | {float(r['points_per_s']):.0f} | "
          f"{float(r['peak_rss_mb_max']):.0f} | {float(r['descriptors_s']):.1f} "
          f"({per_core('descriptors'):.0f}) | {float(r['network_s']):.1f} "
          f"({per_core('network'):.0f}) | {float(r['write_s']):.1f} | {float(r['setup_s']):.1f} |")
PY
