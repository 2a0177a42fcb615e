"""Density errors per region of a test cell: shells around vacancies and at segregation boundaries.

The generalisation cells of Pathrudkar et al. 2025 (SiGeSn, diamond lattice) hold mono- or
di-vacancies, or are segregated into ``bins**3`` blocks of different composition
(:func:`hpcdens.segregation.segregate`). A whole-cell error hides what happens where the cell
differs from the training cells; here every grid point gets a *shell*: the interval of
``edges`` holding its distance (Bohr) to the nearest vacancy site or to the nearest cut plane
between blocks, and :func:`region_errors` gives the errors per shell.
:func:`fourier_split` separates an error field of a supercell into the part an n-times smaller
(training) cell can represent and the rest.

Units: lengths in Bohr, densities in e/Bohr^3, charges in electrons. ASE ``Atoms`` (Angstrom) only
give the cell, which must be the grid's.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

from .errors import InputError

VACANCY_EDGES_BOHR = (0.0, 2.0, 4.0, 6.0, math.inf)
"""Shell edges (Bohr) of the distance to the nearest vacancy site. In SiGeSn (bond 4.4-5.0 Bohr):
[0, 2) the empty site itself, [2, 4) the dangling bonds pointing into it, [4, 6) the neighbouring
atoms and their back bonds, [6, inf) the rest of the cell."""
BOUNDARY_EDGES_BOHR = (0.0, 1.0, 2.0, 4.0, math.inf)
"""Shell edges (Bohr) of the perpendicular distance to the nearest cut plane between segregation
blocks. On diamond supercells the cut planes pass through an atomic layer (the (001) layer
spacing is a/4, about 2.6 Bohr): [0, 1) that layer, [1, 2) and [2, 4) the bonds and layers next to
it, [4, inf) the block interiors."""
VACANCY_ATTR, BINS_ATTR, OFFSET_ATTR = ("vacancy_sites_angstrom", "segregation_bins",
                                       "segregation_offset")
REGION_COLUMNS = ("key", "kind", "shell_min_bohr", "shell_max_bohr", "n_points",
                  "relative_l1_percent", "rmse", "charge_error_e", "cell_relative_l1_percent")
_CELL_ATOL_BOHR = 1e-6


# ----------------------------------------------------------------------------- geometry
def _check_cell(atoms, grid) -> None:
    from ase.units import Bohr

    if not np.allclose(atoms.cell.array / Bohr, grid.cell_bohr, rtol=0, atol=_CELL_ATOL_BOHR):
        raise InputError("the atoms' cell is not the grid's cell; regions need the grid of the "
                         "same snapshot as the atoms")


def _check_edges(edges) -> np.ndarray:
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or len(e) < 2 or e[0] != 0 or e[-1] != math.inf or np.any(np.diff(e) <= 0):
        raise InputError(f"shell edges must increase strictly from 0 to inf (Bohr), got "
                         f"{list(edges)}; e.g. {list(VACANCY_EDGES_BOHR)}")
    return e


def shell_of(distance, edges) -> np.ndarray:
    """Shell index (int, same shape as ``distance``): i such that edges[i] <= d < edges[i+1].
    ``edges`` (Bohr) increase strictly from 0 to inf, so every distance >= 0 has a shell."""
    e = _check_edges(edges)
    return np.searchsorted(e, np.asarray(distance, dtype=float), side="right") - 1


def nearest_site_distance(cell_bohr, points_bohr, sites_bohr) -> np.ndarray:
    """(n,) minimum-image distance (Bohr) from each of ``points_bohr`` (n, 3) to the nearest of
    ``sites_bohr`` (k, 3) in the periodic cell ``cell_bohr`` (rows, Bohr; any shape of cell).

    Exact for every cell: differences are wrapped in the Minkowski-reduced basis of the lattice,
    whose 27 neighbouring images hold the nearest one (the method of ``ase.geometry.find_mic``),
    one image at a time to keep memory at a few (n, 3) arrays."""
    from ase.geometry import minkowski_reduce

    rcell, _ = minkowski_reduce(np.asarray(cell_bohr, dtype=float))
    inv = np.linalg.inv(rcell)
    images = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float) @ rcell
    best = np.full(len(points_bohr), np.inf)
    for site in np.asarray(sites_bohr, dtype=float):
        frac = (np.asarray(points_bohr, dtype=float) - site) @ inv
        wrapped = (frac - np.round(frac)) @ rcell
        for image in images:
            np.minimum(best, np.einsum("ij,ij->i", wrapped + image, wrapped + image), out=best)
    return np.sqrt(best)


def vacancy_shells(atoms, grid, sites_bohr, edges_bohr=VACANCY_EDGES_BOHR) -> np.ndarray:
    """Shell index (``grid.shape`` int array) of every grid point's minimum-image distance to the
    nearest vacancy site.

    atoms : ASE Atoms of the cell (Angstrom), whose cell must be ``grid.cell_bohr``.
    grid : :class:`hpcdens.grid.Grid`; points at :meth:`~hpcdens.grid.Grid.cartesian_points`.
    sites_bohr : (k, 3) Cartesian positions of the removed atoms (Bohr), k >= 1.
    edges_bohr : shell edges (Bohr), strictly increasing from 0 to inf.
    """
    _check_cell(atoms, grid)
    sites = np.asarray(sites_bohr, dtype=float)
    if sites.ndim != 2 or sites.shape[1] != 3 or len(sites) == 0 or not np.isfinite(sites).all():
        raise InputError(f"vacancy sites must be a non-empty (k, 3) array of finite Cartesian "
                         f"positions (Bohr), got shape {sites.shape}")
    dist = nearest_site_distance(grid.cell_bohr, grid.cartesian_points(), sites)
    return shell_of(dist, edges_bohr).reshape(grid.shape)


def boundary_distance(grid, bins: int, offset: float = 0.0) -> np.ndarray:
    """(``grid.shape``) perpendicular distance (Bohr) from every grid point to the nearest cut
    plane of the ``bins**3`` blocks of :func:`hpcdens.segregation.block_indices`: the planes of
    fractional coordinate offset + m/bins (m = 0..bins-1) along each lattice vector. The plane
    spacing along lattice vector i is 1/|b_i|, b_i the reciprocal vector without 2 pi."""
    t = ((grid.fractional_points() - offset) * bins) % 1.0
    frac_gap = np.minimum(t, 1.0 - t) / bins
    plane_spacing = 1.0 / np.linalg.norm(np.linalg.inv(grid.cell_bohr).T, axis=1)
    return (frac_gap * plane_spacing).min(axis=1).reshape(grid.shape)


def boundary_shells(atoms, grid, bins: int, edges_bohr=BOUNDARY_EDGES_BOHR,
                    offset: float = 0.0) -> np.ndarray:
    """Shell index (``grid.shape`` int array) of every grid point's distance to the nearest face
    between segregation blocks (:func:`boundary_distance`), ``bins`` >= 2 blocks per lattice
    vector cut at ``offset``. atoms : ASE Atoms of the cell (Angstrom), whose cell must be
    ``grid.cell_bohr``."""
    _check_cell(atoms, grid)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InputError(f"segregation bins must be an integer >= 2, got {bins!r}")
    return shell_of(boundary_distance(grid, int(bins), offset), edges_bohr)


# ----------------------------------------------------------------------------- errors
def region_errors(pred, ref, shell_index, dv: float, edges) -> list[dict]:
    """Errors of ``pred`` against ``ref`` (same shape, e/Bohr^3) per shell of ``shell_index``
    (same shape, ints in [0, len(edges) - 1)); ``dv`` the voxel volume (Bohr^3).

    One dict per shell: shell_min_bohr, shell_max_bohr (its edges), n_points,
    relative_l1_percent (100 sum|pred-ref| / sum|ref| over the shell; None without reference
    charge), rmse (e/Bohr^3; None for an empty shell), charge_error_e (sum(pred-ref) * dv,
    signed, electrons; the shells add up to the cell's) and cell_relative_l1_percent (the same
    L1 over the whole cell, for comparison)."""
    e = _check_edges(edges)
    pred, ref = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    idx = np.asarray(shell_index)
    if pred.shape != ref.shape or idx.shape != ref.shape:
        raise InputError(f"prediction {pred.shape}, reference {ref.shape} and shell index "
                         f"{idx.shape} must have the same shape")
    n = len(e) - 1
    idx = idx.ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise InputError(f"shell indices must lie in [0, {n}) for {n} shells, got "
                         f"[{idx.min()}, {idx.max()}]")
    err, aref = (pred - ref).ravel(), np.abs(ref).ravel()
    count = np.bincount(idx, minlength=n)
    abs_err, abs_ref = (np.bincount(idx, w, minlength=n) for w in (np.abs(err), aref))
    sq, signed = np.bincount(idx, err**2, minlength=n), np.bincount(idx, err, minlength=n)
    cell_l1 = 100.0 * float(np.abs(err).sum() / aref.sum()) if aref.sum() > 0 else None
    return [{"shell_min_bohr": float(e[i]), "shell_max_bohr": float(e[i + 1]),
             "n_points": int(count[i]),
             "relative_l1_percent": (100.0 * float(abs_err[i] / abs_ref[i])
                                     if abs_ref[i] > 0 else None),
             "rmse": float(np.sqrt(sq[i] / count[i])) if count[i] else None,
             "charge_error_e": float(signed[i] * dv), "cell_relative_l1_percent": cell_l1}
            for i in range(n)]


def fourier_split(err, reps) -> dict:
    """Split an error field on the grid of a supercell of ``reps`` = (n1, n2, n3) repetitions of
    a small cell into the part the small cell can hold and the rest.

    err : (N1, N2, N3) real field on the supercell grid (any N_i: a 64-atom cell at 0.5 Bohr has
        43 points per axis). Returns {"small_cell": the part made of the Fourier components on
    reciprocal-lattice vectors of the small cell (signed FFT frequencies that are multiples of n_i
    on every axis: periodic with the small cell),
    "supercell_only": the rest (err - small_cell: wavelengths the small cell cannot hold), and
    their root-mean-square over the grid, "rms_small_cell" and "rms_supercell_only"} (units of
    ``err``). Raises InputError (a ValueError) for a field that is not 3-d or bad ``reps``."""
    field = np.asarray(err, dtype=float)
    reps = tuple(reps)
    if (field.ndim != 3 or len(reps) != 3
            or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1
                   for r in reps)):
        raise InputError(f"fourier_split needs a 3-d field and three positive integer "
                         f"repetitions, got a field of shape {field.shape} and reps {reps}")
    mask = np.ones(field.shape, dtype=bool)
    for axis, (n, r) in enumerate(zip(field.shape, reps)):
        keep = np.rint(np.fft.fftfreq(n, 1.0 / n)).astype(int) % r == 0  # signed frequencies
        mask &= keep.reshape([-1 if a == axis else 1 for a in range(3)])
    small = np.fft.ifftn(np.where(mask, np.fft.fftn(field), 0)).real
    rest = field - small
    return {"small_cell": small, "supercell_only": rest,
            "rms_small_cell": float(np.sqrt(np.mean(small**2))),
            "rms_supercell_only": float(np.sqrt(np.mean(rest**2)))}


# ----------------------------------------------------------------------------- snapshots
def region_spec(key: str, attrs: dict) -> dict:
    """{"sites_bohr": (k, 3) vacancy sites in Bohr or None, "bins": int or None, "offset": the
    blocks' cut offset} from a test snapshot's attributes (``vacancy_sites_angstrom``: JSON list
    of [x, y, z] Angstrom; ``segregation_bins``: int >= 2; ``segregation_offset``: fraction,
    default 0); None (offset 0) on cells without them. InputError naming the
    snapshot when an attribute is malformed."""
    from ase.units import Bohr

    fix = "Fix: regenerate the test set with 'hpcdens generate', or remove the attribute"
    sites = bins = None
    if VACANCY_ATTR in attrs:
        try:
            sites = np.asarray(json.loads(attrs[VACANCY_ATTR]), dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"snapshot {key!r}: {VACANCY_ATTR} is not a JSON list of [x, y, z] "
                             f"positions ({exc}). {fix}") from None
        if sites.size == 0:
            sites = None
        elif sites.ndim != 2 or sites.shape[1] != 3 or not np.isfinite(sites).all():
            raise InputError(f"snapshot {key!r}: {VACANCY_ATTR} must list finite [x, y, z] "
                             f"positions (Angstrom), got an array of shape {sites.shape}. {fix}")
        else:
            sites = sites / Bohr
    if BINS_ATTR in attrs:
        bins = attrs[BINS_ATTR]
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise InputError(f"snapshot {key!r}: {BINS_ATTR} must be an integer >= 2, got "
                             f"{bins!r}. {fix}")
        bins = int(bins)
    offset = attrs.get(OFFSET_ATTR, 0.0) if bins else 0.0
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.number)) \
            or not 0.0 <= offset < 1.0 / (bins or 1):
        raise InputError(f"snapshot {key!r}: {OFFSET_ATTR} must be a fraction in [0, 1/bins), "
                         f"got {offset!r}. {fix}")
    return {"sites_bohr": sites, "bins": bins, "offset": float(offset)}


def snapshot_regions(snap, rho) -> list[dict]:
    """Rows of ``regions.csv`` (:data:`REGION_COLUMNS`) for one snapshot: ``rho`` (e/Bohr^3, the
    renormalised prediction on ``snap.grid``) against ``snap.rho``, per shell of
    :data:`VACANCY_EDGES_BOHR` around all its vacancies together (kind "vacancy") and of
    :data:`BOUNDARY_EDGES_BOHR` at its block faces (kind "boundary"); [] without either."""
    spec = region_spec(snap.key, snap.attrs)
    dv = snap.grid.voxel_volume_bohr3
    rows = []
    if spec["sites_bohr"] is not None:
        shells = vacancy_shells(snap.atoms, snap.grid, spec["sites_bohr"])
        rows += [{"key": snap.key, "kind": "vacancy", **r}
                 for r in region_errors(rho, snap.rho, shells, dv, VACANCY_EDGES_BOHR)]
    if spec["bins"] is not None:
        shells = boundary_shells(snap.atoms, snap.grid, spec["bins"], offset=spec["offset"])
        rows += [{"key": snap.key, "kind": "boundary", **r}
                 for r in region_errors(rho, snap.rho, shells, dv, BOUNDARY_EDGES_BOHR)]
    return rows


def worst_relative_l1(rows: list[dict]) -> float | None:
    """Largest relative L1 (%) over the region rows of a snapshot; None without any."""
    values = [r["relative_l1_percent"] for r in rows if r["relative_l1_percent"] is not None]
    return max(values) if values else None
