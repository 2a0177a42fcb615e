"""The segregated generalisation cells of Pathrudkar et al. 2025 (SiGeSn on diamond): 8 bins
(2x2x2 blocks, one composition per block) and 27 bins (3x3x3, (i+j+k) % 3); vacancy sites and
segregation blocks recorded in ``atoms.info`` and carried into the labelled part file."""

import hashlib
import itertools
import json
import logging
from collections import Counter

import h5py
import numpy as np
import pytest
from ase.geometry import get_distances
from ase.units import Bohr

from hpcdens import plan
from hpcdens import segregation as sg
from hpcdens import structures as st
from hpcdens.composition import parse_composition
from hpcdens.config import load_config
from hpcdens.dft.base import DFTResult
from hpcdens.errors import ConfigError, StructureError
from hpcdens.grid import Grid
from hpcdens.io.training_set import part_path, write_part

A = 5.8  # Angstrom; any positive value, the block geometry is in fractional coordinates
ELEMENTS = ("Si", "Ge", "Sn")
# The paper's three 8-bin cells: pure-element blocks in C order of (i, j, k), k fastest.
PAPER_8BIN = {
    "Si0.25Ge0.375Sn0.375": ["Ge1", "Si1", "Sn1", "Ge1", "Sn1", "Ge1", "Si1", "Sn1"],
    "Si0.375Ge0.25Sn0.375": ["Si1", "Ge1", "Sn1", "Si1", "Sn1", "Si1", "Ge1", "Sn1"],
    "Si0.375Ge0.375Sn0.25": ["Ge1", "Sn1", "Si1", "Ge1", "Si1", "Ge1", "Sn1", "Si1"],
}


def rng(seed=0):
    return np.random.default_rng(seed)


def pure(spec):
    """{"Si": 1.0} from "Si1"."""
    return {spec.rstrip("1"): 1.0}


def face_neighbours(bins):
    """Every (block, neighbour) pair of (i, j, k) tuples sharing a face, periodic, both ways."""
    for block in itertools.product(range(bins), repeat=3):
        for axis, step in itertools.product(range(3), (-1, 1)):
            nb = list(block)
            nb[axis] = (nb[axis] + step) % bins
            yield block, tuple(nb)


def block_of_each_atom(atoms, bins):
    """Block (i, j, k) of every atom from its fractional coordinates (faces belong above)."""
    frac = atoms.get_scaled_positions(wrap=True)
    return [tuple(b) for b in np.floor(frac * bins + 1e-6).astype(int) % bins]


@pytest.mark.parametrize("overall", PAPER_8BIN)
def test_paper_8bin_lists_have_no_equal_face_neighbours(overall):
    blocks = PAPER_8BIN[overall]
    element = {ijk: blocks[n] for n, ijk in enumerate(itertools.product(range(2), repeat=3))}
    assert all(element[a] != element[b] for a, b in face_neighbours(2))
    shares = Counter(blocks)
    assert parse_composition(overall, ELEMENTS).as_dict() == {
        el: shares[f"{el}1"] / 8 for el in ELEMENTS}


@pytest.mark.parametrize("bins", [2, 3, 4])
def test_face_neighbour_pairs_match_brute_force(bins):
    flat = {ijk: n for n, ijk in enumerate(itertools.product(range(bins), repeat=3))}
    expected = {tuple(sorted((flat[a], flat[b]))) for a, b in face_neighbours(bins)}
    pairs = sg.face_neighbour_pairs(bins)
    assert sorted(map(tuple, pairs.tolist())) == sorted(expected)
    assert len(pairs) == (12 if bins == 2 else 3 * bins**3)


@pytest.mark.parametrize("overall", PAPER_8BIN)
def test_64_atom_8bin_cells_have_the_right_element_in_every_block(overall):
    blocks = PAPER_8BIN[overall]
    cell = st.build_cell("diamond", A, 2)
    seg = sg.segregate(cell, 2, 2, [pure(b) for b in blocks], rng())
    order = list(itertools.product(range(2), repeat=3))
    for block, symbol in zip(block_of_each_atom(seg, 2), seg.get_chemical_symbols()):
        assert f"{symbol}1" == blocks[order.index(block)]
    expected = parse_composition(overall, ELEMENTS).as_dict()
    assert Counter(seg.get_chemical_symbols()) == {el: 64 * x for el, x in expected.items()}
    assert json.loads(seg.info["segregation_compositions"]) == [
        str(parse_composition(b)) for b in blocks]
    assert seg.info["segregation_bins"] == 2


