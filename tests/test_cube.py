"""Gaussian cube I/O: round trips, orientation, agreement with ASE, header precision, bad files."""

import numpy as np
import pytest
from ase import Atoms
from ase.io import read as ase_read
from ase.io import write as ase_write
from ase.io.cube import read_cube_data
from ase.units import Bohr

from hpcdens.errors import InputError
from hpcdens.grid import Grid
from hpcdens.io.cube import CubeFormatError, read_cube, write_cube

# A skewed triclinic cell (Bohr) and an uneven grid, so that a swapped axis or a transposed
# array cannot pass unnoticed.
CELL_BOHR = np.array([[9.7, 0.4, -0.3], [1.9, 8.8, 0.2], [-0.7, 1.3, 10.9]])
SHAPE = (11, 13, 15)
CENTRE_FRAC = np.array([0.21, 0.62, 0.37])


def off_centre_gaussian(grid: Grid, centre_frac=CENTRE_FRAC, width_bohr=1.1):
    """(n1, n2, n3) periodic Gaussian (minimum-image distance) around ``centre_frac``."""
    frac = grid.fractional_points() - centre_frac
    frac -= np.round(frac)
    r = frac @ grid.cell_bohr
    values = np.exp(-(r**2).sum(axis=1) / (2 * width_bohr**2))
    return values.reshape(grid.shape)


@pytest.fixture
def system():
    grid = Grid(CELL_BOHR, SHAPE)
    atoms = Atoms("SiGe", scaled_positions=[CENTRE_FRAC, [0.8, 0.1, 0.55]],
                  cell=CELL_BOHR * Bohr, pbc=True)
    return atoms, grid, off_centre_gaussian(grid)


def test_round_trip_is_bit_exact(tmp_path, system):
    atoms, grid, field = system
    path = write_cube(tmp_path / "f.cube", atoms, grid, field)
    atoms2, grid2, field2 = read_cube(path)
    assert np.array_equal(field2, field)
    assert grid2.shape == grid.shape
    np.testing.assert_allclose(grid2.cell_bohr, grid.cell_bohr, rtol=0, atol=1e-10)
    np.testing.assert_allclose(atoms2.positions, atoms.positions, rtol=0, atol=1e-10)
    assert list(atoms2.numbers) == list(atoms.numbers)
    assert atoms2.pbc.all()


def test_round_trip_at_sparc_precision(tmp_path, system):
    atoms, grid, field = system
    path = write_cube(tmp_path / "f.cube", atoms, grid, field, significant_digits=7)
    _, _, field2 = read_cube(path)
    np.testing.assert_allclose(field2, field, rtol=5e-7, atol=0)


def test_orientation_peak_comes_back_at_the_gaussian_centre(tmp_path, system):
    atoms, grid, field = system
    _, grid2, field2 = read_cube(write_cube(tmp_path / "f.cube", atoms, grid, field))
    peak = np.unravel_index(np.argmax(field2), grid2.shape)
    np.testing.assert_array_equal(peak, np.round(CENTRE_FRAC * SHAPE).astype(int))


def test_ase_reads_our_file_and_agrees(tmp_path, system):
    atoms, grid, field = system
    path = write_cube(tmp_path / "f.cube", atoms, grid, field)
    data, ase_atoms = read_cube_data(str(path))
    assert np.array_equal(data, field)
    np.testing.assert_allclose(ase_atoms.cell[:], atoms.cell[:], rtol=0, atol=1e-9)
    # ASE puts point (i, j, k) at i*v1 + j*v2 + k*v3: the peak is the point nearest the first
    # atom, which sits at the Gaussian's centre
    peak = np.unravel_index(np.argmax(data), data.shape)
    atom_frac = ase_atoms.cell.scaled_positions(ase_atoms.positions[:1])[0]
    np.testing.assert_array_equal(peak, np.round(atom_frac * data.shape).astype(int))
    plain = ase_read(str(path))
    np.testing.assert_allclose(plain.positions, atoms.positions, rtol=0, atol=1e-9)
    assert plain.get_chemical_symbols() == ["Si", "Ge"]


def test_we_read_an_ase_written_cube(tmp_path, system):
    atoms, grid, field = system
    path = tmp_path / "ase.cube"
    with open(path, "w") as fd:
        ase_write(fd, atoms, format="cube", data=field)
    atoms2, grid2, field2 = read_cube(path)
    assert grid2.shape == SHAPE
    np.testing.assert_allclose(field2, field, rtol=5e-7, atol=1e-12)  # ASE writes %e
    np.testing.assert_allclose(grid2.cell_bohr, CELL_BOHR, rtol=0, atol=1e-5)  # and %12.6f
    np.testing.assert_allclose(atoms2.positions, atoms.positions, rtol=0, atol=1e-5)


