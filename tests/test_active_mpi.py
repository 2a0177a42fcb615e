"""`hpcdens learn` on 2 ranks (run by launch/test.sh): every rank labels, trains and scores; the
scores gathered from the ranks' round-robin shares equal a serial scoring of the same model file,
and every rank ends with the same journal as rank 0 wrote."""

import pytest

from tests.input_helpers import INTERIOR, LEARN, PURE, write_input_file
from tests.mpi_helpers import on_rank0


@pytest.mark.mpi(min_size=2)
def test_learn_on_ranks_scores_like_serial_and_agrees_on_choices(mpi_tmp_path):
    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.learning import loop as active

    comm = MPI.COMM_WORLD
    # one writer: no torn reads
    inp = on_rank0(comm, lambda: write_input_file(mpi_tmp_path / "learn.toml", LEARN))
    config = load_config(inp)
    state = active.run_learn(config, mpi_tmp_path / "run", comm)
    assert all(s == state for s in comm.allgather(state)), "ranks disagree on the journal"
    r1 = state["rounds"][0]
    assert r1["training"] == PURE and sorted(r1["scores"]) == sorted(INTERIOR)
    assert r1["chosen"] == [max(r1["scores"], key=r1["scores"].get)]

    def serial_checks():                # computed on rank 0, asserted on every rank (no deadlock)
        serial = active.score_candidates(config, mpi_tmp_path / "run" / r1["model"], INTERIOR,
                                         active.by_label(config), MPI.COMM_SELF)
        return {"journal": active.read_state(mpi_tmp_path / "run") == state,
                "serial": serial, "gathered": r1["scores"]}

    checks = on_rank0(comm, serial_checks)
    assert checks["journal"], "the journal on disk differs from the returned state"
    for label, score in checks["serial"].items():
        assert checks["gathered"][label] == pytest.approx(score, rel=1e-12), \
            "round-robin scoring differs from serial scoring"


@pytest.mark.mpi(min_size=2)
def test_energy_score_on_ranks_equals_serial(mpi_tmp_path):
    """[learn] score = "energy" predicts each candidate structure on all ranks and judges it on
    rank i % size (the atoms sent there from rank 0): the same scores as one process."""
    import dataclasses

    from mpi4py import MPI

    from hpcdens.config import load_config
    from hpcdens.learning import loop as active

    comm = MPI.COMM_WORLD
    inp = on_rank0(comm, lambda: write_input_file(mpi_tmp_path / "learn.toml", LEARN))
    config = load_config(inp)
    state = active.run_learn(config, mpi_tmp_path / "run", comm, stop_at="trained")
    model = mpi_tmp_path / "run" / state["rounds"][0]["model"]
    energy = dataclasses.replace(config, learn=dataclasses.replace(config.learn, score="energy"))
    comps = active.by_label(config)
    gathered = active.score_candidates(energy, model, INTERIOR, comps, comm)
    serial = on_rank0(comm, lambda: active.score_candidates(energy, model, INTERIOR, comps,
                                                            MPI.COMM_SELF))
    assert all(g == gathered for g in comm.allgather(gathered)), "ranks disagree on the scores"
    for label in INTERIOR:
        assert gathered[label] > 0
        assert gathered[label] == pytest.approx(serial[label], rel=1e-9), label
