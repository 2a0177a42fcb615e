"""MD snapshots with the universal machine-learned potentials of the ``mlip`` extra (SevenNet-0,
CHGNet 0.3.0) and the refusals around them: a missing package, an element a model does not cover.

Tests that run a model skip with a reason when its package is absent; install it with
``HPCDENS_EXTRAS=mlip bash launch/install.sh`` (launch/test.sh does).
"""

import sys

import numpy as np
import pytest

from hpcdens import md
from hpcdens import structures as st
from hpcdens.cli import main
from hpcdens.config_sections import MD_CALCULATORS
from hpcdens.errors import StructureError

MLIPS = ["sevenn", "chgnet"]
INSTALL = "HPCDENS_EXTRAS=mlip bash launch/install.sh"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def rng(seed=0):
    return np.random.default_rng(seed)


def sigesn8():
    """8-atom diamond Si3Ge3Sn2 cell (Vegard constant of Si0.375Ge0.375Sn0.25)."""
    a = st.vegard_lattice_constant({"Si": 0.375, "Ge": 0.375, "Sn": 0.25},
                                   {"Si": 5.431, "Ge": 5.658, "Sn": 6.489})
    return st.decorate(st.build_cell("diamond", a), {"Si": 3, "Ge": 3, "Sn": 2}, rng(1))


def crfeconi8():
    """8-atom fcc Cr2Fe2Co2Ni2 cell (two cubic cells)."""
    return st.decorate(st.build_cell("fcc", 3.565, (2, 1, 1)),
                       {"Cr": 2, "Fe": 2, "Co": 2, "Ni": 2}, rng(2))


def calculator(name, symbols):
    pytest.importorskip(name, reason=f"the mlip extra is not installed ({INSTALL})")
    return md.make_calculator(name, symbols)


def test_config_offers_exactly_the_calculators_md_knows():
    assert MD_CALCULATORS == md.CALCULATOR_NAMES == ("emt", "sevenn", "chgnet")


@pytest.mark.parametrize("name", MLIPS)
@pytest.mark.parametrize("cell,temperature_K", [(sigesn8, 2400.0), (crfeconi8, 5000.0)])
def test_langevin_finite_seeded_and_moving(name, cell, temperature_K):
    """The paper's temperatures (SiGeSn 2400 K, CrFeCoNi 5000 K), a few 1 fs steps."""
    atoms = cell()
    calc = calculator(name, set(atoms.get_chemical_symbols()))
    kw = dict(timestep_fs=1.0, steps_between=2, equilibration_steps=2)
    snaps = md.md_snapshots(atoms, calc, 2, temperature_K, rng=rng(11), **kw)
    again = md.md_snapshots(atoms, calc, 2, temperature_K, rng=rng(11), **kw)
    other = md.md_snapshots(atoms, calc, 2, temperature_K, rng=rng(12), **kw)
    assert [s.info["md_step"] for s in snaps] == [4, 6]
    for s, t, u in zip(snaps, again, other):
        assert np.isfinite(s.positions).all()
        assert np.array_equal(s.positions, t.positions)
        assert not np.array_equal(s.positions, u.positions)
        assert np.array_equal(s.numbers, atoms.numbers)
        assert s.calc is None and s.info["md_temperature_K"] == temperature_K
    step = np.abs(snaps[1].get_scaled_positions() - atoms.get_scaled_positions())
    assert 0 < np.minimum(step, 1 - step).max()
    distances = snaps[1].get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
    assert distances.min() > 1.5  # Angstrom: no collapse
    assert np.isfinite(calc.get_potential_energy(snaps[1]))


@pytest.mark.parametrize("name", MLIPS)
def test_model_loaded_once_and_refuses_an_element_it_lacks(name):
    calc = calculator(name, ["Si", "Cr"])
    assert md.make_calculator(name, ["Ni"]) is calc
    for symbols, missing in ((["Si", "Am"], "Am"), (["Fe", "Po"], "Po")):
        with pytest.raises(StructureError) as err:
            md.make_calculator(name, symbols)
        message = str(err.value)
        assert "\n" not in message
        assert f'calculator "{name}"' in message and f"cannot do {missing} " in message
        assert "it covers H-Bi, Ac-Pu" in message and 'snapshot method "rattle"' in message


def structures_cli(write_input, tmp_path, capsys, changes):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["structures", str(write_input(changes)), "--out", str(out / "s.extxyz")])
    return code, capsys.readouterr().err, out


MD_INPUT = {"snapshots.method": "md", "snapshots.per_composition": 1,
            "snapshots.temperature_kelvin": 2400.0, "snapshots.md_steps_between": 1}


def test_cli_refuses_an_element_the_model_lacks(write_input, tmp_path, capsys):
    pytest.importorskip("sevenn", reason=f"the mlip extra is not installed ({INSTALL})")
    changes = dict(MD_INPUT, **{"system.elements": ["Si", "Am"],
                                "system.lattice_constants_angstrom": {"Si": 5.431, "Am": 5.5},
                                "compositions.list": ["Si0.5Am0.5"],
                                "snapshots.md_calculator": "sevenn"})
    code, err, out = structures_cli(write_input, tmp_path, capsys, changes)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert 'calculator "sevenn"' in err and "cannot do Am" in err and "rattle" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", MLIPS)
def test_cli_refuses_a_missing_package_naming_the_install_command(name, write_input, tmp_path,
                                                                  capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # what an absent package looks like to import
    changes = dict(MD_INPUT, **{"snapshots.md_calculator": name})
    code, err, out = structures_cli(write_input, tmp_path, capsys, changes)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f'calculator "{name}" needs the package {name}' in err and INSTALL in err
    assert list(out.iterdir()) == []


def test_cli_refuses_emt_for_silicon_before_any_work(write_input, tmp_path, capsys):
    code, err, out = structures_cli(write_input, tmp_path, capsys,
                                    dict(MD_INPUT, **{"snapshots.md_calculator": "emt"}))
    assert code == 2, err
    assert err.count("\n") == 1 and "cannot do Ge, Si" in err and 'calculator "sevenn"' in err
    assert list(out.iterdir()) == []
