"""The SAD lattice sum (hpcdens.sad.superpose) against the direct sum over every atom and every
lattice image within reach, on cells where the cutoff spans many images, skewed cells, points
outside the cell and blocks of points far apart."""

import numpy as np
import pytest

from hpcdens import sad
from hpcdens.sad import RadialDensity, superpose, tabulate


def gaussian_table(element: str, width: float, n_electrons: float):
    """A RadialDensity of a normalised Gaussian (its tail drops below the cutoff near 6-9 Bohr)."""
    r = np.arange(0.0, 20.0, 0.01)
    rho = n_electrons * np.exp(-(r / width) ** 2) / (np.pi ** 1.5 * width ** 3)
    return tabulate(element, n_electrons, r, rho)


RADIAL = {"Si": gaussian_table("Si", 1.1, 4.0), "Ge": gaussian_table("Ge", 1.5, 4.0)}


def direct_sum(cell, positions, symbols, points):
    """Every atom, every image n in a box wide enough for the largest cutoff, atoms up to 2 cells
    and points up to 3 cells outside the home cell."""
    reach = max(r.r_cut for r in RADIAL.values())
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)
    m = np.ceil(reach / spacing).astype(int) + 6
    shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"),
                      axis=-1).reshape(-1, 3) @ cell
    out = np.zeros(len(points))
    for symbol, position in zip(symbols, positions):
        for shift in shifts:
            out += RADIAL[symbol](np.linalg.norm(points - position - shift, axis=1))
    return out


CELLS = {
    "small cubic (cutoff spans 2-3 cells)": np.eye(3) * 4.0,
    "skewed": np.array([[6.0, 0.0, 0.0], [2.5, 5.5, 0.0], [1.0, -1.5, 7.0]]),
    "long thin": np.diag([3.5, 4.0, 22.0]),
}


@pytest.mark.parametrize("name", CELLS)
def test_superpose_equals_the_direct_sum(name, monkeypatch):
    cell = CELLS[name]
    rng = np.random.default_rng(1)
    symbols = ["Si", "Ge", "Si", "Si", "Ge"]
    positions = rng.random((5, 3)) @ cell + rng.normal(0, 3.0, (5, 3))   # some outside the cell
    inside = rng.random((300, 3)) @ cell
    far = rng.random((50, 3)) @ cell + 3 * cell[0] - 2 * cell[2]         # periodic images of points
    points = np.vstack([inside, far])
    monkeypatch.setattr(sad, "POINTS_PER_BLOCK", 64)   # several blocks, one spanning both groups
    got = superpose(cell, positions, symbols, points, RADIAL)
    ref = direct_sum(cell, positions, symbols, points)
    assert (ref > 1e-6).mean() > 0.9, "most points see density"
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got[300:], superpose(cell, positions, symbols,
                                                    points[300:] - 3 * cell[0] + 2 * cell[2],
                                                    RADIAL), rtol=1e-13)


def test_superpose_of_no_points_and_of_one_atom_with_its_images():
    cell = np.eye(3) * 5.0
    assert superpose(cell, [[0, 0, 0]], ["Si"], np.zeros((0, 3)), RADIAL).shape == (0,)
    one = superpose(cell, [[0, 0, 0]], ["Si"], [[0.0, 0.0, 0.1]], RADIAL)
    assert one.shape == (1,) and one[0] > RADIAL["Si"](np.array([0.1]))[0]   # images add a little


def test_a_table_round_trips_bit_for_bit_and_a_bad_one_is_refused():
    rad = RADIAL["Ge"]
    back = RadialDensity.from_table("Ge", rad.to_table())
    r = np.linspace(0.0, rad.r_cut + 1.0, 997)
    assert (back.element, back.n_electrons, back.r_cut, back.integral) == \
        (rad.element, rad.n_electrons, rad.r_cut, rad.integral)
    assert back(r).tobytes() == rad(r).tobytes()
    for broken in ({**rad.to_table(), "rho": rad.to_table()["rho"][:-1]},
                   {**rad.to_table(), "r": rad.to_table()["r"][::-1]},
                   {k: v for k, v in rad.to_table().items() if k != "integral"}):
        with pytest.raises(ValueError, match="radial table of Ge"):
            RadialDensity.from_table("Ge", broken)


@pytest.mark.parametrize("name", CELLS)
def test_pro_atoms_are_the_sad_atom_by_atom(name, monkeypatch):
    cell = CELLS[name]
    rng = np.random.default_rng(2)
    symbols = ["Si", "Ge", "Si", "Ge"]
    positions = rng.random((4, 3)) @ cell
    points = rng.random((200, 3)) @ cell
    monkeypatch.setattr(sad, "POINTS_PER_BLOCK", 64)
    pro = sad.pro_atoms(cell, positions, symbols, points, RADIAL).toarray()
    assert pro.shape == (200, 4)
    for a in range(4):        # column a: atom a alone, all its images
        np.testing.assert_allclose(pro[:, a], direct_sum(cell, positions[a:a + 1],
                                                         symbols[a:a + 1], points),
                                   rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(pro.sum(1), superpose(cell, positions, symbols, points, RADIAL),
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["small cubic (cutoff spans 2-3 cells)", "skewed"])
def test_pro_atom_shells_split_each_image_by_its_own_distance(name):
    """Every image of an atom in reach is split over the hats of its own distance (not the
    nearest image's), and an atom's shells add up to its pro-atom."""
    cell = CELLS[name]
    rng = np.random.default_rng(3)
    symbols = ["Si", "Ge"]
    positions = rng.random((2, 3)) @ cell
    points = rng.random((150, 3)) @ cell
    nodes = np.array([0.0, 0.5, 1.2, 2.5])
    shells = sad.pro_atoms(cell, positions, symbols, points, RADIAL,
                           shells_bohr=nodes[1:]).toarray().reshape(150, 2, 4)
    whole = sad.pro_atoms(cell, positions, symbols, points, RADIAL).toarray()
    np.testing.assert_allclose(shells.sum(2), whole, rtol=1e-12, atol=1e-15)
    reach = max(r.r_cut for r in RADIAL.values())
    m = np.ceil(reach / (1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1))).astype(int) + 3
    images = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in m], indexing="ij"),
                      axis=-1).reshape(-1, 3) @ cell
    for a in range(2):
        d = np.linalg.norm(points[:, None, :] - positions[a] - images[None], axis=2)
        value = RADIAL[symbols[a]](d)
        for k in range(4):
            hat = np.interp(d, nodes, np.eye(4)[k])
            np.testing.assert_allclose(shells[:, a, k], (value * hat).sum(1), rtol=1e-10,
                                       atol=1e-14)
    assert np.all(shells[:, :, 1].max(0) > 0)        # points do fall within the inner shells


def test_pro_atom_shells_must_increase():
    with pytest.raises(ValueError, match="shell radii must increase"):
        sad.pro_atoms(np.eye(3) * 4.0, np.zeros((1, 3)), ["Si"], np.ones((1, 3)), RADIAL,
                      shells_bohr=[1.0, 0.5])
