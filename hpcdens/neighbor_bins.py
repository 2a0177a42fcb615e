"""Nearest atoms of spatially coherent points through bins of points with shared candidates.

Functional core of :meth:`hpcdens.neighbors.NeighborSearch.query_shell`'s fast path (numba, no
MPI). Grid points close to each other share almost all their neighbours, so points are put in
cubic bins of side ``BIN_BOHR``; each bin gets one candidate list, every atom (image) within a
radius ``R_c`` of its centre c, sorted by distance from c, and each point scans its bin's list in
that order, keeping the ``width`` nearest in an insertion buffer. A candidate at distance D from
c is at least ``D - |p - c|`` from the point p, so the scan stops as soon as that bound exceeds
the buffer's last distance: usually after a few more than ``width`` candidates.

Exactness (per point, reported in ``status``):

* ``OK``: the k-th neighbour's tie group closes inside the buffer, and every atom within the
  point's reach (start of the k-th tie group + ``TIE_TOL_BOHR``) is a candidate, since
  ``reach <= R_c - |p - c|``, or the bin's list holds every atom. Distances are
  ``sqrt(dx*dx + dy*dy + dz*dz)`` in that order, as scipy's cKDTree computes them, so the result
  is the KD-tree's, bit for bit.
* ``TIE_OPEN``: the k-th tie group reaches the end of the buffer (a high-symmetry point of a
  perfect crystal with a large shell); ``REACH``: the candidate radius was too small. The caller
  answers these rows with its KD-tree.
"""

from __future__ import annotations

import math

import numba
import numpy as np

BIN_BOHR = 3.0
"""Side of the cubic bins of points (Bohr): bigger bins share one candidate list among more
points but give each point more candidates to scan past."""

EXTRA_COLUMNS = 16
"""Buffer columns beyond k, to close the k-th neighbour's tie group without the KD-tree."""

OK, TIE_OPEN, REACH = 0, 1, 2


def bin_points(points: np.ndarray, side: float = BIN_BOHR):
    """Cubic bins of side ``side`` (Bohr) holding the points.

    Returns
    -------
    point_bin : (n,) int64, bin of each point
    centres : (B, 3) float64, Bohr, centre of each bin
    half_diagonal : float, Bohr, greatest distance of a point from its bin's centre
    """
    key = np.floor(points / side).astype(np.int64)
    lo = key.min(0)
    span = key.max(0) - lo + 1
    flat = ((key[:, 0] - lo[0]) * span[1] + key[:, 1] - lo[1]) * span[2] + key[:, 2] - lo[2]
    uniq, point_bin = np.unique(flat, return_inverse=True)
    idx = np.stack(np.unravel_index(uniq, tuple(span)), 1) + lo
    return point_bin.ravel(), (idx + 0.5) * side, side * math.sqrt(3.0) / 2.0


def bin_candidates(tree, centres: np.ndarray, radius: float, guess: int):
    """Every atom within ``radius`` of each bin centre, sorted by that distance.

    Parameters
    ----------
    tree : scipy.spatial.cKDTree over the atoms (Bohr)
    centres : (B, 3) float64, Bohr
    guess : int, expected number of candidates per bin (the query widens until none is cut)

    Returns
    -------
    cand : (B, C) int64, atom rows, ``tree.n`` as padding
    from_centre : (B, C) float64, Bohr, distance from the bin centre (inf as padding)
    """
    width = min(max(int(guess), 1), tree.n)
    while True:
        from_centre, cand = tree.query(centres, k=width, distance_upper_bound=radius)
        from_centre = from_centre.reshape(len(centres), width)
        if width == tree.n or not np.isfinite(from_centre[:, -1]).any():
            return cand.reshape(len(centres), width), from_centre
        width = min(2 * width, tree.n)


