"""DFT backends behind one small interface.

Each backend is a module with

``scf(atoms, settings) -> DFTResult``
    Self-consistent ground state of ``atoms`` (ASE Atoms, Angstrom) with ``settings``
    (:class:`hpcdens.config.DFTConfig`); the density on the project's grid convention.
``atomic_density(atoms, grid, settings) -> ndarray``
    Superposition of neutral atomic densities (SAD) on ``grid``, e/Bohr^3, shape ``grid.shape``.
``make_grid(atoms, settings) -> Grid``
    The grid ``scf`` will use for ``atoms``.
``harris_foulkes(atoms, grid, rho, settings) -> DFTResult``
    The Harris-Foulkes energy of a given density ``rho`` on ``grid`` (one non-self-consistent
    Kohn-Sham step with the same code and settings as ``scf``); ``rho`` is used as given, so
    renormalise it to N_e first (Eq. 9).

Backends are looked up by name in :data:`BACKENDS` and imported only when used.
"""

from __future__ import annotations

import importlib

from ..errors import DFTSetupError
from .base import DFTResult

BACKENDS = {"pyscf": "hpcdens.dft.pyscf_backend", "sparc": "hpcdens.dft.sparc_backend"}

__all__ = ["BACKENDS", "DFTResult", "get_backend"]


def get_backend(name: str):
    """The backend module registered under ``name`` ("pyscf" or "sparc")."""
    if name not in BACKENDS:
        raise DFTSetupError(f"unknown DFT backend {name!r}; available: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
