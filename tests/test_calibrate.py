"""``hpcdens calibrate`` on a real tiny PySCF SiGe model: the fit reproduces its definition on
an independent prediction of the validation snapshot, it is stored in the model file, and
predict and evaluate apply it (scaled std, out-of-reach field, scaled energy error bar)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

pytest.importorskip("pyscf")

from hpcdens import energy as en
from hpcdens.calibration import describe, fit, run_calibrate
from hpcdens.errors import InputError
from hpcdens.io.model import load_model
from hpcdens.io.training_set import read_snapshot
from tests.input_helpers import label_and_train

TRAIN = {"descriptors.n_neighbors": 12, "model.hidden_layers": [32, 32], "model.n_samples": 8,
         "train.points_per_snapshot": 0, "train.validation_fraction": 0.25, "train.epochs": 6,
         "train.batch_size": 128, "train.learning_rate": 3e-3, "train.patience": 10,
         "train.seed": 0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(uncalibrated model, calibrated model, calibration, training set)."""
    from mpi4py import MPI

    d = tmp_path_factory.mktemp("calibrate")
    label_and_train(d, TRAIN)
    cal = run_calibrate(MPI.COMM_SELF, d / "model.pt", d / "calibrated.pt")
    return d / "model.pt", d / "calibrated.pt", cal, d / "train.h5"


def _predict(model, snap):
    from mpi4py import MPI

    from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

    pred = predict_atoms(MPI.COMM_SELF, snap.atoms, load_predictor(MPI.COMM_SELF, model),
                         shape=snap.grid.shape)
    return gather_fields(MPI.COMM_SELF, pred)


def test_fit_matches_its_definition_on_the_validation_snapshot(setup):
    model, calibrated, cal, train = setup
    record = load_model(model)[1]
    keys = [s["key"] for s in record.training["validation_snapshots"]]
    assert cal["fitted_on"] == keys and len(keys) == 1
    snap = read_snapshot(train, keys[0])
    raw = _predict(model, snap)
    rho, factor = en.renormalise(raw["rho"], snap.grid, snap.attrs["n_electrons"])
    sigma = factor * np.hypot(raw["epistemic_std"], raw["aleatoric_std"])
    covered = np.mean(np.abs(snap.rho - rho) <= cal["density_scale"] * sigma)
    assert covered == pytest.approx(0.6827, abs=2 / snap.rho.size + 1e-6)
    assert np.mean(raw["epistemic_std"] > cal["epistemic_threshold"]) == pytest.approx(
        1 - cal["threshold_quantile"], abs=2 / snap.rho.size)
    assert cal["warn_fraction"] >= 0.01
    # one validation snapshot: the energy scale is |z| of that snapshot
    assert cal["n_energy_snapshots"] == 1
    assert cal["energy_scale"] == pytest.approx(abs(cal["raw_energy_z"][0]))
    # stored in the new file, the old one untouched
    assert load_model(calibrated)[1].calibration["density_scale"] == cal["density_scale"]
    assert record.calibration is None


def test_predict_applies_the_calibration(setup, tmp_path):
    from mpi4py import MPI

    from hpcdens.commands.predict import format_summary
    from hpcdens.parallel.predict import run_predict

    model, calibrated, cal, train = setup
    snap = read_snapshot(train, cal["fitted_on"][0])
    snap.atoms.write(tmp_path / "s.xyz")
    out = {}
    for name, path in (("raw", model), ("cal", calibrated)):
        summary = run_predict(MPI.COMM_SELF, path, tmp_path / "s.xyz", tmp_path / f"{name}.h5",
                              shape=snap.grid.shape)
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            out[name] = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
            out[name]["attrs"] = dict(f.attrs)
        out[name]["summary"] = summary
    np.testing.assert_allclose(out["cal"]["epistemic_std"],
                               cal["density_scale"] * out["raw"]["epistemic_std"], rtol=1e-12)
    np.testing.assert_array_equal(out["cal"]["rho"], out["raw"]["rho"])
    flagged = out["raw"]["epistemic_std"] > cal["epistemic_threshold"]
    np.testing.assert_array_equal(out["cal"]["out_of_reach"], flagged.astype(float))
    assert "out_of_reach" not in out["raw"]
    assert out["cal"]["summary"]["out_of_reach_fraction"] == pytest.approx(flagged.mean())
    assert json.loads(out["cal"]["attrs"]["uncertainty_calibration_json"])["density_scale"] \
        == cal["density_scale"]
    assert json.loads(out["raw"]["attrs"]["uncertainty_calibration_json"]) == "uncalibrated"
    assert "out of reach" in describe(cal, 0.0) and "uncalibrated" in describe(None)
    # one weight sample: no epistemic std, so neither the field nor an out-of-reach verdict
    one = run_predict(MPI.COMM_SELF, calibrated, tmp_path / "s.xyz", tmp_path / "one.h5",
                      shape=snap.grid.shape, samples="mean")
    with h5py.File(tmp_path / "one.h5", "r") as f:
        assert "epistemic_std" not in f and "out_of_reach" not in f
        assert f.attrs["out_of_reach_fraction"] == -1
    assert one["out_of_reach_fraction"] == -1
    assert "not assessed" in format_summary(one) and "out of reach:" not in format_summary(one)
    assert "WARNING" in describe(cal, 2 * cal["warn_fraction"])
    assert "WARNING" not in describe(cal, 0.5 * cal["warn_fraction"])


