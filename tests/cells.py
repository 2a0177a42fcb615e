"""Reference cells of the DFT and energy tests (ASE Atoms, Angstrom)."""

import numpy as np
from ase.build import bulk


def si8():
    """Perfect diamond Si, the 8-atom cubic cell (a = 5.431 A)."""
    return bulk("Si", "diamond", a=5.431, cubic=True)


def sigesn8():
    """Si4Ge2Sn2 on an 8-atom diamond cell (Vegard a = 5.752 A), sheared and rattled so that no
    symmetry hides a transposed or shifted grid; with gamma-point sampling it has a tiny gap, so
    -TS = -5e-3 Ha is far from negligible."""
    atoms = bulk("Si", "diamond", a=5.752, cubic=True)
    atoms.set_chemical_symbols(["Si", "Ge", "Sn", "Si", "Ge", "Si", "Sn", "Si"])
    strain = np.array([[1.0, 0.0, 0.0], [0.02, 1.04, 0.0], [0.01, 0.03, 1.08]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.05, seed=7)
    return atoms


def crfeconi4():
    """Equiatomic CrFeCoNi on the 4-atom fcc cubic cell (a = 3.57 A)."""
    atoms = bulk("Ni", "fcc", a=3.57, cubic=True)
    atoms.set_chemical_symbols(["Cr", "Fe", "Co", "Ni"])
    return atoms
