"""What every DFT backend returns, in the project's units and grid convention."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.units import Bohr

from ..errors import DFTSetupError, InputError
from ..grid import Grid


@dataclass(frozen=True)
class DFTResult:
    """Result of one self-consistent DFT calculation.

    Attributes
    ----------
    energy_ha : float, Ha
        Total Kohn-Sham energy E (no electronic entropy term).
    free_energy_ha : float, Ha
        Mermin free energy E - T*S of the Fermi-Dirac smearing (what the SCF minimises).
    rho : (n1, n2, n3) float64, e/Bohr^3
        Valence electron density on ``grid`` (point (i,j,k) at fractional (i/n1, j/n2, k/n3), C order).
    grid : Grid
        The grid of ``rho``.
    n_electrons : float
        Number of valence electrons N_e (pseudopotential valence charges summed).
    fermi_level_ha : float, Ha
    converged : bool
    n_iterations : int
        SCF iterations performed.
    wall_time_s : float, s
    backend : str
        Registry name of the backend ("pyscf", "sparc").
    settings : dict
        JSON-serialisable backend settings actually used (basis, pseudopotentials, mesh, tolerances).
    message : str
        Empty when converged; otherwise why not.
    """

    energy_ha: float
    free_energy_ha: float
    rho: np.ndarray
    grid: Grid
    n_electrons: float
    fermi_level_ha: float
    converged: bool
    n_iterations: int
    wall_time_s: float
    backend: str
    settings: dict = field(default_factory=dict)
    message: str = ""


def cell_bohr(atoms, who: str) -> np.ndarray:
    """(3, 3) lattice vectors of ``atoms`` in Bohr (rows); :class:`DFTSetupError` naming ``who``
    when the cell is not three-dimensional."""
    cell = np.asarray(atoms.cell.array, dtype=float) / Bohr
    if abs(np.linalg.det(cell)) < 1e-8:
        raise DFTSetupError(f"{who} needs a periodic cell with three lattice vectors; got cell "
                            f"{atoms.cell.array.tolist()} Angstrom")
    return cell


def check_grid_cell(atoms, grid: Grid, who: str) -> None:
    """InputError unless ``grid`` spans the cell of ``atoms`` (to 1e-6 Bohr + 1e-5 relative)."""
    if not np.allclose(grid.cell_bohr, cell_bohr(atoms, who), atol=1e-6):
        raise InputError("the grid's cell differs from the atoms' cell: build the grid with "
                         "make_grid(atoms, settings) or Grid(atoms.cell / Bohr, shape)")
