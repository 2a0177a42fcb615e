"""Separable lattice sums of AO values (hpcdens.dft.pyscf_ao_grid) against PySCF's pbc_eval_gto."""

import numpy as np
import pytest

pytest.importorskip("pyscf")

from hpcdens.config import DFTConfig  # noqa: E402
from hpcdens.dft import pyscf_backend as pb  # noqa: E402
from hpcdens.dft.pyscf_ao_grid import cartesian_powers, grid_ao, is_orthorhombic  # noqa: E402
from hpcdens.dft.pyscf_grid_ks import eval_ao, mesh_ao, uniform_coords  # noqa: E402
from tests.cells import crfeconi4, si8, sigesn8  # noqa: E402


def long_sige():
    """Si12Ge4 on a 2x1x1 cell (orthorhombic, not cubic), rattled; even mesh along the long axis."""
    atoms = si8().repeat((2, 1, 1))
    atoms.numbers[[1, 6, 9, 12]] = 32
    atoms.rattle(0.1, seed=4)
    return atoms


CASES = {
    "Si8 szv": (si8, "gth-szv-molopt-sr", (21, 21, 21)),
    "Si8 dzvp (general contractions)": (si8, "gth-dzvp-molopt-sr", (21, 21, 21)),
    "CrFeCoNi d shells": (crfeconi4, "gth-szv-molopt-sr", (23, 23, 23)),
    "Si12Ge4 2x1x1, even mesh": (long_sige, "gth-szv-molopt-sr", (40, 21, 19)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_grid_ao_is_pyscfs_lattice_sum(name):
    make, basis, mesh = CASES[name]
    atoms = make()
    atoms.rattle(0.05, seed=9)
    atoms.positions[0] -= 0.4  # one atom outside the cell
    cell = pb.build_cell(atoms, DFTConfig(basis=basis), mesh)
    ref = eval_ao(cell, uniform_coords(cell, mesh))
    new = grid_ao(cell, mesh)
    assert new.shape == ref.shape == (np.prod(mesh), cell.nao)
    # measured 1.7-2.9e-13 against AO maxima of 0.2-1.0: PySCF's image truncation and rounding
    assert np.abs(new - ref).max() < 1e-11


def test_only_orthorhombic_cells_take_the_separable_path():
    skewed = pb.build_cell(sigesn8(), DFTConfig(), (21, 21, 21))
    assert not is_orthorhombic(skewed.lattice_vectors())
    with pytest.raises(ValueError, match="along x, y and z"):
        grid_ao(skewed, (21, 21, 21))
    # mesh_ao falls back to PySCF there
    np.testing.assert_array_equal(mesh_ao(skewed, (21, 21, 21)),
                                  eval_ao(skewed, uniform_coords(skewed, (21, 21, 21))))


def test_cartesian_order_is_libcints():
    assert cartesian_powers(1) == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert cartesian_powers(2) == [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1),
                                   (0, 0, 2)]
