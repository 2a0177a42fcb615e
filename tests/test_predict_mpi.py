"""`hpcdens predict` under mpirun -n 2 and -n 3 (launch/test.sh): the predicted fields do not
depend on the rank count (COMM_WORLD against COMM_SELF on rank 0, in the same test), ranks with
empty blocks join every collective, and bad inputs raise on all ranks without hanging."""

import numpy as np
import pytest

from tests.mpi_helpers import on_every_rank, on_rank0
from tests.predict_helpers import (
    make_model,
    read_fields,
    sige_cell,
    vacancy_cluster_cell,
    write_cell,
)

FIELDS = ("rho", "rho_normalised", "epistemic_std", "aleatoric_std")


def _invariance(comm, tmp, structure, report, **kw):
    """Predict on all ranks and, on rank 0, on COMM_SELF; return the per-field max differences
    relative to max|rho| and whether they are bitwise equal (valid on every rank)."""
    from mpi4py import MPI

    from hpcdens.parallel.predict import run_predict

    model = tmp / "model.pt"
    par = run_predict(comm, model, structure, tmp / f"par-{report}.h5", **kw)

    def serial():
        kw.pop("dims", None)
        ser = run_predict(MPI.COMM_SELF, model, structure, tmp / f"ser-{report}.h5", **kw)
        a, _ = read_fields(tmp / f"par-{report}.h5")
        b, _ = read_fields(tmp / f"ser-{report}.h5")
        scale = np.abs(b["rho"]).max()
        result = {"diff": {k: float(np.abs(a[k] - b[k]).max() / scale) for k in FIELDS},
                  "bitwise": all(np.array_equal(a[k], b[k]) for k in FIELDS),
                  "growths": (par["halo_growths"], ser["halo_growths"])}
        print(f"\n[rank invariance {report}, {comm.size} vs 1 ranks, grid "
              f"{par['process_grid']}] max|diff|/max|rho| {result['diff']} "
              f"bitwise={result['bitwise']} halo growths {result['growths']}")
        return result

    return on_rank0(comm, serial)


@pytest.fixture
def model_dir(mpi_tmp_path):
    from mpi4py import MPI

    on_rank0(MPI.COMM_WORLD, lambda: make_model(mpi_tmp_path / "model.pt"))
    return mpi_tmp_path


