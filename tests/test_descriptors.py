"""Tests of hpcdens.descriptors: Eq. (2) layout and its invariances.

Generic case: a rattled 8-atom Si/Ge diamond cell with random species and random points, where no
eigenvalues or distances coincide. Degenerate case: a perfect zincblende crystal on a grid of
1/8 fractions, where every point lies on a mirror plane or a higher-symmetry site; the canonical
frame rule keeps the descriptors invariant there too.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr
from scipy.spatial.transform import Rotation

from hpcdens import descriptors as dsc
from hpcdens.errors import InputError
from hpcdens.grid import Grid
from hpcdens.neighbors import NeighborSearch

TOL = 1e-10


def rng(seed=0):
    return np.random.default_rng(seed)


def rattled_sige(seed=0):
    """8-atom diamond cell, random Si/Ge, rattled by 0.1 A: (positions, numbers, cell) in Bohr."""
    atoms = bulk("Si", "diamond", 5.54, cubic=True)
    r = rng(seed)
    numbers = r.permutation([14] * 4 + [32] * 4)
    pos = atoms.positions + r.normal(0.0, 0.1, (8, 3))
    return pos / Bohr, numbers, atoms.cell.array / Bohr


def compute(pos, numbers, cell, points, m):
    return dsc.descriptors(points, NeighborSearch(pos, numbers, cell, m), m)


@pytest.fixture(scope="module")
def structure():
    pos, numbers, cell = rattled_sige()
    points = rng(1).uniform(-0.2, 1.2, (120, 3)) @ cell
    return pos, numbers, cell, points


@pytest.mark.parametrize("m", [6, 55])
def test_layout(structure, m):
    pos, numbers, cell, points = structure
    search = NeighborSearch(pos, numbers, cell, m)
    desc = dsc.descriptors(points, search)
    assert desc.shape == (len(points), 5 * m) and desc.dtype == np.float64
    z, dist, unit = dsc.unpack(desc, m)
    nb = search.query(points)
    np.testing.assert_array_equal(z, nb.z)                   # first block: Z, distance order
    np.testing.assert_allclose(dist, nb.dist, atol=1e-12)
    assert (np.diff(dist, axis=1) >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-12)
    assert set(np.unique(z)) <= {14.0, 32.0}


def test_frame_is_pca_of_second_moment_with_positive_third_moments(structure):
    pos, numbers, cell, points = structure
    nb = NeighborSearch(pos, numbers, cell, 55).query_shell(points)
    lam, frames, undetermined = dsc.pca_frames(nb.disp, nb.mask.astype(float))
    assert not undetermined.any() and (np.diff(lam, axis=1) < 0).all()
    r = nb.disp[0, nb.mask[0]]
    second = r.T @ r / len(r)
    np.testing.assert_allclose(second @ frames[0], frames[0] * lam[0], atol=1e-9)
    assert ((r @ frames[0]) ** 3).sum(0).min() > 0


def random_orthogonal(seed, proper=True):
    rot = Rotation.random(random_state=seed).as_matrix()
    return rot if proper else rot @ np.diag([1.0, 1.0, -1.0])


@pytest.mark.parametrize("m", [6, 55])
@pytest.mark.parametrize("proper", [True, False])
def test_rotation_and_reflection(structure, m, proper):
    pos, numbers, cell, points = structure
    rot = random_orthogonal(7, proper)
    ref = compute(pos, numbers, cell, points, m)
    new = compute(pos @ rot.T, numbers, cell @ rot.T, points @ rot.T, m)
    np.testing.assert_allclose(new, ref, atol=TOL, rtol=0)


def test_translation(structure):
    pos, numbers, cell, points = structure
    shift = np.array([3.7, -11.2, 5.9])
    ref = compute(pos, numbers, cell, points, 55)
    np.testing.assert_allclose(compute(pos + shift, numbers, cell, points + shift, 55), ref,
                               atol=TOL, rtol=0)


def test_atom_permutation(structure):
    pos, numbers, cell, points = structure
    perm = rng(2).permutation(len(pos))
    ref = compute(pos, numbers, cell, points, 55)
    np.testing.assert_allclose(compute(pos[perm], numbers[perm], cell, points, 55), ref,
                               atol=TOL, rtol=0)


def test_supercell(structure):
    pos, numbers, cell, points = structure
    shifts = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    super_pos = (pos[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    super_numbers = np.tile(numbers, len(shifts))
    ref = compute(pos, numbers, cell, points, 55)
    new = compute(super_pos, super_numbers, 2 * cell, points, 55)
    np.testing.assert_allclose(new, ref, atol=TOL, rtol=0)


def test_point_on_an_atom(structure):
    """|r| = 0 for the first neighbour: distance 0, unit components 0, no NaN; the frame comes
    from the other atoms, so the descriptor is still rotation invariant (rattled structure)."""
    pos, numbers, cell, _ = structure
    points = pos[[0, 3]] + cell[1]
    ref = compute(pos, numbers, cell, points, 55)
    assert np.isfinite(ref).all()
    z, dist, unit = dsc.unpack(ref, 55)
    assert (dist[:, 0] < 1e-12).all() and (unit[:, 0] == 0).all()
    np.testing.assert_array_equal(z[:, 0], numbers[[0, 3]])
    np.testing.assert_allclose(np.linalg.norm(unit[:, 1:], axis=-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(compute(pos, numbers, cell, points, 55), ref)
    rot = random_orthogonal(3)
    np.testing.assert_allclose(compute(pos @ rot.T, numbers, cell @ rot.T, points @ rot.T, 55),
                               ref, atol=TOL, rtol=0)


def zincblende(primitive):
    atoms = bulk("SiGe", "zincblende", 5.54, cubic=not primitive)
    return atoms.positions / Bohr, atoms.numbers, atoms.cell.array / Bohr


@pytest.fixture(scope="module")
def crystal_points():
    """The 8^3 grid of the cubic cell: atom sites, tetrahedral and hexagonal interstitials, bond
    centres and mirror planes; all of them are degenerate for plain PCA + third-moment signs."""
    _, _, cell = zincblende(False)
    frac = np.stack(np.meshgrid(*[np.arange(8) / 8] * 3, indexing="ij"), -1).reshape(-1, 3)
    return frac @ cell


def test_perfect_crystal_points_are_degenerate(crystal_points):
    pos, numbers, cell = zincblende(False)
    nb = NeighborSearch(pos, numbers, cell, 55).query_shell(crystal_points)
    lam, _, undetermined = dsc.pca_frames(nb.disp, nb.mask.astype(float))
    assert dsc._special(lam, undetermined).all()
    iso = np.ptp(lam, axis=1) <= dsc.EIG_REL_TOL * lam[:, 0]
    assert iso[[0, 2 * 64 + 2 * 8 + 2, 4 * 64 + 4 * 8 + 4]].all()  # Ge site, Si site, T site
    assert nb.mask.sum(1).max() > 55  # the 55th place is tied at some points: shell completed


@pytest.mark.parametrize("m", [1, 4, 55])
def test_perfect_crystal_is_deterministic_and_invariant(crystal_points, m):
    """Rotation, reflection, translation, permutation and primitive-vs-cubic cell at points of
    perfect symmetry: the canonical (smallest over admissible frames) descriptor is invariant."""
    pos, numbers, cell = zincblende(False)
    ref = compute(pos, numbers, cell, crystal_points, m)
    assert np.isfinite(ref).all()
    np.testing.assert_array_equal(compute(pos, numbers, cell, crystal_points, m), ref)
    ppos, pnum, pcell = zincblende(True)
    rot = random_orthogonal(11, proper=False)
    shift = np.array([1.3, 2.9, -0.4])
    perm = rng(3).permutation(len(pos))
    cases = [(pos[perm] @ rot.T + shift, numbers[perm], cell @ rot.T),
             (ppos @ rot.T + shift, pnum, pcell @ rot.T)]
    for p, z, c in cases:
        new = compute(p, z, c, crystal_points @ rot.T + shift, m)
        np.testing.assert_allclose(new, ref, atol=TOL, rtol=0)


def test_streaming_equals_one_shot(structure):
    pos, numbers, cell, points = structure
    search = NeighborSearch(pos, numbers, cell, 55)
    ref = dsc.descriptors(points, search)
    chunks = list(dsc.iter_descriptors(points, search, chunk_points=50))
    assert [start for start, _ in chunks] == [0, 50, 100]
    assert [len(block) for _, block in chunks] == [50, 50, 20]
    np.testing.assert_array_equal(np.concatenate([b for _, b in chunks]), ref)


def test_grid_streaming_equals_index_box(structure):
    pos, numbers, cell, _ = structure
    grid = Grid(cell, (7, 5, 9))
    search = NeighborSearch(pos, numbers, cell, 20)
    start, stop = (1, 0, 2), (6, 4, 9)
    ref = dsc.descriptors(grid.cartesian_points(start, stop), search)
    blocks = dsc.iter_grid_descriptors(grid, search, chunk_points=33, start=start, stop=stop)
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks]), ref, atol=1e-12, rtol=0)


def test_halo_mode_descriptors_equal_periodic(structure):
    pos, numbers, cell, _ = structure
    points = rng(4).random((40, 3)) @ cell
    shifts = np.array(np.meshgrid(*[range(-2, 3)] * 3, indexing="ij")).reshape(3, -1).T
    halo = (pos[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    halo_search = NeighborSearch(halo, np.tile(numbers, len(shifts)), None, 55, periodic=False)
    nb = halo_search.query_shell(points)
    assert (nb.reach < 2 * np.linalg.norm(cell[0])).all()   # the caller's halo check
    np.testing.assert_allclose(dsc.from_neighbors(nb, 55), compute(pos, numbers, cell, points, 55),
                               atol=TOL, rtol=0)


def test_errors(structure):
    pos, numbers, cell, points = structure
    search = NeighborSearch(pos, numbers, cell, 5)
    with pytest.raises(InputError, match="k=m=6"):
        dsc.from_neighbors(search.query_shell(points, 5), 6)
    with pytest.raises(InputError, match="chunk_points"):
        next(dsc.iter_descriptors(points, search, chunk_points=0))
    with pytest.raises(InputError, match=r"\(n, 30\)"):
        dsc.unpack(np.zeros((2, 10)), 6)
