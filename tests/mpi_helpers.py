"""Rank-0 work and per-rank checks in MPI tests that fail on every rank, never hang.

An assertion that fails on one rank only makes that rank leave the test while the others go on:
they report a pass, or wait for it in the next collective call (a hang). Work done on rank 0
(setting up files, checking against a serial run) goes through ``on_rank0``, a check whose
outcome may differ between ranks and is followed by a collective call goes through
``on_every_rank``: either way a failure ends the test on every rank, with its message."""

import traceback

import pytest

# What a failing check raises: errors, failed assertions, pytest.fail (a BaseException).
FAILURES = (Exception, pytest.fail.Exception)


def _describe(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def on_rank0(comm, work):
    """``work()`` on rank 0 of ``comm`` only; returns its (picklable) result on every rank.

    If it raises on rank 0 (a failed assertion included), rank 0 raises that error and every
    other rank fails the test with its message."""
    outcome = None
    if comm.rank == 0:
        try:
            outcome = (True, work())
        except FAILURES as err:
            comm.bcast((False, _describe(err)), root=0)
            raise
    ok, value = comm.bcast(outcome, root=0)
    if not ok:
        pytest.fail(f"failed on rank 0: {value}", pytrace=False)
    return value


def on_every_rank(comm, work):
    """``work()`` on every rank of ``comm``; returns this rank's result.

    If it raises on some ranks, those ranks raise their own error and every other rank fails the
    test naming them and their messages."""
    try:
        result = work()
    except FAILURES as err:
        comm.allgather(_describe(err))
        raise
    failed = [(rank, text) for rank, text in enumerate(comm.allgather(None)) if text is not None]
    if failed:
        pytest.fail("failed on " + "; ".join(f"rank {r}: {t}" for r, t in failed), pytrace=False)
    return result
