"""Body-attached-frame descriptors of grid points (Pathrudkar et al. 2025, Eq. 2).

For a grid point, take its M nearest atoms (periodic images counted) with position vectors
r_j = atom - point (Bohr). A principal-component frame e1, e2, e3 of these vectors gives, per
neighbour, (Z_j, |r_j|, r_j.e1/|r_j|, r_j.e2/|r_j|, r_j.e3/|r_j|); neighbours sorted by distance
make a vector of 5M numbers. The full specification (frame, signs, ties, degenerate cases) is in
``docs/descriptors.md``; in short:

* Frame: eigenvectors of the second moment about the grid point, ``S = (1/M) sum_j r_j r_j^T``,
  in order of descending eigenvalue.
* Signs: each axis independently, so that ``sum_j (r_j.e_p)^3 > 0``. The frame may be left- or
  right-handed; the descriptor is invariant under rotations *and* reflections (O(3)), as the
  density of a mirrored structure is the mirrored density.
* Ties: distances within ``neighbors.TIE_TOL_BOHR`` are one tie group; inside a group,
  neighbours are ordered by (Z, r.e1/|r|, r.e2/|r|, r.e3/|r|). If the M-th place is tied, the frame
  uses the whole tie group and the M entries are picked by that order. Nothing depends on the order
  of the atoms.
* Degenerate points (equal eigenvalues, or a third moment ~0): every admissible frame built from
  the geometry is tried and the lexicographically smallest descriptor is kept, which keeps the
  descriptor invariant there too. A neighbour on the point (|r| <= ``ON_ATOM_BOHR``) gets unit
  components 0.

Layout (block, feature-major): columns ``[0:M]`` Z, ``[M:2M]`` |r| (Bohr), ``[2M:3M]``,
``[3M:4M]``, ``[4M:5M]`` the unit-vector components along e1, e2, e3; use :func:`unpack`.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from .errors import InputError
from .frame_kernels import frame_features, second_moments
from .grid import DEFAULT_CHUNK_POINTS
from .neighbors import Neighbors, NeighborSearch

DESCRIPTOR_VERSION = 1
"""Version of the descriptor definition in docs/descriptors.md (PCA of the second moment about
the grid point, per-axis third-moment signs, invariant tie order); models record it and
prediction refuses a model made with another. Bump it when the definition changes."""

ON_ATOM_BOHR = 1e-6
"""A neighbour closer than this (Bohr) sits on the point: its unit components are set to 0. Also
the least length of a vector (or of its projection) that may define a frame axis."""

EIG_REL_TOL = 1e-6
"""Eigenvalues of S closer than this times the largest one are degenerate."""

SIGN_REL_TOL = 1e-8
"""A third moment below this times sum |r.e|^3 does not fix an axis sign."""

KEY_QUANTUM = 1e-6
"""Unit components are compared on this grid when ordering neighbours inside a tie group."""

CANON_TOL = 1e-8
"""Candidate descriptors differing by less than this in every entry count as equal."""

CANON_BATCH = 2048
"""Candidate frames whose features one batch of :func:`_canonical_rows` computes (bounds memory:
each is K x 5 float64 plus temporaries)."""



def unpack(desc: np.ndarray, m: int):
    """Split descriptors into their parts.

    Parameters
    ----------
    desc : (n, 5m) float64
    m : int

    Returns
    -------
    z : (n, m) float64, atomic numbers
    dist : (n, m) float64, Bohr
    unit : (n, m, 3) float64, components of r/|r| along e1, e2, e3
    """
    desc = np.asarray(desc)
    if desc.ndim != 2 or desc.shape[1] != 5 * m:
        raise InputError(f"descriptors must have shape (n, {5 * m}) for m={m}, got {desc.shape}")
    blocks = desc.reshape(len(desc), 5, m)
    return blocks[:, 0], blocks[:, 1], blocks[:, 2:].transpose(0, 2, 1)


def descriptors(points_bohr, search: NeighborSearch, m: int | None = None) -> np.ndarray:
    """Eq. (2) descriptors of a block of points.

    Parameters
    ----------
    points_bohr : (n, 3) float, Bohr
    search : NeighborSearch over the structure (periodic, or halo mode)
    m : int, number of neighbours M, default ``search.m``

    Returns
    -------
    (n, 5m) float64, block layout (see module docstring)
    """
    m = search.m if m is None else int(m)
    return from_neighbors(search.query_shell(points_bohr, m), m)


def iter_descriptors(points_bohr, search: NeighborSearch, m: int | None = None,
                     chunk_points: int = DEFAULT_CHUNK_POINTS):
    """Stream descriptors of many points in chunks of ``chunk_points``.

    Parameters
    ----------
    points_bohr : (n, 3) array-like, Bohr; anything with ``len`` and row slicing (numpy array,
        memmap, h5py dataset) works, only one chunk is read at a time
    search, m : as for :func:`descriptors`
    chunk_points : int >= 1

    Yields
    ------
    start : int, index of the chunk's first point
    block : (<= chunk_points, 5m) float64
    """
    chunk_points = _positive_int(chunk_points, "chunk_points")
    for start in range(0, len(points_bohr), chunk_points):
        yield start, descriptors(np.asarray(points_bohr[start:start + chunk_points]), search, m)


def iter_grid_descriptors(grid, search: NeighborSearch, m: int | None = None,
                          chunk_points: int = DEFAULT_CHUNK_POINTS, start=(0, 0, 0), stop=None):
    """Stream descriptors of the grid points of an index box, in C order, without listing them.

    Parameters
    ----------
    grid : hpcdens.grid.Grid
    start, stop : (3,) int, the index box [start, stop) (default: the whole grid)
    search, m, chunk_points : as for :func:`iter_descriptors`

    Yields
    ------
    offset : int, flat C-order index (within the box) of the chunk's first point
    block : (<= chunk_points, 5m) float64
    """
    chunk_points = _positive_int(chunk_points, "chunk_points")
    stop = grid.shape if stop is None else stop
    lo, box = np.asarray(start), np.asarray(stop) - np.asarray(start)
    total = int(np.prod(box))
    for offset in range(0, total, chunk_points):
        flat = np.arange(offset, min(offset + chunk_points, total))
        frac = (np.stack(np.unravel_index(flat, box), 1) + lo) / np.asarray(grid.shape)
        yield offset, descriptors(frac @ grid.cell_bohr, search, m)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def from_neighbors(nb: Neighbors, m: int) -> np.ndarray:
    """Descriptors from a :meth:`NeighborSearch.query_shell` result for M = ``m`` neighbours.

    Points with distinct eigenvalues (the frame fixed by PCA up to axis signs) go through the
    compiled kernels of :mod:`hpcdens.frame_kernels`; the others through the numpy definition
    below (:func:`from_neighbors_reference` gives that path for every point).

    Returns
    -------
    (n, 5m) float64, block layout
    """
    _check_shell(nb, m)
    lam, vec = np.linalg.eigh(second_moments(nb.disp, nb.mask))
    out, frames, undetermined = frame_features(
        nb.disp, nb.dist, nb.z, nb.group, nb.mask, vec, m, ON_ATOM_BOHR, SIGN_REL_TOL,
        KEY_QUANTUM, CANON_TOL)
    cols = (nb.disp, nb.dist, nb.z, nb.group, nb.mask)
    lam = lam[:, ::-1]
    rows = np.flatnonzero(np.logical_or(*_degeneracy(lam)))
    if len(rows):
        out[rows] = _canonical_rows(tuple(a[rows] for a in cols), lam[rows], frames[rows],
                                    undetermined[rows], m)
    return out


def from_neighbors_reference(nb: Neighbors, m: int) -> np.ndarray:
    """:func:`from_neighbors` in numpy only, for every point: the definition the kernels
    reproduce (to rounding), kept for tests and ``hpcdens bench descriptors``."""
    _check_shell(nb, m)
    cols = (nb.disp, nb.dist, nb.z, nb.group, nb.mask)
    lam, frames, undetermined = pca_frames(nb.disp, nb.mask.astype(float))
    feats = _features(*cols, frames, m).transpose(0, 2, 1).reshape(len(nb.dist), 5 * m)
    rows = np.flatnonzero(_special(lam, undetermined))
    if len(rows):
        feats[rows] = _canonical_rows(tuple(a[rows] for a in cols), lam[rows], frames[rows],
                                      undetermined[rows], m)
    return feats


def _check_shell(nb: Neighbors, m: int) -> None:
    if nb.k != m:
        raise InputError(f"neighbour shell was queried for k={nb.k}, descriptors need k=m={m}")


def _canonical_rows(cols, lam, frames, undetermined, m: int) -> np.ndarray:
    """(n, 5m) block-layout rows of n special points: every admissible frame of every point
    (:func:`_candidate_frames`), their features in batches of at most ``CANON_BATCH`` frames, and
    per point those of the lexicographically smallest candidate in neighbour-major order
    (:func:`_smallest`)."""
    cands = [_candidate_frames(tuple(a[i] for a in cols), lam[i], frames[i], undetermined[i])
             for i in range(len(lam))]
    out = np.empty((len(cands), 5 * m))
    first = 0
    while first < len(cands):   # points first..last-1: <= CANON_BATCH frames, or one point
        last, total = first + 1, len(cands[first])
        while last < len(cands) and total + len(cands[last]) <= CANON_BATCH:
            total += len(cands[last])
            last += 1
        batch = cands[first:last]
        owner = np.repeat(np.arange(first, last), [len(c) for c in batch])
        feats = _features(*(a[owner] for a in cols), np.stack([f for c in batch for f in c]), m)
        best = _smallest(feats.reshape(len(owner), -1), np.array([len(c) for c in batch]))
        out[first:last] = feats[best].transpose(0, 2, 1).reshape(len(batch), 5 * m)
        first = last
    return out


def _smallest(flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row of ``flat`` chosen for each consecutive group of ``counts`` candidates: the first, then
    each later candidate replaces it when their first difference beyond ``CANON_TOL`` is negative
    (done for all groups at once)."""
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    best = start.copy()
    for c in range(1, int(counts.max())):
        live = np.flatnonzero(counts > c)
        cand = start[live] + c
        diff = flat[cand] - flat[best[live]]
        big = np.abs(diff) > CANON_TOL
        lead = diff[np.arange(len(live)), big.argmax(1)]
        better = big.any(1) & (lead < 0)
        best[live[better]] = cand[better]
    return best


