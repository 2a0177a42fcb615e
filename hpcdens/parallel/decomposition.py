"""Block decomposition of a periodic grid over a 3-D process grid.

Pure block arithmetic first (:func:`blockdist`, :func:`block_box`, :func:`chunk_boxes`), no MPI: it
is tested serially for many (shape, rank count) pairs, ranks with zero points included. Then
:class:`GridDecomposition`, the one layout object of a prediction (after Dedalus' ``Distributor``
and mpi4py-fft's ``Pencil``): it holds the communicator, the Cartesian communicator, the process
grid and this rank's index box, and answers index questions (``local_start``, ``local_shape``,
``local_slices``). Nothing here moves data.

Index boxes are half-open, ``[start, stop)`` per axis, in the grid convention of
:mod:`hpcdens.grid` (point (i, j, k) at fractional (i/n1, j/n2, k/n3), C order).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..errors import InputError


def blockdist(n: int, parts: int, index: int) -> tuple[int, int]:
    """Points ``(count, start)`` of block ``index`` when ``n`` points are split into ``parts``.

    The first ``n % parts`` blocks get one point more; with ``parts > n`` the last blocks are
    empty (count 0, start n). Same rule as mpi4py-fft's ``_blockdist``.
    """
    q, r = divmod(int(n), int(parts))
    return q + (index < r), q * index + min(index, r)


def assign_dims(dims, shape) -> tuple[int, int, int]:
    """Give the most process-grid divisions to the longest grid axes.

    ``dims`` are three counts whose product is the rank count (e.g. from ``MPI.Compute_dims``);
    the result is a permutation of them such that a longer grid axis never gets fewer divisions
    than a shorter one (ties keep the axis order), which keeps blocks close to cubes.
    """
    by_length = sorted(range(3), key=lambda a: (-int(shape[a]), a))
    out = [0, 0, 0]
    for axis, d in zip(by_length, sorted((int(d) for d in dims), reverse=True)):
        out[axis] = d
    return tuple(out)


def block_box(shape, dims, coords) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Index box ``(start, stop)`` of the block at process-grid ``coords`` of a ``dims`` grid."""
    start, stop = [], []
    for n, d, c in zip(shape, dims, coords):
        count, first = blockdist(n, d, c)
        start.append(first)
        stop.append(first + count)
    return tuple(start), tuple(stop)


