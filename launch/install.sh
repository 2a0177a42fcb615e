#!/usr/bin/env bash
# Install hpcdens and everything it needs, idempotently.
#
#   bash launch/install.sh                        # system packages (Debian/Ubuntu, as root), .venv, hpcdens
#   HPCDENS_EXTRAS=mlip bash launch/install.sh    # the same plus the MLIP extra (SevenNet, CHGNet)
#
# What it does (each step is skipped when already done):
#   1. Debian packages: OpenMPI and the OpenMPI flavour of HDF5 (apt-get, needs root).
#      Set HPCDENS_SKIP_APT=1 on a cluster where MPI and parallel HDF5 come from modules.
#   2. A virtual environment in <repo>/.venv (HPCDENS_VENV overrides the path).
#   3. mpi4py, h5py built from source against parallel HDF5 (h5py.get_config().mpi must be True),
#      torch==2.13.0 (CPU wheel; an already installed compatible torch is kept; HPCDENS_TORCH_SPEC
#      names another, e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"),
#      then hpcdens itself, editable, with its test extra and the extras named in HPCDENS_EXTRAS
#      (comma-separated; "mlip": universal ML potentials for MD snapshots, ~0.4 GB, weights in the
#      wheels). The parallel h5py and the installed torch are pinned while installing (constraints).
# A second run does no network work: a stamp file records the hash of pyproject.toml and this
# script, and the extras installed (which later runs keep).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HPCDENS_VENV:-$ROOT/.venv}"
PY="${HPCDENS_PYTHON:-python3}"
H5PY_VERSION=3.16.0
STAMP="$VENV/.hpcdens-install-stamp"

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

# Modules each extra must make importable (the check at the end and the up-to-date test).
declare -A EXTRA_MODULES=([mlip]="sevenn, chgnet")
IFS=',' read -r -a requested <<< "${HPCDENS_EXTRAS:-}"
for extra in "${requested[@]}"; do
    [[ -n "${EXTRA_MODULES[$extra]:-}" ]] || die "unknown extra '$extra' in HPCDENS_EXTRAS; known: ${!EXTRA_MODULES[*]}"
done

# The stamp holds the hash of pyproject.toml and this script, then the extras installed. Extras
# stay installed: a later run without them keeps (and updates) them, so runs that ask for
# different extras (launch/demo.sh, launch/test.sh) do not reinstall each other's.
stamp_hash() { cat "$ROOT/pyproject.toml" "$ROOT/launch/install.sh" | sha256sum | cut -d' ' -f1; }
read -r old_hash old_extras 2>/dev/null < "$STAMP" || old_hash="" old_extras=""
IFS=',' read -r -a stamped <<< "${old_extras:-}"
declare -A wanted=()
for extra in "${requested[@]}" "${stamped[@]}"; do
    if [[ -n "${EXTRA_MODULES[$extra]:-}" ]]; then wanted[$extra]=1; fi
done
EXTRAS="$(printf '%s\n' "${!wanted[@]}" | sort | paste -sd, -)"
EXTRA_IMPORTS=""
for extra in "${!wanted[@]}"; do EXTRA_IMPORTS+=", ${EXTRA_MODULES[$extra]}"; done

if [[ "$old_hash" == "$(stamp_hash)" && "$old_extras" == "$EXTRAS" ]] \
   && "$VENV/bin/python" -c "import h5py, mpi4py, torch, hpcdens$EXTRA_IMPORTS; assert h5py.get_config().mpi" 2>/dev/null; then
    say "up to date ($VENV${EXTRAS:+, extras $EXTRAS}); nothing to do"
    exit 0
fi

# 1. System packages -------------------------------------------------------------------------
APT_PKGS=(openmpi-bin libopenmpi-dev libhdf5-openmpi-dev pkg-config build-essential)
if [[ "${HPCDENS_SKIP_APT:-0}" != 1 ]]; then
    missing=()
    for p in "${APT_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} (OpenMPI + parallel HDF5) by hand, then rerun with HPCDENS_SKIP_APT=1"
        [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root: run 'sudo bash launch/install.sh', or install them and set HPCDENS_SKIP_APT=1"
        say "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
command -v mpicc >/dev/null || die "mpicc not found: install OpenMPI (Debian: libopenmpi-dev) or load your site's MPI module"

# 2. Virtual environment ----------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# 3. Python packages ---------------------------------------------------------------------------
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" numpy cython pkgconfig mpi4py

if ! "$VENV/bin/python" -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" 2>/dev/null; then
    HDF5_DIR="${HDF5_DIR:-}"
    if [[ -z "$HDF5_DIR" ]]; then
        # Debian's hdf5-openmpi.pc has no libdir variable: take the -L path of its Libs line.
        libdir="$(pkg-config --libs-only-L hdf5-openmpi 2>/dev/null | sed -n 's/^ *-L\([^ ]*\).*/\1/p')"
        [[ -n "$libdir" ]] || die "pkg-config cannot find hdf5-openmpi: install libhdf5-openmpi-dev or set HDF5_DIR to a parallel HDF5 installation"
        HDF5_DIR="$libdir"
    fi
    say "building h5py $H5PY_VERSION against parallel HDF5 in $HDF5_DIR (1-2 minutes)"
    CC=mpicc HDF5_MPI=ON HDF5_DIR="$HDF5_DIR" \
        "${PIP[@]}" --no-binary=h5py --no-build-isolation --force-reinstall --no-deps "h5py==$H5PY_VERSION"
fi
"$VENV/bin/python" -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" \
    || die "h5py in $VENV was built without MPI (h5py.get_config().mpi is False). Remove it ('$VENV/bin/pip uninstall h5py') and rerun; set HDF5_DIR to a parallel (OpenMPI) HDF5 build."

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    say "installing ${HPCDENS_TORCH_SPEC:-torch==2.13.0}"
    # shellcheck disable=SC2086
    "${PIP[@]}" ${HPCDENS_TORCH_SPEC:-torch==2.13.0}
fi

# Keep the parallel h5py (later installs may not replace it with the serial wheel) and the torch
# just checked (an extra may not up- or downgrade it, nor pull in a CUDA build).
CONSTRAINTS="$VENV/hpcdens-constraints.txt"
printf 'h5py==%s\ntorch==%s\n' "$H5PY_VERSION" \
    "$("$VENV/bin/python" -c "import torch; print(torch.__version__)")" > "$CONSTRAINTS"

say "installing hpcdens (editable) and its dependencies${EXTRAS:+ with the extras $EXTRAS}"
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[test${EXTRAS:+,$EXTRAS}]"

HPCDENS_CHECK_EXTRAS="${EXTRA_IMPORTS#, }" "$VENV/bin/python" - <<'PY' || die "import check failed (see above)"
import importlib, os
import h5py, mpi4py, torch, pyscf, ase, hpcdens
assert h5py.get_config().mpi, "h5py without MPI"
extras = [importlib.import_module(m) for m in os.environ["HPCDENS_CHECK_EXTRAS"].split(", ") if m]
print(f"[install] hpcdens {hpcdens.__version__}: torch {torch.__version__}, h5py {h5py.__version__} (mpi), "
      f"mpi4py {mpi4py.__version__}, pyscf {pyscf.__version__}, ase {ase.__version__}"
      + "".join(f", {m.__name__} {m.__version__}" for m in extras))
PY
echo "$(stamp_hash) $EXTRAS" > "$STAMP"
say "done: activate with 'source $VENV/bin/activate' or call $VENV/bin/hpcdens"