def test_index_order_is_c_order_with_first_axis_slowest(tmp_path):
    """A hand-written cube in SPARC's .dens layout: values listed with k fastest, rows of <= 6."""
    text = (
        "Electron density in Cube format printed by SPARC-X\n"
        "Cell length: 4.000000 6.000000 9.000000, boundary condition: P P P.\n"
        "    1    0.000000     0.000000     0.000000\n"
        "    2    2.000000     0.000000     0.000000\n"
        "    2    0.000000     3.000000     0.000000\n"
        "    3    0.000000     0.000000     3.000000\n"
        "   14    4.000000    1.000000     1.000000     1.000000\n")
    rows = [" ".join(f"{float(v):.6E}" for v in range(3 * r, 3 * r + 3)) for r in range(4)]
    path = tmp_path / "sparc.dens"
    path.write_text(text + "\n".join(rows) + "\n")
    atoms, grid, field = read_cube(path)
    assert field.shape == (2, 2, 3)
    assert field[1, 0, 2] == 1 * 6 + 0 * 3 + 2
    np.testing.assert_array_equal(field.ravel(), np.arange(12.0))
    np.testing.assert_allclose(grid.cell_bohr, np.diag([4.0, 6.0, 9.0]))
    np.testing.assert_allclose(atoms.positions, [[Bohr, Bohr, Bohr]])


def test_header_precision_meets_sparc_lattice_check(tmp_path):
    """SPARC requires |n*voxel - lattice vector| < 1e-4 Bohr; six decimals fail on long axes."""
    cell = np.diag([301 * 0.33264745, 3.0, 3.0])  # L/301 has a 7th-decimal 45
    grid = Grid(cell, (301, 2, 2))
    atoms = Atoms("Si", positions=[[0.1, 0.2, 0.3]], cell=cell * Bohr, pbc=True)
    field = np.ones(grid.shape)
    _, grid2, _ = read_cube(write_cube(tmp_path / "long.cube", atoms, grid, field))
    assert np.abs(grid2.cell_bohr - cell).max() < 1e-9
    six_decimals = 301 * round(cell[0, 0] / 301, 6)
    assert abs(six_decimals - cell[0, 0]) > 1e-4  # why %12.6f (ASE, SPARC .dens) is not enough


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, system):
    atoms, grid, field = system
    write_cube(tmp_path / "f.cube", atoms, grid, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.cube"]


@pytest.mark.parametrize("bad", ["shape", "nan", "cell"])
def test_write_rejects_inconsistent_input(tmp_path, system, bad):
    atoms, grid, field = system
    if bad == "shape":
        field = field[:, :, :-1]
    elif bad == "nan":
        field = field.copy()
        field[0, 0, 0] = np.nan
    else:
        atoms = atoms.copy()
        atoms.cell[0, 0] += 0.01
    with pytest.raises(InputError):
        write_cube(tmp_path / "f.cube", atoms, grid, field)
    assert not list(tmp_path.iterdir())


def _corrupt(text: str, how: str) -> str:
    lines = text.split("\n")
    if how == "truncated":
        return "\n".join(lines[: len(lines) // 2])
    if how == "extra_values":
        return text + " 1.0 2.0\n"
    if how == "garbage_value":
        return text.replace("e-", "x-", 1) if "e-" in text else text + " abc\n"
    if how == "origin":
        lines[2] = "    2    0.5    0.0    0.0"
        return "\n".join(lines)
    if how == "header":
        return "only one line\n"
    if how == "axis_count":
        lines[3] = "   -11    0.5    0.0    0.0"
        return "\n".join(lines)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "extra_values", "garbage_value", "origin", "header",
                                 "axis_count"])
def test_bad_files_raise_with_the_file_name(tmp_path, system, how):
    atoms, grid, field = system
    good = write_cube(tmp_path / "good.cube", atoms, grid, field).read_text()
    bad = tmp_path / f"bad_{how}.cube"
    bad.write_text(_corrupt(good, how))
    with pytest.raises(CubeFormatError, match=f"bad_{how}.cube"):
        read_cube(bad)


def test_missing_file_raises_with_the_file_name(tmp_path):
    with pytest.raises(CubeFormatError, match="nowhere.cube"):
        read_cube(tmp_path / "nowhere.cube")
