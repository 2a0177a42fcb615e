"""`hpcdens predict` / `export` / `bench predict` on one rank (COMM_SELF): the file equals a serial
in-memory prediction, the cube round-trips through ASE, bad inputs end with exit code 2.

The model and cell helpers are in tests/predict_helpers.py."""

import hashlib

import h5py
import numpy as np
import pytest
from ase.units import Bohr

from hpcdens import bnn_predict
from hpcdens.cli import main as cli_main
from hpcdens.errors import InputError, ParallelIOError
from hpcdens.grid import Grid
from hpcdens.structures import read_structure
from tests.predict_helpers import (
    M,
    make_model,
    read_fields,
    sige_cell,
    vacancy_cluster_cell,
    write_cell,
)


def serial_reference(model_path, atoms, shape, m=M, dtype="float32"):
    """Descriptors of the whole grid with the periodic search, then bnn_predict.predict (no MPI)
    in the precision ``dtype`` (run_predict's default: float32)."""
    from hpcdens.descriptors import descriptors
    from hpcdens.io.model import load_model
    from hpcdens.neighbors import NeighborSearch

    model, record = load_model(model_path)
    grid = Grid(atoms.cell.array / Bohr, shape)
    search = NeighborSearch(atoms.positions / Bohr, atoms.numbers, grid.cell_bohr, m=m)
    out = bnn_predict.predict(model, descriptors(grid.cartesian_points(), search),
                              model.draw_weight_samples(record.n_samples, record.sample_seed),
                              dtype=dtype)
    return grid, {"rho": out["mean"].reshape(shape),
                  "epistemic_std": np.sqrt(out["epistemic_var"]).reshape(shape),
                  "aleatoric_std": np.sqrt(out["aleatoric_var"]).reshape(shape)}


@pytest.fixture
def setup(tmp_path):
    model = make_model(tmp_path / "model.pt")
    path = write_cell(tmp_path / "cell.extxyz", sige_cell((2, 1, 1)))
    return model, path, read_structure(path)


def predict_self(model, structure, out, **kw):
    from mpi4py import MPI

    from hpcdens.parallel.predict import run_predict

    return run_predict(MPI.COMM_SELF, model, structure, out, **kw)


