"""The in-memory prediction (hpcdens.parallel.predict.predict_atoms: atoms + a loaded model ->
fields) against the file of ``hpcdens predict``, serially and under mpirun -n 2/3; and the
raise-on-every-rank helpers of hpcdens.parallel.collective."""

import numpy as np
import pytest

from hpcdens.errors import HpcdensError, InputError
from hpcdens.structures import read_structure
from tests.mpi_helpers import on_every_rank, on_rank0
from tests.predict_helpers import make_model, read_fields, sige_cell, write_cell

FIELDS = ("rho", "epistemic_std", "aleatoric_std")
DELTA_DFT = {"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe", "xc": "PBE"}


def _self():
    from mpi4py import MPI

    return MPI.COMM_SELF


def test_in_memory_fields_equal_the_file_of_hpcdens_predict(tmp_path):
    from hpcdens.parallel.predict import (
        gather_fields,
        load_predictor,
        predict_atoms,
        run_predict,
    )

    model = make_model(tmp_path / "m.pt")
    path = write_cell(tmp_path / "cell.extxyz", sige_cell((2, 1, 1)))
    summary = run_predict(_self(), model, path, tmp_path / "p.h5", spacing_bohr=0.9,
                          chunk_points=500)
    file_fields, attrs = read_fields(tmp_path / "p.h5")
    predictor = load_predictor(_self(), model)
    got = predict_atoms(_self(), read_structure(path), predictor, spacing_bohr=0.9,
                        chunk_points=700)
    whole = gather_fields(_self(), got)
    assert set(whole) == set(FIELDS) and got.plan.out is None
    for name in FIELDS:
        np.testing.assert_array_equal(whole[name], file_fields[name], err_msg=name)
    s = got.summary
    assert s["integral_rho_raw"] == attrs["integral_rho_raw"] == summary["integral_rho_raw"]
    np.testing.assert_array_equal(whole["rho"] * (s["n_electrons"] / s["integral_rho_raw"]),
                                  file_fields["rho_normalised"])
    assert s["timings"]["write"] == 0.0 and s["timings"]["network"] > 0


def test_a_delta_rho_prediction_kept_and_written_in_one_pass(tmp_path):
    from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

    model = make_model(tmp_path / "d.pt", meta={"target": "delta_rho", "dft": DELTA_DFT})
    atoms = sige_cell()
    got = predict_atoms(_self(), atoms, load_predictor(_self(), model), shape=(11, 11, 11),
                        out=tmp_path / "d.h5", structure_info={"key": "cell"})
    whole = gather_fields(_self(), got)
    written, attrs = read_fields(tmp_path / "d.h5")
    for name in (*FIELDS, "rho_sad"):
        np.testing.assert_array_equal(whole[name], written[name], err_msg=name)
    assert attrs["complete"] and attrs["structure_json"] == '{"key": "cell"}'
    assert attrs["sad_settings_json"] == '{"backend": "pyscf", "basis": "gth-szv-molopt-sr", ' \
                                         '"pseudo": "gth-pbe", "xc": "PBE"}'


def test_a_delta_rho_model_trained_on_sparc_labels_predicts(tmp_path):
    """Its SAD is the superposition of the SPARC psp8 atomic densities (no SPARC binary needed),
    its N_e the psp8 valence charges when the model has no table."""
    pytest.importorskip("sparc")
    from hpcdens.dft import atomic_density_points, settings_from_record, valence_electrons
    from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

    dft = {"backend": "sparc", "xc": "PBE", "mesh_spacing_bohr": 0.5}
    model = make_model(tmp_path / "s.pt", meta={"target": "delta_rho", "dft": dft,
                                                  "valence_electrons": None})
    atoms = sige_cell()
    got = predict_atoms(_self(), atoms, load_predictor(_self(), model), shape=(13, 13, 13))
    whole = gather_fields(_self(), got)
    settings = settings_from_record(dft)
    sad = atomic_density_points(atoms, got.plan.grid.cartesian_points(), settings)
    np.testing.assert_allclose(whole["rho_sad"].ravel(), sad, rtol=0, atol=1e-13)
    assert got.plan.valence_source == "dft-backend:sparc"
    assert got.summary["n_electrons"] == valence_electrons(atoms, settings)


