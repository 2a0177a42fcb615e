"""Tests of hpcdens.structures: lattices, Vegard, decoration, snapshots, defects, segregation."""

import json
import sys
from collections import Counter

import ase.io
import numpy as np
import pytest
from ase import Atoms

from hpcdens import md
from hpcdens import segregation as sg
from hpcdens import structures as st
from hpcdens.composition import atom_counts
from hpcdens.errors import StructureError

A_SI = 5.431


def rng(seed=0):
    return np.random.default_rng(seed)


def cucu_ni(seed=0):
    """32-atom fcc Cu16Ni16 cell, randomly decorated."""
    return st.decorate(st.build_cell("fcc", 3.58, 2), {"Cu": 16, "Ni": 16}, rng(seed))


# ----------------------------------------------------------------------------- lattices
@pytest.mark.parametrize("lattice,n_cubic,n_prim", [("diamond", 8, 2), ("fcc", 4, 1),
                                                    ("bcc", 2, 1)])
@pytest.mark.parametrize("supercell", [(1, 1, 1), (2, 1, 3)])
def test_cell_sizes(lattice, n_cubic, n_prim, supercell):
    n_rep = int(np.prod(supercell))
    cubic = st.build_cell(lattice, 4.0, supercell)
    prim = st.build_cell(lattice, 4.0, supercell, primitive=True)
    assert len(cubic) == n_cubic * n_rep
    assert len(prim) == n_prim * n_rep
    assert cubic.pbc.all() and prim.pbc.all()
    assert np.allclose(cubic.cell.lengths(), 4.0 * np.array(supercell))
    assert set(cubic.get_chemical_symbols()) == {"X"}


def test_int_supercell_is_cubic_repeat():
    assert np.array_equal(st.build_cell("bcc", 3.0, 2).positions,
                          st.build_cell("bcc", 3.0, (2, 2, 2)).positions)


def test_primitive_fcc_is_nonorthogonal_with_same_density():
    cubic = st.build_cell("fcc", 3.6)
    prim = st.build_cell("fcc", 3.6, primitive=True)
    angles = prim.cell.angles()
    assert not np.allclose(angles, 90.0)
    assert np.allclose(angles, 60.0)
    assert len(prim) / prim.get_volume() == pytest.approx(len(cubic) / cubic.get_volume())


def test_build_cell_errors():
    with pytest.raises(StructureError, match="unknown lattice 'dimond'.*did you mean 'diamond'"):
        st.build_cell("dimond", 5.4)
    with pytest.raises(StructureError, match="did you mean 'fcc'"):
        st.build_cell("FCC", 3.6)
    for bad in [(2, 0, 2), (2, 2), (2, 2.5, 2), -1, True]:
        with pytest.raises(StructureError, match="supercell must be three positive integers"):
            st.build_cell("fcc", 3.6, bad)
    with pytest.raises(StructureError, match="lattice constant must be > 0 Angstrom, got -1"):
        st.build_cell("fcc", -1.0)


def test_vegard():
    a = st.vegard_lattice_constant({"Si": 0.25, "Ge": 0.75}, {"Si": 5.431, "Ge": 5.658, "Sn": 6.5})
    assert a == pytest.approx(0.25 * 5.431 + 0.75 * 5.658)
    assert st.vegard_lattice_constant({"Ge": 1.0, "Sn": 0.0}, {"Ge": 5.658}) == 5.658
    with pytest.raises(StructureError, match=r"no lattice constant for Sn.*"
                                             r"system\.lattice_constants_angstrom"):
        st.vegard_lattice_constant({"Si": 0.5, "Sn": 0.5}, {"Si": 5.431})
    with pytest.raises(StructureError, match="sum to 0.9"):
        st.vegard_lattice_constant({"Si": 0.5, "Ge": 0.4}, {"Si": 5.4, "Ge": 5.6})


# ----------------------------------------------------------------------------- decoration
def test_decorate_exact_counts_and_seeded():
    cell = st.build_cell("diamond", A_SI, 2)
    counts = {"Si": 8, "Ge": 24, "Sn": 32}
    first = st.decorate(cell, counts, rng(7))
    assert Counter(first.get_chemical_symbols()) == counts
    assert np.array_equal(first.numbers, st.decorate(cell, counts, rng(7)).numbers)
    assert not np.array_equal(first.numbers, st.decorate(cell, counts, rng(8)).numbers)
    reordered = {"Sn": 32, "Si": 8, "Ge": 24}
    assert np.array_equal(first.numbers, st.decorate(cell, reordered, rng(7)).numbers)
    assert set(cell.get_chemical_symbols()) == {"X"}  # input untouched


