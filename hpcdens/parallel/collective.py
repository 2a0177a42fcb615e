"""Collective helpers: the default communicator, reductions by name, failures raised on every rank
together ("rank 0 decides, every rank raises": :func:`on_root`; "every rank works, every rank
raises": :func:`on_every_rank`), and reductions whose result does not depend on how the data are
split over ranks.

Modules outside ``parallel/`` and ``commands/`` take a communicator and call these; they never
import mpi4py themselves.

A floating-point sum depends on the order of its terms, so the integral of a field summed block
by block would change in its last bits with the rank count. :func:`exact_partial_sum` instead
adds the float64 values exactly, as integers: each value is m * 2^e with an integer mantissa m of
at most 53 bits, split as m = hi * 2^26 + lo (0 <= lo < 2^26); hi and lo are summed in int64 per
exponent (no overflow below 2^35 values per exponent and rank), and the partial sums are combined
as Python integers. :func:`allreduce_exact_sum` combines the ranks' exact partial sums and rounds
once, so the result is the correctly rounded sum of all values, bit for bit the same for any
decomposition.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import HpcdensError, InputError

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def self_comm():
    """``MPI.COMM_SELF``: the communicator of serial use (one rank)."""
    from mpi4py import MPI

    return MPI.COMM_SELF


def world_comm():
    """``MPI.COMM_WORLD``: the communicator of a command's ranks."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


def allreduce(comm, value, op: str = "sum"):
    """``comm.allreduce(value)`` of a Python scalar with the operation ``op`` ("sum", "max",
    "min")."""
    from mpi4py import MPI

    return comm.allreduce(value, op=getattr(MPI, _OPS[op]))


def allreduce_array(comm, local: np.ndarray, op: str = "sum") -> np.ndarray:
    """Element-wise Allreduce of a numpy array (a new array; ``local`` is not changed)."""
    from mpi4py import MPI

    out = np.empty_like(local)
    comm.Allreduce(np.ascontiguousarray(local), out, op=getattr(MPI, _OPS[op]))
    return out


_SPLIT = 26
_MANTISSA_BITS = 53


def exact_partial_sum(values) -> Fraction:
    """The exact sum of the finite float64 ``values`` (any shape) as a Fraction."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[x != 0.0]
    if not len(x):
        return Fraction(0)
    if not np.isfinite(x).all():
        raise ValueError("exact sum of values that contain NaN or inf")
    mant, expo = np.frexp(x)
    q = np.ldexp(mant, _MANTISSA_BITS).astype(np.int64)  # exact: |mant| < 1 has <= 53 bits
    hi, lo = q >> _SPLIT, q & ((1 << _SPLIT) - 1)
    order = np.argsort(expo, kind="stable")
    expo, hi, lo = expo[order], hi[order], lo[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(expo)) + 1))
    total = Fraction(0)
    for e, h, l in zip(expo[starts], np.add.reduceat(hi, starts), np.add.reduceat(lo, starts)):
        integer = (int(h) << _SPLIT) + int(l)
        shift = int(e) - _MANTISSA_BITS
        total += integer * (Fraction(2) ** shift)
    return total


def allreduce_exact_sum(comm, values) -> float:
    """Correctly rounded sum of the values held by all ranks of ``comm`` (collective).

    ``values`` : this rank's float64 array (may be empty). Returns the same float on every rank,
    independent of the decomposition.
    """
    return allreduce_exact_partials(comm, exact_partial_sum(values))


def allreduce_exact_partials(comm, partial) -> float:
    """Correctly rounded sum of the ranks' exact partial sums (Fractions from
    :func:`exact_partial_sum`, possibly accumulated over chunks); the same float on every rank."""
    return float(sum(comm.allgather(partial), Fraction(0)))


def _attempt(fn, args, kwargs):
    """``(value, error)`` of ``fn(*args, **kwargs)``; error is None or the exception raised."""
    try:
        return fn(*args, **kwargs), None
    except Exception as err:  # noqa: BLE001 - reported to every rank, never swallowed
        return None, err


def _kind(err) -> str:
    return "input" if isinstance(err, InputError) else "failed"


def _raise_together(failures: list, cause) -> None:
    """Raise one error for the ``failures`` (the same on every rank that calls this with the
    same list): InputError when all are input errors, else HpcdensError; chained to this rank's
    ``cause``. The error is marked ``collective`` (raised on every rank), so an open
    :class:`~hpcdens.parallel.writer.ParallelH5Writer` closes cleanly everywhere."""
    if not failures:
        return
    kind = InputError if all(k == "input" for k, _ in failures) else HpcdensError
    more = f" (and {len(failures) - 4} more ranks)" if len(failures) > 4 else ""
    err = kind("; ".join(message for _, message in failures[:4]) + more)
    err.collective = True
    raise err from cause


def on_root(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 of ``comm``; its (picklable) result, or its failure, on
    every rank, so all ranks stop together instead of hanging in the next collective call. An
    InputError is raised as InputError (same message) everywhere; any other failure is re-raised
    as it is on rank 0 and reported as HpcdensError on the others."""
    value, cause = _attempt(fn, args, kwargs) if comm.rank == 0 else (None, None)
    failure = None if cause is None else (
        ("input", str(cause)) if _kind(cause) == "input"
        else ("failed", f"rank 0 failed: {type(cause).__name__}: {cause}"))
    value, failure = comm.bcast((value, failure), root=0)
    if failure and failure[0] == "failed" and cause is not None:
        raise cause                                # rank 0: the error as it was raised
    _raise_together([failure] if failure else [], cause)
    return value


def on_every_rank(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank of ``comm``; this rank's result. If it fails on any
    rank, every rank raises (one allgather): InputError when every failure is one, else
    HpcdensError, naming the failed ranks and their errors ("rank 3: ValueError: ...")."""
    value, cause = _attempt(fn, args, kwargs)
    failure = None if cause is None else (
        _kind(cause), f"rank {comm.rank}: {type(cause).__name__}: {cause}")
    _raise_together([f for f in comm.allgather(failure) if f], cause)
    return value
