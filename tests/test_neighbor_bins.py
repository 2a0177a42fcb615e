"""The binned fast path of the neighbour search and the compiled descriptor kernels give what the
KD-tree and the numpy definition give: neighbours bit for bit, descriptors to 1e-12.

Cells: a rattled 64-atom Si/Ge/Sn cell with a vacancy (the generic case), a perfect diamond
crystal (distance ties at nearly every grid point, degenerate frames), a skewed triclinic cell,
and halo mode with an explicit atom set. Points: grid chunks in C order (what a prediction
streams), random points, points far outside the cell.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr

from hpcdens import descriptors as dsc
from hpcdens import neighbors
from hpcdens.grid import Grid
from hpcdens.neighbors import NeighborSearch

FIELDS = ("disp", "dist", "z", "atom", "image", "group", "mask", "reach")


def rattled_alloy(seed=0):
    atoms = bulk("Si", "diamond", 5.6, cubic=True).repeat(2)
    r = np.random.default_rng(seed)
    atoms.numbers = r.choice([14, 32, 50], len(atoms))
    atoms.positions += r.normal(0.0, 0.15, atoms.positions.shape)
    del atoms[5]
    return atoms.positions / Bohr, atoms.numbers, atoms.cell.array / Bohr


def perfect_diamond():
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    return atoms.positions / Bohr, atoms.numbers, atoms.cell.array / Bohr


def skewed():
    r = np.random.default_rng(3)
    cell = np.array([[9.0, 0.0, 0.0], [6.5, 8.0, 0.0], [-3.0, 4.0, 8.5]])
    pos = r.random((12, 3)) @ cell
    return pos, r.choice([26, 27, 28], 12), cell


def grid_points(cell, spacing, count):
    grid = Grid.from_spacing(cell, spacing)
    flat = np.arange(min(count, grid.size))
    return (np.stack(np.unravel_index(flat, grid.shape), 1) / grid.shape) @ cell


def assert_same_neighbors(a, b):
    assert a.k == b.k
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        width = min(x.shape[1], y.shape[1]) if x.ndim > 1 else None
        if width is not None:
            # beyond the shell both are padding; the widths may differ
            assert not a.mask[:, width:].any() and not b.mask[:, width:].any()
            x, y = x[:, :width], y[:, :width]
        if name == "group":
            x, y = np.where(a.mask[:, :width], x, -1), np.where(b.mask[:, :width], y, -1)
        np.testing.assert_array_equal(x, y, err_msg=name)


def both(pos, numbers, cell, m, periodic=True):
    return (NeighborSearch(pos, numbers, cell, m, periodic=periodic),
            NeighborSearch(pos, numbers, cell, m, periodic=periodic, binned=False))


@pytest.mark.parametrize("make,m", [(rattled_alloy, 55), (perfect_diamond, 55), (skewed, 20)])
def test_binned_equals_kdtree(make, m):
    pos, numbers, cell = make()
    r = np.random.default_rng(1)
    sets = [grid_points(cell, 0.5, 3000), r.random((800, 3)) @ cell,
            r.uniform(-3.0, 4.0, (200, 3)) @ cell]
    fast, ref = both(pos, numbers, cell, m)
    for points in sets:
        for start in range(0, len(points), 1024):
            chunk = points[start:start + 1024]
            assert_same_neighbors(fast.query_shell(chunk), ref.query_shell(chunk))


def test_halo_mode_binned_equals_kdtree():
    pos, numbers, cell = rattled_alloy(2)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    halo = (pos[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    fast, ref = both(halo, np.tile(numbers, len(shifts)), None, 55, periodic=False)
    points = grid_points(cell, 0.6, 2000)
    assert_same_neighbors(fast.query_shell(points), ref.query_shell(points))


def test_fallback_rows_equal_kdtree(monkeypatch):
    """Rows the bins cannot answer (candidate radius too small, a tie group past the buffer) go
    to the KD-tree and still agree; the radius estimate grows from what they needed."""
    pos, numbers, cell = perfect_diamond()
    points = grid_points(cell, 0.5, 2500)
    fast, ref = both(pos, numbers, cell, 55)
    fast.query_shell(points[:10])
    fast._reach_estimate = 2.0  # far below any 55th-neighbour distance: every row falls back
    assert_same_neighbors(fast.query_shell(points), ref.query_shell(points))
    assert fast._reach_estimate > 10.0
    monkeypatch.setattr(neighbors, "EXTRA_COLUMNS", 1)  # the k-th tie group rarely closes
    assert_same_neighbors(fast.query_shell(points), ref.query_shell(points))


@pytest.mark.parametrize("make", [rattled_alloy, perfect_diamond])
def test_descriptor_kernels_equal_reference(make):
    pos, numbers, cell = make()
    search = NeighborSearch(pos, numbers, cell, 55)
    points = np.vstack([grid_points(cell, 0.45, 4000),
                        np.random.default_rng(4).random((500, 3)) @ cell])
    nb = search.query_shell(points)
    fast, ref = dsc.from_neighbors(nb, 55), dsc.from_neighbors_reference(nb, 55)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
