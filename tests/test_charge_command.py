"""``hpcdens charges`` on a real tiny PySCF SiGe model: the charge model is fitted on the
Hirshfeld charges of the model's own training snapshots and stored in the model file, and
evaluate corrects each atom's charge of the predicted density to it before every error."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pyscf")

from hpcdens import charges
from hpcdens import energy as en
from hpcdens.charge_correction import atom_features, correct_density, run_fit_charges
from hpcdens.cli import main
from hpcdens.dft import get_backend, settings_from_record
from hpcdens.errors import InputError
from hpcdens.io.model import load_model
from hpcdens.io.training_set import read_training_set
from tests.input_helpers import KEYS, TRAIN, label_and_train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model, model with its charge model, fit summary, training set)."""
    from mpi4py import MPI

    d = tmp_path_factory.mktemp("charges")
    label_and_train(d, {**TRAIN, "train.charge_model": False})
    res = run_fit_charges(MPI.COMM_SELF, d / "model.pt", d / "charged.pt")
    return d / "model.pt", d / "charged.pt", res, d / "train.h5"


def _weights_and_valence(atoms, grid, settings, cut=True):
    """Hirshfeld weights and valence charges from the backend's own tables (not the model's),
    each cut at WEIGHT_CUTOFF_BOHR (``cut``) or whole."""
    from dataclasses import replace

    from ase.units import Bohr

    from hpcdens.charge_correction import WEIGHT_CUTOFF_BOHR
    from hpcdens.sad import pro_atoms

    symbols = atoms.get_chemical_symbols()
    backend = get_backend(settings.backend)
    radial = backend.radial_densities(symbols, settings)
    if cut:
        radial = {k: replace(r, r_cut=min(r.r_cut, WEIGHT_CUTOFF_BOHR)) for k, r in radial.items()}
    pro = pro_atoms(np.asarray(atoms.cell) / Bohr, atoms.positions / Bohr, symbols,
                    grid.cartesian_points(), radial)
    zval = backend.valence_charges(symbols, settings)
    return charges.hirshfeld_weights(pro), np.array([zval[s] for s in symbols])


def _dft_charges(snap, settings, cut=True):
    w, zval = _weights_and_valence(snap.atoms, snap.grid, settings, cut)
    return zval - charges.populations(w, snap.rho, snap.grid.voxel_volume_bohr3)


def test_the_fit_uses_every_training_snapshot_and_is_stored(setup):
    model, charged, res, train = setup
    record = load_model(charged)[1]
    snaps = read_training_set(train)
    assert sorted(s.key for s in snaps) == sorted(KEYS)
    assert res["n_snapshots"] == 4 and res["n_atoms"] == 8
    settings = settings_from_record(record.dft)
    q = np.concatenate([_dft_charges(s, settings) for s in snaps])
    assert np.abs(q).max() > 1e-3 and abs(q.sum()) < 1e-3     # Si gains from Ge, neutral
    assert res["charge_rms"] == pytest.approx(np.sqrt(np.mean(q ** 2)), rel=1e-9)
    # The weights' cut at 9 Bohr moves these charges of 0.11 e rms by a few 1e-5 e at most.
    whole = np.concatenate([_dft_charges(s, settings, cut=False) for s in snaps])
    assert 0 < np.abs(whole - q).max() < 5e-5
    fitted = charges.ChargeModel.from_record(record.charges)
    assert fitted.cv_rmse == res["cv_rmse"]
    assert sorted(record.charges["pro_atoms"]) == ["Ge", "Si"]
    assert load_model(model)[1].charges is None                 # the input file untouched
    # What it predicts on a training atom is close to that atom's charge.
    s = snaps[2]
    pred = fitted.predict(atom_features(s.atoms, fitted.species))
    assert np.abs(pred - _dft_charges(s, settings)).max() < 0.5 * np.abs(q).max() + 1e-3