def test_decorate_errors():
    cell = st.build_cell("fcc", 3.6)
    with pytest.raises(StructureError, match="add up to 5, but the cell has 4 sites"):
        st.decorate(cell, {"Cr": 2, "Fe": 3}, rng())
    with pytest.raises(StructureError, match="unknown element"):
        st.decorate(cell, {"Qq": 4}, rng())


# ----------------------------------------------------------------------------- snapshots
def test_rattle_seeded_with_stated_stdev():
    cell = st.build_cell("fcc", 3.6, 10)  # 4000 atoms, 12000 displacements
    moved = st.rattle(cell, 0.1, rng(3))
    assert np.array_equal(moved.positions, st.rattle(cell, 0.1, rng(3)).positions)
    assert not np.array_equal(moved.positions, st.rattle(cell, 0.1, rng(4)).positions)
    disp = moved.positions - cell.positions
    assert abs(disp.mean()) < 0.005
    assert disp.std() == pytest.approx(0.1, rel=0.03)
    with pytest.raises(StructureError, match="stdev must be >= 0"):
        st.rattle(cell, -0.1, rng())


def test_emt_md_snapshots_seeded_and_moving():
    atoms = cucu_ni()
    calc = md.make_calculator("emt", set(atoms.get_chemical_symbols()))
    kw = dict(timestep_fs=2.0, steps_between=5, equilibration_steps=5)
    snaps = md.md_snapshots(atoms, calc, 3, 1500.0, rng=rng(11), **kw)
    again = md.md_snapshots(atoms, md.make_calculator("emt"), 3, 1500.0, rng=rng(11), **kw)
    other = md.md_snapshots(atoms, md.make_calculator("emt"), 3, 1500.0, rng=rng(12), **kw)
    assert len(snaps) == 3
    assert [s.info["md_step"] for s in snaps] == [10, 15, 20]
    for s, t, u in zip(snaps, again, other):
        assert s.calc is None and not s.constraints
        assert np.array_equal(s.positions, t.positions)
        assert not np.array_equal(s.positions, u.positions)
        assert np.array_equal(s.numbers, atoms.numbers)
    for before, after in [(atoms, snaps[0]), (snaps[0], snaps[1])]:  # atoms move (mod cell)
        step = np.abs(after.get_scaled_positions() - before.get_scaled_positions())
        assert np.minimum(step, 1 - step).max() * 7.16 > 0.05
    assert atoms.calc is None and not atoms.has("momenta")  # input untouched


def test_emt_refuses_unknown_elements():
    with pytest.raises(StructureError, match=r"\"emt\" \(ASE's EMT\) cannot do Ge, Si.*sevenn.*rattle"):
        md.make_calculator("emt", ["Si", "Ge"])
    si = st.decorate(st.build_cell("diamond", A_SI), {"Si": 8}, rng())
    from ase.calculators.emt import EMT
    with pytest.raises(StructureError, match="cannot handle this structure.*sevenn"):
        md.md_snapshots(si, EMT(), 1, 300.0, rng=rng())


def test_calculator_and_md_argument_errors():
    with pytest.raises(StructureError, match="unknown calculator 'lj'.*emt, sevenn, chgnet"):
        md.make_calculator("lj")
    with pytest.raises(StructureError, match="n_snapshots must be an integer >= 1, got 0"):
        md.md_snapshots(cucu_ni(), md.make_calculator("emt"), 0, 300.0, rng=rng())
    with pytest.raises(StructureError, match="temperature_K must be >= 0 K, got -5.0"):
        md.md_snapshots(cucu_ni(), md.make_calculator("emt"), 1, -5.0, rng=rng())
    with pytest.raises(StructureError, match="timestep_fs must be > 0 fs"):
        md.md_snapshots(cucu_ni(), md.make_calculator("emt"), 1, 300.0, rng=rng(), timestep_fs=0)


