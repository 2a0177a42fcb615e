"""Compiled kernels of the descriptors' common case (numba; no MPI).

:func:`hpcdens.descriptors.from_neighbors` computes every point's second moment here, its
principal axes with LAPACK (``numpy.linalg.eigh``), and then, here again, the axis signs, the
neighbour features and the output row of every point whose neighbours have no distance ties.
Points with ties and points whose frame is not fixed by PCA (degenerate eigenvalues, a third
moment ~0) are flagged and done by the numpy reference path of :mod:`hpcdens.descriptors`, which
defines the descriptor; these kernels reproduce it to rounding (summation order).
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
def frame_features(disp, dist, z, group, mask, vec, m, on_atom, sign_rel_tol):
    """Signed frames and descriptor rows (block layout) of points without distance ties.

    Parameters
    ----------
    disp : (n, K, 3) float64, Bohr; dist : (n, K) float64, Bohr; z, group : (n, K) int64;
    mask : (n, K) bool -- the fields of :class:`hpcdens.neighbors.Neighbors`
    vec : (n, 3, 3) float64, eigenvectors of the second moment in ascending eigenvalue order
    m : int, neighbours in the descriptor
    on_atom, sign_rel_tol : the constants of :mod:`hpcdens.descriptors`

    Returns
    -------
    out : (n, 5m) float64, descriptor rows (rows with ties left 0)
    frames : (n, 3, 3) float64, columns e1, e2, e3 (descending eigenvalue), signed so that
        sum_j (r_j.e_p)^3 >= 0
    undetermined : (n, 3) bool, axes whose third moment is too small to fix the sign
    tied : (n,) bool, rows with two neighbours in one tie group (not written)
    """
    n, width = mask.shape
    out = np.zeros((n, 5 * m))
    frames = np.empty((n, 3, 3))
    undetermined = np.zeros((n, 3), np.bool_)
    tied = np.zeros(n, np.bool_)
    comp = np.empty((width, 3))
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
        for p in range(3):
            undetermined[i, p] = abs(third[p]) <= sign_rel_tol * scale[p]
            if third[p] < 0:
                for c in range(3):
                    frames[i, c, p] = -frames[i, c, p]
                for j in range(width):
                    comp[j, p] = -comp[j, p]
        for j in range(1, width):
            if mask[i, j] and group[i, j] == group[i, j - 1]:
                tied[i] = True
        if tied[i]:
            continue
        for j in range(m):
            out[i, j] = z[i, j]
            out[i, m + j] = dist[i, j]
            if dist[i, j] > on_atom:
                for p in range(3):
                    out[i, (2 + p) * m + j] = comp[j, p] / dist[i, j]
    return out, frames, undetermined, tied
