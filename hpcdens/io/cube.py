"""Gaussian cube files for fields on a :class:`~hpcdens.grid.Grid`.

A cube file stores one scalar field on a periodic grid: a header (two comment lines, the atom count
and origin, one line per axis with the point count and the voxel vector, one line per atom) and the
values with the third index fastest. Its grid point (i, j, k) sits at i*v1 + j*v2 + k*v3 for voxel
vectors v_a = cell_a / n_a, which is the hpcdens convention (fractional (i/n1, j/n2, k/n3), C order,
first axis slowest). ASE (``ase.io.cube``), SPARC's ``<label>.dens`` and its ``INPUT_DENS_FILE``
use the same layout.

Units in the file: lengths in Bohr, field values as given (hpcdens writes densities in e/Bohr^3).
Units at the Python edge: ``atoms`` in Angstrom (ASE), the :class:`Grid` in Bohr.

Precision. SPARC checks that n_a * v_a of an input density cube equals its lattice vector to within
1e-4 Bohr. With six decimals per voxel component (ASE's ``%12.6f``, SPARC's own ``.dens``) the
error of n_a * v_a reaches n_a * 5e-7 Bohr, which fails that check from n_a of about 200. We write
voxel vectors and positions with :data:`LENGTH_DECIMALS` = 12 decimals (n_a * v_a exact to
n_a * 5e-13 Bohr) and values with 17 significant digits by default, so a float64 field survives a
write/read cycle bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Bohr

from ..constants import LENGTH_DECIMALS
from ..errors import InputError
from ..grid import Grid

#: Values per line in the data block (the Gaussian convention; a new line starts each k-row).
VALUES_PER_LINE = 6
#: Second comment line: the loop order for ASE, and the two words SPARC's parser skips there.
AXES_LINE = "OUTER LOOP: X, MIDDLE LOOP: Y, INNER LOOP: Z"
#: Rows (fixed i, j) formatted per write call; bounds the memory of the text buffer.
ROWS_PER_CHUNK = 4096


class CubeFormatError(InputError):
    """Raised when a cube file cannot be read: missing, truncated, malformed, or not a periodic
    field on an hpcdens grid (non-zero origin, several values per point)."""


def write_cube(path, atoms: Atoms, grid: Grid, field, comment: str = "hpcdens field (e/Bohr^3)",
               significant_digits: int = 17) -> Path:
    """Write ``field`` on ``grid`` as a Gaussian cube file.

    Parameters
    ----------
    path : str or Path
        Output file; written to a temporary name in the same directory and renamed when complete.
    atoms : ase.Atoms, Angstrom
        Atoms of the cell; its cell must equal ``grid.cell_bohr`` (to 1e-6 Bohr).
    grid : Grid
        The grid of ``field`` (Bohr).
    field : (n1, n2, n3) float array, any unit (densities: e/Bohr^3)
        Values at the grid points, C order.
    comment : str
        First line of the file (newlines are replaced by spaces).
    significant_digits : int
        Digits of each value; 17 (default) round-trips float64 exactly, 7 matches SPARC's ``.dens``.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    values = _checked_field(field, grid)
    _check_cell(atoms, grid)
    if not 1 <= significant_digits <= 17:
        raise InputError(f"significant_digits must be 1..17, got {significant_digits}")
    header = _header(atoms, grid, comment)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fd:
            fd.write(header)
            _write_values(fd, values, significant_digits)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_cube(path) -> tuple[Atoms, Grid, np.ndarray]:
    """Read a Gaussian cube file written by hpcdens, ASE or SPARC.

    Returns
    -------
    atoms : ase.Atoms, Angstrom
        Atomic numbers and positions, periodic cell n_a * v_a.
    grid : Grid, Bohr
        Shape (n1, n2, n3) and cell rows n_a * v_a, at the precision the file was written with.
    field : (n1, n2, n3) float64, the file's unit (SPARC densities: e/Bohr^3)
        Values in C order.

    Raises
    ------
    CubeFormatError
        With the file name, when the file is missing or not a single-valued cube with origin 0.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CubeFormatError(f"cannot read cube file {str(path)!r}: {err}") from err
    lines = text.split("\n", 6)
    try:
        natoms, shape, voxels = _parse_grid_lines(lines[2:6])
        rest = lines[6] if len(lines) > 6 else ""
        atom_lines = rest.split("\n", natoms)
        numbers, positions = _parse_atom_lines(atom_lines[:natoms], natoms)
        data = atom_lines[natoms] if len(atom_lines) > natoms else ""
        field = _parse_values(data, shape)
        cell = voxels * np.array(shape, dtype=float)[:, None]
        grid = Grid(cell, shape)
    except (ValueError, IndexError) as err:  # InputError from Grid is a ValueError too
        raise CubeFormatError(f"{path}: not a readable cube file: {err}") from err
    atoms = Atoms(numbers=numbers, positions=positions * Bohr, cell=cell * Bohr, pbc=True)
    return atoms, grid, field


def _checked_field(field, grid: Grid) -> np.ndarray:
    values = np.asarray(field, dtype=np.float64)
    if values.shape != grid.shape:
        raise InputError(f"field has shape {values.shape}, the grid is {grid.shape}")
    if not np.isfinite(values).all():
        raise InputError(f"field has {int((~np.isfinite(values)).sum())} NaN or infinite values")
    return values


def _check_cell(atoms: Atoms, grid: Grid):
    diff = np.abs(np.asarray(atoms.cell) / Bohr - grid.cell_bohr).max()
    if diff > 1e-6:
        raise InputError(f"atoms.cell differs from the grid cell by {diff:.3g} Bohr (allowed "
                         "1e-6); write the field with the atoms it was computed for")


def _header(atoms: Atoms, grid: Grid, comment: str) -> str:
    comment = " ".join(str(comment).split()) or "hpcdens field"
    num = f"{{:{LENGTH_DECIMALS + 8}.{LENGTH_DECIMALS}f}}"
    lines = [comment, AXES_LINE, f"{len(atoms):5d}" + (" " + num.format(0.0)) * 3]
    for n, row in zip(grid.shape, grid.cell_bohr / np.array(grid.shape)[:, None]):
        lines.append(f"{n:5d}" + "".join(" " + num.format(x) for x in row))
    for z, pos in zip(atoms.numbers, atoms.positions / Bohr):
        lines.append(f"{z:5d} " + num.format(float(z)) + "".join(" " + num.format(x) for x in pos))
    return "\n".join(lines) + "\n"


def _row_format(n3: int, digits: int) -> str:
    """printf format of one k-row: VALUES_PER_LINE values per line, a newline at the row end."""
    value = f" %.{digits - 1}e"
    full, last = divmod(n3, VALUES_PER_LINE)
    fmt = (value * VALUES_PER_LINE + "\n") * full
    return fmt + (value * last + "\n" if last else "")


def _write_values(fd, values: np.ndarray, digits: int):
    rows = values.reshape(-1, values.shape[2])
    fmt = _row_format(values.shape[2], digits)
    for start in range(0, len(rows), ROWS_PER_CHUNK):
        fd.write("".join(fmt % tuple(row) for row in rows[start:start + ROWS_PER_CHUNK]))


def _parse_grid_lines(lines: list[str]):
    if len(lines) < 4:
        raise ValueError("the header ends before the three axis lines")
    head = lines[0].split()
    if len(head) < 4:
        raise ValueError(f"line 3 must hold the atom count and the origin, got {lines[0]!r}")
    natoms = int(head[0])
    if natoms < 0:
        raise ValueError("negative atom count (orbital cube with a label block) is not supported")
    if len(head) > 4 and int(head[4]) != 1:
        raise ValueError(f"{head[4]} values per grid point; only single-valued cubes are supported")
    origin = np.array([float(x) for x in head[1:4]])
    if np.abs(origin).max() > 1e-8:
        raise ValueError(f"origin {origin.tolist()} Bohr is not 0; hpcdens grids start at the "
                         "cell corner")
    shape, voxels = [], []
    for axis, line in enumerate(lines[1:4], start=1):
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(f"axis line {axis} must hold a count and a voxel vector, got {line!r}")
        n = int(parts[0])
        if n <= 0:
            raise ValueError(f"axis {axis} has {n} points; counts must be positive (Bohr units)")
        shape.append(n)
        voxels.append([float(x) for x in parts[1:]])
    return natoms, tuple(shape), np.array(voxels)


def _parse_atom_lines(lines: list[str], natoms: int):
    if len(lines) < natoms:
        raise ValueError(f"the header announces {natoms} atoms but ends after {len(lines)}")
    numbers = np.empty(natoms, dtype=int)
    positions = np.empty((natoms, 3))
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) != 5:
            raise ValueError(f"atom line {i + 1} must hold Z, charge, x, y, z; got {line!r}")
        numbers[i] = int(parts[0])
        positions[i] = [float(x) for x in parts[2:]]
    return numbers, positions


def _parse_values(data: str, shape: tuple[int, int, int]) -> np.ndarray:
    values = np.array(data.split(), dtype=np.float64)
    expected = int(np.prod(shape))
    if values.size != expected:
        raise ValueError(f"{values.size} values for a {shape[0]}x{shape[1]}x{shape[2]} grid "
                         f"({expected} expected)")
    if not np.isfinite(values).all():
        raise ValueError("the data contain NaN or infinite values")
    return values.reshape(shape)
