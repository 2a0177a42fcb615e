"""Density errors per region (hpcdens/regions.py) and their place in `hpcdens evaluate`.

Geometry against brute force (minimum image over many images, in a strongly sheared cell) and
analytic plane distances; region errors and the Fourier split on synthetic fields. The evaluate
test uses an untrained model and a hand-written test set (no DFT): a vacancy cell, a segregated
cell and a plain cell, the region attributes set in ``atoms.info`` as the generator stores them.
"""

import csv
import itertools
import json
import math

import numpy as np
import pytest
from ase import Atoms
from ase.units import Bohr

from hpcdens import regions as rg
from hpcdens.errors import InputError
from hpcdens.grid import Grid
from hpcdens.metrics import relative_l1_percent

SHEARED = np.array([[5.0, 0.0, 0.0], [4.5, 3.0, 0.0], [4.0, 2.5, 3.0]])  # Bohr, far from reduced


def _atoms(cell_bohr):
    return Atoms("Si", positions=[[0.0, 0.0, 0.0]], cell=np.asarray(cell_bohr) * Bohr, pbc=True)


def _brute_distance(cell, points, sites, reach=4):
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3))) @ cell
    d = [np.linalg.norm(points[:, None, :] - (s + shifts)[None], axis=2).min(axis=1)
         for s in sites]
    return np.min(d, axis=0)


# ----------------------------------------------------------------------------- geometry
def test_vacancy_shells_match_brute_force_minimum_image_in_a_sheared_cell():
    grid = Grid(SHEARED, (7, 8, 9))
    sites = np.array([[1.3, 0.4, 2.2], [6.0, 2.0, 0.5]])
    points = grid.cartesian_points()
    brute = _brute_distance(SHEARED, points, sites)
    assert np.allclose(rg.nearest_site_distance(SHEARED, points, sites), brute, atol=1e-12)
    # The cell is sheared enough that wrapping in its own basis is wrong for some points.
    frac = (points - sites[0]) @ np.linalg.inv(SHEARED)
    naive = np.linalg.norm((frac - np.round(frac)) @ SHEARED, axis=1)
    assert np.any(naive > _brute_distance(SHEARED, points, sites[:1]) + 0.1)
    edges = (0.0, 0.8, 1.5, 2.0, math.inf)
    shells = rg.vacancy_shells(_atoms(SHEARED), grid, sites, edges)
    assert shells.shape == grid.shape
    expected = np.searchsorted(edges, brute, side="right") - 1
    assert np.array_equal(shells.ravel(), expected)
    assert set(np.unique(shells)) == {0, 1, 2, 3}


def test_vacancy_shells_refuse_bad_input():
    grid = Grid(SHEARED, (7, 8, 9))
    with pytest.raises(InputError, match="not the grid's cell"):
        rg.vacancy_shells(_atoms(SHEARED * 1.01), grid, [[0, 0, 0]])
    with pytest.raises(InputError, match=r"\(k, 3\)"):
        rg.vacancy_shells(_atoms(SHEARED), grid, np.zeros((0, 3)))
    with pytest.raises(InputError, match="from 0 to inf"):
        rg.vacancy_shells(_atoms(SHEARED), grid, [[0, 0, 0]], (0.0, 2.0, 1.0, math.inf))


def test_boundary_distances_of_a_cubic_cell_with_two_bins_are_analytic():
    cell = np.eye(3) * 10.0
    grid = Grid(cell, (10, 10, 10))  # 1 Bohr spacing; cut planes at 0 and 5 Bohr on each axis
    dist = rg.boundary_distance(grid, 2)
    i = np.arange(10)
    per_axis = np.minimum(i % 5, 5 - i % 5).astype(float)
    expected = np.minimum.reduce(np.meshgrid(per_axis, per_axis, per_axis, indexing="ij"))
    assert np.allclose(dist, expected, atol=1e-12)
    shells = rg.boundary_shells(_atoms(cell), grid, 2)
    assert shells[0, 3, 3] == 0 and shells[1, 2, 2] == 1 and shells[2, 2, 3] == 2
    assert shells.max() == 2  # no point is 4 Bohr from every plane in 5 Bohr blocks
    assert np.array_equal(rg.boundary_shells(_atoms(cell), grid, 2, (0, 2.5, math.inf)),
                          (expected >= 2.5).astype(int))
    with pytest.raises(InputError, match="integer >= 2"):
        rg.boundary_shells(_atoms(cell), grid, 1)