@pytest.mark.mpi(min_size=2)
def test_rank_invariance_rattled_sige_2x2x1_supercell(model_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = on_rank0(comm, lambda: write_cell(model_dir / "sige8.extxyz", sige_cell(seed=5)))
    for dims in (None, (1, 1, comm.size)):
        r = _invariance(comm, model_dir, path, f"sige-{dims}", supercell=(2, 2, 1),
                        spacing_bohr=0.9, chunk_points=700, dims=dims)
        assert max(r["diff"].values()) <= 1e-6


@pytest.mark.mpi(min_size=2)
def test_rank_invariance_with_a_vacancy_cluster_that_grows_the_halo(model_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = on_rank0(comm, lambda: write_cell(model_dir / "void.extxyz", vacancy_cluster_cell()))
    r = _invariance(comm, model_dir, path, "void", shape=(23, 23, 23), chunk_points=4000)
    assert max(r["diff"].values()) <= 1e-6
    assert r["growths"][0] >= 1 and r["growths"][1] >= 1


@pytest.mark.mpi(min_size=2)
def test_rank_invariance_non_orthogonal_primitive_cell(model_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = on_rank0(comm, lambda: write_cell(model_dir / "prim.extxyz",
                                             sige_cell((3, 3, 3), primitive=True, seed=7)))
    r = _invariance(comm, model_dir, path, "primitive", spacing_bohr=0.9, chunk_points=3000)
    assert max(r["diff"].values()) <= 1e-6


@pytest.mark.mpi(min_size=2)
def test_rank_invariance_of_an_ensemble_file(mpi_tmp_path):
    """An ensemble file (three members' pooled samples) predicts the same on every rank count."""
    from mpi4py import MPI

    from hpcdens.io.model import save_ensemble

    comm = MPI.COMM_WORLD

    def make():
        members = [make_model(mpi_tmp_path / f"m{seed}.pt", seed=seed) for seed in (0, 1, 2)]
        save_ensemble(mpi_tmp_path / "model.pt", members)
        return write_cell(mpi_tmp_path / "sige8.extxyz", sige_cell(seed=6))

    path = on_rank0(comm, make)
    r = _invariance(comm, mpi_tmp_path, path, "ensemble", supercell=(2, 1, 1),
                    spacing_bohr=0.9, chunk_points=500)
    assert max(r["diff"].values()) <= 1e-6


@pytest.mark.mpi(min_size=2)
def test_empty_blocks_join_every_collective(model_dir):
    """More ranks than planes along the split axis: the last ranks own no points."""
    from mpi4py import MPI

    from hpcdens.parallel.block import predict_block
    from hpcdens.parallel.collective import allreduce_exact_sum, exact_partial_sum
    from hpcdens.parallel.decomposition import BlockLayout, GridDecomposition
    from hpcdens.parallel.inputs import prepare_plan
    from hpcdens.parallel.writer import ParallelH5Writer

    comm = MPI.COMM_WORLD
    path = on_rank0(comm, lambda: write_cell(model_dir / "cell.extxyz", sige_cell()))
    plan, model = prepare_plan(model_dir / "model.pt", path, model_dir / "unused.h5",
                               shape=(11, 11, 11))
    plan = type(plan)(**{**plan.__dict__, "grid_shape": (comm.size - 1, 6, 5)})
    net, samples = model.net, model.samples
    with GridDecomposition(comm, plan.grid_shape, (comm.size, 1, 1)) as decomp:

        def only_the_last_rank_is_empty():
            assert (decomp.local_size == 0) == (comm.rank == comm.size - 1)

        on_every_rank(comm, only_the_last_rank_is_empty)
        block = predict_block(plan, decomp, net, samples)
        total = allreduce_exact_sum(comm, block.fields["rho"])
        with ParallelH5Writer(model_dir / "empty.h5", comm) as writer:
            writer.create("rho", plan.grid_shape)
            writer.write_box("rho", decomp.local_start, block.fields["rho"])
            writer.finish()

    def file_equals_one_block():
        whole = predict_block(plan, BlockLayout(plan.grid_shape, (1, 1, 1), (0, 0, 0)), net,
                              samples).fields["rho"]
        got, attrs = read_fields(model_dir / "empty.h5")
        np.testing.assert_array_equal(got["rho"], whole)
        assert attrs["complete"] and total == float(exact_partial_sum(whole))

    on_rank0(comm, file_equals_one_block)


def _bad(tmp, comm):
    def make():
        sn = sige_cell()
        sn.symbols[0] = "Sn"
        (tmp / "garbage.pt").write_bytes(b"\x00 not a model")
        (tmp / "exists.h5").write_bytes(b"")
        return {"cell": write_cell(tmp / "ok.extxyz", sige_cell()),
                "sn": write_cell(tmp / "sn.extxyz", sn)}
    return on_rank0(comm, make)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("case", ["species", "malformed model", "coarse grid", "exists"])
def test_bad_inputs_raise_on_all_ranks_without_hanging(model_dir, case):
    from mpi4py import MPI

    from hpcdens.errors import InputError
    from hpcdens.parallel.predict import run_predict

    comm = MPI.COMM_WORLD
    files = _bad(model_dir, comm)
    kw = {"model": model_dir / "model.pt", "structure": files["cell"],
          "out": model_dir / "pred.h5", "spacing_bohr": 0.9}
    kw.update({"species": {"structure": files["sn"]},
               "malformed model": {"model": model_dir / "garbage.pt"},
               "coarse grid": {"spacing_bohr": 1.4},
               "exists": {"out": model_dir / "exists.h5"}}[case])

    def refused():
        with pytest.raises(InputError) as err:
            run_predict(comm, kw.pop("model"), kw.pop("structure"), kw.pop("out"), **kw)
        return str(err.value)

    messages = comm.allgather(on_every_rank(comm, refused))
    assert len(set(messages)) == 1  # the same message on every rank
    assert not (model_dir / "pred.h5").exists()


@pytest.mark.mpi(min_size=2)
def test_rank_invariance_of_a_delta_rho_model_with_its_sad(mpi_tmp_path):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    dft = {"backend": "pyscf", "basis": "gth-szv-molopt-sr", "pseudo": "gth-pbe", "xc": "PBE"}

    def files():
        make_model(mpi_tmp_path / "model.pt", meta={"target": "delta_rho", "dft": dft})
        return write_cell(mpi_tmp_path / "prim.extxyz", sige_cell((2, 2, 2), primitive=True))

    path = on_rank0(comm, files)
    r = _invariance(comm, mpi_tmp_path, path, "delta_rho", spacing_bohr=0.9)
    assert max(r["diff"].values()) <= 1e-6

    def sad_equals_serial():
        a, _ = read_fields(mpi_tmp_path / "par-delta_rho.h5")
        b, _ = read_fields(mpi_tmp_path / "ser-delta_rho.h5")
        print(f"[rho_sad {comm.size} vs 1 ranks] max|diff| {np.abs(a['rho_sad'] - b['rho_sad']).max()}")
        assert np.abs(a["rho_sad"] - b["rho_sad"]).max() <= 1e-6 * np.abs(b["rho"]).max()

    on_rank0(comm, sad_equals_serial)


@pytest.mark.mpi(min_size=2)
def test_a_failure_on_one_rank_is_raised_on_every_rank(model_dir, monkeypatch):
    from mpi4py import MPI

    from hpcdens.errors import HpcdensError
    from hpcdens.parallel import predict

    comm = MPI.COMM_WORLD
    path = on_rank0(comm, lambda: write_cell(model_dir / "one.extxyz", sige_cell()))
    real = predict.predict_chunks

    def fails_on_last_rank(plan, layout, *args):
        if comm.rank == comm.size - 1:
            raise RuntimeError("simulated failure in the local work")
        return real(plan, layout, *args)

    monkeypatch.setattr(predict, "predict_chunks", fails_on_last_rank)

    def raised_here():
        with pytest.raises(HpcdensError, match=f"rank {comm.size - 1}: RuntimeError: simulated"):
            predict.run_predict(comm, model_dir / "model.pt", path, model_dir / "pred.h5",
                                spacing_bohr=0.9)

    on_every_rank(comm, raised_here)
    comm.Barrier()
    assert list(model_dir.glob("*pred.h5*")) == []


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("shells", [(), (1.0, 2.0)])
def test_rank_invariance_of_the_charge_correction(mpi_tmp_path, shells):
    """A model with a charge model (of whole atoms, or of radial shells of them):
    rho_normalised corrected block by block on every rank, in two decompositions, equals the
    one-rank file to rounding. The cell is long enough along z that a block's pro-atoms leave
    out some atoms (checked), as on large cells."""
    from ase.units import Bohr
    from mpi4py import MPI

    from hpcdens.parallel.decomposition import block_box
    from hpcdens.parallel.halo import PeriodicStructure, atoms_near_block
    from hpcdens.sad import RadialDensity
    from tests.predict_helpers import charge_record

    comm = MPI.COMM_WORLD
    record = charge_record(shells=shells)
    on_rank0(comm, lambda: make_model(mpi_tmp_path / "model.pt", meta={"charges": record}))
    cell = sige_cell((1, 1, 4), seed=7)
    path = on_rank0(comm, lambda: write_cell(mpi_tmp_path / "c.extxyz", cell))
    for report, kw in (("charges", {"spacing_bohr": 0.8, "chunk_points": 600}),
                       ("charges-x", {"spacing_bohr": 0.8, "dims": (comm.size, 1, 1)})):
        r = _invariance(comm, mpi_tmp_path, path, report, **kw)
        assert r["diff"]["rho"] == 0.0 and r["diff"]["rho_normalised"] <= 1e-13

    def corrected_with_fewer_atoms_per_block():
        _, attrs = read_fields(mpi_tmp_path / "par-charges.h5")
        assert attrs["charge_corrected"] and attrs["n_ranks"] == comm.size
        shape = tuple(attrs["grid_shape"])
        structure = PeriodicStructure.from_arrays(cell.positions / Bohr, cell.numbers,
                                                  np.asarray(cell.cell) / Bohr)
        r_cut = max(RadialDensity.from_table(el, t).r_cut
                    for el, t in record["pro_atoms"].items())
        lo, hi = block_box(shape, tuple(attrs["process_grid"]), (0, 0, 0))
        assert len(atoms_near_block(structure, shape, lo, hi, r_cut)) < len(cell)

    on_rank0(comm, corrected_with_fewer_atoms_per_block)
