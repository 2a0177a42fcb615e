"""A mesh too coarse for an element's (semicore) atomic density, or an element the basis family
lacks, is refused before any DFT runs (hpcdens.dft.check_mesh_resolves, run by generate/learn).

The measure is the typical charge error of one atom summed on the grid
(hpcdens.sad.aliasing_error, from the atom's form factor at the grid's reciprocal vectors); it is
checked here against the brute-force grid integral of the SAD of one atom at random positions."""

from dataclasses import replace

import numpy as np
import pytest

from hpcdens.cli import main
from hpcdens.config import DFTConfig
from hpcdens.dft import MAX_CHARGE_ERROR, atomic_density, get_backend, mesh_charge_errors, valence_electrons
from hpcdens.structures import build_cell

FCC = {"system.elements": ["Cr", "Fe", "Co", "Ni"], "system.lattice": "fcc",
       "system.lattice_constants_angstrom": {"Cr": 3.60, "Fe": 3.60, "Co": 3.54, "Ni": 3.52},
       "compositions.list": ["Cr0.25Fe0.25Co0.25Ni0.25"], "snapshots.per_composition": 1,
       "snapshots.rattle_stdev_angstrom": 0.03}


def sad_charge_error(atoms, settings):
    """|int rho_SAD dV - N_e| / N_e on the grid the backend would use: the brute-force sum."""
    grid = get_backend(settings.backend).make_grid(atoms, settings)
    n_e = valence_electrons(atoms, settings)
    return abs(grid.integrate(atomic_density(atoms, grid, settings)) - n_e) / n_e


@pytest.mark.parametrize("element, spacing", [("Ni", 0.3), ("Cr", 0.25), ("Ge", 0.6)])
def test_form_factor_error_is_the_rms_of_the_grid_integral_over_positions(element, spacing):
    atom = build_cell("fcc", 3.57)[:1]
    atom.set_chemical_symbols([element])
    settings = replace(DFTConfig(), mesh_spacing_bohr=spacing)
    rng = np.random.default_rng(0)
    sampled = []
    for _ in range(24):
        atom.set_scaled_positions([rng.random(3)])
        sampled.append(sad_charge_error(atom, settings))
    predicted = mesh_charge_errors(atom, [element], settings)[element]
    rms = float(np.sqrt(np.mean(np.square(sampled))))
    assert 0.6 < rms / predicted < 1.4, (rms, predicted)
    assert max(sampled) > 1e-3 * predicted          # a real error, not round-off


def test_semicore_errors_fall_with_the_mesh_and_soft_atoms_pass():
    cell = build_cell("fcc", 3.57)
    coarse, fine = (mesh_charge_errors(cell, ["Ni", "Al"], replace(DFTConfig(), mesh_spacing_bohr=h))
                    for h in (0.3, 0.2))
    assert coarse["Ni"] > MAX_CHARGE_ERROR > 100 * fine["Ni"]
    assert coarse["Al"] < 1e-10                      # no semicore: resolved at 0.3 Bohr


def _no_dft(*args, **kwargs):
    raise AssertionError("a DFT calculation started")


def test_generate_refuses_a_coarse_mesh_for_crfeconi_before_any_dft(write_input, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setattr("hpcdens.dft.pyscf_backend.scf", _no_dft)
    out = tmp_path / "set.h5"
    code = main(["generate", str(write_input({**FCC, "dft.mesh_spacing_bohr": 0.3})), "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "too coarse for" in err and "Ni" in err and "Fix: mesh_spacing_bohr = 0.25" in err
    assert not out.exists() and not list(tmp_path.glob("set.h5*"))


def test_generate_refuses_an_element_the_basis_lacks_before_any_dft(write_input, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr("hpcdens.dft.pyscf_backend.scf", _no_dft)
    inp = write_input({**FCC, "dft.mesh_spacing_bohr": 0.2, "dft.basis": "gth-szv"})
    out = tmp_path / "set.h5"
    assert main(["generate", str(inp), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has no entry for element" in err and "gth-szv-molopt-sr" in err
    assert not out.exists()