def test_evaluate_scales_the_energy_error_bar(setup, tmp_path):
    from mpi4py import MPI

    from hpcdens.evaluation import run_evaluate

    model, calibrated, cal, train = setup
    raw = run_evaluate(MPI.COMM_SELF, model, train, tmp_path / "raw")["rows"]
    scaled = run_evaluate(MPI.COMM_SELF, calibrated, train, tmp_path / "cal")["rows"]
    for a, b in zip(raw, scaled):
        assert b["e_ml_std_per_atom_ha"] == pytest.approx(
            cal["energy_scale"] * a["e_ml_std_per_atom_ha"], rel=1e-9)
        assert b["e_ml_std_raw_per_atom_ha"] == pytest.approx(a["e_ml_std_per_atom_ha"])
        assert a["out_of_reach_fraction"] is None and 0 <= b["out_of_reach_fraction"] <= 1
        assert b["error_ha_per_atom"] == pytest.approx(a["error_ha_per_atom"], abs=1e-12)


def test_bad_input_is_refused_before_any_work(setup, tmp_path):
    from mpi4py import MPI

    model, _, _, _ = setup
    with pytest.raises(InputError, match="--data"):
        run_calibrate(MPI.COMM_SELF, model, tmp_path / "x.pt", data=[str(tmp_path / "no.h5")])
    with pytest.raises(InputError, match="--energy-samples"):
        run_calibrate(MPI.COMM_SELF, model, tmp_path / "x.pt", energy_samples=1)
    assert not (tmp_path / "x.pt").exists()


def test_fit_of_synthetic_statistics():
    """A Gaussian error with sigma twice the predicted one gives a density scale of 2; energy z
    of 3 and 4 give sqrt(12.5)."""
    rng = np.random.default_rng(0)
    n = 200_000
    abs_z = np.abs(rng.standard_normal(n)) * 2.0
    stats = [{"key": f"k{i}", "abs_z": abs_z[i::2], "epistemic": rng.random(n // 2),
              "error_per_atom": 1e-4 * (i + 3), "sigma_per_atom": 1e-4} for i in range(2)]
    cal = fit(stats)
    assert cal["density_scale"] == pytest.approx(2.0, rel=0.01)
    assert cal["calibrated_coverage_2sigma"] == pytest.approx(0.954, abs=0.005)
    assert cal["energy_scale"] == pytest.approx(np.sqrt(12.5))
    assert cal["raw_energy_coverage_2sigma"] == 0.0


def test_energy_command_error_bar_from_saved_samples(setup, tmp_path):
    """predict --save-samples writes the N_s sample densities; hpcdens energy turns them into
    sigma_E (their one-shot energies' std, times the calibration's energy scale)."""
    from mpi4py import MPI

    from hpcdens.dft import settings_from_record
    from hpcdens.energy import run_energy
    from hpcdens.io.prediction import read_sample_densities
    from hpcdens.parallel.predict import run_predict

    model, calibrated, cal, train = setup
    snap = read_snapshot(train, cal["fitted_on"][0])
    snap.atoms.write(tmp_path / "s.xyz")
    settings = settings_from_record(load_model(model)[1].dft)
    out = {}
    for name, path in (("raw", model), ("cal", calibrated)):
        run_predict(MPI.COMM_SELF, path, tmp_path / "s.xyz", tmp_path / f"{name}.h5",
                    shape=snap.grid.shape, save_samples=True)
        out[name] = run_energy(tmp_path / f"{name}.h5", settings)["error_bar"]
    samples = read_sample_densities(tmp_path / "raw.h5")
    assert len(samples) == load_model(model)[1].n_samples
    energies = [en.energy_of_density(snap.atoms, snap.grid, rho, settings)["free_energy_ha"]
                / len(snap.atoms) for rho in samples]
    assert out["raw"]["sigma_per_atom_ha"] == pytest.approx(np.std(energies, ddof=1), rel=1e-6)
    assert not out["raw"]["calibrated"] and out["cal"]["calibrated"]
    assert out["cal"]["sigma_per_atom_ha"] == pytest.approx(
        cal["energy_scale"] * out["raw"]["sigma_per_atom_ha"], rel=1e-9)
    run_predict(MPI.COMM_SELF, model, tmp_path / "s.xyz", tmp_path / "plain.h5",
                shape=snap.grid.shape)
    assert run_energy(tmp_path / "plain.h5", settings)["error_bar"] is None


def test_the_flag_fires_far_from_training_and_not_on_a_training_snapshot(setup, tmp_path):
    """The out-of-reach rule on real structures: a training snapshot stays under the model's
    warn fraction (no WARNING); the same cell stretched by 20 % in every direction (bonds the
    model never saw) is flagged, with the fraction of points in the file and on screen. (This
    tiny model predicts a negative total charge for a 10 % compressed cell, which predict refuses
    with an error of its own.)"""
    from mpi4py import MPI

    from hpcdens.commands.predict import format_summary
    from hpcdens.parallel.predict import run_predict

    _, calibrated, cal, train = setup
    _, record = load_model(calibrated)
    snap = read_snapshot(train, record.training["train_snapshots"][0]["key"])
    stretched = snap.atoms.copy()
    stretched.set_cell(snap.atoms.cell[:] * 1.2, scale_atoms=True)
    fractions = {}
    for name, atoms in (("training", snap.atoms), ("stretched", stretched)):
        atoms.write(tmp_path / f"{name}.xyz")
        summary = run_predict(MPI.COMM_SELF, calibrated, tmp_path / f"{name}.xyz",
                              tmp_path / f"{name}.h5", shape=snap.grid.shape)
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            assert f.attrs["out_of_reach_fraction"] == pytest.approx(f["out_of_reach"][...].mean())
        fractions[name] = summary["out_of_reach_fraction"]
        screen = format_summary(summary)
        assert ("WARNING" in screen) == (name == "stretched"), (name, fractions, cal)
    assert fractions["training"] <= cal["warn_fraction"] < fractions["stretched"]
