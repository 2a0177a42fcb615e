#!/usr/bin/env bash
# Strong scaling of `hpcdens predict`: fixed cells, growing rank counts. Writes OUT/strong.csv
# (one row per run), OUT/strong.png (speed-up vs 1 rank and phase timings) and prints a table.
#
#   bash launch/strong_scaling.sh [OUT]            (default OUT=runs/scaling)
#
# Environment (defaults in brackets):
#   RANKS ["1 2 4"]          rank counts; on the 2-core development box 4 ranks are
#                            OVERSUBSCRIBED (2 ranks per core), so expect no gain beyond 2
#   SUPERCELLS ["2x2x2 3x3x3 4x4x4"]  repetitions of the 8-atom SiGe diamond cell
#   SPACING [0.6]            grid spacing, Bohr
#   REPEATS [2]              runs per (cell, ranks); the plot and table use the fastest
#   MODEL                    model file; default: an untrained M=20, 64x64, N_s=10 model
#   LAUNCH ["mpirun -n"]     launcher followed by the rank count (srun: "srun --mpi=pmix -n")
#   CORES [$(nproc)]         cores available (caps the ideal line of the plot)
# Ratios are against the 1-rank run of the same script run: the box is shared and noisy.
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/scaling_common.sh"
CASES="${SUPERCELLS:-2x2x2 3x3x3 4x4x4}"
case_args() { echo "--supercell ${1//x/ }"; }
case_label() { echo "$1"; }
run_scaling strong "${1:-runs/scaling}"
