"""Running SPARC: the command line and environment, the input files, the job and its outputs.

The binary comes from ``$ASE_SPARC_COMMAND`` (the variable SPARC-X-API reads), for example
``mpirun -np 2 /opt/sparc/lib/sparc`` or just ``/opt/sparc/lib/sparc``. The rank count is always
``settings.ranks_per_task``: an ``-n``/``-np``/``--ntasks`` value in the command is replaced, a
command without a launcher is prefixed with ``mpirun -n N`` when N > 1. ``-name <label>`` is
appended. The child's environment drops the variables of an enclosing mpirun (nested mpirun refuses
to start otherwise), sets OpenMPI's run-as-root and oversubscribe switches, turns core binding off
by default (independent mpiruns would all bind to the same first cores), and defaults
``OMP_NUM_THREADS`` to 1.

Inputs are written with SPARC-X-API's io layer (:class:`sparc.io.SparcBundle`, which validates the
keywords against SPARC's documented parameter list, sorts atoms by species and copies the psp8
files of :mod:`hpcdens.dft.sparc_psp`), SPARC runs as a subprocess, and its outputs are read back
with the same bundle. Settings (:class:`hpcdens.config.DFTConfig`) map onto SPARC keywords: the
grid -> ``FD_GRID``, xc "PBE" -> ``EXCHANGE_CORRELATION: GGA_PBE``, gamma point -> ``KPOINT_GRID:
1 1 1``, ``smearing_kelvin`` -> ``ELEC_TEMP_TYPE: fermi-dirac`` and ``ELEC_TEMP``, ``scf_tol`` ->
``TOL_SCF`` (SPARC's SCF error is the relative residual of the density, ||rho_out - rho_in|| /
||rho_out||, not an energy change), ``max_scf_cycles`` -> ``MAXIT_SCF``. Lattice vectors and
positions go to the input with 14 decimals (Bohr).

Failures: a run that crashes, exits non-zero or times out raises :class:`hpcdens.errors.DFTFailed`
(its message names the kept working directory and quotes the end of the log), as does one that
leaves no output or density; a missing binary raises :class:`hpcdens.errors.DFTSetupError`
before anything runs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Hartree

from ..config import DFTConfig
from ..errors import DFTFailed, DFTSetupError
from ..grid import Grid
from ..io.cube import read_cube
from . import sparc_psp

ENV_COMMAND = "ASE_SPARC_COMMAND"
EXAMPLE_COMMAND = "mpirun -np 2 /path/to/sparc/lib/sparc"
LABEL = "hpcdens"
XC_KEYWORDS = {"PBE": "GGA_PBE"}
LAUNCHERS = ("mpirun", "mpiexec", "orterun", "srun")
RANK_OPTIONS = ("-n", "-np", "--np", "--n", "--ntasks")
#: Variables an enclosing launcher sets in its ranks; a nested mpirun started with them refuses to
#: run ("mpirun does not support recursive calls"). Plain user OMPI_MCA_* settings are kept.
_LAUNCHER_MCA = ("OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix", "OMPI_MCA_initial_wdir",
                 "OMPI_MCA_mpi_oversubscribe", "OMPI_MCA_shmem_RUNTIME_QUERY_hint")
_LOG_TAIL_LINES = 25
_NOT_CONVERGED = re.compile(r"did not converge to desired accuracy")
_SCF_COUNT = re.compile(r"Total number of SCF:\s*(\d+)")

SETUP_HOWTO = (
    f"no SPARC binary configured: ${ENV_COMMAND} is not set. Set it to the command that runs "
    f"SPARC, e.g. export {ENV_COMMAND}=\"{EXAMPLE_COMMAND}\" (or just the path of the sparc "
    "binary; hpcdens sets the rank count from dft.ranks_per_task and appends -name <label>). "
    "SPARC comes from your site (module) or conda-forge (package sparc-x); "
    "or use the embedded backend: [dft] backend = \"pyscf\"")


# ----------------------------------------------------------------------------- command and env
def sparc_command(ranks: int, command: str | None = None, environ=None) -> tuple[list[str], dict]:
    """argv that runs SPARC on ``ranks`` MPI ranks (without ``-name``), and the environment
    assignments that led the command (``VAR=value sparc`` style).

    ``command`` defaults to ``$ASE_SPARC_COMMAND``; :class:`DFTSetupError` with the how-to when
    neither is set, or when the launcher or an explicitly given binary path does not exist.
    """
    environ = os.environ if environ is None else environ
    raw = command if command is not None else environ.get(ENV_COMMAND, "")
    if not raw.strip():
        raise DFTSetupError(SETUP_HOWTO)
    try:
        tokens = shlex.split(raw)
    except ValueError as err:
        raise DFTSetupError(f"cannot parse ${ENV_COMMAND} = {raw!r}: {err}") from err
    assignments = {}
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        assignments[key] = value
    if not tokens:
        raise DFTSetupError(f"${ENV_COMMAND} = {raw!r} names no program. {SETUP_HOWTO}")
    if Path(tokens[0]).name in LAUNCHERS:
        tokens = _with_rank_count(tokens, ranks)
    elif ranks > 1:
        launcher = shutil.which("mpirun") or shutil.which("mpiexec")
        if launcher is None:
            raise DFTSetupError(f"dft.ranks_per_task = {ranks} needs mpirun or mpiexec on PATH; "
                                f"put one there or give the full launcher in ${ENV_COMMAND}")
        tokens = [launcher, "-n", str(ranks), *tokens]
    _check_program(tokens[0], raw)
    if "/" in tokens[-1]:
        _check_program(tokens[-1], raw)
    return tokens, assignments


def _with_rank_count(tokens: list[str], ranks: int) -> list[str]:
    """``tokens`` (launcher first, binary last) with the rank count set to ``ranks``."""
    out, i, found = [tokens[0]], 1, False
    while i < len(tokens) - 1:
        tok = tokens[i]
        if tok in RANK_OPTIONS:
            out += [tok, str(ranks)]
            i, found = i + 2, True
            continue
        if "=" in tok and tok.split("=", 1)[0] in RANK_OPTIONS:
            out.append(f"{tok.split('=', 1)[0]}={ranks}")
            found = True
        else:
            out.append(tok)
        i += 1
    out += tokens[i:]
    return out if found else [out[0], "-n", str(ranks), *out[1:]]


def _check_program(program: str, raw: str):
    found = shutil.which(program) if "/" not in program else (
        program if os.path.isfile(program) and os.access(program, os.X_OK) else None)
    if found is None:
        raise DFTSetupError(f"{program!r} from ${ENV_COMMAND} = {raw!r} is not an executable "
                            f"file or not on PATH; fix the path, e.g. {EXAMPLE_COMMAND!r}")


def subprocess_env(extra=None, environ=None) -> dict:
    """Environment for the SPARC subprocess: ``environ`` without the variables of an enclosing MPI
    launcher, with OpenMPI's run-as-root (when root) and oversubscribe switches, no core binding
    unless ``environ`` names a policy (concurrent mpiruns each bind their rank 0 to core 0), and
    ``OMP_NUM_THREADS`` defaulting to 1; ``extra`` (from the command line) applied last."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if not _is_launcher_variable(k)}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OMPI_MCA_hwloc_base_binding_policy", "none")
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(extra or {})
    return env