def test_boundary_distance_follows_the_cut_offset():
    """Blocks cut at offset + m/bins: the distance is zero on the shifted planes and the same
    field as without offset, moved by the offset."""
    cell = np.eye(3) * 12.0
    grid = Grid(cell, (24, 24, 24))                 # 0.5 Bohr; offset 1/24 = one grid step
    shifted = rg.boundary_distance(grid, 2, offset=1 / 24)
    assert shifted[1, 5, 7] == pytest.approx(0.0, abs=1e-12)
    assert shifted[13, 13, 13] == pytest.approx(0.0, abs=1e-12)
    assert shifted[0, 6, 6] == pytest.approx(0.5)
    assert np.allclose(shifted, np.roll(rg.boundary_distance(grid, 2), (1, 1, 1), (0, 1, 2)),
                       atol=1e-12)


def test_boundary_distance_is_perpendicular_to_the_plane_in_a_sheared_cell():
    cell = np.array([[10.0, 0, 0], [5.0, 10.0, 0], [0, 0, 10.0]])
    grid = Grid(cell, (10, 4, 4))
    # plane f1 = 0 is spanned by b and c: its spacing is V / |b x c| = 1000 / sqrt(12500)
    along_a = 0.2 * 1000.0 / math.sqrt(12500.0)
    assert rg.boundary_distance(grid, 2)[2, 1, 1] == pytest.approx(min(along_a, 2.5))
    assert rg.boundary_distance(grid, 2)[2, 1, 1] == pytest.approx(1.78885438, rel=1e-8)


# ----------------------------------------------------------------------------- errors
def _smooth_ref(grid):
    x = grid.fractional_points().reshape(*grid.shape, 3)
    return 0.05 + 0.02 * np.cos(2 * np.pi * x[..., 0]) * np.sin(2 * np.pi * x[..., 1]) ** 2


def test_an_error_near_a_vacancy_shows_only_in_the_first_shell():
    cell = np.eye(3) * 12.0
    grid = Grid(cell, (20, 20, 20))
    site = np.array([[6.0, 6.0, 6.0]])
    ref = _smooth_ref(grid)
    dist = rg.nearest_site_distance(cell, grid.cartesian_points(), site).reshape(grid.shape)
    pred = ref + np.where(dist < 1.5, 0.01, 0.0)
    shells = rg.vacancy_shells(_atoms(cell), grid, site)
    dv = grid.voxel_volume_bohr3
    rows = rg.region_errors(pred, ref, shells, dv, rg.VACANCY_EDGES_BOHR)
    assert [(r["shell_min_bohr"], r["shell_max_bohr"]) for r in rows] == [
        (0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, math.inf)]
    assert sum(r["n_points"] for r in rows) == grid.size
    assert rows[0]["relative_l1_percent"] > 1 and rows[0]["rmse"] > 1e-3
    assert rows[0]["charge_error_e"] == pytest.approx(0.01 * np.sum(dist < 1.5) * dv)
    for r in rows[1:]:
        assert r["relative_l1_percent"] == 0 and r["rmse"] == 0 and r["charge_error_e"] == 0
    cell_l1 = relative_l1_percent(pred, ref)
    assert all(r["cell_relative_l1_percent"] == pytest.approx(cell_l1) for r in rows)


def test_region_charge_errors_add_up_to_the_cell_and_empty_shells_have_no_ratio():
    grid = Grid(np.eye(3) * 8.0, (12, 12, 12))
    rng = np.random.default_rng(0)
    ref = _smooth_ref(grid)
    pred = ref + rng.normal(0, 1e-3, grid.shape)
    shells = rg.boundary_shells(_atoms(np.eye(3) * 8.0), grid, 2)
    rows = rg.region_errors(pred, ref, shells, grid.voxel_volume_bohr3, rg.BOUNDARY_EDGES_BOHR)
    total = float((pred - ref).sum() * grid.voxel_volume_bohr3)
    assert sum(r["charge_error_e"] for r in rows) == pytest.approx(total, abs=1e-12)
    assert rows[-1]["n_points"] == 0  # 4 Bohr blocks: nothing is 4 Bohr from a face
    assert rows[-1]["relative_l1_percent"] is None and rows[-1]["rmse"] is None
    for i, r in enumerate(rows[:-1]):
        mask = shells == i
        assert r["relative_l1_percent"] == pytest.approx(relative_l1_percent(pred[mask],
                                                                             ref[mask]))
        assert r["rmse"] == pytest.approx(np.sqrt(np.mean((pred[mask] - ref[mask]) ** 2)))
    assert rg.worst_relative_l1([{"key": "k", **r} for r in rows]) == max(
        r["relative_l1_percent"] for r in rows[:-1])
    with pytest.raises(InputError, match="same shape"):
        rg.region_errors(pred, ref[:-1], shells, 1.0, rg.BOUNDARY_EDGES_BOHR)
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        rg.region_errors(pred, ref, shells, 1.0, (0.0, 1.0, math.inf))


