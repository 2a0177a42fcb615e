"""Tests of hpcdens.composition: parsing, grids, tessellation levels, sampling, atom counts."""

import itertools
import math

import numpy as np
import pytest

from hpcdens.composition import (
    Composition,
    atom_counts,
    parse_composition,
    random_compositions,
    simplex_grid,
    tessellation,
)
from hpcdens.errors import CompositionError, InputError

SIGESN = ["Si", "Ge", "Sn"]
CRFECONI = ["Cr", "Fe", "Co", "Ni"]
FIVE = ["Al", "Cr", "Fe", "Co", "Ni"]


def _vectors(compositions):
    return [c.fractions for c in compositions]


# --- Composition and parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Si0.25Ge0.5Sn0.25", "Si1Ge0Sn0", "Cr0.1Fe0.2Co0.3Ni0.4", "Si0.125Ge0.875", "Si1"],
)
def test_str_parse_round_trip(text):
    composition = parse_composition(text)
    assert str(composition) == text
    assert parse_composition(str(composition)) == composition
    assert parse_composition(composition.label) == composition


def test_round_trip_of_fractions_without_short_decimal():
    composition = Composition(("Si", "Ge", "Sn"), (1 / 3, 1 / 3, 1 / 3))
    again = parse_composition(str(composition))
    assert again == composition
    assert again.fractions == (1 / 3, 1 / 3, 1 / 3)


def test_random_compositions_round_trip_exactly():
    for composition in random_compositions(FIVE, 50, np.random.default_rng(7)):
        assert parse_composition(str(composition)) == composition
        assert parse_composition(composition.label) == composition


def test_str_and_label_format():
    composition = parse_composition({"Si": 0.25, "Ge": 0.5, "Sn": 0.25})
    assert str(composition) == "Si0.25Ge0.5Sn0.25"
    assert composition.label == "Si0.25_Ge0.5_Sn0.25"
    assert set(composition.label) <= set("SiGeSn0123456789._")


def test_separators_and_whitespace():
    expected = Composition(("Si", "Ge"), (0.5, 0.5))
    for text in ["Si0.5 Ge0.5", " Si0.5Ge0.5 ", "Si0.5_Ge0.5", "Si0.5, Ge0.5", "Si.5Ge.5"]:
        assert parse_composition(text) == expected


def test_mapping_input_keeps_order():
    composition = parse_composition({"Ge": 0.75, "Si": 0.25})
    assert composition.elements == ("Ge", "Si")
    assert composition.fractions == (0.75, 0.25)
    assert composition.as_dict() == {"Ge": 0.75, "Si": 0.25}
    assert list(composition.as_dict()) == ["Ge", "Si"]


def test_pure_element_without_number():
    composition = parse_composition("Si")
    assert composition.elements == ("Si",)
    assert composition.fractions == (1.0,)
    assert str(composition) == "Si1"


def test_existing_composition_is_accepted():
    composition = parse_composition("Si0.5Ge0.5")
    assert parse_composition(composition) == composition


def test_fraction_lookup():
    composition = parse_composition("Si0.25Ge0.5Sn0.25")
    assert composition.fraction("Ge") == 0.5
    with pytest.raises(CompositionError, match="'Pb'"):
        composition.fraction("Pb")


def test_alignment_with_system_elements():
    composition = parse_composition("Sn0.25Si0.75", elements=SIGESN)
    assert composition.elements == ("Si", "Ge", "Sn")
    assert composition.fractions == (0.75, 0.0, 0.25)
    assert parse_composition("Ge", elements=SIGESN) == Composition(tuple(SIGESN), (0, 1, 0))
    mapped = parse_composition({"Ge": 0.5, "Sn": 0.5}, elements=SIGESN)
    assert str(mapped) == "Si0Ge0.5Sn0.5"


def test_element_outside_system_names_the_list():
    with pytest.raises(CompositionError, match=r"'Pb'.*\['Si', 'Ge', 'Sn'\]"):
        parse_composition("Si0.5Pb0.5", elements=SIGESN)


def test_composition_is_frozen_and_hashable():
    composition = parse_composition("Si0.5Ge0.5")
    with pytest.raises(AttributeError):
        composition.fractions = (1.0, 0.0)
    assert len({composition, parse_composition("Si0.5 Ge0.5")}) == 1


