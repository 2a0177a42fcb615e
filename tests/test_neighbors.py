"""Tests of hpcdens.neighbors against a brute-force search over an explicit, large image set."""

import itertools

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr

from hpcdens.errors import InputError
from hpcdens.neighbors import TIE_TOL_BOHR, NeighborSearch, tie_groups


def rng(seed=0):
    return np.random.default_rng(seed)


def heights(cell):
    vol = abs(np.linalg.det(cell))
    return vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)


def brute_force(points, pos, numbers, cell, k, reps=None):
    """Reference: every image pos + n @ cell with n within ``reps`` of the point's own cell;
    sort all distances (ties: rounded distance, atom, offset). Checks its own coverage."""
    reps = reps or 6
    inv = np.linalg.inv(cell)
    frac_atoms = np.floor(pos @ inv).astype(int)
    out = {"disp": [], "z": [], "atom": [], "image": []}
    grid = np.array(list(itertools.product(range(-reps, reps + 1), repeat=3)))
    for p in points:
        home = np.floor(p @ inv).astype(int)
        offsets = (grid + home)[:, None, :] - frac_atoms[None, :, :]  # (G, N, 3)
        img = pos[None] + offsets @ cell
        disp = (img - p).reshape(-1, 3)
        dist = np.linalg.norm(disp, axis=1)
        atom = np.tile(np.arange(len(pos)), len(grid))
        off = offsets.reshape(-1, 3)
        order = np.lexsort((off[:, 2], off[:, 1], off[:, 0], atom, np.round(dist, 7)))[:k]
        # an image left out is more than (reps - 1) plane spacings away along some axis
        assert dist[order[-1]] < (reps - 1) * heights(cell).min(), "brute force too small"
        out["disp"].append(disp[order])
        out["z"].append(numbers[atom[order]])
        out["atom"].append(atom[order])
        out["image"].append(off[order])
    return {key: np.array(v) for key, v in out.items()}


def assert_same(nb, ref):
    assert nb.disp.shape == ref["disp"].shape
    np.testing.assert_allclose(nb.disp, ref["disp"], atol=1e-10)
    np.testing.assert_array_equal(nb.z, ref["z"])
    np.testing.assert_array_equal(nb.atom, ref["atom"])
    np.testing.assert_array_equal(nb.image, ref["image"])
    np.testing.assert_allclose(nb.dist, np.linalg.norm(ref["disp"], axis=-1), atol=1e-10)


def diamond_cubic():
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    numbers = rng(1).choice([14, 32], len(atoms))
    return atoms.positions / Bohr, numbers, atoms.cell.array / Bohr


def fcc_primitive():
    atoms = bulk("Cu", "fcc", 3.6)
    return atoms.positions / Bohr, atoms.numbers, atoms.cell.array / Bohr


def triclinic():
    cell = np.array([[7.0, 0.0, 0.0], [6.3, 1.9, 0.0], [5.8, 1.1, 1.4]])
    frac = rng(2).random((3, 3))
    return frac @ cell, np.array([14, 32, 50]), cell


@pytest.mark.parametrize("structure,k,reps", [(diamond_cubic, 55, 4), (fcc_primitive, 20, 6),
                                              (triclinic, 30, 14)])
def test_periodic_matches_brute_force(structure, k, reps):
    pos, numbers, cell = structure()
    assert k > len(pos)
    frac = rng(3).uniform(-1.5, 2.5, (40, 3))  # points outside the cell too
    points = frac @ cell
    nb = NeighborSearch(pos, numbers, cell, k).query(points)
    assert_same(nb, brute_force(points, pos, numbers, cell, k, reps))
    assert (np.diff(nb.dist, axis=1) >= 0).all()
    assert nb.mask.all() and (nb.reach > nb.kth_distance).all()


def test_triclinic_is_strongly_skewed():
    _, _, cell = triclinic()
    assert heights(cell).min() < 0.25 * np.linalg.norm(cell, axis=1).min()


def test_search_grows_beyond_its_initial_image_set():
    pos, numbers, cell = diamond_cubic()
    search = NeighborSearch(pos, numbers, cell, m=1)
    small = search.n_images
    points = rng(4).random((10, 3)) @ cell
    nb = search.query(points, k=300)
    assert search.n_images > small
    assert (nb.reach < search.covered_radius).all()
    assert_same(nb, brute_force(points, pos, numbers, cell, 300, 6))


