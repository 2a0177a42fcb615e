"""`hpcdens evaluate` on a tiny real PySCF training set and test set.

Training set: the four 2-atom primitive diamond cells of tests/test_train.py (Si and Si0.5Ge0.5,
mesh 0.6 Bohr, 13^3 points). Test set: two other rattled snapshots (seed 11) of the same
compositions. A small model (M = 12, 32-32 hidden, 8 epochs) is evaluated on it; the energies
are checked against an independent energy_of_density call on the same predicted density.
"""

import csv
import json

import h5py
import numpy as np
import pytest

pytest.importorskip("pyscf")

from hpcdens import energy as en
from hpcdens.commands import evaluate as evaluate_command
from hpcdens.config import load_config
from hpcdens.dft import settings_from_record
from hpcdens.evaluation import COLUMNS, run_evaluate
from hpcdens.io.model import load_model
from hpcdens.io.training_set import read_training_set
from hpcdens.metrics import nrmse
from tests.input_helpers import TINY, write_input_file  # noqa: E402
from tests.mpi_helpers import on_rank0  # noqa: E402

TRAIN = {"descriptors.n_neighbors": 12, "model.hidden_layers": [32, 32],
         "train.points_per_snapshot": 0, "train.validation_fraction": 0.25, "train.epochs": 8,
         "train.batch_size": 128, "train.learning_rate": 3e-3, "train.patience": 10,
         "train.seed": 0, "train.charge_model": False}   # corrected rows: test_charge_command.py