def test_numpy_fractions_are_stored_as_python_floats():
    composition = Composition(["Si", "Ge"], np.array([0.25, 0.75]))
    assert composition.fractions == (0.25, 0.75)
    assert all(type(f) is float for f in composition.fractions)
    assert isinstance(composition.elements, tuple)


# --- Parse errors --------------------------------------------------------------------------------


def test_unknown_symbol_suggests_close_match():
    with pytest.raises(CompositionError, match="'Sj'") as info:
        parse_composition("Sj0.5Ge0.5")
    assert "did you mean" in str(info.value) and "'Si'" in str(info.value)


def test_unknown_symbol_suggests_from_system_first():
    with pytest.raises(CompositionError, match=r"'Sj'.*did you mean 'Si', 'Sn'\?$"):
        parse_composition("Sj0.5Ge0.5", elements=SIGESN)


def test_unknown_symbol_in_mapping_suggests_case_fix():
    with pytest.raises(CompositionError, match=r"'si'.*did you mean 'Si'\?$"):
        parse_composition({"si": 0.5, "Ge": 0.5})


def test_error_is_an_input_error():
    with pytest.raises(InputError):
        parse_composition("Xq1")
    with pytest.raises(ValueError):
        parse_composition("Xq1")


def test_sum_not_one_names_sum_and_suggests_normalising():
    with pytest.raises(CompositionError, match=r"sum to 0\.6,.*normalise.*'Si0\.5Ge0\.5'"):
        parse_composition("Si0.3Ge0.3")
    with pytest.raises(CompositionError, match=r"sum to 2,"):
        parse_composition("SiGe")


def test_sum_within_tolerance_is_accepted_and_kept():
    composition = parse_composition("Si0.5000004Ge0.4999999")
    assert composition.fractions == (0.5000004, 0.4999999)
    with pytest.raises(CompositionError, match="sum to 1.000002"):
        parse_composition("Si0.500002Ge0.5")


@pytest.mark.parametrize("spec", ["Si-0.5Ge1.5", {"Si": -0.5, "Ge": 1.5}])
def test_negative_fraction(spec):
    with pytest.raises(CompositionError, match=r"Si is -0\.5"):
        parse_composition(spec)


@pytest.mark.parametrize("spec", ["", "   ", {}])
def test_empty_composition(spec):
    with pytest.raises(CompositionError, match="empty composition"):
        parse_composition(spec)


def test_empty_system_element_list():
    with pytest.raises(CompositionError, match="empty element list"):
        parse_composition("Si", elements=[])


def test_duplicate_element():
    with pytest.raises(CompositionError, match=r"\['Si'\] repeated"):
        parse_composition("Si0.5Si0.5")
    with pytest.raises(CompositionError, match=r"\['Ge'\] repeated"):
        simplex_grid(["Ge", "Si", "Ge"], 2)


@pytest.mark.parametrize(
    "spec, bad",
    [("Si0.5Geabc", "'abc'"), ({"Si": "0.5", "Ge": 0.5}, "'0.5'"), ({"Si": None}, "None")],
)
def test_non_numeric_fraction(spec, bad):
    with pytest.raises(CompositionError, match=f"is {bad}, not a number"):
        parse_composition(spec)


@pytest.mark.parametrize(
    "spec, bad",
    [("Sinan", "nan"), ("Siinf", "inf"), ({"Si": math.nan}, "nan"), ({"Si": -math.inf}, "-inf")],
)
def test_nan_and_inf_fraction(spec, bad):
    with pytest.raises(CompositionError, match=f"Si is {bad};"):
        parse_composition(spec)


def test_unreadable_string_names_the_position():
    with pytest.raises(CompositionError, match=r"at 'si0\.5'"):
        parse_composition("Ge0.5 si0.5")


def test_unsupported_type():
    with pytest.raises(CompositionError, match=r"from 3 \(int\)"):
        parse_composition(3)


def test_mismatched_lengths():
    with pytest.raises(CompositionError, match="one fraction per element"):
        Composition(("Si", "Ge"), (1.0,))


# --- Simplex grids and tessellation --------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("resolution", [1, 2, 3, 4, 6])
def test_simplex_grid_count_and_points(d, resolution):
    grid = simplex_grid(FIVE[:d], resolution)
    assert len(grid) == math.comb(resolution + d - 1, d - 1)
    assert len(set(grid)) == len(grid)
    for composition in grid:
        assert composition.elements == tuple(FIVE[:d])
        assert min(composition.fractions) >= 0
        assert math.isclose(math.fsum(composition.fractions), 1.0, abs_tol=1e-12)
        scaled = [f * resolution for f in composition.fractions]
        assert all(abs(x - round(x)) < 1e-12 for x in scaled)