def test_ties_ordered_by_atom_then_offset_and_shell_is_complete():
    pos, numbers, cell = fcc_primitive()
    search = NeighborSearch(pos, numbers, cell, 5)
    point = pos[:1] + cell[0]  # on an atom: 12 nearest neighbours tied
    nb = search.query(point)
    ref = brute_force(point, pos, numbers, cell, 5)
    assert_same(nb, ref)
    assert nb.dist[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(nb.dist[0, 1:]) < 1e-12
    shell = search.query_shell(point)
    assert shell.mask.sum() == 13 and np.ptp(shell.dist[0, 1:13]) < 1e-12
    assert (shell.group[0, 1:13] == 1).all()


@pytest.mark.parametrize("k", [4, 17, 55])
def test_ties_between_atoms_ordered_by_atom_index(k):
    """Perfect diamond at grid points of 1/8 fractions: shells of equidistant images of
    different atoms, cut at the k-th place, are ordered (and picked) by atom index."""
    pos, numbers, cell = diamond_cubic()
    frac = np.array(list(itertools.product(range(0, 8, 3), repeat=3))) / 8.0
    points = frac @ cell
    nb = NeighborSearch(pos, numbers, cell, k).query(points)
    shell = NeighborSearch(pos, numbers, cell, k).query_shell(points)
    assert (shell.mask.sum(1) > k).any()  # the k-th place is tied somewhere
    assert_same(nb, brute_force(points, pos, numbers, cell, k))


def test_tie_groups_are_greedy_and_bounded():
    d = np.array([[0.0, 0.5 * TIE_TOL_BOHR, 0.9 * TIE_TOL_BOHR, 1.6 * TIE_TOL_BOHR, 1.0, np.inf]])
    group, start = tie_groups(d)
    assert group.tolist() == [[0, 0, 0, 1, 2, 3]]
    assert start[0, 3] == d[0, 3]


def test_halo_mode_equals_periodic_mode():
    pos, numbers, cell = diamond_cubic()
    grid = np.array(list(itertools.product(range(-3, 4), repeat=3)))
    halo = (pos[None] + (grid @ cell)[:, None]).reshape(-1, 3)
    halo_numbers = np.tile(numbers, len(grid))
    points = rng(5).random((30, 3)) @ cell
    per = NeighborSearch(pos, numbers, cell, 55).query(points)
    nb = NeighborSearch(halo, halo_numbers, None, 55, periodic=False).query(points)
    np.testing.assert_allclose(nb.disp, per.disp, atol=1e-10)
    np.testing.assert_array_equal(nb.z, per.z)
    np.testing.assert_array_equal(nb.atom % len(pos), per.atom)
    assert (nb.image == 0).all()
    np.testing.assert_allclose(nb.kth_distance, per.kth_distance, atol=1e-12)
    assert (nb.reach >= nb.kth_distance).all()


def test_halo_mode_needs_enough_atoms():
    pos, numbers, _ = diamond_cubic()
    search = NeighborSearch(pos, numbers, periodic=False, m=4)
    with pytest.raises(InputError, match="halo holds only 8 atoms"):
        search.query(np.zeros((1, 3)), k=9)


@pytest.mark.parametrize("kwargs,match", [
    (dict(positions_bohr=np.zeros((2, 2))), "shape"),
    (dict(numbers=np.array([14.0, 14.0])), "integers"),
    (dict(cell_bohr=np.ones((3, 3))), "non-singular"),
    (dict(m=0), ">= 1"),
])
def test_input_errors(kwargs, match):
    args = dict(positions_bohr=np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]],
                numbers=np.array([14, 14]), cell_bohr=np.eye(3) * 5, m=3)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        NeighborSearch(**args)


def test_bad_points():
    pos, numbers, cell = fcc_primitive()
    search = NeighborSearch(pos, numbers, cell, 3)
    with pytest.raises(InputError, match=r"\(n, 3\)"):
        search.query(np.zeros(3))
    with pytest.raises(InputError, match="NaN"):
        search.query(np.full((1, 3), np.nan))
    assert search.query(np.zeros((0, 3))).disp.shape == (0, 3, 3)