def _is_launcher_variable(key: str) -> bool:
    if key.startswith(("PMIX_", "PMI_")):
        return True
    if key.startswith("OMPI_MCA_"):
        return key.startswith(_LAUNCHER_MCA)
    return key.startswith("OMPI_")


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Job:
    """Everything one SPARC run needs, resolved and checked before a directory is made."""

    atoms: Atoms
    argv: list[str]
    env: dict
    parameters: dict
    pseudopotentials: dict
    psp_dir: Path
    ranks: int
    label: str = LABEL

    def record(self, settings: DFTConfig, **extra) -> dict:
        """JSON-serialisable record of what was run."""
        return {
            "code": "SPARC", "command": shlex.join(self.argv + ["-name", self.label]),
            "ranks": self.ranks, "xc": settings.xc,
            "mesh_spacing_bohr": settings.mesh_spacing_bohr,
            "smearing_kelvin": settings.smearing_kelvin, "scf_tol": settings.scf_tol,
            "max_scf_cycles": settings.max_scf_cycles,
            "sparc_parameters": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                 for k, v in self.parameters.items()},
            "sparc_psp_dir": settings.sparc_psp_dir, "psp_dir": str(self.psp_dir),
            "pseudopotentials": {s: p.name for s, p in self.pseudopotentials.items()},
            "sparc_x_api_version": _package_version("sparc-x-api"), **extra}


