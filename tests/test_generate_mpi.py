"""`generate` on 2 and 3 ranks gives the labels of a serial run (run by launch/test.sh)."""

import numpy as np
import pytest

from tests.input_helpers import TINY
from tests.mpi_helpers import on_every_rank, on_rank0


@pytest.mark.mpi(min_size=2)
def test_generate_on_n_ranks_equals_serial(write_input, mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.io.training_set import read_training_set
    from hpcdens.labelling import run_generate

    comm = MPI.COMM_WORLD
    inp = write_input({**TINY, "snapshots.per_composition": comm.size})
    config = load_config(inp)
    summary = run_generate(config, mpi_tmp_path / "par.h5", comm, progress=False)

    def counts():
        assert summary["snapshots"] == 2 * comm.size and summary["ranks"] == comm.size

    on_every_rank(comm, counts)

    def serial_labels_equal():
        run_generate(config, mpi_tmp_path / "ser.h5", MPI.COMM_SELF, progress=False)
        par, ser = read_training_set(mpi_tmp_path / "par.h5"), read_training_set(mpi_tmp_path / "ser.h5")
        assert [s.key for s in par] == [s.key for s in ser]
        for p, s in zip(par, ser):
            assert abs(p.attrs["energy_ha"] - s.attrs["energy_ha"]) < 1e-7
            np.testing.assert_allclose(p.rho, s.rho, atol=1e-6 * s.rho.max())
            np.testing.assert_array_equal(p.atoms.numbers, s.atoms.numbers)

    on_rank0(comm, serial_labels_equal)
