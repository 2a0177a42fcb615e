"""The k nearest atoms of grid points, counting periodic images, with a checked search radius.

Functional core of the descriptor pipeline: plain numpy/scipy, no MPI. A later MPI driver builds
one :class:`NeighborSearch` per atom set and queries it chunk by chunk.

Periodic mode (default)
    Atoms and query points are wrapped into the cell; a :class:`scipy.spatial.cKDTree` holds every
    image ``atom + n @ cell`` with ``|n_i| <= N_i``, ``N_i = ceil(R / h_i)``, where ``h_i`` is the
    cell's perpendicular height (plane spacing) along lattice vector i. An image left out has some
    ``|n_i| > N_i``, hence a fractional separation > N_i from the wrapped point along axis i and a
    distance > N_i h_i >= R. So the image set holds every atom within the *covered radius*
    ``R_cov = min_i N_i h_i`` of any wrapped point. After each query the search checks, per point,
    ``reach < R_cov`` (``reach`` is the k-th distance plus the tie tolerance); otherwise it grows R
    and repeats. That check is the guarantee; R only sets the cost. It terminates because a ball of
    radius ``D + r_k`` (D the cell diameter, ``r_k = (3 k V / (4 pi N))^(1/3)``) contains at least
    k atoms: the cells meeting the inner ball of radius ``r_k`` lie inside it, cover at least its
    volume, and each holds one image of every atom. R starts at ``1.5 r_(k+1)`` and never has to
    exceed ``D + r_k + 2 tol``.

Halo mode (``periodic=False``)
    The caller passes every atom it holds (its halo of images included) and no cell; nothing is
    wrapped. Results are exact only if the halo contains every atom within :attr:`Neighbors.reach`
    of each point: the caller checks that and grows its halo otherwise.

Ties
    Distances within ``TIE_TOL_BOHR`` of each other form tie groups (greedily, from the nearest).
    Inside a group, neighbours are ordered by input atom index, then lattice offset (n1, n2, n3);
    ties across the k-th place are resolved the same way, so ``query`` is fully deterministic. That
    order depends on the order of the input atoms; :mod:`hpcdens.descriptors` therefore uses
    :meth:`NeighborSearch.query_shell`, which returns the whole tie group at the k-th place, and
    orders and selects with permutation-invariant keys itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .errors import InputError
from .neighbor_bins import (EXTRA_COLUMNS, OK, bin_candidates, bin_points, gather_shell,
                            nearest_in_bins)

TIE_TOL_BOHR = 1e-8
"""Distances closer than this (Bohr) are ties."""

_GROWTH = 1.5


@dataclass(frozen=True)
class Neighbors:
    """Result of a neighbour query for n points; K >= k columns, sorted (tie group, atom, image).

    Attributes
    ----------
    disp : (n, K, 3) float64, Bohr
        Displacement atom image - point (zero where ``mask`` is False).
    dist : (n, K) float64, Bohr
        ``|disp|`` (inf where ``mask`` is False).
    z : (n, K) int64
        Atomic numbers (0 where ``mask`` is False).
    atom : (n, K) int64
        Index into the input atom list (-1 where ``mask`` is False).
    image : (n, K, 3) int64
        Lattice offset n of the image: its position is ``positions[atom] + n @ cell`` (zeros in
        halo mode).
    group : (n, K) int64
        Tie group (0 = nearest); groups are in order of distance.
    mask : (n, K) bool
        Which columns are neighbours: the first k, plus (``query_shell``) every atom tied with the
        k-th.
    reach : (n,) float64, Bohr
        Every atom within this distance of the point had to be in the searched set for the result
        to be exact: start of the k-th neighbour's tie group + ``TIE_TOL_BOHR``.
    k : int
        Number of neighbours asked for.
    """

    disp: np.ndarray
    dist: np.ndarray
    z: np.ndarray
    atom: np.ndarray
    image: np.ndarray
    group: np.ndarray
    mask: np.ndarray
    reach: np.ndarray
    k: int

    @property
    def kth_distance(self) -> np.ndarray:
        """(n,) float64, Bohr: distance of the k-th nearest atom of each point."""
        return self.dist[:, self.k - 1]


def tie_groups(dist: np.ndarray, tol: float = TIE_TOL_BOHR) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tie groups of distances sorted ascending along the last axis.

    A group starts at its smallest distance s and takes every later distance <= s + tol, so a
    group is at most ``tol`` wide and depends only on the multiset of distances.

    Parameters
    ----------
    dist : (n, K) float64, Bohr, ascending along axis 1 (inf allowed)

    Returns
    -------
    group : (n, K) int64, group index per column
    start : (n, K) float64, Bohr, the smallest distance of each column's group
    """
    n, width = dist.shape
    group = np.zeros((n, width), dtype=np.int64)
    start = np.empty((n, width))
    g = np.zeros(n, dtype=np.int64)
    s = dist[:, 0].copy() if width else np.zeros(n)
    for j in range(width):
        new = dist[:, j] > s + tol
        g += new
        s = np.where(new, dist[:, j], s)
        group[:, j] = g
        start[:, j] = s
    return group, start