def test_bad_inputs_are_refused(tmp_path):
    from hpcdens.parallel.predict import load_predictor, predict_atoms

    predictor = load_predictor(_self(), make_model(tmp_path / "m.pt"))
    sn = sige_cell()
    sn.symbols[0] = "Sn"
    with pytest.raises(InputError, match="Sn \\(Z=50\\)"):
        predict_atoms(_self(), sn, predictor, spacing_bohr=0.9)
    with pytest.raises(InputError, match="precision 'float16'"):
        predict_atoms(_self(), sige_cell(), predictor, spacing_bohr=0.9, precision="float16")
    with pytest.raises(InputError, match="too coarse"):
        predict_atoms(_self(), sige_cell(), predictor, shape=(5, 12, 12))
    (tmp_path / "exists.h5").write_bytes(b"")
    with pytest.raises(InputError, match="already exists"):
        predict_atoms(_self(), sige_cell(), predictor, spacing_bohr=0.9,
                      out=tmp_path / "exists.h5")
    with pytest.raises(InputError, match="does not exist"):
        load_predictor(_self(), tmp_path / "missing.pt")
    no_dft = load_predictor(_self(), make_model(tmp_path / "d.pt", meta={"target": "delta_rho"}))
    with pytest.raises(InputError, match="needs the SAD density.*no dft settings"):
        predict_atoms(_self(), sige_cell(), no_dft, spacing_bohr=0.9)


@pytest.mark.mpi(min_size=2)
def test_in_memory_prediction_does_not_depend_on_the_rank_count(mpi_tmp_path):
    """Atoms on rank 0 only; the gathered fields on COMM_WORLD equal COMM_SELF's."""
    from mpi4py import MPI

    from hpcdens.parallel.predict import gather_fields, load_predictor, predict_atoms

    comm = MPI.COMM_WORLD
    model = on_rank0(comm, lambda: make_model(mpi_tmp_path / "m.pt", meta={
        "target": "delta_rho", "dft": DELTA_DFT}))
    atoms = sige_cell((2, 2, 1), seed=5) if comm.rank == 0 else None
    predictor = load_predictor(comm, model)
    whole = gather_fields(comm, predict_atoms(comm, atoms, predictor, spacing_bohr=0.9,
                                              chunk_points=900))

    def gathered_on_rank0_only():
        assert (whole is None) == (comm.rank != 0)

    on_every_rank(comm, gathered_on_rank0_only)

    def serial():
        one = gather_fields(_self(), predict_atoms(_self(), atoms, predictor, spacing_bohr=0.9))
        scale = np.abs(one["rho"]).max()
        diff = {k: float(np.abs(whole[k] - one[k]).max() / scale) for k in one}
        print(f"\n[in-memory, {comm.size} vs 1 ranks] max|diff|/max|rho| {diff}")
        assert max(diff.values()) <= 1e-6 and set(one) == {*FIELDS, "rho_sad"}

    on_rank0(comm, serial)


@pytest.mark.mpi(min_size=2)
def test_failures_are_raised_on_every_rank():
    """on_root: rank 0's own error there, HpcdensError elsewhere (InputError stays InputError);
    on_every_rank: one rank's failure raised on all, naming the rank."""
    from mpi4py import MPI

    from hpcdens.parallel.collective import on_every_rank, on_root

    comm = MPI.COMM_WORLD

    def bug():
        raise KeyError("simulated")

    def bad_input(rank):
        if comm.rank == rank:
            raise InputError("simulated bad input")
        return comm.rank

    with pytest.raises(KeyError if comm.rank == 0 else HpcdensError, match="simulated"):
        on_root(comm, bug)
    with pytest.raises(InputError, match="^simulated bad input$"):
        on_root(comm, bad_input, 0)
    assert on_root(comm, lambda: comm.rank) == 0
    last = comm.size - 1
    with pytest.raises(InputError, match=f"^rank {last}: InputError: simulated bad input$"):
        on_every_rank(comm, bad_input, last)
    assert on_every_rank(comm, bad_input, comm.size) == comm.rank