def test_216_atom_8bin_cell_is_cut_between_layers_into_blocks_of_27():
    """3x3x3 diamond cut at fractional 1/2 gives blocks of 28 (even i+j+k) and 26 (odd) sites;
    cut a/8 higher (offset 1/24, between two layers of sites) every block holds 27, so the
    paper's 216-atom 8-bin cells get their exact block compositions."""
    cell = st.build_cell("diamond", A, 3)
    counts = Counter(block_of_each_atom(cell, 2))
    assert {b: counts[b] for b in counts} == {b: 28 if sum(b) % 2 == 0 else 26 for b in counts}
    assert sg.block_offset(cell, 2) == pytest.approx(1 / 24)
    assert sg.block_offset(st.build_cell("diamond", A, 2), 2) == 0.0
    blocks = PAPER_8BIN["Si0.25Ge0.375Sn0.375"]
    seg = sg.segregate(cell, 3, 2, [pure(b) for b in blocks], rng())
    assert seg.info["segregation_offset"] == pytest.approx(1 / 24)
    order = list(itertools.product(range(2), repeat=3))
    ijk = sg.block_indices(seg, 2, seg.info["segregation_offset"])
    assert np.array_equal(np.bincount(np.ravel_multi_index(ijk.T, (2, 2, 2))), [27] * 8)
    for block, symbol in zip(map(tuple, ijk), seg.get_chemical_symbols()):
        assert f"{symbol}1" == blocks[order.index(block)]
    assert "segregation_offset" not in sg.segregate(st.build_cell("diamond", A, 2), 2, 2,
                                                    [pure(b) for b in blocks], rng()).info


def test_216_atom_27bin_cell_is_equiatomic_with_distinct_face_neighbours():
    cell = st.build_cell("diamond", A, 3)
    comps = [{"Si": 1.0}, {"Ge": 1.0}, {"Sn": 1.0}]
    seg = sg.segregate(cell, 3, 3, comps, rng(4))
    assert Counter(seg.get_chemical_symbols()) == {"Si": 72, "Ge": 72, "Sn": 72}
    element = {}
    for block, symbol in zip(block_of_each_atom(seg, 3), seg.get_chemical_symbols()):
        assert element.setdefault(block, symbol) == symbol == ELEMENTS[sum(block) % 3]
    assert len(element) == 27 and all(element[a] != element[b] for a, b in face_neighbours(3))
    # the same 27 compositions listed per block give the same cell from the same stream
    per_block = sg.block_compositions(3, comps)
    assert np.array_equal(sg.segregate(cell, 3, 3, per_block, rng(4)).numbers, seg.numbers)


def test_two_compositions_keep_their_random_draws():
    """Numbers of a seeded two-composition cell, recorded before per-block lists existed."""
    cell = st.build_cell("diamond", A, 2)
    board = sg.segregate(cell, 2, 2, [{"Si": 1.0}, {"Ge": 0.5, "Sn": 0.5}], rng(11))
    digest = hashlib.sha1(board.numbers.astype(np.int64).tobytes()).hexdigest()
    assert digest == "4426022052180038632f01df31ba1bb122a056ae"


def test_composition_count_errors():
    cell = st.build_cell("diamond", A, 2)
    with pytest.raises(StructureError, match=r"at most 8 compositions, got 9.*exactly 8"):
        sg.segregate(cell, 2, 2, [{"Si": 1.0}] * 9, rng())
    with pytest.raises(StructureError, match=r"at least two compositions, got 1"):
        sg.block_compositions(2, [{"Si": 1.0}])


# ----------------------------------------------------------------------------- input file
def segregated_input(write_input, compositions, name="input.toml", **changes):
    """An input file for the 64-site SiGeSn cell in 2x2x2 blocks of ``compositions``."""
    return write_input({"compositions.list": None, "system.elements": list(ELEMENTS),
                        "system.supercell": [2, 2, 2], "snapshots.checkerboard_bins": 2,
                        "snapshots.checkerboard_compositions": compositions, **changes}, name)


def test_config_names_the_composition_count_needed(write_input):
    with pytest.raises(ConfigError, match=r"gives 9 composition\(s\).*exactly 8"):
        load_config(segregated_input(write_input, ["Si1"] * 9))


def test_config_warns_about_equal_face_neighbours(write_input, caplog):
    clash = ["Si1", "Si1.0", "Sn1", "Ge1", "Sn1", "Ge1", "Si1", "Sn1"]  # (0,0,0) and (0,0,1)
    with caplog.at_level(logging.WARNING):
        load_config(segregated_input(write_input, PAPER_8BIN["Si0.25Ge0.375Sn0.375"]))
        assert not caplog.records
        load_config(segregated_input(write_input, clash, name="clash.toml"))
    assert "(0, 0, 0) and (0, 0, 1) (Si1)" in caplog.text