def test_the_correction_gives_every_atom_the_models_charge(setup):
    _, charged, _, train = setup
    record = load_model(charged)[1]
    settings = settings_from_record(record.dft)
    snap = read_training_set(train)[3]
    n_e = float(snap.attrs["n_electrons"])
    rho = snap.rho * (1 + 0.05 * np.cos(snap.grid.cartesian_points()[:, 0]).reshape(
        snap.grid.shape))
    rho = en.renormalise(rho, snap.grid, n_e)[0]
    fixed, info = correct_density(rho, snap.atoms, snap.grid, record.charges)
    assert fixed.sum() * snap.grid.voxel_volume_bohr3 == pytest.approx(n_e, rel=1e-12)
    fitted = charges.ChargeModel.from_record(record.charges)
    want = fitted.predict(atom_features(snap.atoms, fitted.species))
    w, zval = _weights_and_valence(snap.atoms, snap.grid, settings)
    got = zval - charges.populations(w, fixed, snap.grid.voxel_volume_bohr3)
    np.testing.assert_allclose(got - got.mean(), want - want.mean(), atol=1e-9)
    assert info["lambda_max"] > 0 and fixed.min() >= 0
    with pytest.raises(InputError, match=r"no pro-atom for \['Sn'\]"):
        atoms = snap.atoms.copy()
        atoms.numbers[0] = 50
        correct_density(rho, atoms, snap.grid, record.charges)


def test_evaluate_applies_it(setup, tmp_path):
    from mpi4py import MPI

    from hpcdens.evaluation import run_evaluate

    model, charged, _, train = setup
    rows = {}
    for name, path in (("raw", model), ("charged", charged)):
        res = run_evaluate(MPI.COMM_SELF, path, train, tmp_path / name)
        rows[name] = {r["key"]: r for r in res["rows"]}
    record = load_model(charged)[1]
    settings = settings_from_record(record.dft)
    for key in KEYS:
        raw, cor = rows["raw"][key], rows["charged"][key]
        assert raw["charge_correction_rmse"] is None and cor["charge_correction_rmse"] > 0
        assert cor["nrmse"] != raw["nrmse"]
    # The energy of the charged row is that of the corrected density.
    snap = read_training_set(train)[0]
    from h5py import File

    with File(tmp_path / "charged" / "predictions" / (snap.key.replace("/", "__") + ".h5")) as f:
        rho = f["rho"][()]
    n_e = float(snap.attrs["n_electrons"])
    fixed = correct_density(en.renormalise(rho, snap.grid, n_e)[0], snap.atoms, snap.grid,
                            record.charges)[0]
    e = en.energy_per_atom(snap.atoms, snap.grid, settings, n_e)(fixed)
    assert rows["charged"][snap.key]["e_ml_per_atom_ha"] == pytest.approx(e, rel=1e-10)
    csv_head = (tmp_path / "charged" / "evaluate.csv").read_text().splitlines()[0]
    assert "charge_correction_rmse" in csv_head.split(",")
    assert res["charge_corrected"]
    # --no-charge-correction: the charged model evaluates as the model without one, file too.
    assert main(["evaluate", str(charged), str(train), "--out", str(tmp_path / "off"),
                 "--no-charge-correction"]) == 0
    off = json.loads((tmp_path / "off" / "evaluate.json").read_text())
    assert off["charge_corrected"] is False
    for r in off["rows"]:
        for col in ("nrmse", "e_ml_per_atom_ha", "charge_correction_rmse"):
            assert r[col] == rows["raw"][r["key"]][col]
    name = snap.key.replace("/", "__") + ".h5"
    with File(tmp_path / "off" / "predictions" / name) as a, \
            File(tmp_path / "raw" / "predictions" / name) as b:
        assert np.array_equal(a["rho_normalised"][()], b["rho_normalised"][()])