@numba.njit(cache=True, nogil=True)
def nearest_in_bins(points, point_bin, centres, cand, from_centre, radius, positions, k, width,
                    tie_tol):
    """The ``width`` nearest candidates of each point, sorted, with greedy tie groups.

    Parameters
    ----------
    points : (n, 3) float64, Bohr
    point_bin, centres, cand, from_centre : from :func:`bin_points` and
        :func:`bin_candidates`
    radius : float, Bohr, the candidate radius R_c
    positions : (P, 3) float64, Bohr, the atoms (images) ``cand`` indexes
    k, width : neighbours asked for, buffer columns (>= k + 1)
    tie_tol : float, Bohr

    Returns
    -------
    dist : (n, width) float64, Bohr, ascending (inf padding)
    idx : (n, width) int64, rows of ``positions`` (P as padding)
    group, start : (n, width) as :func:`hpcdens.neighbors.tie_groups`
    status : (n,) int8, ``OK``, ``TIE_OPEN`` or ``REACH``
    used : int, columns up to the last one in a k-th tie group of an ``OK`` row
    """
    n, n_pos = len(points), len(positions)
    dist = np.full((n, width), np.inf)
    idx = np.full((n, width), n_pos, np.int64)
    group = np.zeros((n, width), np.int64)
    start = np.full((n, width), np.inf)
    status = np.zeros(n, np.int8)
    used = k
    d2 = np.empty(width)
    for i in range(n):
        b = point_bin[i]
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        cx, cy, cz = px - centres[b, 0], py - centres[b, 1], pz - centres[b, 2]
        off = math.sqrt(cx * cx + cy * cy + cz * cz)
        d2[:] = np.inf
        row = idx[i]
        filled = 0
        n_cand = 0
        for j in range(cand.shape[1]):
            if from_centre[b, j] == np.inf:
                break
            n_cand += 1
            bound = from_centre[b, j] - off
            if filled == width and bound > 0.0 and bound * bound > d2[width - 1] * (1 + 1e-12):
                break
            a = cand[b, j]
            dx, dy, dz = positions[a, 0] - px, positions[a, 1] - py, positions[a, 2] - pz
            q = dx * dx + dy * dy + dz * dz
            if filled == width and q >= d2[width - 1]:
                continue
            s = min(filled, width - 1)
            while s > 0 and d2[s - 1] > q:
                d2[s] = d2[s - 1]
                row[s] = row[s - 1]
                s -= 1
            d2[s] = q
            row[s] = a
            filled = min(filled + 1, width)
        g, first = 0, math.sqrt(d2[0])
        for j in range(width):
            d = math.sqrt(d2[j])
            dist[i, j] = d
            if d > first + tie_tol:
                g += 1
                first = d
            group[i, j] = g
            start[i, j] = first
        complete = n_cand == n_pos
        if filled < k:
            status[i] = REACH
        elif group[i, width - 1] == group[i, k - 1] and n_cand > width:
            status[i] = TIE_OPEN
        elif not complete and start[i, k - 1] + tie_tol > radius - off:
            status[i] = REACH
        else:
            while used < width and group[i, used] == group[i, k - 1]:
                used += 1
    return dist, idx, group, start, status, used


@numba.njit(cache=True, nogil=True)
def gather_shell(points, shift, dist, idx, group, start, positions, atom_of, offset, numbers, k,
                 tie_tol):
    """Neighbour arrays of a closed candidate list, ties ordered by (atom, lattice offset).

    Parameters
    ----------
    points : (n, 3) float64, Bohr
    shift : (n, 3) int64, lattice vector added to every image offset of the point's row
    dist, idx, group, start : (n, K) sorted candidates with tie groups (``idx`` = P pads)
    positions, atom_of, offset : (P, 3) float64 Bohr, (P,) int64, (P, 3) int64 of the images
    numbers : (N,) int64 atomic numbers of the atoms
    k : int, neighbours asked for; tie_tol : float, Bohr

    Returns
    -------
    disp, dist, z, atom, image, group, mask, reach : the fields of
    :class:`hpcdens.neighbors.Neighbors` (``dist`` inf, ``z`` 0, ``atom`` -1 outside ``mask``)
    """
    n, width = dist.shape
    n_pos = len(positions)
    disp = np.zeros((n, width, 3))
    d_out = np.full((n, width), np.inf)
    z = np.zeros((n, width), np.int64)
    atom = np.full((n, width), -1, np.int64)
    image = np.zeros((n, width, 3), np.int64)
    mask = np.zeros((n, width), np.bool_)
    reach = np.empty(n)
    row_idx = np.empty(width, np.int64)
    row_d = np.empty(width)
    for i in range(n):
        for j in range(width):
            row_idx[j] = idx[i, j]
            row_d[j] = dist[i, j]
            s = j
            while s > 0 and group[i, s - 1] == group[i, j] and _key_less(
                    row_idx[s], row_idx[s - 1], atom_of, offset, n_pos):
                row_idx[s], row_idx[s - 1] = row_idx[s - 1], row_idx[s]
                row_d[s], row_d[s - 1] = row_d[s - 1], row_d[s]
                s -= 1
        last = group[i, k - 1]
        for j in range(width):
            a = row_idx[j]
            if a >= n_pos or group[i, j] > last:
                continue
            mask[i, j] = True
            d_out[i, j] = row_d[j]
            atom[i, j] = atom_of[a]
            z[i, j] = numbers[atom_of[a]]
            for c in range(3):
                disp[i, j, c] = positions[a, c] - points[i, c]
                image[i, j, c] = offset[a, c] + shift[i, c]
        reach[i] = start[i, k - 1] + tie_tol
    return disp, d_out, z, atom, image, mask, reach


@numba.njit(cache=True, inline="always")
def _key_less(a, b, atom_of, offset, n_pos):
    """(atom, offset) order of two image rows; padding rows (>= n_pos) never move."""
    if a >= n_pos or b >= n_pos:
        return False
    if atom_of[a] != atom_of[b]:
        return atom_of[a] < atom_of[b]
    for c in range(3):
        if offset[a, c] != offset[b, c]:
            return offset[a, c] < offset[b, c]
    return False
