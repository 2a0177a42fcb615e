"""One HDF5 file written collectively by all ranks (parallel HDF5 through h5py's mpio driver).

Following Dedalus' ``H5ParallelFileHandler``:

* :func:`require_parallel_hdf5` checks ``h5py.get_config().mpi`` first and raises
  :class:`ParallelIOError` with the fix;
* every rank creates every dataset with its *global* shape (metadata calls are collective);
* :meth:`ParallelH5Writer.write_box` writes a rank's hyperslab with one collective ``H5Dwrite``;
  a rank without points joins with an empty selection (``select_none``), so no rank ever waits
  for a missing partner;
* :meth:`ParallelH5Writer.write_chunk` / :meth:`~ParallelH5Writer.read_chunk` are independent
  (``H5FD_MPIO_INDEPENDENT``) transfers of one sub-box: ``hpcdens predict`` streams each chunk
  into the file as soon as it is predicted, and ranks have different chunk counts, so collective
  per-chunk writes would need padding with empty selections; independent ones need no partner;
* attributes are set with the same values on every rank (HDF5 requires it under MPI).

Crash safety: the file is written under a temporary name next to the output; the root attribute
``complete = True`` is set last, the file is closed collectively, and rank 0 renames it to the
final name. A run killed at any point leaves at most ``<out>.tmp-<token>``, never a file with the
final name that is not complete. On an error the temporary file is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ParallelIOError

COMPLETE_ATTR = "complete"


def require_parallel_hdf5() -> None:
    """Raise :class:`ParallelIOError` unless h5py was built against parallel HDF5."""
    import h5py

    if not h5py.get_config().mpi:
        raise ParallelIOError(
            f"h5py {h5py.version.version} was built without MPI (h5py.get_config().mpi is False), "
            "so it cannot write one HDF5 file from many ranks. Fix: rerun launch/install.sh, which "
            "builds h5py from source against parallel HDF5 (CC=mpicc HDF5_MPI=ON, Debian's "
            "libhdf5-openmpi-dev), then check with python -c 'import h5py; "
            "print(h5py.get_config().mpi)'")


def temporary_path(out: Path, token: str) -> Path:
    """Name the file has while being written: hidden, next to ``out``, never its final name."""
    return out.with_name(f".{out.name}.tmp-{token}")


class ParallelH5Writer:
    """Collective writer of one HDF5 file; use as a context manager on every rank of ``comm``.

    Parameters
    ----------
    out : Path, final file name (renamed into place by :meth:`finish`)
    comm : mpi4py communicator; every rank must make the same calls in the same order
    """

    def __init__(self, out, comm):
        import h5py

        require_parallel_hdf5()
        self.out, self.comm, self._h5py = Path(out), comm, h5py
        token = comm.bcast(f"{os.getpid()}-{os.urandom(4).hex()}" if comm.rank == 0 else None)
        self.tmp = temporary_path(self.out, token)
        try:
            self.file = h5py.File(self.tmp, "w", driver="mpio", comm=comm)
        except OSError as err:
            raise ParallelIOError(f"cannot create {self.tmp} with the mpio driver on "
                                  f"{comm.size} ranks: {err}") from err
        self._dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
        self._dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
        self._independent = h5py.h5p.create(h5py.h5p.DATASET_XFER)
        self._independent.set_dxpl_mpio(h5py.h5fd.MPIO_INDEPENDENT)
        self._done = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._done:
            return False
        if exc is None or getattr(exc, "collective", False):
            self.abort()
            return False
        # Raised on this rank only, while the others may sit in a collective HDF5 call: there is
        # no way to reach them, so end the job instead of letting it hang until its time limit.
        import sys
        import traceback

        print(f"hpcdens: rank {self.comm.rank} failed while writing {self.tmp}; aborting all "
              f"ranks:\n{''.join(traceback.format_exception(exc))}", file=sys.stderr, flush=True)
        self.comm.Abort(1)
        return False

    def create(self, name: str, shape, dtype="f8", attrs: dict | None = None):
        """Create dataset ``name`` with its global ``shape`` (collective); returns it."""
        dset = self.file.create_dataset(name, shape=tuple(int(n) for n in shape), dtype=dtype)
        for key, value in (attrs or {}).items():
            dset.attrs[key] = value
        return dset

    def write_box(self, name: str, start, local) -> None:
        """Collective write of this rank's block ``local`` at offset ``start`` of dataset ``name``.

        ``local`` may be empty (a rank without points): it then selects nothing but still joins.
        """
        dset = self.file[name]
        local = np.ascontiguousarray(local, dtype=dset.dtype)
        fspace = dset.id.get_space()
        if local.size:
            fspace.select_hyperslab(tuple(int(s) for s in start), local.shape)
            mspace = self._h5py.h5s.create_simple(local.shape)
        else:
            fspace.select_none()
            mspace = self._h5py.h5s.create_simple((1,))
            mspace.select_none()
            local = np.zeros(1, dtype=dset.dtype)
        failure = None
        try:
            dset.id.write(mspace, fspace, local, dxpl=self._dxpl)
        except Exception as err:  # h5py raises OSError/RuntimeError subclasses
            failure = f"rank {self.comm.rank}: {type(err).__name__}: {err}"
        self.check(failure, f"collective write of {name!r} to {self.tmp}")

    def _chunk_spaces(self, dset, lo, hi):
        count = tuple(int(b) - int(a) for a, b in zip(lo, hi))
        fspace = dset.id.get_space()
        fspace.select_hyperslab(tuple(int(a) for a in lo), count)
        return fspace, self._h5py.h5s.create_simple(count), count

    def write_chunk(self, name: str, lo, hi, values) -> None:
        """Independent (non-collective) write of ``values`` (the box ``[lo, hi)``'s points in C
        order, any shape of that size) into dataset ``name``; ranks may call it any number of
        times. Errors are raised on this rank only: collect them (``collective.on_every_rank``)."""
        dset = self.file[name]
        fspace, mspace, count = self._chunk_spaces(dset, lo, hi)
        data = np.ascontiguousarray(values, dtype=dset.dtype).reshape(count)
        dset.id.write(mspace, fspace, data, dxpl=self._independent)

    def read_chunk(self, name: str, lo, hi) -> np.ndarray:
        """Independent read of the box ``[lo, hi)`` of dataset ``name`` (flat, C order)."""
        dset = self.file[name]
        fspace, mspace, count = self._chunk_spaces(dset, lo, hi)
        out = np.empty(count, dtype=dset.dtype)
        dset.id.read(mspace, fspace, out, dxpl=self._independent)
        return out.reshape(-1)

    def check(self, failure: str | None, what: str) -> None:
        """Raise the same ParallelIOError on every rank if ``failure`` is set on any (collective).
        Such errors are marked ``collective``, so the writer closes cleanly on all ranks."""
        failures = [f for f in self.comm.allgather(failure) if f]
        if failures:
            err = ParallelIOError(f"{what} failed: {'; '.join(failures[:4])}")
            err.collective = True
            raise err

    def write_root(self, name: str, data, root: int = 0) -> None:
        """Create dataset ``name`` and write ``data`` (known on every rank, same shape) from
        rank ``root`` only; the others join the collective write with an empty selection."""
        data = np.asarray(data)
        if data.ndim == 0:
            raise ValueError(f"{name}: store scalars as attributes (set_attrs), not datasets")
        self.create(name, data.shape, data.dtype)
        mine = data if self.comm.rank == root else np.zeros((0,) * data.ndim, dtype=data.dtype)
        self.write_box(name, (0,) * data.ndim, mine)

    def set_attrs(self, attrs: dict, group: str = "/") -> None:
        """Set attributes (same values on every rank; collective)."""
        target = self.file[group]
        for key, value in attrs.items():
            target.attrs[key] = value

    def finish(self) -> Path:
        """Set ``complete = True`` last, close collectively, rename on rank 0; returns the path."""
        self.file.attrs[COMPLETE_ATTR] = True
        self.file.close()
        error = None
        if self.comm.rank == 0:
            try:
                os.replace(self.tmp, self.out)
            except OSError as err:
                error = f"cannot rename {self.tmp} to {self.out}: {err}"
        error = self.comm.bcast(error)
        self._done = True
        if error:
            raise ParallelIOError(error)
        return self.out

    def abort(self) -> None:
        """Close the file and remove the temporary name (collective)."""
        self._done = True
        try:
            self.file.close()
        finally:
            self.comm.Barrier()
            if self.comm.rank == 0 and self.tmp.exists():
                self.tmp.unlink()
