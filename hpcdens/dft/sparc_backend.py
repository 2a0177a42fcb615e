"""SPARC backend: real-space finite-difference Kohn-Sham DFT through SPARC-X-API, behind the
interface of :mod:`hpcdens.dft`.

Three modules by what they own: this one (the interface: valence charges and atomic densities of
the psp8 files, the grid, SCF and Harris-Foulkes energies), :mod:`hpcdens.dft.sparc_psp` (the psp8
files: which one, zion, the atomic valence density) and :mod:`hpcdens.dft.sparc_run` (command line,
environment, input files, running the binary, reading its outputs).

The grid of :func:`make_grid` goes to SPARC as ``FD_GRID`` (so both backends share one grid);
``sparc_psp_dir`` names the psp8 directory (default: the set shipped with SPARC-X-API). Nothing but
:func:`scf` and :func:`harris_foulkes` needs the SPARC binary: the valence charges and the atomic
densities (the SAD of delta-rho models) come from the psp8 files alone.

Energies: SPARC's "Total free energy" is the Mermin free energy E - TS (what its SCF minimises);
its "-Entropy*kb*T" line is -TS. So ``free_energy_ha`` = total free energy and ``energy_ha`` =
total free energy - (-Entropy*kb*T). The density comes from ``<label>.dens`` (a cube in Bohr and
e/Bohr^3 whose values SPARC prints with 7 significant digits).

Failures: see :mod:`hpcdens.dft.sparc_run`; an SCF that stops at ``MAXIT_SCF`` without reaching
``TOL_SCF`` returns a :class:`DFTResult` with ``converged=False`` and a message. Missing binary or
pseudopotential, or an unusable grid, raise before anything runs.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.units import Bohr

from ..config import DFTConfig
from ..errors import DFTSetupError, InputError
from ..grid import Grid
from ..io.cube import write_cube
from . import sparc_psp, sparc_run
from .base import DFTResult

BACKEND = "sparc"

#: Chebyshev filterings on the first SCF step's fixed potential when the SCF starts from a given
#: density (SPARC's own start uses 4). SPARC starts from random orbitals either way; from a density
#: close to self-consistency the SCF error then measures the unconverged orbitals, not the density,
#: and 4 filterings left an SCF from a density 1.4e-3 (NRMSE) away from the answer 3 iterations
#: longer than from the atomic start (docs/energy.md, "SCF started from the prediction").
SEEDED_RHO_TRIGGER = 12


def valence_charges(symbols, settings: DFTConfig) -> dict[str, float]:
    """{element: zion} of the psp8 files SPARC would use for the elements of ``symbols``."""
    return {s: sparc_psp.zion(p) for s, p in sparc_psp.pseudopotentials(symbols, settings).items()}


def radial_densities(symbols, settings: DFTConfig) -> dict:
    """{element: :class:`hpcdens.sad.RadialDensity`}: the atomic valence density stored in each
    element's psp8 file (the one SPARC superposes for its initial guess), scaled to integrate to
    zion (:func:`hpcdens.dft.sparc_psp.radial_density` gives the truncation it corrects)."""
    return {s: sparc_psp.radial_density(p, s)
            for s, p in sparc_psp.pseudopotentials(symbols, settings).items()}


def check_ready(settings: DFTConfig, command: str | None = None) -> None:
    """DFTSetupError, with the fix, when SPARC cannot be started here: ``$ASE_SPARC_COMMAND`` (or
    ``command``) unset, or its launcher or binary missing. Runs nothing."""
    sparc_run.sparc_command(settings.ranks_per_task, command)


def label_settings(settings: DFTConfig) -> dict:
    """The settings that define a SPARC label, under their settings-record names: two labels are
    comparable only when these agree."""
    return {"xc": settings.xc, "smearing_kelvin": settings.smearing_kelvin}


def make_grid(atoms: Atoms, settings: DFTConfig) -> Grid:
    """The grid :func:`scf` uses for ``atoms``: spacing <= ``settings.mesh_spacing_bohr`` along
    each lattice vector, odd point counts (:meth:`Grid.from_spacing`), written to SPARC as
    ``FD_GRID``. Raises :class:`DFTSetupError` for non-periodic atoms and InputError for a grid
    the project's grid rule (:meth:`Grid.check`, which covers SPARC's 6-point stencil) refuses."""
    if not np.all(atoms.pbc):
        raise DFTSetupError(f"SPARC backend needs a periodic cell (pbc = {atoms.pbc.tolist()}); "
                            "set atoms.pbc = True")
    grid = Grid.from_spacing(np.asarray(atoms.cell) / Bohr, settings.mesh_spacing_bohr)
    return grid.check("a smaller dft.mesh_spacing_bohr or a larger cell")


def scf(atoms: Atoms, settings: DFTConfig, *, workdir=None, command: str | None = None,
        timeout_s: float | None = None) -> DFTResult:
    """Self-consistent PBE ground state of ``atoms`` (Angstrom) with SPARC.

    Parameters
    ----------
    atoms : ase.Atoms, Angstrom, periodic
    settings : DFTConfig
    workdir : path, optional
        Directory for SPARC's files (kept). Default: a temporary directory, removed after a
        successful run and kept (named in the error) after a failed one.
    command : str, optional
        Overrides ``$ASE_SPARC_COMMAND``.
    timeout_s : float, optional
        Wall-clock limit; the whole process group is killed when it is exceeded.

    Returns
    -------
    DFTResult with ``rho`` on :func:`make_grid` (e/Bohr^3), energies in Ha.
    """
    return _scf(atoms, make_grid(atoms, settings), settings, None, None, workdir, command,
                timeout_s)


def scf_from_density(atoms: Atoms, grid: Grid, settings: DFTConfig, rho0=None, callback=None, *,
                     workdir=None, command: str | None = None,
                     timeout_s: float | None = None) -> DFTResult:
    """:func:`scf` of ``atoms`` on ``grid`` whose first input density is ``rho0`` (e/Bohr^3 on
    ``grid``, renormalised to N_e by the caller: SPARC does not rescale it), or SPARC's own start
    (the superposition of the psp8 atomic densities) when ``rho0`` is None. ``rho0`` goes to SPARC
    as a cube with ``READ_INIT_DENS: 1`` and :data:`SEEDED_RHO_TRIGGER` filterings on its
    potential; every other keyword, the convergence criterion (``TOL_SCF``) included, is
    :func:`scf`'s. SPARC runs as its own process, so ``callback`` (if given) is called after the
    run, once per SCF cycle in order, with ``{"cycle", "free_energy_per_atom_ha", "scf_error"}``
    (cycle from 1; SPARC's per-cycle free energy per atom, printed to 10 digits, and its SCF
    error, the relative change of the mixed variable). Other arguments as in :func:`scf`."""
    _check_grid(atoms, grid)
    return _scf(atoms, grid, settings, rho0, callback, workdir, command, timeout_s)


def _scf(atoms, grid, settings, rho0, callback, workdir, command, timeout_s) -> DFTResult:
    start = {} if rho0 is None else {"RHO_TRIGGER": SEEDED_RHO_TRIGGER}
    job, out, wall, rho = _run(atoms, grid, settings, rho0, command, workdir, timeout_s, **start)
    if callback is not None:
        for cycle in out["cycles"]:
            callback(cycle)
    message = "" if out["converged"] else (
        f"SCF stopped after {out['n_iterations']} iterations (MAXIT_SCF = "
        f"{settings.max_scf_cycles}) with SCF error {out['last_scf_error']:.3g} > TOL_SCF = "
        f"{settings.scf_tol:g}")
    extra = {} if rho0 is None else {"scf_start": "given density"}
    return _result(out, job, settings, rho, grid, wall, out["converged"], out["n_iterations"],
                   message, **extra)


def harris_foulkes(atoms: Atoms, grid: Grid, rho, settings: DFTConfig, *, workdir=None,
                   command: str | None = None, timeout_s: float | None = None) -> DFTResult:
    """One-shot Harris-Foulkes energy of the given density ``rho`` (e/Bohr^3 on ``grid``).

    SPARC reads ``rho`` (written with :func:`hpcdens.io.cube.write_cube`, 12-decimal voxels so
    SPARC's 1e-4 Bohr lattice check passes) with ``READ_INIT_DENS: 1``, filters 20 times on its
    fixed potential (``RHO_TRIGGER: 20``) and stops after one SCF step (``MAXIT_SCF: 1``). SPARC
    does not renormalise ``rho``: scale it to N_e first. The result carries ``rho`` itself, its
    energies, ``n_iterations = 1`` and ``converged = True`` (the evaluation completed).
    """
    _check_grid(atoms, grid)
    job, out, wall, _ = _run(atoms, grid, settings, rho, command, workdir, timeout_s,
                             MAXIT_SCF=1, RHO_TRIGGER=20, PRINT_DENSITY=0)
    return _result(out, job, settings, np.asarray(rho, dtype=float), grid, wall, True, 1, "",
                   mode="harris_foulkes")


def _run(atoms, grid, settings, rho0, command, workdir, timeout_s, **keywords):
    """One SPARC run on ``grid`` (``rho0``, if given, as its initial density): the job, the parsed
    ``.out``, the wall time (s) and the output density (None unless ``PRINT_DENSITY`` is on)."""
    if rho0 is not None:
        keywords.update(READ_INIT_DENS=1, INPUT_DENS_FILE="input.cube")
    job = sparc_run.prepare(atoms, grid, settings, command, **keywords)
    with sparc_run.working_directory(workdir) as wd:
        if rho0 is not None:
            write_cube(wd / "input.cube", atoms, grid, rho0,
                       comment="hpcdens input density (e/Bohr^3)")
        wall = sparc_run.execute(job, wd, timeout_s)
        out = sparc_run.read_output(wd, job.label)
        rho = (sparc_run.read_density(wd / f"{job.label}.dens", grid, wd)
               if job.parameters["PRINT_DENSITY"] else None)
    return job, out, wall, rho


def _result(out, job, settings, rho, grid, wall, converged, n_iterations, message,
            **record) -> DFTResult:
    return DFTResult(
        energy_ha=out["free_energy_ha"] - out["minus_ts_ha"], free_energy_ha=out["free_energy_ha"],
        rho=rho, grid=grid, n_electrons=out["n_electrons"], fermi_level_ha=out["fermi_level_ha"],
        converged=converged, n_iterations=n_iterations, wall_time_s=wall, backend=BACKEND,
        settings=job.record(settings, sparc_version=out["sparc_version"], **record),
        message=message)


def _check_grid(atoms: Atoms, grid: Grid):
    diff = np.abs(np.asarray(atoms.cell) / Bohr - grid.cell_bohr).max()
    if diff > 1e-6:
        raise InputError(f"grid cell differs from atoms.cell by {diff:.3g} Bohr; SPARC's grid "
                         "spans the atoms' cell, so build the grid from it (make_grid)")
    grid.check()