def all_boxes(shape, dims) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Index boxes of every block, in C order of the process-grid coordinates (= Cartesian rank
    order of ``Create_cart(reorder=False)``)."""
    return [block_box(shape, dims, c) for c in product(*(range(d) for d in dims))]


def box_size(start, stop) -> int:
    """Number of points in the index box ``[start, stop)``."""
    return int(np.prod([max(b - a, 0) for a, b in zip(start, stop)]))


def chunk_boxes(start, stop, chunk_points: int):
    """Split the box ``[start, stop)`` into sub-boxes of at most ``chunk_points`` points.

    The sub-boxes are whole slabs of the first axis when a plane fits in a chunk, otherwise rows
    of a plane, otherwise pieces of a row; they come in C order and are consecutive ranges of the
    box's flat C-order index, so a chunk of ``count`` points at flat ``offset`` fills
    ``local.reshape(-1)[offset:offset + count]``.

    Yields
    ------
    offset : int, flat C-order index (within the box) of the chunk's first point
    (lo, hi) : the sub-box, global indices
    """
    if isinstance(chunk_points, bool) or not isinstance(chunk_points, (int, np.integer)) \
            or chunk_points < 1:
        raise InputError(f"chunk_points must be an integer >= 1, got {chunk_points!r}")
    lo, hi = np.asarray(start, dtype=int), np.asarray(stop, dtype=int)
    box = hi - lo
    if (box <= 0).any():
        return
    plane, row = int(box[1] * box[2]), int(box[2])
    if plane <= chunk_points:
        step = chunk_points // plane
        for i in range(0, box[0], step):
            j = min(i + step, box[0])
            yield i * plane, ((lo[0] + i, lo[1], lo[2]), (lo[0] + j, hi[1], hi[2]))
    elif row <= chunk_points:
        step = chunk_points // row
        for i, j in product(range(box[0]), range(0, box[1], step)):
            k = min(j + step, box[1])
            yield (i * plane + j * row,
                   ((lo[0] + i, lo[1] + j, lo[2]), (lo[0] + i + 1, lo[1] + k, hi[2])))
    else:
        for i, j, k in product(range(box[0]), range(box[1]), range(0, box[2], chunk_points)):
            m = min(k + chunk_points, box[2])
            yield (i * plane + j * row + k,
                   ((lo[0] + i, lo[1] + j, lo[2] + k), (lo[0] + i + 1, lo[1] + j + 1, lo[2] + m)))


@dataclass(frozen=True)
class BlockLayout:
    """The pure part of a decomposition: global shape, process grid, this block's box."""

    shape: tuple[int, int, int]
    dims: tuple[int, int, int]
    coords: tuple[int, int, int]

    @property
    def local_start(self) -> tuple[int, int, int]:
        return block_box(self.shape, self.dims, self.coords)[0]

    @property
    def local_stop(self) -> tuple[int, int, int]:
        return block_box(self.shape, self.dims, self.coords)[1]

    @property
    def local_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.local_start, self.local_stop))

    @property
    def local_size(self) -> int:
        """Points of this block (0 for a rank with an empty block)."""
        return box_size(self.local_start, self.local_stop)

    def local_slices(self) -> tuple[slice, slice, slice]:
        """Global slices of this block, for ``dset[decomp.local_slices()] = local``."""
        return tuple(slice(a, b) for a, b in zip(self.local_start, self.local_stop))


class GridDecomposition(BlockLayout):
    """A grid split into blocks over the ranks of ``comm``: one block per rank.

    Parameters
    ----------
    comm : mpi4py communicator (any size, also ``COMM_SELF``)
    shape : (3,) int, the global grid shape (n1, n2, n3)
    dims : (3,) int, optional, the process grid; default ``MPI.Compute_dims(comm.size, 3)``
        assigned to the axes with :func:`assign_dims`. Its product must be ``comm.size``.

    Attributes
    ----------
    comm : the communicator given; cart : its periodic Cartesian communicator (no reordering, so
    ``cart.rank == comm.rank``); dims, coords, shape, local_start, local_stop, local_shape,
    local_size, local_slices() as in :class:`BlockLayout`. Call :meth:`free` (or use ``with``)
    to release ``cart``.
    """

    def __init__(self, comm, shape, dims=None):
        from mpi4py import MPI

        shape = tuple(int(n) for n in shape)
        if dims is None:
            dims = assign_dims(MPI.Compute_dims(comm.size, 3), shape)
        dims = tuple(int(d) for d in dims)
        if len(dims) != 3 or min(dims) < 1 or int(np.prod(dims)) != comm.size:
            raise InputError(f"process grid {dims} does not fit {comm.size} ranks "
                             f"(need three counts >= 1 whose product is {comm.size})")
        cart = comm.Create_cart(dims, periods=[True] * 3, reorder=False)
        super().__init__(shape, dims, tuple(cart.Get_coords(cart.rank)))
        object.__setattr__(self, "comm", comm)
        object.__setattr__(self, "cart", cart)

    def free(self) -> None:
        """Release the Cartesian communicator (collective)."""
        if self.cart is not None:
            self.cart.Free()
            object.__setattr__(self, "cart", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self) -> str:
        if not hasattr(self, "comm"):
            return "GridDecomposition(<not constructed>)"
        return (f"GridDecomposition(rank {self.comm.rank}/{self.comm.size}, shape {self.shape}, "
                f"dims {self.dims}, coords {self.coords}, box {self.local_start}-{self.local_stop})")