def test_file_equals_serial_in_memory_prediction(setup, tmp_path):
    model, structure, atoms = setup
    summary = predict_self(model, structure, tmp_path / "pred.h5", spacing_bohr=0.9,
                           chunk_points=500)
    fields, attrs = read_fields(tmp_path / "pred.h5")
    grid, ref = serial_reference(model, atoms, summary["grid_shape"])
    scale = np.abs(ref["rho"]).max()
    for name, want in ref.items():
        assert np.abs(fields[name] - want).max() <= 1e-12 * scale, name
    assert attrs["complete"] and attrs["n_ranks"] == 1 and attrs["target"] == "rho"
    assert attrs["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert attrs["n_electrons"] == 4 * len(atoms) and attrs["valence_source"] == "model"
    assert grid.integrate(fields["rho_normalised"]) == pytest.approx(4 * len(atoms), rel=1e-12)
    assert set(fields) == {"rho", "rho_normalised", "epistemic_std", "aleatoric_std"}
    assert attrs["precision"] == "float32"
    # --precision float64: equal to the float64 serial prediction, within 1e-5 of float32's
    predict_self(model, structure, tmp_path / "pred64.h5", spacing_bohr=0.9, chunk_points=500,
                 precision="float64")
    fields64, attrs64 = read_fields(tmp_path / "pred64.h5")
    _, ref64 = serial_reference(model, atoms, summary["grid_shape"], dtype="float64")
    assert attrs64["precision"] == "float64"
    for name, want in ref64.items():
        assert np.abs(fields64[name] - want).max() <= 1e-12 * scale, name
        assert np.abs(fields64[name] - fields[name]).max() <= 1e-5 * scale, name
    for phase in ("halo", "descriptors", "network", "write"):
        assert attrs[f"timing_{phase}_s"] >= 0
    with h5py.File(tmp_path / "pred.h5", "r") as f:
        np.testing.assert_array_equal(f["atoms/numbers"][()], atoms.numbers)
        np.testing.assert_allclose(f["atoms/positions_bohr"][()], atoms.positions / Bohr)
        np.testing.assert_allclose(f["atoms/cell_bohr"][()], atoms.cell.array / Bohr)


def test_export_round_trips_through_ase_and_matches_write_cube(setup, tmp_path):
    from ase.io.cube import read_cube_data

    from hpcdens.io.cube import write_cube
    from hpcdens.io.prediction import export_cube

    model, structure, atoms = setup
    predict_self(model, structure, tmp_path / "pred.h5", shape=(23, 11, 12))
    fields, _ = read_fields(tmp_path / "pred.h5")
    cube = export_cube(tmp_path / "pred.h5", tmp_path / "rho.cube", slab_values=300)  # 2 planes
    data, read_atoms = read_cube_data(str(cube))
    np.testing.assert_array_equal(data, fields["rho_normalised"])
    np.testing.assert_allclose(read_atoms.cell.array, atoms.cell.array, atol=1e-9)
    np.testing.assert_array_equal(read_atoms.numbers, atoms.numbers)
    grid = Grid(atoms.cell.array / Bohr, (23, 11, 12))
    whole = write_cube(tmp_path / "whole.cube", read_atoms, grid, fields["rho_normalised"],
                       comment="hpcdens rho_normalised (e/Bohr^3) from pred.h5")
    assert cube.read_bytes() == whole.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        export_cube(tmp_path / "pred.h5", cube)
    with pytest.raises(InputError, match="no field 'rho_sad'"):
        export_cube(tmp_path / "pred.h5", tmp_path / "sad.cube", field="rho_sad")


def test_export_refuses_a_file_without_complete(tmp_path):
    from hpcdens.io.prediction import export_cube

    with h5py.File(tmp_path / "half.h5", "w") as f:
        f["rho_normalised"] = np.zeros((4, 4, 4))
    with pytest.raises(InputError, match="complete"):
        export_cube(tmp_path / "half.h5", tmp_path / "x.cube")
    assert not (tmp_path / "x.cube").exists()


def _bad_inputs(tmp_path):
    """name -> (extra argv, message fragment); files made here."""
    bad_model = tmp_path / "garbage.pt"
    bad_model.write_bytes(b"not a torch file")
    sn = sige_cell()
    sn.symbols[0] = "Sn"
    (tmp_path / "exists.h5").write_bytes(b"")
    make_model(tmp_path / "wrong_m.pt", meta={"n_neighbors": M + 1})
    return {
        "species": (["structure", str(write_cell(tmp_path / "sn.extxyz", sn))], "Sn \\(Z=50\\)"),
        "malformed model": (["model", str(bad_model)], "not an hpcdens model"),
        "M mismatch": (["model", str(tmp_path / "wrong_m.pt")], "does not match"),
        "coarse grid": (["--spacing-bohr", "1.5"], "too coarse"),
        "few points": (["--shape", "3", "12", "12"], "too coarse"),
        "exists": (["--out", str(tmp_path / "exists.h5")], "already exists"),
        "structure": (["structure", str(tmp_path / "missing.extxyz")], "does not exist"),
    }


@pytest.mark.parametrize("case", ["species", "malformed model", "M mismatch", "coarse grid",
                                  "few points", "exists", "structure"])
def test_bad_inputs_end_with_exit_code_2(case, setup, tmp_path, capsys):
    model, structure, _ = setup
    args = {"model": [str(model)], "structure": [str(structure)],
            "--out": [str(tmp_path / "pred.h5")], "--spacing-bohr": ["0.9"]}
    extra, message = _bad_inputs(tmp_path)[case]
    if extra[0] == "--shape":
        args.pop("--spacing-bohr")
    args[extra[0]] = extra[1:]
    argv = ["predict", *args.pop("model"), *args.pop("structure")]
    for key, value in args.items():
        argv += [key, *value]
    assert cli_main(argv) == 2
    import re
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "pred.h5").exists()


def test_missing_metadata_is_named(tmp_path, setup):
    import torch

    from hpcdens.parallel.inputs import prepare_plan

    _, structure, _ = setup
    path = make_model(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)              # a file without sample_seed
    payload["meta"].pop("sample_seed")
    torch.save(payload, path)
    with pytest.raises(InputError, match="sample_seed"):
        prepare_plan(path, structure, tmp_path / "p.h5", spacing_bohr=0.9)


def test_valence_from_option_or_pyscf_gth(tmp_path, setup):
    from hpcdens.parallel.inputs import prepare_plan

    _, structure, atoms = setup
    path = make_model(tmp_path / "noval.pt", meta={"valence_electrons": None})
    plan, _ = prepare_plan(path, structure, tmp_path / "p.h5", spacing_bohr=0.9)
    assert plan.valence_source == "dft-backend:pyscf" and plan.n_electrons == 4 * len(atoms)
    plan, _ = prepare_plan(path, structure, tmp_path / "p.h5", spacing_bohr=0.9,
                           valence="Si=4,Ge=14")
    assert plan.valence_source == "option" and plan.valence == {14: 4.0, 32: 14.0}


