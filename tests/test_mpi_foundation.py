"""MPI foundation checks (run under mpirun -n 2 and -n 3 by launch/test.sh)."""

import numpy as np
import pytest

from tests.mpi_helpers import on_every_rank, on_rank0


@pytest.mark.mpi(min_size=2)
def test_parallel_hdf5_one_file_from_all_ranks(mpi_tmp_path):
    import h5py
    from mpi4py import MPI

    comm = MPI.COMM_WORLD

    def built_with_mpi():
        assert h5py.get_config().mpi, "h5py was built without MPI: rerun launch/install.sh"

    on_every_rank(comm, built_with_mpi)
    path = mpi_tmp_path / "blocks.h5"
    rows = comm.size * 3
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        dset = f.create_dataset("x", shape=(rows, 5), dtype="f8")
        with dset.collective:
            dset[3 * comm.rank:3 * comm.rank + 3] = comm.rank + np.arange(15.0).reshape(3, 5)
    comm.Barrier()

    def file_holds_every_block():
        with h5py.File(path, "r") as f:
            data = f["x"][...]
        expected = np.concatenate([r + np.arange(15.0).reshape(3, 5) for r in range(comm.size)])
        np.testing.assert_array_equal(data, expected)

    on_rank0(comm, file_holds_every_block)


@pytest.mark.mpi(min_size=2)
def test_structures_do_not_depend_on_the_rank_that_builds_them(write_input):
    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.plan import build_plan

    comm = MPI.COMM_WORLD
    config = load_config(write_input({"compositions.list": ["Si0.25Ge0.75", "Si0.5Ge0.5", "Si1"],
                                      "snapshots.per_composition": 3}))
    tasks = build_plan(config)
    # Round-robin in reverse order, so every task is built by another rank than in serial order.
    mine = {i: tasks[i].build_atoms() for i in reversed(range(len(tasks))) if i % comm.size == comm.rank}
    gathered = comm.allgather({i: (a.numbers, a.positions, a.cell[:]) for i, a in mine.items()})

    def every_task_equals_its_serial_build():
        for i, task in enumerate(tasks):
            ref = task.build_atoms()
            numbers, positions, cell = next(g[i] for g in gathered if i in g)
            np.testing.assert_array_equal(numbers, ref.numbers)
            np.testing.assert_array_equal(positions, ref.positions)
            np.testing.assert_array_equal(cell, ref.cell[:])

    on_every_rank(comm, every_task_equals_its_serial_build)
