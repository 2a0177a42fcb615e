"""The DFT backend interface (hpcdens.dft) and the backend-independent SAD (hpcdens.sad).

No SPARC binary is needed: the SPARC valence charges and atomic densities come from the psp8 files
shipped with SPARC-X-API.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.units import Bohr

from hpcdens.config import DFTConfig
from hpcdens.dft import (
    atomic_density,
    atomic_density_points,
    get_backend,
    has_capability,
    settings_from_record,
    sparc_psp,
    valence_electrons,
)
from hpcdens.errors import DFTSetupError
from hpcdens.grid import Grid
from hpcdens.sad import radial_integral
from tests.cells import crfeconi4, si8, sigesn8

pytest.importorskip("sparc")

INTERFACE = ("valence_charges", "radial_densities", "label_settings", "make_grid", "scf",
             "harris_foulkes", "scf_from_density", "check_ready")
SPARC = DFTConfig(backend="sparc")
#: zion of SPARC-X-API's psp8 files (semicore for Ge, Sn and the 3d metals).
SPARC_ZION = {"Si": 4.0, "Ge": 14.0, "Sn": 14.0, "Cr": 14.0, "Fe": 16.0, "Co": 17.0, "Ni": 18.0}


@pytest.fixture
def no_sparc_binary(monkeypatch):
    monkeypatch.delenv("ASE_SPARC_COMMAND", raising=False)


@pytest.mark.parametrize("name", ["pyscf", "sparc"])
def test_every_backend_implements_the_interface(name):
    backend = get_backend(name)
    for function in INTERFACE:
        assert callable(getattr(backend, function)), (name, function)
    assert has_capability(name, "harris_foulkes_setup") == (name == "pyscf")


def test_sad_core_imports_no_backend():
    code = ("import sys, hpcdens.sad; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('pyscf', 'sparc') "
            "or m.startswith('hpcdens.dft')], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_valence_electrons_dispatch_to_the_backend(no_sparc_binary):
    assert valence_electrons(si8(), DFTConfig()) == 32.0
    assert valence_electrons(sigesn8(), DFTConfig()) == 32.0  # GTH: 4 each
    assert valence_electrons(sigesn8(), SPARC) == 4 * 4 + 2 * 14 + 2 * 14  # psp8 semicore Ge, Sn
    assert get_backend("sparc").valence_charges(list(SPARC_ZION), SPARC) == SPARC_ZION


def test_sparc_radial_densities_hold_zion(no_sparc_binary):
    radial = get_backend("sparc").radial_densities(list(SPARC_ZION) + ["Si"], SPARC)
    assert sorted(radial) == sorted(SPARC_ZION)
    for element, rad in radial.items():
        assert rad.element == element and rad.n_electrons == SPARC_ZION[element]
        assert rad.integral == pytest.approx(SPARC_ZION[element], rel=1e-12)
        assert rad.r_cut == pytest.approx(5.99)  # the end of the psp8 radial grid
        r = np.linspace(0.0, rad.r_cut, 3001)
        assert np.all(rad(r)[:-1] > 0) and rad(rad.r_cut + 0.1) == 0
        # the file's table lacks the tail beyond 5.99 Bohr: 0.2-1.2 % of zion
        r_file, rho_file, _ = sparc_psp.valence_density_table(
            sparc_psp.find_psp(element, sparc_psp.psp_dir(SPARC)))
        lost = 1 - radial_integral(r_file, rho_file) / SPARC_ZION[element]
        assert 1e-3 < lost < 1.5e-2, (element, lost)
        np.testing.assert_allclose(rad(r_file[:-1]), rho_file[:-1] / (1 - lost), rtol=1e-10)


def test_sparc_sad_integrates_to_n_e_on_the_grid(no_sparc_binary):
    """SiGeSn8 at 0.2 Bohr: |int SAD - N_e| / N_e measured 1.8e-7. The psp8 densities stop at
    5.99 Bohr with ~1e-4 e/Bohr^3 (as in SPARC), a step that the grid sum resolves only to a few
    1e-6 at 0.3-0.4 Bohr and 1e-5 for CrFeCoNi4 at 0.25-0.4 Bohr (measured 1.0e-5 at 0.25,
    9.6e-6 at 0.4), hence the looser bound there."""
    for atoms, spacing, tol in ((sigesn8(), 0.2, 1e-6), (crfeconi4(), 0.4, 2e-5)):
        grid = Grid.from_spacing(atoms.cell.array / Bohr, spacing)
        sad = atomic_density(atoms, grid, SPARC)
        n_e = valence_electrons(atoms, SPARC)
        assert sad.shape == grid.shape and sad.min() > 0
        assert grid.integrate(sad) == pytest.approx(n_e, rel=tol)


def test_sad_of_a_lone_atom_is_its_radial_table(no_sparc_binary):
    box = 14.0  # Bohr: every image is > 7.01 Bohr away, beyond the 5.99 Bohr cut
    centre = np.array([0.3, 0.5, 0.6]) * box
    atom = Atoms("Ge", positions=[centre * Bohr], cell=np.eye(3) * box * Bohr, pbc=True)
    r = np.linspace(0.0, 6.5, 131)
    points = centre + r[:, None] * np.array([0.6, 0.0, 0.8])
    want = get_backend("sparc").radial_densities(["Ge"], SPARC)["Ge"](r)
    np.testing.assert_allclose(atomic_density_points(atom, points, SPARC), want, rtol=1e-13)


def test_pyscf_sad_is_unchanged():
    """Values of the PySCF SAD of Si8 computed before the interface existed: equal to rounding
    (they were bit-identical until the lattice sum became a pair search, which adds the same
    terms in another order)."""
    points = [[8.465310371786178, 1.8561608477496652, -2.262476569148496],
              [-2.7025025604864763, 11.638864305604903, 13.429600390998992],
              [7.919443963809238, 10.13093809771197, 6.785249846377612],
              [13.831303628179828, 11.68536397418758, -2.9507069969373343]]
    got = atomic_density_points(si8(), np.array(points), DFTConfig(mesh_spacing_bohr=0.4))
    np.testing.assert_allclose(got, [0.060265641332873085, 0.007024163410706939,
                                     0.01713097163075003, 0.01043908603348643], rtol=1e-14)


def test_settings_from_record_keeps_only_dft_fields():
    record = {"backend": "sparc", "xc": "PBE", "mesh_spacing_bohr": 0.3, "code": "SPARC",
              "sparc_psp_dir": "/data/psp", "pseudopotentials": {"Si": "x.psp8"}}
    settings = settings_from_record(record)
    assert settings == DFTConfig(backend="sparc", mesh_spacing_bohr=0.3, sparc_psp_dir="/data/psp")
    assert settings_from_record(None) == settings_from_record({}) == DFTConfig()


def test_own_psp_dir_and_a_file_without_density(tmp_path, no_sparc_binary):
    source = sparc_psp.find_psp("Si", sparc_psp.psp_dir(SPARC))
    own = DFTConfig(backend="sparc", sparc_psp_dir=str(tmp_path))
    (tmp_path / source.name).write_text(source.read_text())
    bundled = get_backend("sparc").radial_densities(["Si"], SPARC)["Si"]
    copied = get_backend("sparc").radial_densities(["Si"], own)["Si"]
    assert copied.integral == bundled.integral and copied.r_cut == bundled.r_cut
    lines = source.read_text().splitlines()
    lines[5] = lines[5].replace("1", "0", 1)  # extension_switch 0: no valence density
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / source.name).write_text("\n".join(lines))
    with pytest.raises(DFTSetupError, match="no atomic valence density"):
        sparc_psp.radial_density(tmp_path / "bad" / source.name, "Si")


def _labelled(atoms, backend, settings, n_electrons, key):
    from hpcdens.io.training_set import Snapshot
    from hpcdens.training.data import Labelled

    grid = Grid(atoms.cell.array / Bohr, (6, 6, 6))
    snap = Snapshot(key, atoms, grid, np.zeros(grid.shape), np.zeros(grid.shape),
                    {"backend": backend, "n_electrons": n_electrons}, settings)
    return Labelled(snap, 0)


def test_training_valence_table_comes_from_the_backend(no_sparc_binary):
    """One fixed composition (which the old least-squares recovery could not resolve) gets its
    table from the labels' settings; inconsistent or mixed labels get none."""
    from hpcdens.training.data import dft_settings, valence_electrons

    record = {"code": "SPARC", "xc": "PBE", "mesh_spacing_bohr": 0.4, "sparc_psp_dir": None}
    sparc = [_labelled(sigesn8(), "sparc", record, 72.0, f"SiGeSn/{i}") for i in range(2)]
    assert dft_settings(sparc, [0, 1]) == {"backend": "sparc", "xc": "PBE",
                                           "mesh_spacing_bohr": 0.4}
    assert valence_electrons(sparc, [0, 1]) == {"14": 4.0, "32": 14.0, "50": 14.0}
    wrong = sparc + [_labelled(sigesn8(), "sparc", record, 32.0, "SiGeSn/2")]
    assert valence_electrons(wrong, [0, 1, 2]) is None
    gth = {"code": "pyscf", "xc": "PBE", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe",
           "mesh_spacing_bohr": 0.4}
    mixed = sparc + [_labelled(sigesn8(), "pyscf", gth, 32.0, "SiGeSn/3")]
    assert valence_electrons(mixed, [2]) == {"14": 4.0, "32": 4.0, "50": 4.0}
    assert dft_settings(mixed, [0, 2]) is None and valence_electrons(mixed, [0, 2]) is None