def test_delta_rho_model_adds_the_sad_back(tmp_path):
    from hpcdens.config import DFTConfig
    from hpcdens.dft import atomic_density_points

    dft = {"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe", "xc": "PBE"}
    model = make_model(tmp_path / "delta.pt", meta={"target": "delta_rho", "dft": dft})
    structure = write_cell(tmp_path / "cell.extxyz", sige_cell())
    atoms = read_structure(structure)
    summary = predict_self(model, structure, tmp_path / "pred.h5", shape=(11, 11, 11))
    fields, attrs = read_fields(tmp_path / "pred.h5")
    grid, ref = serial_reference(model, atoms, (11, 11, 11))
    settings = DFTConfig(basis=dft["basis"], pseudo=dft["pseudo"])
    sad = atomic_density_points(atoms, grid.cartesian_points(), settings).reshape(grid.shape)
    np.testing.assert_allclose(fields["rho_sad"], sad, rtol=0, atol=1e-13)
    np.testing.assert_allclose(fields["rho"] - fields["rho_sad"], ref["rho"], rtol=0, atol=1e-12)
    assert attrs["target"] == "delta_rho" and "gth-szv-molopt-sr" in attrs["sad_settings_json"]
    assert attrs["sad_source"] == "dft-backend:pyscf", "a record without tables asks the backend"
    assert summary["timings"]["sad"] > 0


def test_delta_rho_model_with_stored_sad_tables_runs_no_dft(tmp_path, monkeypatch):
    """A record with sad_radial (what 'hpcdens train' stores) predicts without the backend and
    adds back the same rho_SAD, bit for bit, as the backend's tables give."""
    from hpcdens.config import DFTConfig
    from hpcdens.dft import get_backend, pyscf_backend

    dft = {"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe", "xc": "PBE"}
    radial = get_backend("pyscf").radial_densities(["Si", "Ge"], DFTConfig(basis=dft["basis"]))
    tables = {el: rad.to_table() for el, rad in radial.items()}
    structure = write_cell(tmp_path / "cell.extxyz", sige_cell())
    asks = make_model(tmp_path / "asks.pt", meta={"target": "delta_rho", "dft": dft})
    stored = make_model(tmp_path / "stored.pt", meta={"target": "delta_rho", "dft": dft,
                                                      "sad_radial": tables})
    predict_self(asks, structure, tmp_path / "asks.h5", shape=(11, 11, 11))

    def refuse(*args, **kwargs):
        raise AssertionError("the DFT backend was asked for the SAD tables")

    monkeypatch.setattr(pyscf_backend, "radial_densities", refuse)
    predict_self(stored, structure, tmp_path / "stored.h5", shape=(11, 11, 11))
    broken = make_model(tmp_path / "broken.pt", meta={
        "target": "delta_rho", "dft": dft,
        "sad_radial": {**tables, "Ge": {**tables["Ge"], "rho": tables["Ge"]["rho"][:-2]}}})
    with pytest.raises(InputError, match="sad_radial: radial table of Ge"):
        predict_self(broken, structure, tmp_path / "broken.h5", shape=(11, 11, 11))
    (a, attrs_a), (b, attrs_b) = (read_fields(tmp_path / f"{n}.h5") for n in ("asks", "stored"))
    assert (attrs_a["sad_source"], attrs_b["sad_source"]) == ("dft-backend:pyscf", "model")
    assert a["rho_sad"].tobytes() == b["rho_sad"].tobytes() and a["rho"].tobytes() == \
        b["rho"].tobytes()


def test_without_parallel_hdf5_the_error_names_the_fix(setup, tmp_path, monkeypatch):
    import h5py as h5

    class Serial:
        mpi = False

    model, structure, _ = setup
    monkeypatch.setattr(h5, "get_config", lambda: Serial())
    with pytest.raises(ParallelIOError, match="install.sh"):
        predict_self(model, structure, tmp_path / "pred.h5", spacing_bohr=0.9)


