"""Halo atoms of a grid block, with a verified radius (no MPI).

A rank that owns the index box ``[start, stop)`` of the grid needs, for every point of its block,
the M nearest atoms of the periodic crystal. It takes the periodic images of the atoms that lie
in the block's *halo region* and runs :class:`hpcdens.neighbors.NeighborSearch` in halo mode
(``periodic=False``) over them.

Halo region for a radius R (Bohr). The block's points lie in the fractional box
``lo_i = start_i/n_i <= f_i <= hi_i = (stop_i - 1)/n_i``. The region is that box widened by
``R / h_i`` along each axis, where ``h_i`` is the cell's plane spacing (perpendicular height)
along lattice vector i. A fractional difference d along axis i means a distance of at least
``|d| h_i``, so the region holds every atom image within R of the block, and, per point p,
every image within the *covered radius*

    c(p) = min_i [ R + h_i * min(f_i(p) - lo_i, hi_i - f_i(p)) ]  (>= R)

(interior points are covered farther than R). Images are selected with a 1e-9 fractional margin,
a superset, so rounding can only add atoms.

Verification (the guarantee; R only sets the cost). The halo-mode query returns, per point,
``reach`` = start of the M-th neighbour's tie group + ``TIE_TOL_BOHR``. If ``reach < c(p)``,
every atom closer than ``reach`` is in the halo, so the M nearest atoms and their tie shell are
exactly those of the periodic crystal. Otherwise the halo grows to R' = max(1.05 reach_max,
1.25 R) and the query of those points is repeated: a reach found in the smaller halo is >= the
true one, so one growth fixes every failing point. A halo holding fewer than M + 1 atoms grows
before any query. Growth ends at the latest when R exceeds ``D + r_M`` (D the cell diameter,
r_M the mean-density radius of M atoms), which provably covers M atoms (see docs/descriptors.md).

Initial radius: ``HALO_FACTOR * r_M + HALO_PAD_BOHR`` with r_M = (3 M V / (4 pi N))^(1/3):
measured on rattled diamond, fcc and bcc cells for M = 8..100, the largest M-th distance of any
grid point was at most 1.15 r_M, and at most r_M + 1.1 Bohr, so ordinary crystals rarely grow;
vacancy clusters and voids do, and the driver logs how often.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import product

import numpy as np

from ..descriptors import from_neighbors
from ..errors import InputError
from ..neighbors import Neighbors, NeighborSearch

log = logging.getLogger("hpcdens.predict")

HALO_FACTOR = 1.15
"""Initial halo radius, in units of the mean-density radius r_M of M atoms (plus the pad)."""
HALO_PAD_BOHR = 1.0
"""Added to ``HALO_FACTOR * r_M`` for the initial halo radius (Bohr)."""
FRACTION_MARGIN = 1e-9
"""Images within this fractional distance outside the halo region are kept too (rounding)."""
GROWTH = 1.25
"""A growing halo's radius is at least this factor larger than before."""
REACH_MARGIN = 1.05
"""... and at least this factor larger than the largest reach that failed."""


@dataclass(frozen=True)
class PeriodicStructure:
    """Atoms of a periodic cell in atomic units, wrapped into the cell once.

    Attributes
    ----------
    cell_bohr : (3, 3) float64, Bohr, lattice vectors as rows
    numbers : (N,) int64, atomic numbers
    frac : (N, 3) float64, fractional coordinates wrapped into [0, 1) (1.0 allowed by rounding)
    cart : (N, 3) float64, Bohr, ``frac @ cell_bohr``
    heights : (3,) float64, Bohr, plane spacing along each lattice vector
    diameter : float, Bohr, longest body diagonal of the cell
    """

    cell_bohr: np.ndarray
    numbers: np.ndarray
    frac: np.ndarray
    cart: np.ndarray
    heights: np.ndarray
    diameter: float

    @classmethod
    def from_arrays(cls, positions_bohr, numbers, cell_bohr) -> "PeriodicStructure":
        """Wrap ``positions_bohr`` (N, 3), Bohr, into the cell ``cell_bohr`` (3, 3), Bohr."""
        cell = np.asarray(cell_bohr, dtype=float).reshape(3, 3)
        volume = abs(np.linalg.det(cell))
        if not volume > 1e-12:
            raise InputError("the cell is singular: its lattice vectors are linearly dependent")
        frac = np.asarray(positions_bohr, dtype=float).reshape(-1, 3) @ np.linalg.inv(cell)
        frac = frac - np.floor(frac)
        heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        signs = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]])
        return cls(cell, np.asarray(numbers, dtype=np.int64), frac, frac @ cell, heights,
                   float(np.linalg.norm(signs @ cell, axis=1).max()))

    @property
    def volume_bohr3(self) -> float:
        return float(abs(np.linalg.det(self.cell_bohr)))

    def density_radius(self, m: int) -> float:
        """r_M (Bohr): radius of a sphere holding ``m`` atoms at the cell's mean density."""
        return (3.0 * m * self.volume_bohr3 / (4.0 * np.pi * len(self.numbers))) ** (1.0 / 3.0)


def initial_radius(structure: PeriodicStructure, m: int) -> float:
    """First guess of the halo radius (Bohr) for M = ``m`` neighbours (module docstring)."""
    return HALO_FACTOR * structure.density_radius(m) + HALO_PAD_BOHR


def halo_region(shape, start, stop, radius: float, heights) -> tuple[np.ndarray, np.ndarray]:
    """Fractional bounds ``(low, high)`` (3,) of the halo region of the box ``[start, stop)``."""
    n = np.asarray(shape, dtype=float)
    widen = float(radius) / np.asarray(heights, dtype=float)
    return np.asarray(start) / n - widen, (np.asarray(stop) - 1) / n + widen