def pca_frames(disp: np.ndarray, weight: np.ndarray):
    """Principal frames of neighbour vectors, about the grid point, with third-moment signs.

    Parameters
    ----------
    disp : (n, K, 3) float64, Bohr, r_j = atom - point
    weight : (n, K) float64, 1 for neighbours, 0 for padding

    Returns
    -------
    lam : (n, 3) float64, Bohr^2, eigenvalues of S = sum w r r^T / sum w, descending
    frames : (n, 3, 3) float64, columns e1, e2, e3, each signed so sum w (r.e)^3 >= 0
    undetermined : (n, 3) bool, axes whose third moment is too small to fix the sign
    """
    second = np.matmul((disp * weight[..., None]).transpose(0, 2, 1), disp)
    second /= np.maximum(weight.sum(1), 1.0)[:, None, None]
    lam, vec = np.linalg.eigh(second)
    lam, frames = lam[:, ::-1], vec[:, :, ::-1].copy()
    comp = np.matmul(disp, frames)
    cube = comp * comp * comp * weight[..., None]
    third = cube.sum(1)
    scale = np.abs(cube).sum(1)
    frames *= np.where(third < 0, -1.0, 1.0)[:, None, :]
    return lam, frames, np.abs(third) <= SIGN_REL_TOL * scale


