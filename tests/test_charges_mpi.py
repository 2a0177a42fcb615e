"""``hpcdens charges`` under mpirun -n 2 and -n 3 (launch/test.sh): the snapshots are shared
among the ranks and the charge model rank 0 fits is the one a single rank fits."""

import numpy as np
import pytest

from tests.mpi_helpers import on_rank0

pytest.importorskip("pyscf")


@pytest.mark.mpi(min_size=2)
def test_the_fit_does_not_depend_on_the_rank_count(mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.charge_correction import run_fit_charges
    from hpcdens.io.model import load_model
    from tests.input_helpers import TRAIN, label_and_train

    comm = MPI.COMM_WORLD
    on_rank0(comm, lambda: label_and_train(mpi_tmp_path, TRAIN))
    par = run_fit_charges(comm, mpi_tmp_path / "model.pt", mpi_tmp_path / "par.pt")
    assert par["n_snapshots"] == 4

    def same_as_one_rank():
        ser = run_fit_charges(MPI.COMM_SELF, mpi_tmp_path / "model.pt", mpi_tmp_path / "ser.pt")
        a = load_model(mpi_tmp_path / "par.pt")[1].charges
        b = load_model(mpi_tmp_path / "ser.pt")[1].charges
        for key in ("x", "coef", "mean", "scale"):
            np.testing.assert_array_equal(a[key], b[key])
        assert (a["alpha"], a["gamma"], par["cv_rmse"]) == (b["alpha"], b["gamma"],
                                                             ser["cv_rmse"])

    on_rank0(comm, same_as_one_rank)
