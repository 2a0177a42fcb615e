#!/usr/bin/env bash
# SCF from a prediction with SPARC (docs/energy.md, "SCF started from the prediction"): a Si model
# trained on SPARC labels of rattled 8-atom cells predicts 4 further 8-atom cells and 2 64-atom
# cells; each is then converged with SPARC from the prediction and from SPARC's own start.
#   ASE_SPARC_COMMAND=/path/to/sparc bash launch/scf_start_sparc.sh
# Resumable: finished labels, the model, predictions and per-cell results are kept in
# runs/scf-start/. Cost on 2 cores: labels ~5 min, training ~5 min, the SCF pairs ~20 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${ASE_SPARC_COMMAND:?set ASE_SPARC_COMMAND to the SPARC binary (docs/dft-sparc.md)}"
bash launch/install.sh
# shellcheck disable=SC1091
source launch/env.sh
IN=inputs/scf-start
OUT=runs/scf-start
NP="${HPCDENS_RANKS:-2}"
export OMP_NUM_THREADS=1
for set in si-sparc si-sparc-test si64-sparc-test; do
    mpirun -n "$NP" hpcdens generate "$IN/$set.toml" --extend --no-progress
done
[[ -f "$OUT/si-sparc/model.pt" ]] || mpirun -n "$NP" hpcdens train "$IN/si-sparc.toml"
for set in si-sparc-test si64-sparc-test; do
    [[ -f "$OUT/$set/evaluate/evaluate.json" ]] || mpirun -n "$NP" hpcdens evaluate \
        "$OUT/si-sparc/model.pt" "$OUT/$set/train.h5" --config "$IN/$set.toml" --no-energy
    python launch/scf_start_study.py "$OUT/$set/evaluate/predictions" "$IN/$set.toml" \
        "$OUT/$set/scf-start"
done
