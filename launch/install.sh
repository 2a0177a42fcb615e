#!/usr/bin/env bash
# Install hpcdens and everything it needs, idempotently.
#
#   bash launch/install.sh          # system packages (Debian/Ubuntu, as root), .venv, hpcdens
#
# What it does (each step is skipped when already done):
#   1. Debian packages: OpenMPI and the OpenMPI flavour of HDF5 (apt-get, needs root).
#      Set HPCDENS_SKIP_APT=1 on a cluster where MPI and parallel HDF5 come from modules.
#   2. A virtual environment in <repo>/.venv (HPCDENS_VENV overrides the path).
#   3. mpi4py, h5py built from source against parallel HDF5 (h5py.get_config().mpi must be True),
#      torch==2.13.0 (CPU wheel; an already installed compatible torch is kept; HPCDENS_TORCH_SPEC
#      names another, e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"),
#      then hpcdens itself, editable, with its test extra.
# A second run does no network work: a stamp file records the hash of pyproject.toml and this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HPCDENS_VENV:-$ROOT/.venv}"
PY="${HPCDENS_PYTHON:-python3}"
H5PY_VERSION=3.16.0
STAMP="$VENV/.hpcdens-install-stamp"

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

stamp_value() {
    cat "$ROOT/pyproject.toml" "$ROOT/launch/install.sh" | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" ]] \
   && "$VENV/bin/python" -c "import h5py, mpi4py, torch, hpcdens; assert h5py.get_config().mpi" 2>/dev/null; then
    say "up to date ($VENV); nothing to do"
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

# Keep the parallel h5py: later installs may not replace it with the serial wheel.
CONSTRAINTS="$VENV/hpcdens-constraints.txt"
echo "h5py==$H5PY_VERSION" > "$CONSTRAINTS"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    say "installing ${HPCDENS_TORCH_SPEC:-torch==2.13.0}"
    # shellcheck disable=SC2086
    "${PIP[@]}" ${HPCDENS_TORCH_SPEC:-torch==2.13.0}
fi

say "installing hpcdens (editable) and its dependencies"
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[test]"

"$VENV/bin/python" - <<'PY' || die "import check failed (see above)"
import h5py, mpi4py, torch, pyscf, ase, hpcdens
assert h5py.get_config().mpi, "h5py without MPI"
print(f"[install] hpcdens {hpcdens.__version__}: torch {torch.__version__}, h5py {h5py.__version__} (mpi), "
      f"mpi4py {mpi4py.__version__}, pyscf {pyscf.__version__}, ase {ase.__version__}")
PY
stamp_value > "$STAMP"
say "done: activate with 'source $VENV/bin/activate' or call $VENV/bin/hpcdens"