def sparc_parameters(grid: Grid, settings: DFTConfig, **overrides) -> dict:
    """SPARC keywords for ``settings`` on ``grid`` (doubles as full-precision strings, since
    SPARC-X-API would print floats with 14 fixed decimals, which drops small tolerances)."""
    xc = settings.xc.upper()
    if xc not in XC_KEYWORDS:
        raise DFTSetupError(f"SPARC backend knows xc {list(XC_KEYWORDS)}, not {settings.xc!r}")
    if not settings.smearing_kelvin > 0:
        raise DFTSetupError(f"SPARC needs a positive ELEC_TEMP; dft.smearing_kelvin = "
                            f"{settings.smearing_kelvin}. Use e.g. 631.554")
    params = {
        "EXCHANGE_CORRELATION": XC_KEYWORDS[xc], "KPOINT_GRID": [1, 1, 1],
        "FD_GRID": list(grid.shape), "ELEC_TEMP_TYPE": "fermi-dirac",
        "ELEC_TEMP": repr(float(settings.smearing_kelvin)),
        "TOL_SCF": repr(float(settings.scf_tol)),
        "MAXIT_SCF": int(settings.max_scf_cycles), "PRINT_DENSITY": 1,
    }
    params.update(overrides)
    return params


def prepare(atoms: Atoms, grid: Grid, settings: DFTConfig, command: str | None,
            **overrides) -> Job:
    """The checked :class:`Job` of one SPARC run of ``atoms`` on ``grid`` with ``settings``;
    ``overrides`` are SPARC keywords on top of :func:`sparc_parameters`."""
    argv, assignments = sparc_command(settings.ranks_per_task, command)
    return Job(atoms=_plain_atoms(atoms), argv=argv, env=subprocess_env(assignments),
               parameters=sparc_parameters(grid, settings, **overrides),
               pseudopotentials=sparc_psp.pseudopotentials(atoms.get_chemical_symbols(), settings),
               psp_dir=sparc_psp.psp_dir(settings), ranks=settings.ranks_per_task)


def write_inputs(job: Job, directory: Path):
    """Write ``<label>.inpt``, ``<label>.ion`` and the psp8 files into ``directory`` with
    SPARC-X-API, after removing earlier ``<label>.*`` files (SPARC would otherwise write
    ``.out_01`` next to an old ``.out``)."""
    from sparc.io import SparcBundle

    for old in directory.glob(f"{job.label}.*"):
        old.unlink()
    bundle = SparcBundle(directory=directory, mode="w", label=job.label, psp_dir=job.psp_dir)
    bundle._write_ion_and_inpt(atoms=job.atoms, label=job.label, copy_psp=True,
                               input_parameters=job.parameters,
                               pseudopotentials={s: str(p)
                                                 for s, p in job.pseudopotentials.items()})


