"""hpcdens: Bayesian neural-network electron densities of multi-element alloys on the DFT grid.

Internal units are atomic units (Bohr, Hartree, e/Bohr^3); ASE ``Atoms`` (Angstrom, eV) appear
only at the edges and are converted once.
"""

__version__ = "0.1.0"