def test_a_failed_write_leaves_nothing_that_looks_finished(setup, tmp_path, monkeypatch):
    from hpcdens.parallel.writer import ParallelH5Writer

    def fail(self, attrs, group="/"):
        self.check("disk full (simulated)", "setting attributes")

    model, structure, _ = setup
    monkeypatch.setattr(ParallelH5Writer, "set_attrs", fail)
    with pytest.raises(ParallelIOError, match="simulated"):
        predict_self(model, structure, tmp_path / "pred.h5", spacing_bohr=0.9)
    assert list(tmp_path.glob("*pred.h5*")) == []


def test_halo_growth_is_counted_and_results_stay_exact(tmp_path):
    path = write_cell(tmp_path / "void.extxyz", vacancy_cluster_cell())
    void = read_structure(path)
    model = make_model(tmp_path / "m.pt")
    summary = predict_self(model, path, tmp_path / "pred.h5", shape=(23, 23, 23))
    assert summary["halo_growths"] >= 1 and len(void) == 49
    fields, attrs = read_fields(tmp_path / "pred.h5")
    assert attrs["halo_growths"] == summary["halo_growths"]
    _, ref = serial_reference(model, void, (23, 23, 23))
    assert np.abs(fields["rho"] - ref["rho"]).max() <= 1e-12 * np.abs(ref["rho"]).max()


def test_subcommands_register_with_full_help():
    import argparse

    from hpcdens.commands import export, predict
    from hpcdens.commands.bench import register_bench_predict

    parser = argparse.ArgumentParser(prog="hpcdens")
    sub = parser.add_subparsers(dest="command")
    texts = [predict.register(sub).format_help(), export.register(sub).format_help()]
    bench = sub.add_parser("bench").add_subparsers(dest="what")
    texts.append(register_bench_predict(bench).format_help())
    for option in ("--spacing-bohr", "--shape", "--supercell", "--vacancies", "--chunk-points",
                   "--overwrite", "--valence"):
        assert option in texts[0]
    assert "--cube" in texts[1] and "--field" in texts[1]
    assert "--atoms-per-rank" in texts[2]
    args = parser.parse_args(["predict", "m.pt", "s.xyz", "--out", "p.h5", "--shape", "5", "5",
                              "5", "--vacancies", "2", "--seed", "4"])
    assert args.shape == [5, 5, 5] and args.vacancies == 2 and callable(args.func)


def test_bench_predict_reports_speed_and_plots(tmp_path, capsys):
    from mpi4py import MPI

    from hpcdens.bench.predict import (
        append_csv,
        bench_predict,
        format_row,
        plot_scaling,
        scaling_table,
        write_random_model,
    )

    model = write_random_model(tmp_path / "bench.pt", m=8, hidden_layers=(8,), n_samples=2)
    row = bench_predict(MPI.COMM_SELF, model, supercell=(1, 1, 1), spacing_bohr=0.9,
                        label="t")
    assert row["points_per_s"] > 0 and row["peak_rss_mb_max"] > 0 and row["atoms"] == 8
    assert "points/s" in format_row(row)
    append_csv(tmp_path / "s.csv", row)
    append_csv(tmp_path / "s.csv", {**row, "ranks": 2, "wall_s": row["wall_s"] / 1.5})
    assert plot_scaling(tmp_path / "s.csv", tmp_path / "s.png").stat().st_size > 1000
    table = scaling_table(tmp_path / "s.csv", "strong").splitlines()
    assert len(table) == 4 and "| 1.50 |" in table[3]  # speed-up of the 1.5x faster row


def test_supercell_and_vacancies_are_applied_before_the_grid(setup, tmp_path):
    from hpcdens.structures import add_vacancies

    model, structure, atoms = setup
    summary = predict_self(model, structure, tmp_path / "pred.h5", spacing_bohr=0.9,
                           supercell=(1, 2, 1), vacancies=3, seed=5)
    want = add_vacancies(atoms.repeat((1, 2, 1)), 3, np.random.default_rng(5))
    with h5py.File(tmp_path / "pred.h5", "r") as f:
        np.testing.assert_array_equal(f["atoms/numbers"][()], want.numbers)
        np.testing.assert_allclose(f["atoms/positions_bohr"][()], want.positions / Bohr)
        assert '"vacancies": 3' in f.attrs["structure_json"]
    assert summary["n_atoms"] == 2 * len(atoms) - 3
    assert summary["n_electrons"] == 4 * summary["n_atoms"]