def test_simplex_grid_order():
    grid = simplex_grid(SIGESN, 2)
    assert [str(c) for c in grid] == [
        "Si1Ge0Sn0",
        "Si0.5Ge0.5Sn0",
        "Si0.5Ge0Sn0.5",
        "Si0Ge1Sn0",
        "Si0Ge0.5Sn0.5",
        "Si0Ge0Sn1",
    ]
    vectors = _vectors(simplex_grid(CRFECONI, 4))
    assert vectors == sorted(vectors, reverse=True)


@pytest.mark.parametrize("resolution", [0, -1, 2.0, True, "4"])
def test_simplex_grid_bad_resolution(resolution):
    with pytest.raises(CompositionError, match=f"resolution must be .*got {resolution!r}"):
        simplex_grid(SIGESN, resolution)


@pytest.mark.parametrize(
    "elements, counts",
    [(["Si", "Ge"], (2, 3, 5)), (SIGESN, (3, 6, 15)), (CRFECONI, (4, 11, 34)), (FIVE, (5, 16, 65))],
)
def test_tessellation_counts(elements, counts):
    assert tuple(len(tessellation(elements, level)) for level in (1, 2, 4)) == counts
    for level in (1, 2, 4):
        points = tessellation(elements, level)
        assert len(set(points)) == len(points)


def test_tessellation_t1_is_pure_elements():
    assert [str(c) for c in tessellation(SIGESN, 1)] == ["Si1Ge0Sn0", "Si0Ge1Sn0", "Si0Ge0Sn1"]


@pytest.mark.parametrize("elements", [SIGESN, CRFECONI, FIVE])
def test_tessellation_nesting(elements):
    t1, t2, t4 = (set(tessellation(elements, level)) for level in (1, 2, 4))
    assert t1 <= t2
    assert t1 <= t4
    assert set(simplex_grid(elements, 2)) <= t4


def test_ternary_t2_inside_t4_and_t4_is_full_grid():
    t2, t4 = set(tessellation(SIGESN, 2)), set(tessellation(SIGESN, 4))
    assert t2 <= t4
    assert t4 == set(simplex_grid(SIGESN, 4))
    assert Composition(tuple(SIGESN), (1 / 3,) * 3) not in t2


def test_quaternary_centre_in_t2_not_in_t4():
    centre = Composition(tuple(CRFECONI), (0.25, 0.25, 0.25, 0.25))
    t2, t4 = tessellation(CRFECONI, 2), tessellation(CRFECONI, 4)
    assert centre in t2
    assert t2[-1] == centre
    assert centre not in t4
    assert set(t4) == set(simplex_grid(CRFECONI, 4)) - {centre}
    assert set(t2) - set(t4) == {centre}


@pytest.mark.parametrize("level", [0, 3, 5, 4.0, "2"])
def test_tessellation_bad_level(level):
    with pytest.raises(CompositionError, match=rf"level {level!r} .*\(1, 2, 4\).*T3"):
        tessellation(SIGESN, level)


# --- Random compositions -------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [None, 4])
def test_random_compositions_repeat_with_seed(resolution):
    first = random_compositions(CRFECONI, 20, np.random.default_rng(42), resolution=resolution)
    again = random_compositions(CRFECONI, 20, np.random.default_rng(42), resolution=resolution)
    other = random_compositions(CRFECONI, 20, np.random.default_rng(43), resolution=resolution)
    assert [c.fractions for c in first] == [c.fractions for c in again]
    assert [c.fractions for c in first] != [c.fractions for c in other]


def test_random_compositions_lie_on_simplex():
    samples = random_compositions(FIVE, 200, np.random.default_rng(1))
    assert len(samples) == 200
    for composition in samples:
        assert composition.elements == tuple(FIVE)
        assert min(composition.fractions) >= 0
        assert math.isclose(math.fsum(composition.fractions), 1.0, abs_tol=1e-12)


def test_random_compositions_are_uniform_on_the_simplex():
    # Under Dirichlet(1, 1, 1) each fraction has mean 1/3 and P(f_1 < 1/2) = 1 - 1/4 = 3/4.
    samples = random_compositions(SIGESN, 4000, np.random.default_rng(3))
    first = np.array([c.fractions[0] for c in samples])
    assert abs(first.mean() - 1 / 3) < 0.02
    assert abs(np.mean(first < 0.5) - 0.75) < 0.02


