"""Small checks shared by the commands: output paths before any work, file hashes, atomic JSON
journals and tables, and the "rank 0 decides, every rank raises the same error" pattern of the MPI drivers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import HpcdensError, InputError


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


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fd:
        for block in iter(lambda: fd.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def on_root(comm, fn, *args):
    """``fn(*args)`` on rank 0 of ``comm``; its result, or its failure, on every rank, so all
    ranks stop together instead of hanging in the next collective call. An InputError is raised
    as InputError everywhere; any other failure is re-raised on rank 0 and reported as
    HpcdensError on the others."""
    status = None
    if comm.rank == 0:
        try:
            status = ("ok", fn(*args))
        except InputError as err:
            status = ("input", str(err))
        except Exception as err:  # noqa: BLE001 - the other ranks must not hang
            status = ("failed", err)
    status = comm.bcast(status, root=0)
    if status[0] == "input":
        raise InputError(status[1])
    if status[0] == "failed":
        if comm.rank == 0:
            raise status[1]
        raise HpcdensError(f"rank 0 failed: {status[1]!r}")
    return status[1]
