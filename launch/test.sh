#!/usr/bin/env bash
# Install (idempotent) with the mlip extra, then run the whole test suite:
#   1. the serial tests (pytest),
#   2. the MPI tests under `mpirun -n 2` and `mpirun -n 3` (pytest-mpi, tests marked @pytest.mark.mpi).
# Extra arguments go to every pytest run, e.g. `bash launch/test.sh -k config`.
# Only rank 0 prints under mpirun; the other ranks' output is kept in $LOGDIR and shown on failure.
# The mlip extra (SevenNet, CHGNet: ~1 minute, ~0.4 GB) is installed so that tests/test_md_mlip.py
# runs rather than skips; `HPCDENS_EXTRAS= bash launch/test.sh` leaves it out.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HPCDENS_EXTRAS="${HPCDENS_EXTRAS-mlip}" bash launch/install.sh || exit 1
# shellcheck disable=SC1091
source launch/env.sh
LOGDIR="$(mktemp -d /tmp/hpcdens-test.XXXXXX)"
declare -a SUMMARY=()
status=0

run_serial() {
    echo "=== serial tests ==="
    python -m pytest -q -p no:cacheprovider "$@"
    local rc=$?
    SUMMARY+=("serial: $( ((rc == 0)) && echo passed || echo "FAILED (exit $rc)")")
    ((rc == 0)) || status=1
}

run_mpi() {
    local n=$1; shift
    echo "=== MPI tests, mpirun -n $n ==="
    mpirun -n "$n" bash -c '
        r=${OMPI_COMM_WORLD_RANK:-0}; log=$0; shift
        if [[ $r == 0 ]]; then exec python -m pytest -q -p no:cacheprovider --with-mpi -m mpi "$@"
        else exec python -m pytest -q -p no:cacheprovider --with-mpi -m mpi "$@" > "$log.rank$r" 2>&1; fi
    ' "$LOGDIR/mpi$n" "$@"
    local rc=$?
    if ((rc != 0)); then
        for f in "$LOGDIR/mpi$n".rank*; do echo "--- $f (last 40 lines) ---"; tail -n 40 "$f"; done
        status=1
    fi
    SUMMARY+=("mpirun -n $n: $( ((rc == 0)) && echo passed || echo "FAILED (exit $rc)")")
}

run_serial "$@"
run_mpi 2 "$@"
run_mpi 3 "$@"
echo "=== summary ==="
printf '  %s\n' "${SUMMARY[@]}"
exit $status