def main(argv):
    from hpcdens.cli import main as cli_main

    return cli_main(argv)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model, test set, input file): labelled and trained once for this module (~30 s)."""
    import torch
    from mpi4py import MPI

    from hpcdens.labelling import run_generate
    from hpcdens.training.run import run_train

    d = tmp_path_factory.mktemp("evaluate")
    gen = write_input_file(d / "gen.toml",
                           {**TINY, **TRAIN, "output.directory": str(d / "run")})
    run_generate(load_config(gen), d / "train.h5", MPI.COMM_SELF, progress=False)
    test = write_input_file(d / "test.toml",
                            {**TINY, "snapshots.per_composition": 1, "snapshots.seed": 11})
    run_generate(load_config(test), d / "test.h5", MPI.COMM_SELF, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_train(load_config(gen), [d / "train.h5"], d / "model.pt", progress=False)
    finally:
        torch.set_num_threads(threads)
    return d / "model.pt", d / "test.h5", gen


@pytest.fixture(scope="module")
def result(setup, tmp_path_factory):
    from mpi4py import MPI

    model, testset, _ = setup
    out = tmp_path_factory.mktemp("eval-out") / "ev"
    return run_evaluate(MPI.COMM_SELF, model, testset, out)


def test_rows_energies_and_density_errors(setup, result):
    model, testset, _ = setup
    snaps = read_training_set(testset)
    rows = result["rows"]
    assert [r["key"] for r in rows] == [s.key for s in snaps] and len(rows) == 2
    print("\n[evaluate] " + "; ".join(
        f"{r['key']}: NRMSE {r['nrmse']:.3e}, L1 {r['relative_l1_percent']:.2f} %, E err "
        f"{r['error_ha_per_atom']:+.3e} Ha/atom ({r['error_ha_per_electron']:+.3e} Ha/e), "
        f"epi {r['epistemic_std_mean']:.2e}, ale {r['aleatoric_std_mean']:.2e}" for r in rows))
    settings = settings_from_record(load_model(model)[1].dft)
    for snap, row in zip(snaps, rows):
        # Independent recomputation from the prediction file the command wrote.
        pred_path = result["out"] + "/predictions/" + snap.key.replace("/", "__") + ".h5"
        with h5py.File(pred_path, "r") as f:
            rho = f["rho"][()]
            epi = float(f["epistemic_std"][()].mean())
        assert rho.shape == snap.grid.shape
        e = en.energy_of_density(snap.atoms, snap.grid, rho, settings)
        natm, n_e = len(snap.atoms), e["n_electrons"]
        diff = e["free_energy_ha"] - snap.attrs["free_energy_ha"]
        assert row["error_ha_per_atom"] == pytest.approx(diff / natm, abs=1e-9)
        assert row["abs_error_ha_per_atom"] == pytest.approx(abs(diff) / natm, abs=1e-9)
        assert row["error_ha_per_electron"] == pytest.approx(diff / n_e, abs=1e-9)
        assert row["e_ml_per_atom_ha"] == pytest.approx(e["free_energy_per_atom_ha"], abs=1e-9)
        assert row["chemically_accurate"] == (abs(diff) / natm <= 1.6e-3)
        assert row["epistemic_std_mean"] == pytest.approx(epi)
        assert row["epistemic_std_mean"] > 0 and row["aleatoric_std_mean"] > 0
        scaled = en.renormalise(rho, snap.grid, n_e)[0]
        assert row["nrmse"] == pytest.approx(nrmse(scaled, snap.rho))
        constant = nrmse(np.full(snap.rho.shape, snap.rho.mean()), snap.rho)
        assert np.isfinite(row["nrmse"]) and row["nrmse"] < constant
        assert row["x"] == snap.atoms.get_chemical_symbols().count("Ge") / natm
        _check_error_bar(model, snap, row, settings, diff / natm)


def _check_error_bar(model, snap, row, settings, error_per_atom):
    """sigma_E recomputed independently: the N_s sample densities predicted again in memory,
    each renormalised and given a one-shot Harris-Foulkes energy; their mean density is the
    prediction. Coverages are fractions that grow with k."""
    from mpi4py import MPI

    from hpcdens.parallel.block import sample_field_names
    from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

    predictor = load_predictor(MPI.COMM_SELF, model)
    n_s = predictor.record.n_samples
    pred = predict_atoms(MPI.COMM_SELF, snap.atoms, predictor, shape=snap.grid.shape,
                         keep_samples=True)
    fields = gather_fields(MPI.COMM_SELF, pred)
    samples = [fields[name] for name in sample_field_names(n_s)]
    np.testing.assert_allclose(np.mean(samples, axis=0), fields["rho"], rtol=1e-12, atol=1e-15)
    energies = [en.energy_of_density(snap.atoms, snap.grid, rho, settings)["free_energy_ha"]
                / len(snap.atoms) for rho in samples]
    assert row["energy_samples"] == n_s >= 2
    assert row["e_ml_std_per_atom_ha"] == pytest.approx(np.std(energies, ddof=1), rel=1e-6)
    assert row["e_ml_std_per_atom_ha"] > 0
    assert row["energy_within_2sigma"] == (abs(error_per_atom) <= 2 * row["e_ml_std_per_atom_ha"])
    assert row["energy_z"] == pytest.approx(error_per_atom / row["e_ml_std_per_atom_ha"])
    assert abs(row["aleatoric_energy_shift_per_atom_ha"]) > 0
    for kind in ("total", "epistemic", "aleatoric", "total_low", "total_mid", "total_high"):
        assert 0 <= row[f"coverage_1sigma_{kind}"] <= row[f"coverage_2sigma_{kind}"] <= 1
    assert row["coverage_2sigma_total"] >= row["coverage_2sigma_epistemic"]


def test_the_model_is_read_once_and_the_atoms_stay_in_memory(setup, tmp_path, monkeypatch):
    """One model read for all snapshots (rank 0, then broadcast); no structure files written;
    the prediction files are written and hold the fields the rows were computed from."""
    from mpi4py import MPI

    import hpcdens.io.model as model_file

    model, testset, _ = setup
    reads = []
    real = model_file._payload                      # the one reader of model files
    monkeypatch.setattr(model_file, "_payload", lambda path: reads.append(path) or real(path))
    out = tmp_path / "ev"
    r = run_evaluate(MPI.COMM_SELF, model, testset, out, with_energy=False)
    assert len(reads) == 1 and len(r["rows"]) == 2
    files = sorted(p.name for p in (out / "predictions").iterdir())
    assert files == sorted(k.replace("/", "__") + ".h5" for k in (x["key"] for x in r["rows"]))
    for row in r["rows"]:
        with h5py.File(out / "predictions" / (row["key"].replace("/", "__") + ".h5"), "r") as f:
            assert f.attrs["complete"] and json.loads(f.attrs["structure_json"])["key"] == row["key"]
            assert row["epistemic_std_mean"] == float(np.mean(f["epistemic_std"][()]))


def test_the_error_bar_announces_its_cost(setup, tmp_path, caplog):
    """Before the sample energies (minutes on a 216-atom cell) the log says how many and about
    how long, from the mean density's own energy."""
    from mpi4py import MPI

    model, testset, _ = setup
    with caplog.at_level("INFO", logger="hpcdens.evaluate"):
        r = run_evaluate(MPI.COMM_SELF, model, testset, tmp_path / "ev", energy_samples=2)
    lines = [m for m in caplog.messages if "sample energies for the error bar" in m]
    assert len(lines) == len(r["rows"]) == 2 and all(": 2 sample energies" in m for m in lines)
    assert all(row["energy_samples"] == 2 for row in r["rows"])