# ----------------------------------------------------------------------------- Fourier split
def test_fourier_split_separates_small_cell_and_supercell_wavelengths():
    rng = np.random.default_rng(1)
    reps, shape = (2, 1, 3), (8, 6, 9)
    periodic = np.tile(rng.normal(size=(4, 6, 3)), reps)
    split = rg.fourier_split(periodic, reps)
    assert np.allclose(split["small_cell"], periodic, atol=1e-12)
    assert np.allclose(split["supercell_only"], 0, atol=1e-12)
    assert split["rms_small_cell"] == pytest.approx(np.sqrt(np.mean(periodic**2)))
    i = np.arange(shape[0]).reshape(-1, 1, 1)
    k = np.arange(shape[2]).reshape(1, 1, -1)
    long_wave = np.cos(2 * np.pi * i / 8) + np.sin(2 * np.pi * 2 * k / 9) * np.ones(shape)
    split = rg.fourier_split(long_wave, reps)
    assert np.allclose(split["small_cell"], 0, atol=1e-12)
    assert np.allclose(split["supercell_only"], long_wave, atol=1e-12)
    assert split["rms_small_cell"] < 1e-12
    noise = rng.normal(size=shape)
    split = rg.fourier_split(noise, reps)
    assert np.allclose(split["small_cell"] + split["supercell_only"], noise, atol=1e-14)
    assert 0 < split["rms_small_cell"] < split["rms_supercell_only"]
    assert split["rms_small_cell"] ** 2 + split["rms_supercell_only"] ** 2 == pytest.approx(
        np.mean(noise**2))  # orthogonal parts (Parseval)


def test_fourier_split_on_a_grid_the_repetitions_do_not_divide():
    """A 64-atom cell at 0.5 Bohr has 43 points per axis: the split goes by signed frequency."""
    i = np.arange(43).reshape(-1, 1, 1) * np.ones((43, 5, 5))
    small = np.cos(2 * np.pi * 2 * i / 43) + 0.5 * np.sin(2 * np.pi * -4 * i / 43)
    long_wave = np.cos(2 * np.pi * 1 * i / 43) + np.sin(2 * np.pi * -21 * i / 43)
    split = rg.fourier_split(small + long_wave, (2, 1, 1))
    assert np.allclose(split["small_cell"], small, atol=1e-12)
    assert np.allclose(split["supercell_only"], long_wave, atol=1e-12)
    with pytest.raises(ValueError, match="three positive integer"):
        rg.fourier_split(np.zeros((8, 8)), (2, 2, 2))


# ----------------------------------------------------------------------------- attributes
def test_region_spec_reads_and_checks_the_snapshot_attributes():
    sites = [[1.0, 2.0, 3.0], [0.0, 0.5, 1.0]]
    spec = rg.region_spec("k", {rg.VACANCY_ATTR: json.dumps(sites), rg.BINS_ATTR: np.int64(3)})
    assert np.allclose(spec["sites_bohr"], np.array(sites) / Bohr) and spec["bins"] == 3
    assert rg.region_spec("k", {"composition": "Si1"}) == {"sites_bohr": None, "bins": None,
                                                           "offset": 0.0}
    assert rg.region_spec("k", {rg.BINS_ATTR: 2, rg.OFFSET_ATTR: 1 / 24})["offset"] == 1 / 24
    assert rg.region_spec("k", {rg.VACANCY_ATTR: "[]"})["sites_bohr"] is None
    with pytest.raises(InputError, match="snapshot 'a/1'.*not a JSON list"):
        rg.region_spec("a/1", {rg.VACANCY_ATTR: "[[1, 2"})
    with pytest.raises(InputError, match=r"shape \(2,\)"):
        rg.region_spec("a/1", {rg.VACANCY_ATTR: "[1, 2]"})
    with pytest.raises(InputError, match="segregation_bins must be an integer >= 2"):
        rg.region_spec("a/1", {rg.BINS_ATTR: 1})
    with pytest.raises(InputError, match=r"segregation_offset must be a fraction in \[0, 1/bins\)"):
        rg.region_spec("a/1", {rg.BINS_ATTR: 2, rg.OFFSET_ATTR: 0.5})