@pytest.mark.parametrize("name", ["sevenn", "chgnet"])
def test_mlip_without_its_package(name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # absent, whether installed or not
    with pytest.raises(StructureError, match=rf"\"{name}\" needs the package {name}, which is not "
                       r"installed; install the mlip extra with `HPCDENS_EXTRAS=mlip bash "
                       r"launch/install.sh` or use the snapshot method \"rattle\"$"):
        md.make_calculator(name, ["Cr", "Fe"])


# ----------------------------------------------------------------------------- defects
def test_vacancies_exact():
    cell = st.build_cell("bcc", 2.9, 3)
    holed = st.add_vacancies(cell, 5, rng(1))
    assert len(holed) == len(cell) - 5 and holed.info["vacancies"] == 5
    assert len(st.add_vacancies(cell, 0, rng(1))) == len(cell)
    for bad in (len(cell), -1):
        with pytest.raises(StructureError, match=f"cannot make {bad} vacancies in a cell of 54"):
            st.add_vacancies(cell, bad, rng())


def test_void_removes_the_atoms_nearest_the_centre():
    cell = st.build_cell("diamond", A_SI, 3)
    centre = cell.cell.array.sum(0) / 2
    holed = st.add_void(cell, 6)
    assert len(holed) == len(cell) - 6 and holed.info["vacancies"] == 6
    removed = np.array(json.loads(holed.info["vacancy_sites_angstrom"]))
    kept = np.linalg.norm(holed.positions - centre, axis=1)
    assert np.linalg.norm(removed - centre, axis=1).max() <= kept.min()
    for bad in (len(cell), -3):
        with pytest.raises(StructureError, match=f"cannot remove {bad} atoms around the centre"):
            st.add_void(cell, bad)


@pytest.mark.parametrize("lattice,a,primitive", [("diamond", A_SI, False), ("fcc", 3.6, True),
                                                 ("bcc", 2.9, False)])
def test_divacancy_removes_nearest_neighbours(lattice, a, primitive):
    cell = st.build_cell(lattice, a, 3, primitive=primitive)
    cell.set_tags(np.arange(len(cell)))
    for seed in range(5):
        holed = st.add_divacancy(cell, rng(seed))
        assert len(holed) == len(cell) - 2 and holed.info["vacancies"] == 2
        i, j = sorted(set(range(len(cell))) - set(holed.get_tags()))
        dist = cell.get_distance(i, j, mic=True)
        assert dist == pytest.approx(st.nearest_neighbour_distance(lattice, a), rel=1e-9)
    with pytest.raises(StructureError, match="at least 3 atoms"):
        st.add_divacancy(st.build_cell("diamond", A_SI, primitive=True), rng())


# ----------------------------------------------------------------------------- segregation
def conventional_block(n_atoms, sites_per_cell, reps, bins):
    """Block (i, j, k) of each atom from ASE's repeat order (conventional cell index, C order)."""
    cell_ijk = np.array(np.unravel_index(np.arange(n_atoms) // sites_per_cell, reps)).T
    return cell_ijk // (np.array(reps) // bins)


@pytest.mark.parametrize("reps,bins", [((2, 2, 2), 2), ((4, 2, 2), 2), ((3, 3, 3), 3)])
def test_checkerboard_blocks_exact_and_alternating(reps, bins):
    cell = st.build_cell("diamond", A_SI, reps)
    frac_a, frac_b = {"Si": 0.25, "Ge": 0.75}, {"Si": 0.25, "Sn": 0.75}
    board = sg.segregate(cell, reps, bins, [frac_a, frac_b], rng(5))
    ijk = conventional_block(len(cell), 8, reps, bins)
    assert np.array_equal(sg.block_indices(cell, bins), ijk)
    symbols = np.array(board.get_chemical_symbols())
    per_block = len(cell) // bins**3
    for block in {tuple(b) for b in ijk}:
        got = Counter(symbols[(ijk == block).all(axis=1)])
        frac = frac_a if sum(block) % 2 == 0 else frac_b
        assert sum(got.values()) == per_block
        assert got == Counter({s: c for s, c in
                               atom_counts(frac, per_block)[0].items() if c})
    again = sg.segregate(cell, reps, bins, [frac_a, frac_b], rng(5))
    assert np.array_equal(board.numbers, again.numbers)


def test_segregate_three_pure_elements_like_the_paper():
    cell = st.build_cell("diamond", A_SI, 3)
    comps = [{"Si": 1.0}, {"Ge": 1.0}, {"Sn": 1.0}]
    seg = sg.segregate(cell, 3, 3, comps, rng())
    assert Counter(seg.get_chemical_symbols()) == {"Si": 72, "Ge": 72, "Sn": 72}
    ijk = sg.block_indices(cell, 3)
    element = {}
    for block, symbol in zip(map(tuple, ijk), seg.get_chemical_symbols()):
        assert element.setdefault(block, symbol) == symbol
    for (i, j, k), symbol in element.items():  # face neighbours differ, periodic images too
        for axis in range(3):
            nb = [i, j, k]
            nb[axis] = (nb[axis] + 1) % 3
            assert element[tuple(nb)] != symbol


def test_segregate_errors():
    cell = st.build_cell("diamond", A_SI, 3)
    frac = {"Si": 1.0}
    fcc = st.build_cell("fcc", 3.6, 3)             # 108 sites: no cut gives 8 equal blocks
    with pytest.raises(StructureError, match=r"no cut of this cell into 2\^3 blocks.*between 13 "
                                             r"and 14 sites.*\(4, 4, 4\)"):
        sg.segregate(fcc, (3, 3, 3), 2, [frac, frac], rng())
    with pytest.raises(StructureError, match="no cut of this cell into 3\\^3 blocks"):
        sg.segregate(st.rattle(cell, 0.3, rng()), 3, 3, [frac, frac], rng())
    with pytest.raises(StructureError, match="at least two compositions"):
        sg.segregate(cell, 3, 3, [frac], rng())


# ----------------------------------------------------------------------------- files
def test_extxyz_round_trip(tmp_path):
    frames = [st.rattle(cucu_ni(seed), 0.05, rng(seed)) for seed in range(2)]
    for index, atoms in enumerate(frames):
        atoms.info.update(composition="Cu0.5Ni0.5", snapshot=index, seed=42 + index)
    path = tmp_path / "snaps.extxyz"
    st.write_structures(path, frames)
    back = ase.io.read(path, index=":")
    assert len(back) == 2 and not (tmp_path / "snaps.extxyz.tmp").exists()
    for atoms, read in zip(frames, back):
        assert np.allclose(read.positions, atoms.positions, atol=1e-7)
        assert np.allclose(read.cell[:], atoms.cell[:], atol=1e-7)
        assert np.array_equal(read.numbers, atoms.numbers)
        assert read.pbc.all()
        for key in ("composition", "snapshot", "seed", "lattice", "a_angstrom"):
            assert read.info[key] == atoms.info[key]
    assert np.array_equal(st.read_structure(path).numbers, frames[-1].numbers)
    assert len(st.read_structures(path)) == 2


def test_read_structure_errors(tmp_path):
    with pytest.raises(StructureError, match="does not exist"):
        st.read_structure(tmp_path / "missing.extxyz")
    garbage = tmp_path / "garbage.dat"
    garbage.write_text("this is not\na structure file\n")
    with pytest.raises(StructureError, match="could not read.*not recognised.*extxyz.*format="):
        st.read_structure(garbage)
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(StructureError, match="is empty"):
        st.read_structure(empty)
    blank = tmp_path / "blank.extxyz"
    blank.write_text("\n\n")
    with pytest.raises(StructureError, match="holds no structures"):
        st.read_structure(blank)
    zero = tmp_path / "zero.extxyz"
    zero.write_text('0\nLattice="5 0 0 0 5 0 0 0 5" pbc="T T T"\n')
    with pytest.raises(StructureError, match="zero atoms"):
        st.read_structure(zero)
    close = Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]], cell=[5, 5, 5], pbc=True)
    ase.io.write(tmp_path / "close.extxyz", close)
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.300 Angstrom apart"):
        st.read_structure(tmp_path / "close.extxyz")
    ase.io.write(tmp_path / "molecule.xyz", Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]))
    with pytest.raises(StructureError, match="no 3D periodic cell"):
        st.read_structure(tmp_path / "molecule.xyz")


def test_min_distance_sees_periodic_images():
    atoms = Atoms("Ni2", positions=[[0.1, 0, 0], [4.8, 0, 0]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.300 Angstrom apart"):
        st.check_min_distance(atoms)
    st.check_min_distance(st.build_cell("bcc", 2.9, 2))