def _degeneracy(lam: np.ndarray):
    """(deg12, deg23) flags: e1/e2 resp. e2/e3 eigenvalues equal within EIG_REL_TOL."""
    tol = EIG_REL_TOL * lam[..., 0]
    return lam[..., 0] - lam[..., 1] <= tol, lam[..., 1] - lam[..., 2] <= tol


def _special(lam: np.ndarray, undetermined: np.ndarray) -> np.ndarray:
    """(n,) bool: points whose frame is not fixed by PCA plus third-moment signs."""
    deg12, deg23 = _degeneracy(lam)
    return deg12 | deg23 | undetermined.any(1)


def _features(disp, dist, z, group, mask, frames, m: int) -> np.ndarray:
    """Per-neighbour features (n, m, 5) = (Z, |r|, unit components) in invariant order.

    Parameters
    ----------
    disp : (n, K, 3); dist, z, group, mask : (n, K) -- as in :class:`Neighbors`
    frames : (n, 3, 3), columns e1, e2, e3
    """
    comp = np.matmul(disp, frames)
    on_atom = dist <= ON_ATOM_BOHR
    unit = comp / np.where(on_atom | ~mask, 1.0, dist)[..., None]
    unit[on_atom] = 0.0
    order = _invariant_order(unit, z, group, mask)[:, :m]
    parts = [z.astype(float), dist] + [unit[..., p] for p in range(3)]
    return np.stack([np.take_along_axis(a, order, 1) for a in parts], -1)


