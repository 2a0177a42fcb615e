"""Files in general: atomic JSON journals and CSV tables, output-path checks before any work,
opening an HDF5 input with a clear refusal, file hashes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import InputError


def write_json(path, data) -> None:
    """Write ``data`` as JSON atomically: a temporary file next to ``path``, fsync, rename. A kill
    at any moment leaves the old file or the new one, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_csv(path, rows, columns) -> None:
    """Write the dicts ``rows`` as CSV with the header ``columns`` (other keys ignored, None as an
    empty field), atomically like :func:`write_json`."""
    import csv

    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def output_file(path, overwrite: bool, what: str = "output") -> Path:
    """Check an output file path before any work: its directory exists, and the file does not
    exist unless ``overwrite``. Raises InputError naming the fix."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{what} directory {str(path.parent)!r} does not exist. "
                         f"Fix: create it (mkdir -p {path.parent}) or choose another path")
    if path.exists() and not overwrite:
        raise InputError(f"{what} {str(path)!r} already exists. Fix: pass --overwrite to replace it, "
                         "or choose another path")
    return path


def open_hdf5(path, what: str, fix: str):
    """Open the HDF5 file ``path`` read-only (an ``h5py.File``). A missing path, or one that is
    not HDF5, raises InputError naming ``what`` (e.g. "training set") and ``fix``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist. Fix: check the path")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{what} {str(path)!r} is not a readable HDF5 file ({err}). "
                         f"Fix: {fix}") from err


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fd:
        for block in iter(lambda: fd.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


