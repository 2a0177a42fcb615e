"""What every DFT backend returns, in the project's units and grid convention."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
