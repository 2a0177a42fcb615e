"""``hpcdens export``: a field of a prediction file as a Gaussian cube file.

The cube is written with :func:`hpcdens.cube.write_cube`'s exact format (same header, voxel
vectors and positions with 12 decimals, 17 significant digits by default, six values per line, a
new line at the end of every k-row), so ASE reads it and SPARC accepts it as ``INPUT_DENS_FILE``.
Unlike ``write_cube`` it never holds the whole field: it reads the HDF5 dataset in slabs of the
first axis (about ``SLAB_VALUES`` values each) and writes each slab's lines before reading the
next. The output goes to a temporary name and is renamed when complete.

Serial: run it without mpirun (one process reads the file). A prediction without the root
attribute ``complete = True`` (a run that did not finish) is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cube import LENGTH_DECIMALS, _header, _row_format
from .errors import InputError
from .grid import Grid

SLAB_VALUES = 1 << 22
"""Values read per slab (32 MB of float64); a slab holds at least one plane of the first axis."""
DEFAULT_FIELD = "rho_normalised"


def _open_prediction(path):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"prediction file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path} is not an HDF5 file ({err})") from err
    if not bool(f.attrs.get("complete", False)):
        f.close()
        raise InputError(f"{path} has no attribute complete=True: the prediction did not finish "
                         "(killed or failed). Run 'hpcdens predict' again")
    return f


def _atoms(f):
    from ase import Atoms
    from ase.units import Bohr

    g = f["atoms"]
    return Atoms(numbers=g["numbers"][()], positions=g["positions_bohr"][()] * Bohr,
                 cell=g["cell_bohr"][()] * Bohr, pbc=g["pbc"][()])


def fields_of(f) -> list[str]:
    """Names of the 3-D fields in an open prediction file."""
    return sorted(k for k, v in f.items() if hasattr(v, "shape") and len(v.shape) == 3)


def export_cube(prediction, cube, field: str = DEFAULT_FIELD, overwrite: bool = False,
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
    with _open_prediction(prediction) as f:
        if field not in fields_of(f):
            raise InputError(f"{prediction} has no field {field!r}; it has {fields_of(f)}")
        dset, atoms = f[field], _atoms(f)
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


def cmd_export(args) -> int:
    """``hpcdens export`` (argparse namespace -> exit code)."""
    path = export_cube(args.prediction, args.cube, args.field, args.overwrite, args.digits)
    print(f"wrote {args.field} of {args.prediction} to {path}")
    return 0


def register_export(sub):
    """Add the ``export`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "export", help="write a field of a prediction as a Gaussian cube file",
        description="Write one field of a finished 'hpcdens predict' file as a Gaussian cube "
        f"(lengths in Bohr with {LENGTH_DECIMALS} decimals, values in e/Bohr^3), readable by ASE "
        "and usable as SPARC's INPUT_DENS_FILE. Streams the field slab by slab, so the grid is "
        "never held in memory whole. Run it serially (no mpirun).")
    p.add_argument("prediction", help="HDF5 file written by 'hpcdens predict'")
    p.add_argument("--cube", required=True, help="output cube file")
    p.add_argument("--field", default=DEFAULT_FIELD, help="dataset to export: rho_normalised "
                   "(default; integrates to N_e), rho, epistemic_std, aleatoric_std, rho_sad")
    p.add_argument("--digits", type=int, default=17, help="significant digits per value "
                   "(default 17: exact float64; 7 is SPARC's own precision)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cube file")
    p.set_defaults(func=cmd_export)
    return p
