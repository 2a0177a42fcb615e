# Source this file to run hpcdens from this checkout:  source launch/env.sh
# It activates the virtual environment made by launch/install.sh and sets what OpenMPI needs to run
# as root (containers, CI) and with more ranks than cores (laptops, tests). On a cluster, leave the
# oversubscription off (HPCDENS_NO_OVERSUBSCRIBE=1) and launch with srun (see launch/slurm/).
_HPCDENS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "${HPCDENS_VENV:-$_HPCDENS_ROOT/.venv}/bin/activate"
if [[ $(id -u) == 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
if [[ "${HPCDENS_NO_OVERSUBSCRIBE:-0}" != 1 ]]; then
    export OMPI_MCA_rmaps_base_oversubscribe=1
fi
# One thread per rank unless the user says otherwise: ranks x threads must not exceed the cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
unset _HPCDENS_ROOT
