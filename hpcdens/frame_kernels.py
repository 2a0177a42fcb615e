"""Compiled kernels of the descriptors (numba; no MPI).

:func:`hpcdens.descriptors.from_neighbors` computes every point's second moment here, its
principal axes with LAPACK (``numpy.linalg.eigh``), and then, here again, the axis signs, the
invariant neighbour order (inside distance tie groups: by species, then by the quantised unit
components, as :func:`hpcdens.descriptors._invariant_order`), the smallest of the candidates when
an axis sign is not fixed (a third moment ~0), and the output row of every point. Points with
degenerate eigenvalues are redone by the numpy reference path of :mod:`hpcdens.descriptors`,
which defines the descriptor; these kernels reproduce it to rounding (summation order).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def second_moments(disp, mask):
    """S = sum_j w_j r_j r_j^T / max(sum_j w_j, 1) per point (Bohr^2), w = mask.

    Parameters
    ----------
    disp : (n, K, 3) float64, Bohr; mask : (n, K) bool

    Returns
    -------
    (n, 3, 3) float64
    """
    n, width = mask.shape
    out = np.zeros((n, 3, 3))
    for i in range(n):
        count = 0
        for j in range(width):
            if not mask[i, j]:
                continue
            count += 1
            for a in range(3):
                for b in range(a, 3):
                    out[i, a, b] += disp[i, j, a] * disp[i, j, b]
        norm = max(count, 1)
        for a in range(3):
            for b in range(a, 3):
                out[i, a, b] /= norm
                out[i, b, a] = out[i, a, b]
    return out


@numba.njit(cache=True, nogil=True)
def _before(a, b, key_group, z, key):
    """Column a sorts before column b: (tie group, Z, quantised unit components) ascending."""
    if key_group[a] != key_group[b]:
        return key_group[a] < key_group[b]
    if z[a] != z[b]:
        return z[a] < z[b]
    for p in range(3):
        if key[a, p] != key[b, p]:
            return key[a, p] < key[b, p]
    return False


@numba.njit(cache=True, nogil=True)
def _ordered_features(comp, signs, dist, z, group, mask, m, on_atom, key_quantum, unit, key,
                      key_group, order, feat):
    """feat (m, 5) = (Z, |r|, unit components) of the first m neighbours in invariant order, in
    the frame whose axis p is ``signs[p]`` times the one ``comp`` (K, 3) was projected on."""
    width = len(dist)
    tied = False
    for j in range(width):
        order[j] = j
        if j and mask[j] and group[j] == group[j - 1]:
            tied = True
    for j in range(width if tied else m):   # without ties the first m columns are the order
        for p in range(3):
            if dist[j] <= on_atom:
                unit[j, p] = 0.0
            else:
                unit[j, p] = signs[p] * comp[j, p] / (dist[j] if mask[j] else 1.0)
    if tied:   # stable insertion sort: columns arrive in tie-group order, padding last
        for j in range(width):
            key_group[j] = group[j] if mask[j] else np.iinfo(np.int64).max
            for p in range(3):
                key[j, p] = np.int64(np.rint(unit[j, p] / key_quantum))
        for j in range(1, width):
            col = order[j]
            t = j
            while t > 0 and _before(col, order[t - 1], key_group, z, key):
                order[t] = order[t - 1]
                t -= 1
            order[t] = col
    for j in range(m):
        col = order[j]
        feat[j, 0] = z[col]
        feat[j, 1] = dist[col]
        for p in range(3):
            feat[j, 2 + p] = unit[col, p]


@numba.njit(cache=True, nogil=True)
def _smaller(feat, best, canon_tol):
    """feat < best in neighbour-major order: their first entries that differ by more than
    ``canon_tol`` decide."""
    for j in range(feat.shape[0]):
        for q in range(5):
            diff = feat[j, q] - best[j, q]
            if abs(diff) > canon_tol:
                return diff < 0
    return False


@numba.njit(cache=True, nogil=True)
def frame_features(disp, dist, z, group, mask, vec, m, on_atom, sign_rel_tol, key_quantum,
                   canon_tol):
    """Signed frames and descriptor rows (block layout) of every point.

    An axis whose third moment is too small to fix its sign (``undetermined``) gives two
    candidate frames; the row is that of the lexicographically smallest candidate (neighbour-
    major order, entries within ``canon_tol`` equal), as :func:`hpcdens.descriptors._smallest`.

    Parameters
    ----------
    disp : (n, K, 3) float64, Bohr; dist : (n, K) float64, Bohr; z, group : (n, K) int64;
    mask : (n, K) bool -- the fields of :class:`hpcdens.neighbors.Neighbors`
    vec : (n, 3, 3) float64, eigenvectors of the second moment in ascending eigenvalue order
    m : int, neighbours in the descriptor
    on_atom, sign_rel_tol, key_quantum, canon_tol : the constants of :mod:`hpcdens.descriptors`

    Returns
    -------
    out : (n, 5m) float64, descriptor rows (final where the eigenvalues are distinct)
    frames : (n, 3, 3) float64, columns e1, e2, e3 (descending eigenvalue), signed so that
        sum_j (r_j.e_p)^3 >= 0
    undetermined : (n, 3) bool, axes whose third moment is too small to fix the sign
    """
    n, width = mask.shape
    out = np.zeros((n, 5 * m))
    frames = np.empty((n, 3, 3))
    undetermined = np.zeros((n, 3), np.bool_)
    comp = np.empty((width, 3))
    unit = np.empty((width, 3))
    key = np.empty((width, 3), np.int64)
    key_group = np.empty(width, np.int64)
    order = np.empty(width, np.int64)
    feat = np.empty((m, 5))
    best = np.empty((m, 5))
    signs = np.empty(3)
    for i in range(n):
        for p in range(3):
            for c in range(3):
                frames[i, c, p] = vec[i, c, 2 - p]
        third = np.zeros(3)
        scale = np.zeros(3)
        for j in range(width):
            for p in range(3):
                v = disp[i, j, 0] * frames[i, 0, p] + disp[i, j, 1] * frames[i, 1, p] \
                    + disp[i, j, 2] * frames[i, 2, p]
                comp[j, p] = v
                if mask[i, j]:
                    cube = v * v * v
                    third[p] += cube
                    scale[p] += abs(cube)
        free = 0
        for p in range(3):
            undetermined[i, p] = abs(third[p]) <= sign_rel_tol * scale[p]
            free += undetermined[i, p]
            if third[p] < 0:
                for c in range(3):
                    frames[i, c, p] = -frames[i, c, p]
                for j in range(width):
                    comp[j, p] = -comp[j, p]
        # candidates in itertools.product order over the undetermined axes (+1 before -1, the
        # last such axis fastest), each compared with the best so far
        for c in range(2 ** free):
            bit = free
            for p in range(3):
                signs[p] = 1.0
                if undetermined[i, p]:
                    bit -= 1
                    if (c >> bit) & 1:
                        signs[p] = -1.0
            _ordered_features(comp, signs, dist[i], z[i], group[i], mask[i], m, on_atom,
                              key_quantum, unit, key, key_group, order, feat)
            if c == 0 or _smaller(feat, best, canon_tol):
                best[:, :] = feat
        for j in range(m):
            for q in range(5):
                out[i, q * m + j] = best[j, q]
    return out, frames, undetermined