def _invariant_order(unit, z, group, mask) -> np.ndarray:
    """(n, K) column order by (tie group, Z, unit components on the KEY_QUANTUM grid).

    Columns arrive in tie-group order, so rows without ties keep their order; padding goes last.
    """
    key_group = np.where(mask, group, np.iinfo(np.int64).max)
    order = np.broadcast_to(np.arange(z.shape[1]), z.shape).copy()
    tied = np.flatnonzero((np.diff(key_group, axis=1) == 0).any(1))
    if len(tied):
        key = np.rint(unit[tied] / KEY_QUANTUM).astype(np.int64)
        order[tied] = np.lexsort((key[..., 2], key[..., 1], key[..., 0], z[tied],
                                  key_group[tied]), axis=1)
    return order


def _class_directions(one, normal=None) -> list[np.ndarray]:
    """Unit directions to the first (tie group, then smallest Z) class of eligible neighbours.

    With ``normal``, directions are projections onto the plane normal to it and a neighbour is
    eligible when its projection is longer than ``ON_ATOM_BOHR``; without, any neighbour off the
    point. The class depends only on distances and species, so the list is covariant.
    """
    disp, _, z, group, mask = one
    vec = disp if normal is None else disp - np.outer(disp @ normal, normal)
    length = np.linalg.norm(vec, axis=1)
    ok = mask & (length > ON_ATOM_BOHR)
    if not ok.any():
        return []
    first = ok & (group == group[ok].min())
    first &= z == z[first].min()
    return list(vec[first] / length[first, None])


def _sign_options(undetermined: bool):
    return (1.0, -1.0) if undetermined else (1.0,)


def _candidate_frames(one, lam, frame, undetermined) -> list[np.ndarray]:
    """Every admissible frame (3, 3) of one special point; see docs/descriptors.md."""
    deg12, deg23 = _degeneracy(lam)
    if deg12 and deg23:
        return _isotropic_frames(one) or [frame]
    if deg12 or deg23:
        return _uniaxial_frames(one, frame, 2 if deg12 else 0, undetermined)
    return [frame * np.array(s) for s in product(*map(_sign_options, undetermined))]


def _uniaxial_frames(one, frame, axis: int, undetermined) -> list[np.ndarray]:
    """Unique axis from PCA (both signs if undetermined), in-plane axis from an atom class."""
    out = []
    # with every atom on the axis the in-plane directions do not matter: any eigenvector will do
    in_plane = _class_directions(one, normal=frame[:, axis]) or [frame[:, 1 if axis == 0 else 0]]
    for su in _sign_options(undetermined[axis]):
        u = su * frame[:, axis]
        for f in in_plane:
            for sg in (1.0, -1.0):
                g = sg * np.cross(u, f)
                out.append(np.stack((f, g, u) if axis == 2 else (u, f, g), 1))
    return out


def _isotropic_frames(one) -> list[np.ndarray]:
    """e1 towards an atom of the first class, e2 towards the first class off that line,
    e3 = +-(e1 x e2)."""
    out = []
    for f1 in _class_directions(one):
        for f2 in _class_directions(one, normal=f1):
            f3 = np.cross(f1, f2)
            out += [np.stack((f1, f2, s * f3), 1) for s in (1.0, -1.0)]
    return out