# ----------------------------------------------------------------------------- evaluate
def _write_testset(path, snapshots):
    """A test set from (key, atoms, grid, rho) without DFT: n_electrons = 4 per atom."""
    from hpcdens.dft.base import DFTResult
    from hpcdens.io.training_set import assemble, write_part

    for key, atoms, grid, rho in snapshots:
        result = DFTResult(energy_ha=0.0, free_energy_ha=0.0, rho=rho, grid=grid,
                           n_electrons=4.0 * len(atoms), fermi_level_ha=0.0, converged=True,
                           n_iterations=1, wall_time_s=0.0, backend="pyscf")
        write_part(path, key, atoms, result, rho)
    assemble(path, [s[0] for s in snapshots], {})
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """run_evaluate (COMM_SELF, no energies) on a vacancy, a segregated and a plain 8-atom cell."""
    from mpi4py import MPI

    from hpcdens.evaluation import run_evaluate
    from tests.predict_helpers import make_model, sige_cell

    d = tmp_path_factory.mktemp("regions")
    full = sige_cell((1, 1, 1), seed=2)
    vacancy = full[1:]
    vacancy.info[rg.VACANCY_ATTR] = json.dumps([full.positions[0].tolist()])
    segregated = sige_cell((1, 1, 1), seed=3)
    segregated.info[rg.BINS_ATTR] = 2
    plain = sige_cell((1, 1, 1), seed=4)
    snaps = []
    for key, atoms in (("vac/s000", vacancy), ("seg/s000", segregated), ("plain/s000", plain)):
        grid = Grid(atoms.cell.array / Bohr, (12, 12, 12))
        ref = _smooth_ref(grid)
        snaps.append((key, atoms, grid, ref * 4.0 * len(atoms) / grid.integrate(ref)))
    testset = _write_testset(d / "test.h5", snaps)
    result = run_evaluate(MPI.COMM_SELF, make_model(d / "m.pt"), testset, d / "out",
                          with_energy=False)
    return result, snaps, full.positions[0] / Bohr


def test_evaluate_writes_region_rows_for_vacancy_and_segregated_cells(evaluated):
    from pathlib import Path

    from hpcdens.evaluation import COLUMNS

    result, snaps, site = evaluated
    out = Path(result["out"])
    assert result["regions_csv"] == "regions.csv"
    with open(out / "regions.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(rg.REGION_COLUMNS)
    assert [(r["key"], r["kind"]) for r in table] == ([("vac/s000", "vacancy")] * 4
                                                      + [("seg/s000", "boundary")] * 4)
    assert [r["shell_max_bohr"] for r in table[:4]] == ["2.0", "4.0", "6.0", "inf"]
    grid = snaps[0][2]
    dist = _brute_distance(grid.cell_bohr, grid.cartesian_points(), [site], reach=1)
    assert int(table[0]["n_points"]) == int(np.sum(dist < 2.0)) > 0
    for rows in (table[:4], table[4:]):
        assert sum(int(r["n_points"]) for r in rows) == grid.size
        # the renormalised prediction and the reference both hold N_e electrons
        assert sum(float(r["charge_error_e"]) for r in rows) == pytest.approx(0, abs=1e-9)
    with open(out / "evaluate.csv") as f:
        evaluated_rows = {r["key"]: r for r in csv.DictReader(f)}
    assert list(next(iter(evaluated_rows.values()))) == list(COLUMNS)
    for key, rows in (("vac/s000", table[:4]), ("seg/s000", table[4:])):
        row = evaluated_rows[key]
        assert float(row["worst_region_relative_l1_percent"]) == pytest.approx(
            max(float(r["relative_l1_percent"]) for r in rows if r["relative_l1_percent"]))
        assert float(rows[0]["cell_relative_l1_percent"]) == pytest.approx(
            float(row["relative_l1_percent"]))
    assert evaluated_rows["plain/s000"]["worst_region_relative_l1_percent"] == ""
    assert result["rows"][2]["worst_region_relative_l1_percent"] is None


def test_evaluate_refuses_a_malformed_region_attribute_before_any_work(tmp_path):
    from mpi4py import MPI

    from hpcdens.evaluation import run_evaluate
    from tests.predict_helpers import make_model, sige_cell

    atoms = sige_cell((1, 1, 1), seed=5)
    atoms.info[rg.VACANCY_ATTR] = "[[0.0, 0.0]]"
    grid = Grid(atoms.cell.array / Bohr, (12, 12, 12))
    testset = _write_testset(tmp_path / "bad.h5", [("bad/s000", atoms, grid, _smooth_ref(grid))])
    with pytest.raises(InputError, match="snapshot 'bad/s000': vacancy_sites_angstrom"):
        run_evaluate(MPI.COMM_SELF, make_model(tmp_path / "m.pt"), testset, tmp_path / "out",
                     with_energy=False)
    assert not (tmp_path / "out").exists()