def test_train_fits_it_by_default(setup, tmp_path):
    """[train] charge_model unset: the same charge model as 'hpcdens charges' on the model; on
    by default for delta_rho too, off without a DFT record; false turns it off (setup)."""
    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.training.run import run_train, wants_charge_model
    from tests.input_helpers import TINY, write_input_file

    _, charged, _, train = setup
    gen = write_input_file(tmp_path / "gen.toml", {**TINY, **TRAIN,
                                                   "output.directory": str(tmp_path / "r")})
    config = load_config(gen)
    assert config.train.charge_model is None
    summary = run_train(config, [train], tmp_path / "m.pt", progress=False)
    got, want = load_model(tmp_path / "m.pt")[1].charges, load_model(charged)[1].charges
    np.testing.assert_allclose(got["coef"], want["coef"], rtol=1e-10)
    assert summary["charge_model"]["n_atoms"] == 8
    dft = load_model(charged)[1].dft
    assert not wants_charge_model(config, None)
    delta = {**TINY, "model.target": "delta_rho"}
    assert wants_charge_model(load_config(write_input_file(tmp_path / "d.toml", delta)), dft)
    off = load_config(write_input_file(tmp_path / "a.toml",
                                       {**delta, "train.charge_model": False}))
    assert not wants_charge_model(off, dft)
    with pytest.raises(InputError, match=r"charge_model = 1: must be of type bool"):
        load_config(write_input_file(tmp_path / "bad.toml", {**TINY, "train.charge_model": 1}))
    # [train] charge_shells_bohr: the radial-shell models of 'hpcdens charges --shells'.
    shelled = load_config(write_input_file(tmp_path / "s.toml", {
        **TINY, **TRAIN, "output.directory": str(tmp_path / "r"),
        "train.charge_shells_bohr": [1.0, 2.0]}))
    run_train(shelled, [train], tmp_path / "s.pt", progress=False)
    run_fit_charges(MPI.COMM_SELF, tmp_path / "m.pt", tmp_path / "c.pt", shells_bohr=(1.0, 2.0))
    got, want = (load_model(tmp_path / f)[1].charges["shells"] for f in ("s.pt", "c.pt"))
    assert got["radii_bohr"] == [1.0, 2.0] and len(got["models"]) == 3
    for a, b in zip(got["models"], want["models"]):
        np.testing.assert_allclose(a["coef"], b["coef"], rtol=1e-10)
    with pytest.raises(InputError, match=r"charge_shells_bohr = \[1.0, 0.5\]: must increase"):
        load_config(write_input_file(tmp_path / "bad2.toml",
                                     {**TINY, "train.charge_shells_bohr": [1.0, 0.5]}))


def test_predict_writes_it_and_energy_uses_it(setup, tmp_path):
    """The prediction file's rho_normalised is the corrected density (computed chunk by chunk)
    and 'hpcdens energy' takes it by default."""
    from mpi4py import MPI

    from hpcdens.energy import run_energy
    from hpcdens.io.prediction import read_prediction
    from hpcdens.parallel.predict import run_predict
    from hpcdens.structures import write_structures

    _, charged, _, train = setup
    record = load_model(charged)[1]
    settings = settings_from_record(record.dft)
    snap = read_training_set(train)[1]
    write_structures(tmp_path / "cell.extxyz", [snap.atoms])
    out = tmp_path / "pred.h5"
    run_predict(MPI.COMM_SELF, charged, tmp_path / "cell.extxyz", out, shape=snap.grid.shape,
                chunk_points=700)
    raw, pred = read_prediction(out, "rho"), read_prediction(out, "rho_normalised")
    n_e = pred.attrs["n_electrons"]
    want = correct_density(en.renormalise(raw.rho, raw.grid, n_e)[0], raw.atoms, raw.grid,
                           record.charges)[0]
    assert np.abs(pred.rho - want).max() <= 1e-12 * want.max()
    summary = run_energy(out, settings)
    assert summary["field"] == "rho_normalised" and summary["charge_corrected"]
    e = en.energy_per_atom(raw.atoms, raw.grid, settings, n_e)(want)
    assert summary["free_energy_per_atom_ha"] == pytest.approx(e, rel=1e-10)