def _as_points(points_bohr) -> np.ndarray:
    p = np.asarray(points_bohr, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"query points must have shape (n, 3), got {p.shape}")
    if not np.isfinite(p).all():
        raise InputError("query points contain NaN or inf")
    return p


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"number of neighbours must be an integer >= 1, got {k!r}")
    return int(k)


def _check_atoms(positions, numbers) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
        raise InputError(f"atom positions must have shape (N, 3) with N >= 1, got {pos.shape}")
    if not np.isfinite(pos).all():
        raise InputError("atom positions contain NaN or inf")
    z = np.asarray(numbers)
    if z.shape != (len(pos),) or not np.issubdtype(z.dtype, np.integer):
        raise InputError(f"numbers must be {len(pos)} integers (atomic numbers), got "
                         f"shape {z.shape} dtype {z.dtype}")
    return pos, z.astype(np.int64)


class _PeriodicImages:
    """Geometry of a periodic cell: heights, diameter, image sets for a radius."""

    def __init__(self, cell, positions):
        cell = np.asarray(cell, dtype=float)
        if cell.shape != (3, 3) or not abs(np.linalg.det(cell)) > 1e-12:
            raise InputError(f"periodic search needs a non-singular (3, 3) cell (Bohr, lattice "
                             f"vectors as rows), got {cell.tolist()}")
        self.cell = cell
        self.inv = np.linalg.inv(cell)
        self.volume = abs(np.linalg.det(cell))
        self.heights = self.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]),
                                                    axis=1)
        signs = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]])
        self.diameter = np.linalg.norm(signs @ cell, axis=1).max()
        frac = positions @ self.inv
        self.shift = np.floor(frac).astype(np.int64)
        self.wrapped = (frac - self.shift) @ cell
        self.n_atoms = len(positions)

    def wrap(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points moved into the cell (Bohr), and the (n, 3) int lattice shifts taken off."""
        frac = points @ self.inv
        shift = np.floor(frac)
        return (frac - shift) @ self.cell, shift.astype(np.int64)

    def density_radius(self, k: int) -> float:
        """Radius (Bohr) of a sphere that holds k atoms at the mean density."""
        return (3.0 * k * self.volume / (4.0 * np.pi * self.n_atoms)) ** (1.0 / 3.0)

    def radius_bound(self, k: int) -> float:
        """A radius R whose image set provably passes the reach check for k neighbours."""
        return self.diameter + self.density_radius(k) + 2 * TIE_TOL_BOHR

    def images(self, radius: float):
        """Image set covering ``radius``: positions (P, 3), atom (P,), offset (P, 3), R_cov."""
        reps = np.ceil(radius / self.heights - 1e-12).astype(int)
        reps = np.maximum(reps, 1)
        axes = [np.arange(-r, r + 1) for r in reps]
        offsets = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        pos = (offsets @ self.cell)[:, None, :] + self.wrapped[None, :, :]
        atom = np.tile(np.arange(self.n_atoms), len(offsets))
        offset = np.repeat(offsets, self.n_atoms, axis=0) - self.shift[atom]
        return pos.reshape(-1, 3), atom, offset, float((reps * self.heights).min())


class NeighborSearch:
    """k-nearest-atom search over a fixed atom set, periodic or with an explicit halo.

    Parameters
    ----------
    positions_bohr : (N, 3) float, Bohr
        Atom positions (any position; wrapped into the cell in periodic mode).
    numbers : (N,) int
        Atomic numbers.
    cell_bohr : (3, 3) float, Bohr, lattice vectors as rows; ignored (may be None) in halo mode
    m : int
        Default number of neighbours of :meth:`query`; the initial image set is sized for it.
    periodic : bool
        True: periodic images of the cell. False: halo mode, the atoms as given, no images.
    binned : bool
        True (default): points in bins with shared candidate lists (:mod:`hpcdens.neighbor_bins`),
        the KD-tree only for the rows that path cannot answer exactly. False: the KD-tree for
        every point, the reference the tests and ``hpcdens bench descriptors`` compare with;
        both give the same result, bit for bit.
    """

    def __init__(self, positions_bohr, numbers, cell_bohr=None, m: int = 55,
                 periodic: bool = True, binned: bool = True):
        pos, z = _check_atoms(positions_bohr, numbers)
        self.m = _check_k(m)
        self.periodic = bool(periodic)
        self.binned = bool(binned)
        self.numbers = z
        self._geom = _PeriodicImages(cell_bohr, pos) if self.periodic else None
        if self.periodic:
            g = self._geom
            self._build(min(_GROWTH * g.density_radius(self.m + 1), g.radius_bound(self.m)))
        else:
            self._set_images(pos, np.arange(len(pos)), np.zeros((len(pos), 3), np.int64), np.inf)

    @property
    def covered_radius(self) -> float:
        """Bohr: every atom within this distance of any (wrapped) point is in the image set."""
        return self._covered

    @property
    def n_images(self) -> int:
        """Number of atom images in the KD-tree."""
        return len(self._pos)

    def _set_images(self, pos, atom, offset, covered):
        self._pos, self._atom, self._offset, self._covered = pos, atom, offset, covered
        self._tree = cKDTree(pos)
        self._reach_estimate, self._bin_width = 0.0, 4 * self.m

    def _build(self, radius: float) -> None:
        self._radius = radius
        pos, atom, offset, covered = self._geom.images(radius)
        self._set_images(pos, atom, offset, covered)

    def query(self, points_bohr, k: int | None = None) -> Neighbors:
        """The k nearest atoms of each point, ties ordered by (atom index, lattice offset).

        Parameters
        ----------
        points_bohr : (n, 3) float, Bohr, anywhere in space
        k : int, default ``self.m``

        Returns
        -------
        Neighbors
            With K = k columns, all in ``mask``. ``disp`` and ``z`` are the (n, k, 3) displacement
            vectors (atom - point, Bohr) and (n, k) atomic numbers, sorted by distance.
        """
        nb = self.query_shell(points_bohr, k)
        cut = slice(0, nb.k)
        return Neighbors(nb.disp[:, cut], nb.dist[:, cut], nb.z[:, cut], nb.atom[:, cut],
                         nb.image[:, cut], nb.group[:, cut], nb.mask[:, cut], nb.reach, nb.k)

    def query_shell(self, points_bohr, k: int | None = None) -> Neighbors:
        """The k nearest atoms plus every atom tied (within ``TIE_TOL_BOHR``) with the k-th.

        The set in ``mask`` depends only on the geometry, not on the order of the input atoms.
        Columns beyond each point's set are padding (``mask`` False).
        """
        k = self.m if k is None else _check_k(k)
        if not self.periodic and k > len(self._pos):
            raise InputError(f"asked for {k} neighbours but the halo holds only "
                             f"{len(self._pos)} atoms: grow the halo")
        p = _as_points(points_bohr)
        if not self.periodic:
            return self._assemble(p, np.zeros((len(p), 3), np.int64), self._search(p, k), k)
        p, shift = self._geom.wrap(p)
        while True:
            padded = self._search(p, k)
            reach = padded[3][:, k - 1] + TIE_TOL_BOHR
            if len(p) == 0 or reach.max() < self._covered:
                return self._assemble(p, shift, padded, k)
            self._grow(reach.max(), k)

    def _grow(self, needed: float, k: int) -> None:
        bound = self._geom.radius_bound(k)
        if self._radius >= bound:
            raise RuntimeError(f"neighbour search: reach {needed} Bohr beyond the proven bound "
                               f"{bound} Bohr (covered {self._covered}); this is a bug")
        self._build(min(bound, max(_GROWTH * self._radius, 1.1 * needed)))

    def _tree_query(self, p: np.ndarray, width: int):
        dist, idx = self._tree.query(p, k=width)
        return np.asarray(dist).reshape(len(p), width), np.asarray(idx).reshape(len(p), width)

    def _search(self, p: np.ndarray, k: int):
        """Candidates closed over the k-th tie group, padded to a common width, as (dist, idx,
        group, start): the binned fast path (:mod:`hpcdens.neighbor_bins`), the KD-tree for the
        rows it cannot answer exactly."""
        n_img = len(self._pos)
        width = min(k + EXTRA_COLUMNS, n_img)
        if not self.binned or len(p) == 0 or width <= k:
            return _pad(self._tree_pieces(p, np.arange(len(p)), k), len(p), n_img)
        point_bin, centres, half = bin_points(p)
        radius = self._bin_reach(p, k) + half
        cand, from_centre = bin_candidates(self._tree, centres, radius, self._bin_width)
        self._bin_width = cand.shape[1]
        dist, idx, group, start, status, used = nearest_in_bins(
            p, point_bin, centres, cand, from_centre, radius, self._pos, k, width, TIE_TOL_BOHR)
        cut = slice(0, min(used + 1, width))
        padded = tuple(np.ascontiguousarray(a[:, cut]) for a in (dist, idx, group, start))
        ok = status == OK
        if not ok.all():
            pieces = self._tree_pieces(p, np.flatnonzero(~ok), k)
            reach = max(piece[4][:, k - 1].max() for piece in pieces if len(piece[0]))
            reach += TIE_TOL_BOHR
            self._reach_estimate = max(self._reach_estimate, 1.05 * reach)
            rows = np.flatnonzero(ok)
            padded = _pad([(rows,) + tuple(a[rows] for a in padded)] + pieces, len(p), n_img)
        return padded

    def _bin_reach(self, p: np.ndarray, k: int) -> float:
        """Estimate (Bohr) of the points' reach; from the KD-tree on a few points at first, then
        raised whenever a row's reach exceeded it."""
        if self._reach_estimate == 0.0:
            sample = p[np.linspace(0, len(p) - 1, min(len(p), 32)).astype(int)]
            dist, _ = self._tree_query(sample, k)
            self._reach_estimate = 1.15 * float(dist[:, -1].max())
        return self._reach_estimate

    def _tree_pieces(self, p: np.ndarray, rows: np.ndarray, k: int) -> list:
        """KD-tree candidates of ``p[rows]`` closed over the k-th tie group, as ``_pad`` pieces
        (rows, dist, idx, group, start). A row whose last candidate is still in the k-th
        neighbour's tie group is asked again with twice the width."""
        n_img = len(self._pos)
        width, pieces = k + 1, []
        while True:
            dist, idx = self._tree_query(p[rows], width)
            group, start = tie_groups(dist)
            is_open = (group[:, -1] == group[:, k - 1]) & (width < n_img)
            done = ~is_open
            pieces.append((rows[done], dist[done], idx[done], group[done], start[done]))
            rows, width = rows[is_open], min(2 * width, n_img)
            if not len(rows):
                return pieces

    def _assemble(self, p: np.ndarray, shift: np.ndarray, padded, k: int) -> Neighbors:
        dist, idx, group, start = padded
        disp, dist, z, atom, image, mask, reach = gather_shell(
            p, shift, dist, idx, group, start, self._pos, self._atom, self._offset, self.numbers, k,
            TIE_TOL_BOHR)
        return Neighbors(disp=disp, dist=dist, z=z, atom=atom, image=image, group=group,
                         mask=mask, reach=reach, k=k)


def _pad(pieces, n: int, n_img: int):
    """Merge per-row-subset results of different widths; padding columns are untied misses."""
    width = max(piece[1].shape[1] for piece in pieces)
    dist = np.full((n, width), np.inf)
    idx = np.full((n, width), n_img)
    group = np.broadcast_to(np.arange(width) + width, (n, width)).copy()
    start = np.full((n, width), np.inf)
    for rows, d, i, g, s in pieces:
        w = d.shape[1]
        dist[rows, :w], idx[rows, :w], group[rows, :w], start[rows, :w] = d, i, g, s
    return dist, idx, group, start
