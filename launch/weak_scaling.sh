#!/usr/bin/env bash
# Weak scaling of `hpcdens predict`: the cell grows with the rank count (about ATOMS atoms per
# rank). Writes OUT/weak.csv, OUT/weak.png (efficiency = points per rank per second against the
# 1-rank run, and phase timings) and prints a table.
#
#   bash launch/weak_scaling.sh [OUT]              (default OUT=runs/scaling)
#
# Environment (defaults in brackets):
#   RANKS ["1 2 4"]          rank counts; on the 2-core development box 4 ranks are
#                            OVERSUBSCRIBED (2 ranks per core): efficiency then halves at best
#   ATOMS ["64 216"]         atoms per rank (the cell is the most cubic repetition of the 8-atom
#                            cell with at least ATOMS x ranks atoms)
#   SPACING [0.6]  REPEATS [2]  MODEL  LAUNCH ["mpirun -n"]  CORES   as in strong_scaling.sh
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/scaling_common.sh"
CASES="${ATOMS:-64 216}"
case_args() { echo "--atoms-per-rank $1"; }
case_label() { echo "$1/rank"; }
run_scaling weak "${1:-runs/scaling}"