def _plain_atoms(atoms: Atoms) -> Atoms:
    """Species, wrapped positions and cell only: no magnetic moments (SPARC-X-API would switch on
    spin), charges or constraints (RELAX flags)."""
    plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    plain.wrap()
    return plain


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def working_directory(workdir):
    """``workdir`` (created, kept), or a temporary directory removed only on success."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="hpcdens-sparc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def execute(job: Job, directory: Path, timeout_s: float | None) -> float:
    """Write the inputs, run SPARC in ``directory``, return the wall time (s). Raises DFTFailed on
    a non-zero exit or a timeout; the whole process group is killed on timeout or interrupt."""
    write_inputs(job, directory)
    argv = job.argv + ["-name", job.label]
    log = directory / "sparc.log"
    start = time.perf_counter()
    with open(log, "w") as fd:
        try:
            with _affinity_for(job.ranks):
                proc = subprocess.Popen(argv, cwd=directory, env=job.env, stdout=fd,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            raise DFTSetupError(f"cannot start SPARC with {shlex.join(argv)!r}: {err}") from err
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DFTFailed(f"SPARC ran longer than {timeout_s} s and was killed; files kept in "
                            f"{directory}{_log_tail(log)}") from None
        except BaseException:
            _kill_group(proc)
            raise
    wall = time.perf_counter() - start
    if code != 0:
        raise DFTFailed(f"SPARC exited with code {code} ({shlex.join(argv)}); files kept in "
                        f"{directory}{_log_tail(log)}")
    return wall


@contextlib.contextmanager
def _affinity_for(ranks: int):
    """Let the child use every CPU when this thread is pinned to fewer than ``ranks`` CPUs.

    A rank of an enclosing mpirun is bound to one core, and its children inherit that mask: all
    SPARC ranks would then share one core (Si8 on 2 ranks: 55 s instead of 2 s). The calling
    thread's mask is widened for the fork and restored after it; the kernel keeps the result
    inside the CPUs the job may use (cgroup/cpuset).
    """
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    if len(before) >= ranks:
        yield
        return
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _kill_group(proc: subprocess.Popen):
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return ""
    return f"; end of {log.name}:\n" + "\n".join(lines) if lines else f"; {log.name} is empty"


# ----------------------------------------------------------------------------- outputs
def read_output(directory: Path, label: str) -> dict:
    """Energies (Ha), Fermi level (Ha), N_e, SCF count and convergence from ``<label>.out`` and
    ``<label>.static``, parsed by SPARC-X-API (which converts to eV; converted back here)."""
    from sparc.io import SparcBundle

    out_path = directory / f"{label}.out"
    try:
        text = out_path.read_text()
    except OSError as err:
        raise DFTFailed(f"SPARC left no {out_path.name} in {directory}"
                        f"{_log_tail(directory / 'sparc.log')}") from err
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            raw = SparcBundle(directory=directory, mode="r", label=label,
                              psp_dir=directory).read_raw_results()
        out = raw["out"]
        step = out["ionic_steps"][-1]
        free = _static_free_energy(raw)
        if free is None:
            free = step["total free energy"]["value"] / Hartree
        scf_errors = step["convergence"][-1]["SCF Error"]
        return {
            "free_energy_ha": float(free),
            "minus_ts_ha": float(step["-entropy*kb*t"]["value"]) / Hartree,
            "fermi_level_ha": float(step["fermi level"]["value"]) / Hartree,
            "n_electrons": float(out["run_info"]["total number of electrons"]),
            "n_iterations": int(_SCF_COUNT.findall(text)[-1]),
            "cycles": _cycles(step["convergence"][-1]),
            "last_scf_error": float(scf_errors[-1]),
            "converged": _NOT_CONVERGED.search(text) is None,
            "sparc_version": out.get("sparc_version"),
        }
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise DFTFailed(f"cannot read SPARC's results from {out_path} ({type(err).__name__}: "
                        f"{err}); files kept in {directory}") from err


def _cycles(table: dict) -> list[dict]:
    """The SCF table of the ``.out`` as one dict per cycle: ``cycle`` (from 1),
    ``free_energy_per_atom_ha`` and ``scf_error`` (SPARC-X-API gives the free energy in eV/atom
    under its Ha/atom header)."""
    free = next((v for k, v in table.items() if k.lower().startswith("free energy")), None)
    if free is None:
        raise KeyError("no free-energy column in the SCF table")
    return [{"cycle": int(i), "free_energy_per_atom_ha": float(f) / Hartree,
             "scf_error": float(e)}
            for i, f, e in zip(table["Iteration"], free, table["SCF Error"])]


def _static_free_energy(raw: dict):
    """The 15-digit free energy of ``.static`` (Ha), or None (the ``.out`` has 10 digits)."""
    static = raw.get("static")
    if isinstance(static, list) and static and "free energy" in static[-1]:
        return static[-1]["free energy"] / Hartree
    return None


def read_density(path: Path, grid: Grid, directory: Path) -> np.ndarray:
    """SPARC's density cube on ``grid``. Its header carries 6-decimal voxels, so the cell is
    checked to n * 1e-6 Bohr and ``grid`` (exact) is kept."""
    if not path.is_file():
        raise DFTFailed(f"SPARC left no density file {path.name} in {directory}"
                        f"{_log_tail(directory / 'sparc.log')}")
    _, file_grid, rho = read_cube(path)
    tol = 1e-6 * (max(grid.shape) + 1)
    if file_grid.shape != grid.shape or np.abs(file_grid.cell_bohr - grid.cell_bohr).max() > tol:
        raise DFTFailed(f"{path} holds grid {file_grid.shape} over cell "
                        f"{file_grid.cell_bohr.tolist()} Bohr; expected {grid.shape} over "
                        f"{grid.cell_bohr.tolist()}")
    return rho


def _package_version(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
