"""The HDF5 prediction file written by ``hpcdens predict`` (schema: docs/commands/predict.md).

One place knows it: the format name and version, the units of each field, opening a finished file
(refusing one without the root attribute ``complete = True``, i.e. a run that did not finish),
reading its atoms and a field, and streaming a field into a Gaussian cube.

:func:`export_cube` writes :func:`hpcdens.io.cube.write_cube`'s exact format (same header, voxel
vectors and positions with 12 decimals, 17 significant digits by default, six values per line, a
new line at the end of every k-row), so ASE reads it and SPARC accepts it as ``INPUT_DENS_FILE``.
Unlike ``write_cube`` it never holds the whole field: it reads the dataset in slabs of the first
axis (about ``SLAB_VALUES`` values each) and writes each slab's lines before reading the next. The
output goes to a temporary name and is renamed when complete. Serial: one process reads the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import Bohr

from ..constants import EXPORT_FIELD
from ..errors import InputError
from ..grid import Grid
from .cube import _header, _row_format
from .files import open_hdf5

FORMAT = "hpcdens-prediction"
FORMAT_VERSION = 1
FIELD_UNITS = {"rho": "e/Bohr^3", "rho_normalised": "e/Bohr^3", "epistemic_std": "e/Bohr^3",
               "aleatoric_std": "e/Bohr^3", "rho_sad": "e/Bohr^3",
               # and rho_sample_<j> (predict --save-samples): e/Bohr^3, weight sample j's density
               "out_of_reach": "1 where the raw epistemic std exceeds the model's out-of-reach "
                               "threshold (hpcdens calibrate), else 0"}
"""Units of every field a prediction file may hold (the ``units`` attribute of each dataset)."""
SLAB_VALUES = 1 << 22
"""Values read per slab when a field is streamed into a cube (32 MB of float64; a slab holds at
least one plane of the first axis)."""


def open_prediction(path):
    """Open a finished prediction file read-only (an ``h5py.File``; close it, or use ``with``).
    Refuses a missing or non-HDF5 path, a file without ``complete = True`` (a prediction that
    did not finish) and a file of another format, each with an InputError naming the fix."""
    path = Path(path)
    f = open_hdf5(path, "prediction file", "pass a file written by 'hpcdens predict'")
    problem = None
    if not bool(f.attrs.get("complete", False)):
        problem = (f"{path} has no attribute complete=True: the prediction did not finish "
                   "(killed or failed). Fix: run 'hpcdens predict' again")
    elif f.attrs.get("format", FORMAT) != FORMAT:
        problem = (f"{path} has format {f.attrs['format']!r}, not {FORMAT!r}: it was not written "
                   "by 'hpcdens predict'")
    elif "atoms" not in f:
        problem = f"{path} has no 'atoms' group; it is not an hpcdens prediction"
    if problem:
        f.close()
        raise InputError(problem)
    return f


def read_atoms(f) -> Atoms:
    """The structure of an open prediction file as ASE Atoms (Angstrom)."""
    g = f["atoms"]
    return Atoms(numbers=g["numbers"][()], positions=g["positions_bohr"][()] * Bohr,
                 cell=g["cell_bohr"][()] * Bohr, pbc=g["pbc"][()])


def fields_of(f) -> list[str]:
    """Names of the 3-D fields in an open prediction file."""
    return sorted(k for k, v in f.items() if getattr(v, "ndim", 0) == 3)


def read_sample_densities(path) -> list[np.ndarray]:
    """The per-weight-sample densities ``rho_sample_<j>`` of a prediction written with
    ``--save-samples`` (raw, e/Bohr^3), in the order of j; an empty list when it has none."""
    with open_prediction(path) as f:
        names = sorted((n for n in fields_of(f) if n.startswith("rho_sample_")),
                       key=lambda n: int(n.rsplit("_", 1)[1]))
        return [np.asarray(f[n][()], dtype=np.float64) for n in names]


def _check_field(f, path, field: str) -> None:
    if field not in fields_of(f):
        raise InputError(f"{path} has no field {field!r}; its 3-D fields are {fields_of(f)}. "
                         "Fix: choose one of them")


def export_cube(prediction, cube, field: str = EXPORT_FIELD, overwrite: bool = False,
                significant_digits: int = 17, slab_values: int = SLAB_VALUES) -> Path:
    """Write ``field`` of the prediction file ``prediction`` as the Gaussian cube ``cube``.

    Parameters
    ----------
    prediction : path of an ``hpcdens predict`` HDF5 file (must carry ``complete = True``)
    cube : output path; refused if it exists unless ``overwrite``
    field : dataset name: rho_normalised (default), rho, epistemic_std, aleatoric_std, rho_sad
    significant_digits : 1..17 digits per value (17 round-trips float64; 7 is SPARC's own)
    slab_values : values read per slab (bounds memory)

    Returns
    -------
    Path of the cube file (lengths in Bohr, values in e/Bohr^3).
    """
    cube = Path(cube)
    if cube.exists() and not overwrite:
        raise InputError(f"{cube} already exists. Fix: pass --overwrite or choose another name")
    if not cube.parent.is_dir():
        raise InputError(f"directory {str(cube.parent)!r} of {cube.name} does not exist")
    if not 1 <= int(significant_digits) <= 17:
        raise InputError(f"significant digits must be 1..17, got {significant_digits}")
    with open_prediction(prediction) as f:
        _check_field(f, prediction, field)
        dset, atoms = f[field], read_atoms(f)
        grid = Grid(f["atoms/cell_bohr"][()], dset.shape)
        comment = f"hpcdens {field} (e/Bohr^3) from {Path(prediction).name}"
        tmp = cube.with_name(f".{cube.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w") as out:
                out.write(_header(atoms, grid, comment))
                _write_slabs(out, dset, int(significant_digits), slab_values)
            os.replace(tmp, cube)
        finally:
            if tmp.exists():
                tmp.unlink()
    return cube


def _write_slabs(out, dset, digits: int, slab_values: int) -> None:
    n1, n2, n3 = dset.shape
    fmt = _row_format(n3, digits)
    step = max(1, int(slab_values) // (n2 * n3))
    for i in range(0, n1, step):
        slab = np.asarray(dset[i:i + step], dtype=np.float64)
        if not np.isfinite(slab).all():
            raise InputError(f"{dset.name} holds NaN or inf in planes {i}..{i + len(slab) - 1}")
        out.write("".join(fmt % tuple(row) for row in slab.reshape(-1, n3)))


@dataclass(frozen=True)
class Prediction:
    """A finished prediction file: ``atoms`` (Angstrom), the density ``rho`` (n1, n2, n3)
    e/Bohr^3 on ``grid`` (as stored, not renormalised), its root attributes ``attrs``."""

    path: Path
    field: str
    atoms: Atoms
    grid: Grid
    rho: np.ndarray
    attrs: dict


def read_prediction(path, field: str = "rho") -> Prediction:
    """Read the 3-D dataset ``field`` (default ``rho``, the raw prediction, float64 e/Bohr^3),
    the atoms and the root attributes of a finished prediction file (see :func:`open_prediction`
    for what is refused)."""
    path = Path(path)
    with open_prediction(path) as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        _check_field(f, path, field)
        atoms = read_atoms(f)
        grid = Grid(f["atoms/cell_bohr"][()], f[field].shape)
        rho = np.asarray(f[field][()], dtype=np.float64)
    shape = attrs.get("grid_shape")
    if shape is not None and tuple(int(n) for n in np.ravel(shape)) != grid.shape:
        raise InputError(f"{path}: dataset {field!r} has shape {grid.shape} but the file's "
                         f"grid_shape attribute is {tuple(np.ravel(shape))}; the file is damaged")
    return Prediction(path, field, atoms, grid, rho, attrs)
