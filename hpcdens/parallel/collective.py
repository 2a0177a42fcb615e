"""Collective helpers: the default communicator, reductions by name, "rank 0 decides, every rank
raises", and reductions whose result does not depend on how the data are split over ranks.

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


def on_root(comm, fn, *args):
    """``fn(*args)`` on rank 0 of ``comm``; its result, or its failure, on every rank, so all
    ranks stop together instead of hanging in the next collective call. An InputError is raised
    as InputError everywhere; any other failure is re-raised on rank 0 and reported as
    HpcdensError on the others."""
    status = None
    if comm.rank == 0:
        try:
            status = ("ok", fn(*args))
        except InputError as err:
            status = ("input", str(err))
        except Exception as err:  # noqa: BLE001 - the other ranks must not hang
            status = ("failed", err)
    status = comm.bcast(status, root=0)
    if status[0] == "input":
        raise InputError(status[1])
    if status[0] == "failed":
        if comm.rank == 0:
            raise status[1]
        raise HpcdensError(f"rank 0 failed: {status[1]!r}")
    return status[1]
