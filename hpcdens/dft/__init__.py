"""DFT backends behind one interface.

Each backend is a module (registered in :data:`BACKENDS`, imported only when used) with these
functions; ``settings`` is a :class:`hpcdens.config.DFTConfig`, ``atoms`` ASE Atoms (Angstrom),
``symbols`` an iterable of element symbols:

``valence_charges(symbols, settings) -> dict[str, float]``
    Valence electrons of each element of ``symbols`` in the pseudopotentials the backend uses with
    ``settings`` (their ionic charges): N_e of a structure is their sum over its atoms.
``radial_densities(symbols, settings) -> dict[str, hpcdens.sad.RadialDensity]``
    The spherical neutral-atom valence density of each element as a radial table (Bohr,
    e/Bohr^3), integrating to its ``valence_charges`` entry; :mod:`hpcdens.sad` superposes them.
``label_settings(settings) -> dict``
    The settings that define a label, under the names the settings record (``DFTResult.settings``)
    uses: labels are comparable only when these agree.
``make_grid(atoms, settings) -> Grid``
    The grid ``scf`` will use for ``atoms``.
``check_ready(settings) -> None``
    :class:`hpcdens.errors.DFTSetupError`, naming the fix, when the backend cannot run here
    (SPARC: no binary); called before work that would end in a DFT run is started.
``scf(atoms, settings) -> DFTResult``
    Self-consistent ground state with ``settings``; the density on the project's grid convention;
    ``DFTResult.settings`` is the JSON-serialisable record of what was used.
``harris_foulkes(atoms, grid, rho, settings) -> DFTResult``
    The Harris-Foulkes energy of a given density ``rho`` on ``grid`` (one non-self-consistent
    Kohn-Sham step with the same code and settings as ``scf``); ``rho`` is used as given, so
    renormalise it to N_e first (Eq. 9).
``scf_from_density(atoms, grid, settings, rho0=None, callback=None) -> DFTResult``
    ``scf`` on ``grid`` whose first input density is ``rho0`` (renormalised to N_e by the
    caller; None: the backend's own start), same convergence criteria. ``callback(dict)`` gets
    one dict per SCF cycle with at least ``cycle`` (from 1): PySCF calls it during the run, SPARC
    after it (its own process).

Optional capabilities (test with :func:`has_capability`):
``harris_foulkes_setup(atoms, grid, settings) -> callable(rho) -> DFTResult``
    The structure's one-time set-up of ``harris_foulkes`` kept for many densities (its
    ``setup_wall_time_s``; each result's ``wall_time_s`` is that evaluation's). PySCF has it.

Backend-independent helpers built on the interface: :func:`valence_electrons` (N_e),
:func:`harris_foulkes_evaluator`, :func:`atomic_density_points` / :func:`atomic_density` (the SAD),
:func:`mesh_charge_errors` / :func:`check_mesh_resolves` (does the mesh resolve the valence and
semicore densities?) and :func:`settings_from_record`.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
from ase.units import Bohr

from ..config import DFTConfig
from ..errors import DFTInputError, DFTSetupError
from ..grid import Grid
from ..sad import aliasing_error, superpose
from .base import DFTResult, cell_bohr, check_grid_cell

BACKENDS = {"pyscf": "hpcdens.dft.pyscf_backend", "sparc": "hpcdens.dft.sparc_backend"}

__all__ = ["BACKENDS", "MAX_CHARGE_ERROR", "DFTResult", "atomic_density", "atomic_density_points",
           "check_mesh_resolves", "get_backend", "harris_foulkes_evaluator", "has_capability",
           "mesh_charge_errors", "settings_from_record", "valence_electrons"]

#: Largest typical relative charge error of one atom on the DFT grid (:func:`mesh_charge_errors`)
#: accepted for labels. The atomic densities are exact (radial integral = valence charge to
#: ~1e-10), so the error is the mesh's aliasing alone; the crystal's SCF density has errors of
#: the same size (docs/dft.md, "Charge on the grid"): semicore Ni at 0.3 / 0.25 / 0.2 Bohr
#: about 4e-4 / 4e-5 / 3e-7 (refused / accepted / accepted), Ge at 0.6 Bohr 4e-5.
MAX_CHARGE_ERROR = 1e-4


def get_backend(name: str):
    """The backend module registered under ``name`` ("pyscf" or "sparc")."""
    if name not in BACKENDS:
        raise DFTSetupError(f"unknown DFT backend {name!r}; available: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])


def has_capability(name: str, capability: str) -> bool:
    """Whether the backend ``name`` offers the optional function ``capability``."""
    return callable(getattr(get_backend(name), capability, None))


def harris_foulkes_evaluator(atoms, grid: Grid, settings: DFTConfig, **backend_options):
    """A callable ``rho -> DFTResult`` giving the Harris-Foulkes energy of densities of ``atoms``
    on ``grid`` (e/Bohr^3, used as given): the backend's ``harris_foulkes_setup`` when it has one
    (set-up once, ``setup_wall_time_s``), else its ``harris_foulkes`` per call with
    ``backend_options`` (SPARC: workdir, command, timeout_s), ``setup_wall_time_s`` = 0."""
    backend = get_backend(settings.backend)
    if has_capability(settings.backend, "harris_foulkes_setup") and not backend_options:
        return backend.harris_foulkes_setup(atoms, grid, settings)

    def evaluate(rho):
        return backend.harris_foulkes(atoms, grid, rho, settings, **backend_options)

    evaluate.setup_wall_time_s = 0.0
    return evaluate


def valence_electrons(atoms, settings: DFTConfig) -> float:
    """N_e of ``atoms``: the valence charges of ``settings.backend``'s pseudopotentials summed
    over the atoms (PySCF: GTH ``settings.pseudo``; SPARC: the psp8 files it would use)."""
    symbols = atoms.get_chemical_symbols()
    charges = get_backend(settings.backend).valence_charges(symbols, settings)
    return float(sum(charges[s] for s in symbols))


def atomic_density_points(atoms, points_bohr, settings: DFTConfig) -> np.ndarray:
    """(npts,) SAD (e/Bohr^3) at arbitrary Cartesian ``points_bohr`` (npts, 3), Bohr: the
    superposition over the atoms of ``atoms`` and their periodic images of the backend's
    ``radial_densities`` (each atom's density integrates to its valence charge)."""
    symbols = atoms.get_chemical_symbols()
    radial = get_backend(settings.backend).radial_densities(symbols, settings)
    return superpose(cell_bohr(atoms, "the SAD"), np.asarray(atoms.positions) / Bohr, symbols, points_bohr,
                     radial)


def atomic_density(atoms, grid: Grid, settings: DFTConfig) -> np.ndarray:
    """(n1, n2, n3) SAD on ``grid`` (e/Bohr^3), which must span the cell of ``atoms``; see
    :func:`atomic_density_points`. Not renormalised: its grid integral approaches N_e as the grid
    resolves the atomic densities."""
    check_grid_cell(atoms, grid, "the SAD")
    return atomic_density_points(atoms, grid.cartesian_points(), settings).reshape(grid.shape)


def mesh_charge_errors(atoms, elements, settings: DFTConfig) -> dict:
    """element -> typical relative charge error of one atom of it on the grid ``settings.backend``
    would use for the cell of ``atoms`` (:func:`hpcdens.sad.aliasing_error`); a missing basis or
    pseudopotential raises the backend's error (PySCF: :class:`DFTInputError`)."""
    backend = get_backend(settings.backend)
    grid = backend.make_grid(atoms, settings)
    radial = backend.radial_densities(sorted(set(elements)), settings)
    return {el: aliasing_error(radial[el], grid.cell_bohr, grid.shape) for el in elements}


def check_mesh_resolves(atoms, elements, settings: DFTConfig, tol: float = MAX_CHARGE_ERROR) -> dict:
    """Refuse, before any DFT, a mesh too coarse for the atomic densities of ``elements`` in the
    cell of ``atoms``: :class:`DFTInputError` when an element's :func:`mesh_charge_errors` entry
    exceeds ``tol``, naming the elements, the error and the largest spacing (in steps of 0.025
    Bohr) at which all pass. Returns element -> error when all pass."""
    errors = mesh_charge_errors(atoms, elements, settings)
    bad = {el: err for el, err in errors.items() if err > tol}
    if not bad:
        return errors
    spacing = settings.mesh_spacing_bohr
    while spacing > 0.1 and max(mesh_charge_errors(atoms, bad, dataclasses.replace(
            settings, mesh_spacing_bohr=spacing)).values()) > tol:
        spacing = round(spacing - 0.025, 3)
    worst = max(bad, key=bad.get)
    raise DFTInputError(
        f"mesh_spacing_bohr = {settings.mesh_spacing_bohr} is too coarse for {', '.join(bad)}: an "
        f"atom's density sums to its valence charge on this grid only to {bad[worst]:.1e} relative "
        f"({worst}, typical over positions; accepted <= {tol:.0e}), so the grid does not resolve "
        f"its (semicore) valence density and labels and energies would carry that error. Fix: "
        f"mesh_spacing_bohr = {spacing:g} or finer (settings key dft.mesh_spacing_bohr)")


def settings_from_record(record: dict | None) -> DFTConfig:
    """The :class:`DFTConfig` of a settings record (the ``dft`` record a model carries, or a
    label's settings record plus its backend): the keys that are DFTConfig fields, the other
    settings at their defaults; unknown keys are left out. None or {} gives the defaults."""
    known = {f.name for f in dataclasses.fields(DFTConfig)}
    return DFTConfig(**{k: v for k, v in (record or {}).items() if k in known})
