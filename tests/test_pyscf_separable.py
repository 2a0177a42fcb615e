"""Separable 1-D sums of orthorhombic cells (hpcdens.dft.pyscf_separable) against the dense sums
and PySCF: the non-local GTH projections over the mesh, the overlap and the kinetic matrix."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyscf")

from ase import Atoms  # noqa: E402

from hpcdens.config import DFTConfig  # noqa: E402
from hpcdens.dft import pyscf_backend as backend  # noqa: E402
from hpcdens.dft import pyscf_pseudo, pyscf_separable  # noqa: E402
from tests.cells import crfeconi4  # noqa: E402


def _orthorhombic_sigesn():
    """Si, Ge and Sn in a 4.2 x 4.8 x 5.3 A box, one atom outside it (the sums must not care)."""
    return Atoms("SiGeSnGe", positions=[[0.2, 0.1, 0.3], [2.0, 2.3, 1.1], [3.9, 0.7, 4.8],
                                        [-0.6, 3.1, 2.6]], cell=[4.2, 4.8, 5.3], pbc=True)


CASES = [
    ("SiGeSn odd mesh", _orthorhombic_sigesn(), (17, 19, 21), "gth-szv-molopt-sr"),
    ("SiGeSn even mesh, d AOs", _orthorhombic_sigesn(), (16, 18, 20), "gth-dzvp-molopt-sr"),
    ("CrFeCoNi semi-core, d projectors", crfeconi4(), (17, 18, 17), "gth-szv-molopt-sr"),
]


@pytest.mark.parametrize("name, atoms, mesh, basis", CASES)
def test_projector_overlaps_equal_the_dense_sum(name, atoms, mesh, basis):
    cell = backend.build_cell(atoms, DFTConfig(basis=basis), mesh)
    dense, dense_atoms = pyscf_pseudo.dense_projector_overlaps(cell, mesh)
    separable, atoms_used = pyscf_separable.projector_overlaps(
        cell, mesh, pyscf_pseudo.element_projectors)
    assert atoms_used == dense_atoms
    separable = separable / cell.vol ** 0.5  # the dense sum carries vol^-1/2
    scale = np.abs(dense).max()
    assert np.abs(separable - dense).max() < 1e-13 * scale, name  # measured 1e-15


@pytest.mark.parametrize("name, atoms, mesh, basis", CASES)
def test_overlap_and_kinetic_equal_pyscfs_converged_lattice_sums(name, atoms, mesh, basis):
    cell = backend.build_cell(atoms, DFTConfig(basis=basis), mesh)
    converged = cell.copy()
    converged.precision = 1e-16
    converged.build(False, False)
    s, t = pyscf_separable.overlap_kinetic(cell)
    s_ref = np.asarray(converged.pbc_intor("int1e_ovlp", 1, 1))
    t_ref = np.asarray(converged.pbc_intor("int1e_kin", 1, 1))
    assert np.abs(s - s_ref).max() < 1e-13 * np.abs(s_ref).max(), name
    assert np.abs(t - t_ref).max() < 1e-13 * np.abs(t_ref).max(), name
    assert np.array_equal(s, s.T) and np.array_equal(t, t.T)


def test_gaussian_moments_ft_is_the_fourier_integral():
    x = np.linspace(-12, 12, 48001)
    g = np.array([-3.1, -0.4, 0.0, 0.7, 2.5])
    f = pyscf_separable.gaussian_moments_ft(g, 0.8, 3)
    for a in range(4):
        integrand = x[:, None] ** a * np.exp(-0.8 * x[:, None] ** 2 - 1j * g[None] * x[:, None])
        assert np.allclose(f[a], np.trapezoid(integrand, x, axis=0), atol=1e-10)


def test_projector_fit_refuses_what_is_not_a_gaussian_polynomial():
    cell = backend.build_cell(_orthorhombic_sigesn(), DFTConfig(), (9, 9, 9))

    def not_polynomial(cell, gv, symbol):
        rows = pyscf_pseudo.element_projectors(cell, gv, symbol)[0]
        return (rows * np.cos(np.linalg.norm(gv, axis=1)),)

    with pytest.raises(ValueError, match="not exp"):
        pyscf_separable.projector_polynomials(cell, "Ge", not_polynomial)


def test_skewed_cells_are_refused():
    atoms = _orthorhombic_sigesn()
    atoms.set_cell([[4.2, 0, 0], [0.5, 4.8, 0], [0, 0, 5.3]], scale_atoms=True)
    cell = backend.build_cell(atoms, DFTConfig(), (9, 9, 9))
    with pytest.raises(ValueError, match="along x, y and z"):
        pyscf_separable.overlap_kinetic(cell)


def test_cells_beyond_the_memory_limit_keep_the_dense_sums(monkeypatch):
    """applies() decides the path: a limit of 0 MB sends the same cell to the dense sums and
    PySCF's integrals, which give the same matrices."""
    from hpcdens.dft import pyscf_grid_ks

    atoms, mesh = _orthorhombic_sigesn(), (15, 16, 17)
    cell = backend.build_cell(atoms, DFTConfig(), mesh)
    assert pyscf_separable.applies(cell)
    separable = (pyscf_pseudo.nonlocal_pp_matrix(cell, mesh), *pyscf_grid_ks.overlap_kinetic(cell))
    monkeypatch.setattr(pyscf_separable, "MEMORY_MB", 0)
    assert not pyscf_separable.applies(cell)
    dense = (pyscf_pseudo.nonlocal_pp_matrix(cell, mesh), *pyscf_grid_ks.overlap_kinetic(cell))
    for a, b in zip(separable, dense):
        assert np.abs(a - b).max() < 1e-12 * np.abs(b).max()