def select_images(structure: PeriodicStructure, low, high):
    """Atom images whose fractional coordinates lie in ``[low, high]`` (+ the margin).

    Returns
    -------
    positions : (H, 3) float64, Bohr, ``cart[atom] + offset @ cell`` (the same bits for an image
        whatever the block, so descriptors do not depend on the decomposition)
    atom : (H,) int64, index into the structure's atoms
    offset : (H, 3) int64, lattice offset of the image
    """
    low = np.asarray(low) - FRACTION_MARGIN
    high = np.asarray(high) + FRACTION_MARGIN
    frac = structure.frac
    ranges, inside = [], []
    for axis in range(3):
        offsets = np.arange(int(np.floor(low[axis])) - 1, int(np.ceil(high[axis])) + 1)
        shifted = frac[:, axis][None, :] + offsets[:, None]
        ok = (shifted >= low[axis]) & (shifted <= high[axis])
        keep = ok.any(1)
        ranges.append(offsets[keep])
        inside.append(ok[keep])
    pos, atom, off = [], [], []
    for (i, n0), (j, n1), (k, n2) in product(*(enumerate(r) for r in ranges)):
        sel = np.flatnonzero(inside[0][i] & inside[1][j] & inside[2][k])
        if len(sel):
            shift = np.array([n0, n1, n2])
            pos.append(structure.cart[sel] + shift @ structure.cell_bohr)
            atom.append(sel)
            off.append(np.broadcast_to(shift, (len(sel), 3)))
    if not pos:
        return np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    return np.concatenate(pos), np.concatenate(atom).astype(np.int64), np.concatenate(off)


def atoms_near_block(structure: PeriodicStructure, shape, start, stop, radius: float) -> np.ndarray:
    """Sorted indices of the atoms with an image within ``radius`` (Bohr) of the block (a
    superset). Used to give a per-block subset of atoms to lattice sums with a finite cutoff."""
    low, high = halo_region(shape, start, stop, radius, structure.heights)
    return np.unique(select_images(structure, low, high)[1])


def covered_radius(index_points, shape, start, stop, radius: float, heights) -> np.ndarray:
    """c(p) (Bohr) of points given by their (n, 3) integer grid indices (module docstring)."""
    idx = np.asarray(index_points)
    n = np.asarray(shape, dtype=float)
    to_low = (idx - np.asarray(start)) / n
    to_high = (np.asarray(stop) - 1 - idx) / n
    return float(radius) + (np.minimum(to_low, to_high) * np.asarray(heights)).min(axis=1)


class BlockHalo:
    """The halo of one block and a halo-mode neighbour search over it; grows when a check fails.

    Parameters
    ----------
    structure : PeriodicStructure
    shape : (3,) int, global grid shape; start, stop : (3,) int, the block's index box
    m : int, number of neighbours M
    radius : float, Bohr, initial halo radius (default :func:`initial_radius`)

    Attributes
    ----------
    radius : float, Bohr, current halo radius
    growths : int, how many times the halo grew (0 if the first guess held)
    n_atoms : int, atom images in the halo now
    build_seconds : float, wall time spent selecting images and building search trees
    """

    def __init__(self, structure: PeriodicStructure, shape, start, stop, m: int,
                 radius: float | None = None):
        self.structure, self.m = structure, int(m)
        self.shape, self.start, self.stop = tuple(shape), tuple(start), tuple(stop)
        self.radius = float(initial_radius(structure, m) if radius is None else radius)
        self.growths, self.build_seconds = 0, 0.0
        self._bound = structure.diameter + structure.density_radius(self.m) + 1e-6
        self._build()
        while self.n_atoms <= self.m:
            self._grow(GROWTH * self.radius)

    def _build(self) -> None:
        t0 = time.perf_counter()
        low, high = halo_region(self.shape, self.start, self.stop, self.radius,
                                self.structure.heights)
        pos, atom, _ = select_images(self.structure, low, high)
        self.n_atoms = len(pos)
        self._search = (NeighborSearch(pos, self.structure.numbers[atom], None, self.m,
                                       periodic=False) if len(pos) else None)
        self.build_seconds += time.perf_counter() - t0

    def _grow(self, radius: float) -> None:
        if self.radius > 2 * self._bound + 1.0:
            raise RuntimeError(f"halo radius {self.radius} Bohr is beyond the proven bound "
                               f"{self._bound} Bohr and still fails its check; this is a bug")
        old, self.radius = self.radius, max(float(radius), GROWTH * self.radius)
        self.growths += 1
        self._build()
        log.debug("halo of block %s-%s grew from %.3f to %.3f Bohr (%d atoms)", self.start,
                  self.stop, old, self.radius, self.n_atoms)

    def neighbors(self, index_points, points_bohr) -> Neighbors:
        """Verified ``query_shell`` result for points of the block.

        index_points : (n, 3) int, global grid indices; points_bohr : (n, 3) float64, Bohr, their
        Cartesian coordinates (all inside the block). Equal to the periodic search's M-shell.
        """
        while True:
            nb = self._search.query_shell(points_bohr, self.m)
            cover = covered_radius(index_points, self.shape, self.start, self.stop, self.radius,
                                   self.structure.heights)
            failing = nb.reach >= cover
            if not failing.any():
                return nb
            self._grow(REACH_MARGIN * float(nb.reach[failing].max()))

    def descriptors(self, index_points, points_bohr) -> np.ndarray:
        """(n, 5M) float64 descriptors of the points (see :mod:`hpcdens.descriptors`)."""
        return from_neighbors(self.neighbors(index_points, points_bohr), self.m)
