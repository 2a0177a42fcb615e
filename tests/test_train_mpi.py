"""`hpcdens train` on 2 and 3 ranks against a serial run (run by launch/test.sh).

The data pipeline is rank-count invariant: the ranks' blocks of points put together are the
serial points, and the normalisation statistics equal the serial ones to 1e-12. Training itself
is not bit-for-bit invariant (each rank shuffles and samples its own block), so the validation
NRMSE is compared with a tolerance (measured numbers in docs/commands/train.md)."""

import numpy as np
import pytest

from tests.input_helpers import TINY, TRAIN
from tests.mpi_helpers import on_every_rank, on_rank0

GLOBAL_BATCH = 384  # divisible by 1, 2 and 3: the same global batch on every rank count


def _config(write_input, batch):
    from hpcdens.config import load_config

    return load_config(write_input({**TINY, **TRAIN, "train.batch_size": batch},
                                   name=f"b{batch}.toml"))


def _training_set(config, mpi_tmp_path, comm):
    """The four snapshots of tests/test_train.py, labelled on all ranks."""
    from hpcdens.labelling import run_generate

    path = mpi_tmp_path / "train.h5"
    run_generate(config, path, comm, progress=False)
    return path


@pytest.mark.mpi(min_size=2)
def test_data_pipeline_and_normalisation_do_not_depend_on_the_rank_count(write_input,
                                                                         mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.training.data import normalisation_stats
    from hpcdens.training.loop import prepare_data

    comm = MPI.COMM_WORLD
    config = _config(write_input, GLOBAL_BATCH)
    path = _training_set(config, mpi_tmp_path, comm)
    par = prepare_data(config, [path], comm)
    stats = normalisation_stats(par.train, comm)
    blocks = comm.gather((par.train.snapshot, par.train.target, par.train.x, par.val.target), 0)

    def serial_blocks_and_statistics_equal():
        ser = prepare_data(config, [path], MPI.COMM_SELF)
        ref = normalisation_stats(ser.train, MPI.COMM_SELF)
        assert all(len(b[1]) > 0 for b in blocks), "every rank holds training points"
        np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), ser.train.snapshot)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), ser.train.target)
        np.testing.assert_array_equal(np.concatenate([b[2] for b in blocks]), ser.train.x)
        np.testing.assert_array_equal(np.concatenate([b[3] for b in blocks]), ser.val.target)
        for key in ("x_mean", "x_std", "y_mean", "y_std"):
            np.testing.assert_allclose(stats[key], ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
        assert stats["n"] == ref["n"] == ser.train.n_global == par.train.n_global

    on_rank0(comm, serial_blocks_and_statistics_equal)


@pytest.mark.mpi(min_size=2)
def test_training_on_n_ranks_matches_the_serial_model(write_input, mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.io.model import load_model
    from hpcdens.training.run import run_train

    comm = MPI.COMM_WORLD
    config = _config(write_input, GLOBAL_BATCH // comm.size)
    path = _training_set(config, mpi_tmp_path, comm)
    par = run_train(config, [path], mpi_tmp_path / "par.pt", comm, progress=False)

    def finished_on_all_ranks():
        assert par["ranks"] == comm.size and par["finished"]

    on_every_rank(comm, finished_on_all_ranks)

    def serial_model_matches():
        ser = run_train(_config(write_input, GLOBAL_BATCH), [path], mpi_tmp_path / "ser.pt",
                        MPI.COMM_SELF, progress=False)
        print(f"\nvalidation NRMSE: serial {ser['best']['nrmse']:.4f}, {comm.size} ranks "
              f"{par['best']['nrmse']:.4f} (baseline {ser['best']['baseline_nrmse']:.4f}); "
              f"s/epoch serial {ser['epoch_time_s']:.3f}, {comm.size} ranks "
              f"{par['epoch_time_s']:.3f}")
        # Measured (15 epochs, global batch 384): see docs/commands/train.md.
        assert abs(par["best"]["nrmse"] - ser["best"]["nrmse"]) < 0.5 * ser["best"]["nrmse"]
        assert par["best"]["nrmse"] < 0.25 * par["best"]["baseline_nrmse"]
        (m_par, meta_par), (m_ser, meta_ser) = (load_model(mpi_tmp_path / f"{n}.pt")
                                                 for n in ("par", "ser"))
        assert meta_par.training["data_sha256"] == meta_ser.training["data_sha256"]
        assert meta_par.training["ranks"] == comm.size
        for key in ("x_mean", "x_std", "y_mean", "y_std"):
            np.testing.assert_array_equal(getattr(m_par, key), getattr(m_ser, key))

    on_rank0(comm, serial_model_matches)
