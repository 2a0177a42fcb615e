"""The fast gamma-point kinetic + GTH pseudopotential matrix equals PySCF's own FFTDF one.

The grid-consistent SCF and every Harris-Foulkes energy build ``hcore`` with
:func:`hpcdens.dft.pyscf_grid_ks.gamma_hcore` (non-local projectors summed over half of the
reciprocal mesh in real arithmetic, all atoms in one product); labels made before it used
``pyscf.pbc.dft.RKS(cell).get_hcore()``. Both must agree to rounding, for odd and even meshes,
skewed cells, and s, p and d projectors (Ge, Sn, Cr). The reference converges PySCF's real-space
lattice sums (``cell.precision`` 1e-16): at its default 1e-8 the kinetic matrix of the semi-core
CrFeCoNi cell misses 1.7e-11 Ha that the separable sums of orthorhombic cells keep."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyscf")

from ase.build import bulk
from pyscf.pbc.dft import rks

from hpcdens.config import DFTConfig
from hpcdens.dft import pyscf_backend as backend
from hpcdens.dft.pyscf_grid_ks import eval_ao, gamma_hcore, uniform_coords
from tests.cells import crfeconi4, sigesn8


def _skewed_gesi():
    atoms = bulk("Ge", "fcc", a=5.6) * (2, 2, 1)  # primitive fcc vectors: a skewed cell
    atoms.numbers[1] = 14
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.mark.parametrize("name, atoms, mesh, basis", [
    ("sigesn8 odd mesh", sigesn8(), (27, 29, 31), "gth-szv-molopt-sr"),
    ("sigesn8 dzvp", sigesn8(), (27, 29, 31), "gth-dzvp-molopt-sr"),
    ("skewed GeSi even mesh", _skewed_gesi(), (20, 21, 12), "gth-szv-molopt-sr"),
    ("crfeconi4 semi-core", crfeconi4(), (17, 17, 18), "gth-szv-molopt-sr"),
])
def test_gamma_hcore_is_pyscfs(name, atoms, mesh, basis):
    cell = backend.build_cell(atoms, DFTConfig(basis=basis), mesh)
    converged = cell.copy()
    converged.precision = 1e-16
    converged.build(False, False)
    reference = np.asarray(rks.RKS(converged).get_hcore())
    with_ao = gamma_hcore(cell, eval_ao(cell, uniform_coords(cell, mesh)))
    blockwise = gamma_hcore(cell)
    scale = np.abs(reference).max()
    assert np.abs(with_ao - reference).max() < 1e-12 * scale, name  # measured 1e-13
    assert np.abs(blockwise - reference).max() < 1e-12 * scale, name
    assert np.allclose(with_ao, with_ao.T, atol=1e-14 * scale)


def test_gamma_hcore_refuses_all_electron_cells():
    from pyscf.pbc import gto

    cell = gto.M(a=np.eye(3) * 4.0, atom="He 0 0 0", basis="sto-3g", mesh=[9, 9, 9], verbose=0)
    with pytest.raises(ValueError, match="GTH"):
        gamma_hcore(cell)
