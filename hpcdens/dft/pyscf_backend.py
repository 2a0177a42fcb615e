"""PySCF backend: gamma-point, spin-restricted PBE with GTH pseudopotentials and Fermi-Dirac smearing,
its density on the project's grid (docs/dft.md, "PySCF backend").

The SCF is grid-consistent: Hartree and XC come from the density *on the FFT grid*, with the
density gradient taken spectrally (:mod:`hpcdens.dft.pyscf_grid_ks`), so the training labels and
Harris-Foulkes energies of predicted grid densities share one discretisation. It is driven by
Pulay-Kerker density mixing (:mod:`hpcdens.dft.pyscf_mixing`); the SAD comes from spherical atoms
with the same basis, pseudopotential and functional (:mod:`hpcdens.dft.pyscf_sad`).

Public functions: the backend interface of :mod:`hpcdens.dft` (:func:`valence_charges`,
:func:`radial_densities`, :func:`label_settings`, :func:`make_grid`, :func:`scf`,
:func:`harris_foulkes`) and the optional capabilities :func:`scf_from_density` and
:func:`harris_foulkes_setup` (a :class:`HarrisFoulkes` evaluator: set-up once, many densities);
besides :func:`run` (:func:`scf` that also returns the internals) and
:func:`harris_foulkes_terms` (the energy's parts).

Units: ASE ``Atoms`` in Angstrom at the interface, converted once to Bohr; energies in Ha,
densities in e/Bohr^3. Grid point (i, j, k) at fractional (i/n1, j/n2, k/n3), C order: the order
of PySCF's ``cell.get_uniform_grids(mesh)`` (which by default wraps fractions >= 1/2 to the
equivalent negative ones; the densities are the same).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings

import numpy as np
from ase.units import Bohr, Hartree, kB

from ..errors import DFTInputError, DFTSetupError, InputError
from ..grid import Grid
from . import pyscf_mixing, pyscf_sad
from .base import DFTResult, cell_bohr, check_grid_cell
from .pyscf_grid_ks import GridKS, xc_type

log = logging.getLogger(__name__)

BACKEND = "pyscf"
#: Basis families and pseudopotential sets offered as fixes when one lacks an element.
BASIS_FAMILIES = ("gth-szv-molopt-sr", "gth-dzvp-molopt-sr", "gth-szv", "gth-dzvp", "gth-tzvp",
                  "gth-tzv2p")
PSEUDO_FAMILIES = ("gth-pbe", "gth-pade", "gth-lda", "gth-blyp", "gth-bp")


def smearing_ha(kelvin: float) -> float:
    """Fermi-Dirac temperature k_B T in Ha for ``kelvin`` (631.554 K -> 0.002 Ha)."""
    return float(kelvin) * kB / Hartree


def _has(kind: str, family: str, element: str) -> bool:
    from pyscf.pbc import gto

    loader = gto.basis.load if kind == "basis" else gto.pseudo.load
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Basis may be available in basis-set-exchange"
            loader(family, element)
    except (RuntimeError, KeyError, ValueError, OSError):
        return False
    return True


def check_species(symbols, basis: str, pseudo: str):
    """Raise :class:`DFTInputError` naming the element, the family and one that would work when
    ``basis`` or ``pseudo`` lacks an element of ``symbols``."""
    elements = sorted(set(symbols))
    for kind, family, families in (("basis", basis, BASIS_FAMILIES),
                                   ("pseudo", pseudo, PSEUDO_FAMILIES)):
        missing = [el for el in elements if not _has(kind, family, el)]
        if missing:
            works = [f for f in families if all(_has(kind, f, el) for el in elements)]
            fix = (f"use {kind} = {works[0]!r}, which covers {', '.join(elements)}" if works else
                   f"no {kind} family among {', '.join(families)} covers {', '.join(elements)}")
            also = f" (nor for {', '.join(missing[1:])})" if missing[1:] else ""
            raise DFTInputError(f"PySCF {kind} {family!r} has no entry for element {missing[0]}"
                                f"{also}. Fix: {fix} (settings key dft.{kind})")


def valence_electrons(symbols, pseudo: str) -> int:
    """Number of valence electrons N_e: the GTH valence charges summed over ``symbols``."""
    return int(sum(pyscf_sad.gth_charge(el, pseudo) for el in symbols))


def valence_charges(symbols, settings) -> dict[str, float]:
    """{element: valence electrons} of the GTH pseudopotentials ``settings.pseudo`` for the
    elements of ``symbols``; :class:`DFTSetupError` when the basis or pseudo lacks one."""
    elements = sorted(set(symbols))
    check_species(elements, settings.basis, settings.pseudo)
    return {el: float(pyscf_sad.gth_charge(el, settings.pseudo)) for el in elements}


def radial_densities(symbols, settings) -> dict:
    """{element: :class:`hpcdens.sad.RadialDensity`}: the spherical neutral-atom valence density of
    each element of ``symbols`` with the basis, GTH pseudopotential and functional of ``settings``
    (:func:`hpcdens.dft.pyscf_sad.radial_density`); each integrates to its GTH charge (~1e-10)."""
    elements = sorted(set(symbols))
    check_species(elements, settings.basis, settings.pseudo)
    return {el: pyscf_sad.radial_density(el, settings.basis, settings.pseudo, settings.xc)
            for el in elements}


def check_ready(settings) -> None:
    """Nothing to check: PySCF is a Python dependency, embedded in every install."""


def label_settings(settings) -> dict:
    """The settings that define a label of this backend, under their settings-record names: two
    labels are comparable only when these agree."""
    return {"xc": settings.xc, "smearing_kelvin": settings.smearing_kelvin,
            "basis": settings.basis, "pseudo": settings.pseudo}


def _cell_bohr(atoms) -> np.ndarray:
    return cell_bohr(atoms, "the PySCF backend")


def make_grid(atoms, settings) -> Grid:
    """The grid :func:`scf` uses: the cell in Bohr, odd n_i, spacing <= settings.mesh_spacing_bohr."""
    return Grid.from_spacing(_cell_bohr(atoms), settings.mesh_spacing_bohr)


def build_cell(atoms, settings, mesh):
    """A built ``pyscf.pbc.gto.Cell`` for ``atoms`` with the basis/pseudo of ``settings`` and ``mesh``."""
    from pyscf.pbc import gto

    symbols = atoms.get_chemical_symbols()
    check_species(symbols, settings.basis, settings.pseudo)
    try:
        xc_type(settings.xc)
    except ValueError as err:
        raise DFTSetupError(f"{err}. Fix: use xc = 'PBE'") from err
    n_electrons = valence_electrons(symbols, settings.pseudo)
    if settings.smearing_kelvin == 0 and n_electrons % 2:
        raise DFTSetupError(f"{n_electrons} valence electrons cannot fill spin-restricted orbitals "
                            "without smearing. Fix: set dft.smearing_kelvin > 0 (e.g. 631.554)")
    cell = gto.Cell()
    cell.a = _cell_bohr(atoms)
    cell.unit = "Bohr"
    cell.atom = [(s, tuple(p)) for s, p in zip(symbols, np.asarray(atoms.positions) / Bohr)]
    cell.basis = settings.basis
    cell.pseudo = settings.pseudo
    cell.mesh = [int(n) for n in mesh]
    cell.spin = n_electrons % 2  # RKS with fractional occupations; spin only satisfies Cell's check
    cell.verbose = 0
    cell.build(dump_input=False, parse_arg=False)
    if 2 * cell.nao <= n_electrons:
        raise DFTSetupError(f"basis {settings.basis!r} has {cell.nao} functions for {n_electrons} "
                            "electrons, too few to hold them with smearing. Fix: use a larger "
                            "basis, e.g. basis = 'gth-dzvp-molopt-sr'")
    return cell


def settings_used(settings, cell, density_tol: float) -> dict:
    """JSON-serialisable record of what an SCF used."""
    import pyscf

    return {
        "code": "pyscf", "pyscf_version": pyscf.__version__, "xc": settings.xc,
        "basis": settings.basis, "pseudo": settings.pseudo, "kpts": "gamma",
        "spin": "restricted", "mesh": [int(n) for n in cell.mesh],
        "mesh_spacing_bohr": float(settings.mesh_spacing_bohr),
        "grid_spacing_bohr": [float(x) for x in np.linalg.norm(cell.lattice_vectors(), axis=1)
                              / np.asarray(cell.mesh)],
        "smearing": "fermi-dirac", "smearing_kelvin": float(settings.smearing_kelvin),
        "smearing_ha": smearing_ha(settings.smearing_kelvin),
        "conv_tol": float(settings.scf_tol), "density_tol": float(density_tol),
        "max_cycle": int(settings.max_scf_cycles),
        "xc_gradient": "spectral (FFT) on the grid density",
        "scf_driver": "pulay-kerker density mixing",
        "mixing": {"beta": pyscf_mixing.MIXING_BETA, "kerker_q0_per_bohr": pyscf_mixing.KERKER_Q0,
                   "history": pyscf_mixing.PULAY_HISTORY},
        "init_guess": "minao",
    }


def run(atoms, settings, grid: Grid | None = None, callback=None, rho0=None):
    """:func:`scf` that also returns the :class:`GridKS` problem and the
    :class:`~hpcdens.dft.pyscf_mixing.SCFOutcome` (its ``step.dm`` is the density matrix).

    ``grid`` : optional grid on the cell of ``atoms`` (default :func:`make_grid`); an even shape
    is allowed (the Nyquist mode is dropped from derivatives) but odd shapes are the default.
    ``callback(dict)`` is passed on to :func:`hpcdens.dft.pyscf_mixing.run_scf`.
    ``rho0`` : optional first input density on ``grid`` (e/Bohr^3; renormalise it to N_e first),
    e.g. a predicted density; default PySCF's atomic guess.
    """
    t0 = time.perf_counter()
    if grid is None:
        grid = make_grid(atoms, settings)
    _check_grid(atoms, grid)
    cell = build_cell(atoms, settings, grid.shape)
    sigma = smearing_ha(settings.smearing_kelvin)
    log.info("PySCF SCF: %s, %d atoms, %d electrons, mesh %s, %s/%s, sigma %.6f Ha",
             atoms.get_chemical_formula(), len(atoms), cell.nelectron, grid.shape,
             settings.basis, settings.pseudo, sigma)
    ks = GridKS(cell, xc=settings.xc, sigma=sigma)
    density_tol = pyscf_mixing.default_density_tol(settings.scf_tol)
    outcome = pyscf_mixing.run_scf(ks, settings.scf_tol, settings.max_scf_cycles,
                                   density_tol=density_tol, callback=callback, rho0=rho0)
    wall = time.perf_counter() - t0
    step = outcome.step
    result = DFTResult(
        energy_ha=float(outcome.energy),
        free_energy_ha=float(outcome.energy - sigma * step.entropy),
        rho=np.ascontiguousarray(step.rho_out.reshape(grid.shape)), grid=grid,
        n_electrons=float(cell.nelectron), fermi_level_ha=float(step.mu),
        converged=bool(outcome.converged), n_iterations=int(outcome.n_iterations),
        wall_time_s=float(wall), backend=BACKEND,
        settings=settings_used(settings, cell, density_tol), message=outcome.message)
    level = logging.INFO if outcome.converged else logging.WARNING
    log.log(level, "PySCF SCF %s: E = %.10f Ha, %d cycles, %.1f s%s", atoms.get_chemical_formula(),
            result.energy_ha, result.n_iterations, wall,
            "" if outcome.converged else f" - {outcome.message}")
    return result, ks, outcome


def scf(atoms, settings) -> DFTResult:
    """Self-consistent gamma-point PBE ground state of ``atoms`` (ASE Atoms, Angstrom).

    Returns a :class:`DFTResult` with ``energy_ha`` = E, the grid-consistent Kohn-Sham energy
    without the entropy term (PySCF's ``e_tot`` convention) and ``free_energy_ha`` = E - sigma*S,
    the Mermin free energy that the smeared SCF minimises (sigma = k_B * settings.smearing_kelvin
    in Ha, S the dimensionless Fermi-Dirac entropy of both spins). ``rho`` (e/Bohr^3) is the output
    density of the last step on :func:`make_grid`'s grid. A run that does not converge within
    ``settings.max_scf_cycles`` returns ``converged=False`` and a ``message``; setup problems (no
    basis or pseudopotential for an element, unsupported functional) raise :class:`DFTSetupError`.
    """
    return run(atoms, settings)[0]


def scf_from_density(atoms, grid: Grid, settings, rho0=None, callback=None) -> DFTResult:
    """:func:`scf` of ``atoms`` on ``grid`` whose first input density is ``rho0`` (e/Bohr^3 on
    ``grid``, renormalised to N_e by the caller), or PySCF's atomic ``minao`` guess when ``rho0`` is
    None; same settings and convergence criteria. ``callback`` as in :func:`run`."""
    return run(atoms, settings, grid=grid, callback=callback, rho0=rho0)[0]


def _check_grid(atoms, grid: Grid):
    check_grid_cell(atoms, grid, "the PySCF backend")


class HarrisFoulkes:
    """The Harris-Foulkes energy of grid densities of one structure, its set-up done once.

    Building it costs the cell, the AO values on the grid, the kinetic + GTH pseudopotential matrix
    (:func:`hpcdens.dft.pyscf_grid_ks.gamma_hcore`), the overlap and the Ewald energy
    (``setup_wall_time_s``); each call afterwards one Hxc evaluation on the grid, one AO
    projection and one generalised eigenproblem (docs/energy.md, "Harris-Foulkes cost").

    atoms : ASE Atoms (Angstrom); grid : Grid on their cell (the mesh); settings : DFTConfig.
    """

    def __init__(self, atoms, grid: Grid, settings):
        t0 = time.perf_counter()
        _check_grid(atoms, grid)
        self.grid = grid
        self.cell = build_cell(atoms, settings, grid.shape)
        self.sigma = smearing_ha(settings.smearing_kelvin)
        self.ks = GridKS(self.cell, xc=settings.xc, sigma=self.sigma)
        self.record = settings_used(settings, self.cell,
                                    pyscf_mixing.default_density_tol(settings.scf_tol))
        self.record["mode"] = "harris_foulkes"
        self.setup_wall_time_s = time.perf_counter() - t0

    def terms(self, rho) -> dict:
        """The energy of ``rho`` and its parts: see :func:`harris_foulkes_terms`."""
        t0 = time.perf_counter()
        rho = np.asarray(rho, dtype=float)
        if rho.shape != self.grid.shape:
            raise InputError(f"rho has shape {rho.shape}, the grid is {self.grid.shape}")
        step = self.ks.step(rho, output_density=False)
        return {
            "energy_ha": step.energy, "free_energy_ha": step.energy - self.sigma * step.entropy,
            "band_energy_ha": step.band, "double_counting_ha": step.double_counting,
            "hartree_ha": step.e_h, "xc_ha": step.e_xc, "nuclear_ha": step.e_nuc,
            "entropy": step.entropy, "fermi_level_ha": step.mu,
            "n_electrons": self.ks.n_electrons, "n_electrons_grid": float(rho.sum() * self.ks.dv),
            "wall_time_s": time.perf_counter() - t0}

    def __call__(self, rho) -> DFTResult:
        """:func:`harris_foulkes` of ``rho`` (e/Bohr^3 on the grid, used as given);
        ``wall_time_s`` is this evaluation's time, without the set-up."""
        terms = self.terms(rho)
        return DFTResult(
            energy_ha=terms["energy_ha"], free_energy_ha=terms["free_energy_ha"],
            rho=np.asarray(rho, dtype=float), grid=self.grid, n_electrons=terms["n_electrons"],
            fermi_level_ha=terms["fermi_level_ha"], converged=True, n_iterations=1,
            wall_time_s=terms["wall_time_s"], backend=BACKEND, settings=dict(self.record))


def harris_foulkes_setup(atoms, grid: Grid, settings) -> HarrisFoulkes:
    """Optional capability: a :class:`HarrisFoulkes` evaluator for many densities of ``atoms``."""
    return HarrisFoulkes(atoms, grid, settings)


def harris_foulkes_terms(atoms, rho, settings) -> dict:
    """Harris-Foulkes energy and its parts for a grid density ``rho`` (n1, n2, n3), e/Bohr^3, on
    the cell of ``atoms`` with the project's grid convention; the mesh is ``rho.shape``.

    E_HF = sum_i f_i eps_i - int rho v_Hxc[rho] + E_H[rho] + E_xc[rho] + E_nuc, with eps_i the
    eigenvalues of the Hamiltonian built from ``rho`` and Fermi-Dirac occupations f_i for N_e
    electrons: the first half of one step of :func:`scf`, so at the SCF density it equals
    ``scf().energy_ha`` (to 1e-14 Ha/atom when converged). ``rho`` is used as given (no
    renormalisation to N_e; ``n_electrons_grid`` reports its integral); negative values count in
    the Hartree term but not in XC (libxc treats rho <= 0 as empty).

    Returns a dict of floats (Ha unless noted): energy_ha (no entropy, like ``energy_ha`` of
    :func:`scf`), free_energy_ha (energy_ha - sigma*S), band_energy_ha, double_counting_ha,
    hartree_ha, xc_ha, nuclear_ha (Ewald ion-ion energy, ``cell.energy_nuc()``), entropy
    (dimensionless), fermi_level_ha, n_electrons, n_electrons_grid, wall_time_s (with set-up).
    For several densities of one structure keep a :class:`HarrisFoulkes` instead.
    """
    rho = np.asarray(rho, dtype=float)
    if rho.ndim != 3:
        raise InputError(f"rho must be a 3-d grid array, got shape {rho.shape}")
    evaluator = HarrisFoulkes(atoms, Grid(_cell_bohr(atoms), rho.shape), settings)
    terms = evaluator.terms(rho)
    terms["wall_time_s"] += evaluator.setup_wall_time_s
    return terms


def harris_foulkes(atoms, grid: Grid, rho, settings) -> DFTResult:
    """One-shot Harris-Foulkes energy of the density ``rho`` (e/Bohr^3 on ``grid``), with the
    signature and result type of the SPARC backend's ``harris_foulkes``.

    ``energy_ha`` = E_HF without entropy, ``free_energy_ha`` = E_HF - sigma*S, ``rho`` is the
    input, ``n_iterations = 1``, ``converged = True`` (the evaluation completed); ``settings``
    records what was used with ``mode = "harris_foulkes"``; ``wall_time_s`` includes the set-up.
    The parts of the energy are in :func:`harris_foulkes_terms`. ``rho`` is not renormalised:
    scale it to N_e first.
    """
    evaluator = HarrisFoulkes(atoms, grid, settings)
    result = evaluator(rho)
    return dataclasses.replace(result, wall_time_s=result.wall_time_s
                               + evaluator.setup_wall_time_s)