def test_the_command_refuses_bad_input_with_exit_2(setup, tmp_path, capsys):
    """Through the CLI: a missing training file, a model without a DFT record; nothing written."""
    from hpcdens.cli import main
    from hpcdens.io.model import save_model

    model, _, _, _ = setup
    out = tmp_path / "out.pt"
    assert main(["charges", str(model), "--out", str(out), "--data",
                 str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5" in capsys.readouterr().err
    net, record = load_model(model)
    from dataclasses import replace

    save_model(tmp_path / "nodft.pt", net, replace(record, dft=None))
    assert main(["charges", str(tmp_path / "nodft.pt"), "--out", str(out)]) == 2
    assert "records no DFT settings" in capsys.readouterr().err
    assert not out.exists()


def test_radial_shells_give_every_shell_the_models_charge(setup, tmp_path, capsys):
    """'hpcdens charges --shells': one charge model per radial shell of every atom; the
    correction gives each shell its model's electrons (one constant moved on the outer shells
    keeps N_e), and predict writes the same corrected field chunk by chunk."""
    from mpi4py import MPI

    from hpcdens.charge_correction import hirshfeld, load_charge_model, reference_populations
    from hpcdens.io.prediction import read_prediction
    from hpcdens.parallel.predict import run_predict
    from hpcdens.structures import write_structures

    model, _, _, train = setup
    shelled = tmp_path / "shells.pt"
    assert main(["charges", str(model), "--out", str(shelled), "--shells", "1.0", "2.0"]) == 0
    assert "per radial shell" in capsys.readouterr().out
    record = load_model(shelled)[1]
    models, radii, radial = load_charge_model(record.charges, ["Si", "Ge"])
    assert radii == (1.0, 2.0) and len(models) == 3
    snap = read_training_set(train)[3]
    n_e = float(snap.attrs["n_electrons"])
    ref = reference_populations(radial, snap.atoms.get_chemical_symbols(), radii)
    np.testing.assert_allclose(ref.sum(1), 4.0, rtol=1e-9)        # the pro-atoms' 4 electrons
    q_dft = hirshfeld(snap.atoms, snap.grid, snap.rho, radial, radii)[2].reshape(-1, 3)
    assert np.abs(q_dft[:, 1]).max() > 1e-3                       # the shells do differ
    rho = en.renormalise(snap.rho * (1 + 0.05 * np.cos(snap.grid.cartesian_points()[:, 0])
                                     .reshape(snap.grid.shape)), snap.grid, n_e)[0]
    fixed = correct_density(rho, snap.atoms, snap.grid, record.charges)[0]
    assert fixed.sum() * snap.grid.voxel_volume_bohr3 == pytest.approx(n_e, rel=1e-12)
    feats = atom_features(snap.atoms, models[0].species)
    want = np.stack([m.predict(feats) for m in models], axis=1)
    got = hirshfeld(snap.atoms, snap.grid, fixed, radial, radii)[2].reshape(-1, 3)
    np.testing.assert_allclose(got[:, :2], want[:, :2], atol=1e-9)
    shift = got[:, 2] - want[:, 2]
    np.testing.assert_allclose(shift, shift[0], atol=1e-9)
    write_structures(tmp_path / "cell.extxyz", [snap.atoms])
    out = tmp_path / "pred.h5"
    run_predict(MPI.COMM_SELF, shelled, tmp_path / "cell.extxyz", out, shape=snap.grid.shape,
                chunk_points=700)
    raw, pred = read_prediction(out, "rho"), read_prediction(out, "rho_normalised")
    want_field = correct_density(en.renormalise(raw.rho, raw.grid, n_e)[0], raw.atoms, raw.grid,
                                 record.charges)[0]
    assert np.abs(pred.rho - want_field).max() <= 1e-12 * want_field.max()
    assert main(["charges", str(model), "--out", str(tmp_path / "bad.pt"),
                 "--shells", "1.0", "0.5"]) == 2
    assert "must increase from above 0 Bohr" in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()