def test_output_files_and_summary(result):
    out = result["out"]
    from pathlib import Path

    out = Path(out)
    for name in ("evaluate.csv", "evaluate.json", "parity.png", "error_vs_composition.png",
                 "reliability.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    data = json.loads((out / "evaluate.json").read_text())
    rows, s = data["rows"], data["summary"]
    assert [r["key"] for r in rows] == [r["key"] for r in result["rows"]]
    errs = [r["abs_error_ha_per_atom"] for r in rows]
    assert s["mean_abs_error_ha_per_atom"] == pytest.approx(np.mean(errs))
    assert s["max_abs_error_ha_per_atom"] == pytest.approx(max(errs))
    assert s["mean_nrmse"] == pytest.approx(np.mean([r["nrmse"] for r in rows]))
    assert s["max_nrmse"] == pytest.approx(max(r["nrmse"] for r in rows))
    assert s["n_snapshots"] == 2
    with open(out / "evaluate.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(COLUMNS) and len(table) == 2
    assert [float(r["nrmse"]) for r in table] == pytest.approx([r["nrmse"] for r in rows])
    rel = data["reliability"]
    assert len(rel["nominal"]) == len(rel["observed"]) and rel["observed"] == sorted(
        rel["observed"]) and 0 <= rel["observed"][0] <= rel["observed"][-1] <= 1
    within = [r["energy_within_2sigma"] for r in rows]
    assert s["energy_coverage_2sigma"] == pytest.approx(np.mean(within))
    assert s["mean_coverage_2sigma_total"] == pytest.approx(
        np.mean([r["coverage_2sigma_total"] for r in rows]))


def test_command_line_and_bad_input(setup, tmp_path, capsys):
    model, testset, gen = setup
    out = tmp_path / "cli"
    assert main(["evaluate", str(model), str(testset), "--out", str(out), "--config", str(gen),
                 "--no-energy"]) == 0
    printed = capsys.readouterr().out
    assert "Si0.5_Ge0.5/s000" in printed and "NRMSE" in printed
    data = json.loads((out / "evaluate.json").read_text())
    assert data["rows"][0]["error_ha_per_atom"] is None and data["summary"]["mean_nrmse"] > 0
    # existing output without --overwrite: refused before any work
    before = (out / "evaluate.json").stat().st_mtime_ns
    assert main(["evaluate", str(model), str(testset), "--out", str(out), "--no-energy"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "evaluate.json").stat().st_mtime_ns == before
    # missing test set / model
    assert main(["evaluate", str(model), str(tmp_path / "nope.h5"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "nope.h5" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["evaluate", str(tmp_path / "m.pt"), str(testset), "--out",
                 str(tmp_path / "y")]) == 2
    capsys.readouterr()
    # one sample has no spread: refused before any work
    assert main(["evaluate", str(model), str(testset), "--out", str(tmp_path / "z"),
                 "--energy-samples", "1"]) == 2
    assert "--energy-samples" in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_help_lists_every_option(capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="hpcdens")
    evaluate_command.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--help"])
    text = capsys.readouterr().out
    for opt in ("--config", "--out", "--overwrite", "--energy", "--no-energy", "MODEL",
                "TESTSET", "--energy-samples"):
        assert opt in text


@pytest.mark.mpi(min_size=2)
def test_two_ranks_give_the_serial_rows(tmp_path_factory):
    """Same rows on COMM_WORLD as on COMM_SELF (run under mpirun -n 2 or 3): three test
    snapshots, so that the energies and their error bars are computed on several ranks."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    model, testset, d = on_rank0(comm, lambda: _mpi_setup(tmp_path_factory.mktemp("mpi")))
    par = run_evaluate(comm, model, testset, d + "/par")

    def serial_rows_equal():
        ser = run_evaluate(MPI.COMM_SELF, model, testset, d + "/ser")
        for a, b in zip(par["rows"], ser["rows"]):
            for k in COLUMNS:
                if k in ("predict_s", "energy_s"):
                    continue
                if isinstance(a[k], float):
                    assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k
                else:
                    assert a[k] == b[k], k

    on_rank0(comm, serial_rows_equal)


def _mpi_setup(d):
    import torch
    from mpi4py import MPI

    from hpcdens.labelling import run_generate
    from hpcdens.training.run import run_train

    gen = write_input_file(d / "gen.toml", {**TINY, **TRAIN, "train.epochs": 3})
    run_generate(load_config(gen), d / "train.h5", MPI.COMM_SELF, progress=False)
    test = write_input_file(d / "test.toml", {**TINY, "compositions.list": ["Si0.5Ge0.5"],
                                              "snapshots.per_composition": 3,
                                              "snapshots.seed": 11})
    run_generate(load_config(test), d / "test.h5", MPI.COMM_SELF, progress=False)
    torch.set_num_threads(1)
    run_train(load_config(gen), [d / "train.h5"], d / "model.pt", progress=False)
    return str(d / "model.pt"), str(d / "test.h5"), str(d)
