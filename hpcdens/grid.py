"""The periodic real-space grid on which densities live.

Convention (the same as Gaussian cube files, SPARC's ``.dens`` and PySCF's uniform grids): grid
point (i, j, k) sits at fractional coordinates (i/n1, j/n2, k/n3) of the cell, arrays are stored in
C order with the first axis slowest. Lengths are in Bohr, densities in e/Bohr^3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import DEFAULT_CHUNK_POINTS  # noqa: F401 - its home for the other modules
from .errors import InputError

MAX_SPACING_BOHR = 1.0
"""No grid coarser than this along any lattice vector (Bohr) is accepted, for labels or
predictions: densities vary on 0.1-0.5 Bohr and no training grid is coarser."""
MIN_POINTS_PER_AXIS = 6
"""No grid with fewer points along a lattice vector is accepted: SPARC's finite-difference stencil
needs 6, and a grid must serve every backend."""


@dataclass(frozen=True)
class Grid:
    """A periodic grid over a cell.

    Attributes
    ----------
    cell_bohr : (3, 3) float64, Bohr
        Lattice vectors as rows.
    shape : (3,) tuple of int
        Number of points along each lattice vector (n1, n2, n3).
    """

    cell_bohr: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self):
        cell = np.array(self.cell_bohr, dtype=float).reshape(3, 3)
        cell.setflags(write=False)
        object.__setattr__(self, "cell_bohr", cell)
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"grid shape must be three positive integers, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if abs(np.linalg.det(cell)) < 1e-12:
            raise InputError("grid cell is singular (its lattice vectors are linearly dependent)")

    @classmethod
    def from_spacing(cls, cell_bohr, spacing_bohr: float, odd: bool = True) -> "Grid":
        """Grid whose spacing along each lattice vector is at most ``spacing_bohr`` (Bohr).

        With ``odd`` (default) every n_i is rounded up to an odd number: an even FFT mesh has a
        Nyquist mode that makes spectral derivatives ill-defined.
        """
        if not spacing_bohr > 0:
            raise InputError(f"grid spacing must be > 0 Bohr, got {spacing_bohr}")
        lengths = np.linalg.norm(np.asarray(cell_bohr, dtype=float).reshape(3, 3), axis=1)
        n = np.ceil(lengths / spacing_bohr - 1e-9).astype(int)
        if odd:
            n += 1 - n % 2
        return cls(cell_bohr, tuple(int(x) for x in n))

    @property
    def size(self) -> int:
        """Total number of grid points."""
        return int(np.prod(self.shape))

    @property
    def volume_bohr3(self) -> float:
        """Cell volume (Bohr^3)."""
        return float(abs(np.linalg.det(self.cell_bohr)))

    @property
    def voxel_volume_bohr3(self) -> float:
        """Volume per grid point (Bohr^3)."""
        return self.volume_bohr3 / self.size

    @property
    def spacing_bohr(self) -> np.ndarray:
        """(3,) grid spacing along each lattice vector (Bohr)."""
        return np.linalg.norm(self.cell_bohr, axis=1) / np.array(self.shape)

    def check(self, fix: str = "a smaller spacing (e.g. 0.4 Bohr) or a larger shape") -> "Grid":
        """The one grid rule of the project: spacing <= :data:`MAX_SPACING_BOHR` along every
        lattice vector and >= :data:`MIN_POINTS_PER_AXIS` points per axis. Returns the grid, or
        raises InputError naming the grid, the limits and ``fix``."""
        coarse = float(self.spacing_bohr.max())
        if coarse > MAX_SPACING_BOHR or min(self.shape) < MIN_POINTS_PER_AXIS:
            raise InputError(f"grid {self.shape} is too coarse for this cell: spacing up to "
                             f"{coarse:.3f} Bohr (allowed <= {MAX_SPACING_BOHR}) and at least "
                             f"{MIN_POINTS_PER_AXIS} points per axis. Fix: {fix}")
        return self

    def fractional_points(self, start=(0, 0, 0), stop=None) -> np.ndarray:
        """(n, 3) fractional coordinates of the points of the index box [start, stop), C order."""
        stop = self.shape if stop is None else stop
        axes = [np.arange(a, b) / n for a, b, n in zip(start, stop, self.shape)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def cartesian_points(self, start=(0, 0, 0), stop=None) -> np.ndarray:
        """(n, 3) Cartesian coordinates (Bohr) of the points of the index box [start, stop)."""
        return self.fractional_points(start, stop) @ self.cell_bohr

    def integrate(self, field: np.ndarray) -> float:
        """Integral of a field on the whole grid: sum * voxel volume (field units * Bohr^3)."""
        field = np.asarray(field)
        if field.shape != self.shape:
            raise InputError(f"field has shape {field.shape}, the grid is {self.shape}")
        return float(field.sum() * self.voxel_volume_bohr3)