def test_fast_sample_modes(setup, tmp_path):
    """--samples K: the first K of the N_s weight samples, so its fields equal a serial
    prediction with those K; --samples mean: the posterior-mean network (no epistemic std field);
    recorded as sample_mode; bad values refused before any output."""
    from hpcdens.errors import InputError
    from hpcdens.io.model import read_predictor

    model, structure, atoms = setup
    predictor = read_predictor(model)
    n_s = predictor.record.n_samples
    shape = (23, 11, 12)
    predict_self(model, structure, tmp_path / "k2.h5", shape=shape, samples="2")
    predict_self(model, structure, tmp_path / "mean.h5", shape=shape, samples="mean")
    k2, attrs_k2 = read_fields(tmp_path / "k2.h5")
    mean, attrs_mean = read_fields(tmp_path / "mean.h5")
    assert attrs_k2["sample_mode"] == f"first 2 of {n_s}" and attrs_k2["n_samples"] == 2
    assert attrs_mean["sample_mode"] == "mean" and attrs_mean["n_samples"] == 1
    from hpcdens.bnn import WeightSamples
    from hpcdens.descriptors import descriptors
    from hpcdens.neighbors import NeighborSearch

    grid = Grid(atoms.cell.array / Bohr, shape)
    search = NeighborSearch(atoms.positions / Bohr, atoms.numbers, grid.cell_bohr, m=M)
    x = descriptors(grid.cartesian_points(), search)
    s = predictor.samples
    first2 = WeightSamples(tuple(w[:2] for w in s.weights), tuple(b[:2] for b in s.biases), s.seed)
    for samples, fields in ((first2, k2), (predictor.net.mean_weights(), mean)):
        want = bnn_predict.predict(predictor.net, x, samples, dtype="float32")["mean"]
        assert np.abs(fields["rho"] - want.reshape(shape)).max() <= 1e-12 * np.abs(want).max()
    # one weight sample has no epistemic std: no field rather than a zero one, and the summary
    # says so with the fix
    assert "epistemic_std" not in mean and np.all(k2["epistemic_std"] > 0)
    one = predict_self(model, structure, tmp_path / "one.h5", shape=shape, samples="1")
    assert set(read_fields(tmp_path / "one.h5")[0]) == {"rho", "rho_normalised", "aleatoric_std"}
    from hpcdens.commands.predict import format_summary

    assert "no epistemic_std field" in format_summary(one) and "--samples K" in format_summary(one)
    assert "epistemic std: none" not in format_summary(predict_self(
        model, structure, tmp_path / "k3.h5", shape=shape, samples="3"))
    for bad in ("0", str(n_s + 1), "many"):
        with pytest.raises(InputError, match="--samples"):
            predict_self(model, structure, tmp_path / f"bad{bad}.h5", shape=shape, samples=bad)
        assert not (tmp_path / f"bad{bad}.h5").exists()


def test_chunk_points_too_small_or_too_large_for_memory_is_refused(setup, tmp_path, monkeypatch):
    """Below one network block: refused. A chunk whose working memory exceeds half of this
    rank's share of the node's available memory: refused before any point is predicted, naming
    the --chunk-points that fits, which then runs; nothing is left behind."""
    from hpcdens.parallel import predict as predict_module
    from hpcdens.parallel.inputs import CHUNK_BYTES_PER_FEATURE, chunk_memory_error

    model, structure, _ = setup
    out = tmp_path / "p.h5"
    with pytest.raises(InputError, match="below one network block.*--chunk-points 256"):
        predict_self(model, structure, out, spacing_bohr=0.9, chunk_points=100)
    per_point = CHUNK_BYTES_PER_FEATURE * 5 * M
    monkeypatch.setattr(predict_module, "available_memory_bytes", lambda: 2 * 1000 * per_point)
    with pytest.raises(InputError, match=r"--chunk-points 8192: a chunk of \d+ points needs .* "
                                         r"Fix: --chunk-points 1000$"):
        predict_self(model, structure, out, spacing_bohr=0.9, chunk_points=8192)
    assert not [p.name for p in tmp_path.iterdir() if "p.h5" in p.name], "nothing left behind"
    predict_self(model, structure, out, spacing_bohr=0.9, chunk_points=1000)
    assert out.exists()
    # the rule itself: 2 ranks on a node with 4 GiB available, M = 55
    assert chunk_memory_error(8192, 10**6, 275, 0, 4 * 2**30, 2) is None
    assert "Fix: --chunk-points 122016" in chunk_memory_error(10**6, 10**6, 275, 0, 4 * 2**30, 2)
    assert chunk_memory_error(10**6, 8192, 275, 0, 4 * 2**30, 2) is None, "the block bounds it"
    assert chunk_memory_error(10**9, 10**9, 275, 0, None, 2) is None, "unknown: not checked"