def test_snapped_compositions_are_nearest_grid_points():
    grid = simplex_grid(CRFECONI, 4)
    rng = np.random.default_rng(5)
    raw = random_compositions(CRFECONI, 100, rng)
    snapped = random_compositions(CRFECONI, 100, np.random.default_rng(5), resolution=4)
    for x, s in zip(raw, snapped):
        distances = [math.dist(x.fractions, g.fractions) for g in grid]
        assert s == grid[int(np.argmin(distances))]


def test_random_compositions_bad_arguments():
    with pytest.raises(CompositionError, match="got -1"):
        random_compositions(SIGESN, -1, np.random.default_rng(0))
    with pytest.raises(CompositionError, match="got 0"):
        random_compositions(SIGESN, 3, np.random.default_rng(0), resolution=0)
    with pytest.raises(TypeError, match="default_rng"):
        random_compositions(SIGESN, 3, 42)
    assert random_compositions(SIGESN, 0, np.random.default_rng(0)) == []


# --- Atom counts ---------------------------------------------------------------------------------


def test_atom_counts_equal_thirds_tie_goes_to_earlier_element():
    counts, realised = atom_counts(Composition(("Si", "Ge", "Sn"), (1 / 3,) * 3), 64)
    assert counts == {"Si": 22, "Ge": 21, "Sn": 21}
    assert list(counts) == ["Si", "Ge", "Sn"]
    assert realised == Composition(("Si", "Ge", "Sn"), (22 / 64, 21 / 64, 21 / 64))
    counts, _ = atom_counts(Composition(("Sn", "Ge", "Si"), (1 / 3,) * 3), 64)
    assert counts == {"Sn": 22, "Ge": 21, "Si": 21}


def test_atom_counts_exact_when_integral():
    composition = parse_composition("Cr0.25Fe0.25Co0.125Ni0.375")
    counts, realised = atom_counts(composition, 32)
    assert counts == {"Cr": 8, "Fe": 8, "Co": 4, "Ni": 12}
    assert realised == composition
    counts, realised = atom_counts("Si0.3Ge0.7", 10)
    assert counts == {"Si": 3, "Ge": 7}
    assert realised == parse_composition("Si0.3Ge0.7")


def test_atom_counts_largest_remainder():
    # Quotas 2.6, 2.2, 1.2 on 6 sites: floors 2, 2, 1, the last atom to the largest remainder 0.6.
    counts, realised = atom_counts("Si0.4333333333Ge0.3666666667Sn0.2", 6)
    assert counts == {"Si": 3, "Ge": 2, "Sn": 1}
    assert realised.fractions == (0.5, 2 / 6, 1 / 6)


def test_atom_counts_zero_fraction_gets_no_atom():
    counts, _ = atom_counts(Composition(("Si", "Ge", "Sn"), (0.5, 0.5, 0.0)), 7)
    assert counts["Sn"] == 0 and sum(counts.values()) == 7


@pytest.mark.parametrize("n_sites", [1, 2, 7, 64, 250, 1001])
def test_atom_counts_sum_to_sites(n_sites):
    for composition in random_compositions(FIVE, 30, np.random.default_rng(n_sites)):
        counts, realised = atom_counts(composition, n_sites)
        assert sum(counts.values()) == n_sites
        assert all(c >= 0 for c in counts.values())
        for f, c in zip(composition.fractions, counts.values()):
            assert abs(c - f * n_sites) < 1
        assert realised.fractions == tuple(c / n_sites for c in counts.values())


@pytest.mark.parametrize("n_sites", [0, -4, 6.0, True])
def test_atom_counts_bad_sites(n_sites):
    with pytest.raises(CompositionError, match=f"n_sites must be .*got {n_sites!r}"):
        atom_counts("Si0.5Ge0.5", n_sites)


def test_weak_compositions_match_itertools_reference():
    # Slow reference: all tuples in the box, filtered by their sum, sorted descending.
    for d, resolution in [(2, 5), (3, 4), (4, 3)]:
        reference = sorted(
            (k for k in itertools.product(range(resolution + 1), repeat=d) if sum(k) == resolution),
            reverse=True,
        )
        grid = simplex_grid(FIVE[:d], resolution)
        assert _vectors(grid) == [tuple(x / resolution for x in k) for k in reference]