def nearest(points, atoms):
    """Minimum-image distance (Angstrom) from each of ``points`` to the nearest atom."""
    _, dist = get_distances(points, atoms.positions, cell=atoms.cell, pbc=True)
    return dist.min(axis=1)


def test_vacancy_sites_are_the_ideal_sites_left_empty(write_input):
    overall = parse_composition("Si0.25Ge0.375Sn0.375", ELEMENTS)
    config = load_config(segregated_input(
        write_input, PAPER_8BIN[str(overall)], **{"snapshots.vacancies": 2,
                                                  "snapshots.divacancy": True,
                                                  "snapshots.rattle_stdev_angstrom": 0.05}))
    atoms = plan.build_atoms(config, overall, 0, rng(2))
    ideal = plan.template_cell(config, overall)
    sites = np.array(json.loads(atoms.info["vacancy_sites_angstrom"]))
    assert sites.shape == (4, 3) and len(atoms) == 60 and atoms.info["vacancies"] == 4
    assert nearest(sites, ideal).max() < 1e-9, "recorded positions are ideal lattice sites"
    nn = st.nearest_neighbour_distance("diamond", ideal.info["a_angstrom"])
    assert nearest(sites, atoms).min() > 0.5 * nn, "no atom sits on a recorded vacancy"
    occupied = np.delete(ideal.positions, [np.argmin(d) for d in
                                           get_distances(sites, ideal.positions,
                                                         cell=ideal.cell, pbc=True)[1]], axis=0)
    assert nearest(occupied, atoms).max() < 0.5 * nn, "every other ideal site is occupied"
    _, pair = get_distances(sites[2], sites[3], cell=ideal.cell, pbc=True)
    assert pair[0, 0] == pytest.approx(nn), "the last two form the divacancy"


def built_cell_attrs(write_input, tmp_path, shape, **changes):
    """(atoms, grid, HDF5 attributes of its part file): the Si0.375Ge0.375Sn0.25 8-bin cell of an
    input file with ``changes``, written as a training-set part with a zero density on ``shape``."""
    overall = parse_composition("Si0.375Ge0.375Sn0.25", ELEMENTS)
    config = load_config(segregated_input(write_input, PAPER_8BIN[str(overall)], **changes))
    atoms = plan.build_atoms(config, overall, 0, rng(3))
    grid = Grid(atoms.cell.array / Bohr, shape)
    result = DFTResult(energy_ha=0.0, free_energy_ha=0.0, rho=np.zeros(grid.shape), grid=grid,
                       n_electrons=0.0, fermi_level_ha=0.0, converged=True, n_iterations=1,
                       wall_time_s=0.0, backend="fake")
    write_part(tmp_path / "train.h5", "k/s000", atoms, result, np.zeros(grid.shape))
    with h5py.File(part_path(tmp_path / "train.h5", "k/s000"), "r") as f:
        return atoms, grid, dict(f["snapshot"].attrs)


def test_segregation_and_vacancy_info_reach_the_part_file(write_input, tmp_path):
    atoms, _, attrs = built_cell_attrs(write_input, tmp_path, (3, 3, 3),
                                       **{"snapshots.vacancies": 1})
    assert attrs["segregation_bins"] == 2
    assert json.loads(attrs["segregation_compositions"]) == [
        str(parse_composition(b, ELEMENTS)) for b in PAPER_8BIN["Si0.375Ge0.375Sn0.25"]]
    recorded = json.loads(attrs["vacancy_sites_angstrom"])
    assert recorded == json.loads(atoms.info["vacancy_sites_angstrom"]) and len(recorded) == 1


def test_the_216_atom_cut_offset_reaches_the_part_file_and_the_boundary_regions(write_input,
                                                                                 tmp_path):
    """A 216-atom 8-bin cell built from an input file keeps its cut offset through the training
    set to evaluate's boundary regions: points on the shifted cut planes are in the first shell."""
    from hpcdens.regions import boundary_distance, region_spec

    atoms, grid, attrs = built_cell_attrs(write_input, tmp_path, (24, 24, 24),
                                          **{"system.supercell": [3, 3, 3]})
    spec = region_spec("k/s000", attrs)
    assert spec["bins"] == 2 and spec["offset"] == pytest.approx(1 / 24)
    dist = boundary_distance(grid, spec["bins"], spec["offset"])
    assert dist[1, 5, 9] == pytest.approx(0.0, abs=1e-9) and dist[0, 6, 6] > 0.1
    assert Counter(atoms.get_chemical_symbols()) == {"Si": 81, "Ge": 81, "Sn": 54}
