"""The HDF5 training-set file: one group per labelled snapshot (schema in docs/data-format.md).

Writing is crash-safe in two stages. Each finished snapshot is first written to its own part file
``<training set>.parts/<key>.h5`` under a temporary name and renamed when complete, so a killed run
leaves only whole parts. :func:`assemble` then copies the parts, in plan order, into the training
set, again through a temporary name and a rename, and sets the root attribute ``complete`` last.
Readers see a snapshot whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms
from ase.units import Bohr

from ..dft.base import DFTResult
from ..errors import InputError
from ..grid import Grid
from .files import open_hdf5, write_json

FORMAT = "hpcdens-training-set"
VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """One labelled snapshot as read back from a training set (atomic units).

    ``rho`` and ``rho_sad`` are (n1, n2, n3) e/Bohr^3 on ``grid``; ``attrs`` holds the scalars
    (energy_ha, free_energy_ha, n_electrons, composition, backend, ...) and ``settings`` the backend
    settings.
    """

    key: str
    atoms: Atoms
    grid: Grid
    rho: np.ndarray
    rho_sad: np.ndarray
    attrs: dict
    settings: dict


def parts_dir(path: Path) -> Path:
    """Directory of the part files of training set ``path``."""
    return Path(f"{path}.parts")


def part_path(path: Path, key: str) -> Path:
    return parts_dir(path) / f"{key.replace('/', '__')}.h5"


def failure_path(path: Path, key: str) -> Path:
    return parts_dir(path) / f"{key.replace('/', '__')}.failed.json"


def _write_atoms(group: h5py.Group, atoms: Atoms):
    group["numbers"] = atoms.numbers.astype(np.int32)
    group["positions_bohr"] = atoms.positions / Bohr
    group["cell_bohr"] = atoms.cell[:] / Bohr
    group["pbc"] = np.asarray(atoms.pbc, dtype=bool)


def write_part(path: Path, key: str, atoms: Atoms, result: DFTResult, rho_sad: np.ndarray,
               extra: dict | None = None) -> Path:
    """Write one labelled snapshot as a complete part file (temporary name, then rename)."""
    final = part_path(path, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("snapshot")
        _write_atoms(g, atoms)
        g.create_dataset("rho", data=result.rho, compression="gzip", shuffle=True)
        g.create_dataset("rho_sad", data=rho_sad, compression="gzip", shuffle=True)
        attrs = {"key": key, "grid_shape": np.array(result.grid.shape),
                 "energy_ha": result.energy_ha, "free_energy_ha": result.free_energy_ha,
                 "n_electrons": result.n_electrons, "fermi_level_ha": result.fermi_level_ha,
                 "n_iterations": result.n_iterations, "wall_time_s": result.wall_time_s,
                 "backend": result.backend, "settings": json.dumps(result.settings, sort_keys=True)}
        attrs.update({k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))})
        attrs.update(extra or {})
        g.attrs.update(attrs)
        g.attrs["complete"] = True
    os.replace(tmp, final)
    return final


def copy_snapshot(src: h5py.File, key: str, path: Path, attrs: dict | None = None) -> Path:
    """Snapshot ``key`` of the open complete training set ``src`` as the complete part file of
    ``key`` in training set ``path`` (temporary name, then rename, like :func:`write_part`), with
    ``attrs`` added to its attributes."""
    final = part_path(path, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as dst:
        src.copy(src["snapshots"][key], dst, name="snapshot")
        dst["snapshot"].attrs.update(attrs or {})
    os.replace(tmp, final)
    return final


def write_failure(path: Path, key: str, reason: str, info: dict | None = None):
    """Record a failed label (never stored as a snapshot): JSON next to the parts."""
    final = failure_path(path, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    write_json(final, {"key": key, "reason": reason, **(info or {})})


def part_is_complete(path: Path, key: str) -> bool:
    """Whether the part file of ``key`` exists and is complete (unreadable parts count as missing)."""
    try:
        with h5py.File(part_path(path, key), "r") as f:
            return bool(f["snapshot"].attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def clean_partial(path: Path):
    """Remove temporary files a killed run left in the parts directory."""
    for tmp in parts_dir(path).glob("*.tmp*"):
        tmp.unlink(missing_ok=True)


def assemble(path: Path, keys: list[str], meta: dict) -> tuple[int, list[dict]]:
    """Copy the complete parts of ``keys`` (in that order) into the training set ``path``.

    Returns the number of snapshots written and the failure records. The file appears under its
    final name only when whole; its root attribute ``complete`` is written last.
    """
    tmp = Path(f"{path}.tmp{os.getpid()}")
    failures, stored = [], []
    with h5py.File(tmp, "w") as out:
        out.attrs.update({"format": FORMAT, "version": VERSION, **meta})
        snaps = out.create_group("snapshots")
        for key in keys:
            if part_is_complete(path, key):
                with h5py.File(part_path(path, key), "r") as part:
                    part.copy(part["snapshot"], snaps, name=key)
                stored.append(key)
            elif failure_path(path, key).is_file():
                failures.append(json.loads(failure_path(path, key).read_text()))
        fail = out.create_group("failures")
        for record in failures:
            fail.attrs[record["key"]] = json.dumps(record, sort_keys=True)
        out.attrs["n_snapshots"] = len(stored)
        out.attrs["snapshot_keys"] = json.dumps(stored)
        out.attrs["complete"] = True
    os.replace(tmp, path)
    return len(stored), failures


def open_complete(path, what: str = "training set") -> h5py.File:
    """Open a complete training set read-only; InputError naming ``what`` for anything else."""
    path = Path(path)
    f = open_hdf5(path, what, "pass a training-set file written by 'hpcdens generate'")
    if f.attrs.get("format") != FORMAT or not f.attrs.get("complete", False):
        fmt = f.attrs.get("format")
        f.close()
        raise InputError(f"{what} {str(path)!r} is not a complete hpcdens training set (format "
                         f"{fmt!r}). Fix: pass a file written by 'hpcdens generate' (rerun it to "
                         "finish one)")
    return f


def snapshot_attrs(path, what: str = "training set") -> dict[str, dict]:
    """``{key: attributes}`` of every snapshot of a complete training set, in plan order, without
    reading any density (composition, requested_composition, n_electrons, energies, ...)."""
    with open_complete(path, what) as f:
        return {key: {k: (v.item() if isinstance(v, np.generic) else v)
                      for k, v in f["snapshots"][key].attrs.items()}
                for key in json.loads(f.attrs["snapshot_keys"])}


def snapshot_keys(path) -> list[str]:
    """The keys of a complete training set's snapshots, in the order of the input file's plan."""
    with open_complete(path) as f:
        return json.loads(f.attrs["snapshot_keys"])


def read_training_set(path) -> list[Snapshot]:
    """All snapshots of a training set, in the order of the input file's plan. Raises InputError
    for files that are not complete hpcdens training sets."""
    with open_complete(path) as f:
        keys = json.loads(f.attrs["snapshot_keys"])
        return [_read_snapshot(key, f["snapshots"][key]) for key in keys]


def read_snapshot(path, key: str | None = None) -> Snapshot:
    """One snapshot of a training set, read alone. ``key`` may be None when the set holds
    exactly one snapshot."""
    with open_complete(path) as f:
        keys = json.loads(f.attrs["snapshot_keys"])
        if key is None and len(keys) == 1:
            key = keys[0]
        if key not in keys:
            shown = ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
            raise InputError(f"training set {path} has no snapshot {key!r}. Fix: give --key, one "
                             f"of: {shown}")
        return _read_snapshot(key, f["snapshots"][key])


def _read_snapshot(key: str, g: h5py.Group) -> Snapshot:
    cell = g["cell_bohr"][...]
    atoms = Atoms(numbers=g["numbers"][...], positions=g["positions_bohr"][...] * Bohr,
                  cell=cell * Bohr, pbc=g["pbc"][...])
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
    settings = json.loads(attrs.pop("settings", "{}"))
    grid = Grid(cell, tuple(int(n) for n in attrs.pop("grid_shape")))
    return Snapshot(key, atoms, grid, g["rho"][...], g["rho_sad"][...], attrs, settings)


def recorded_items(record, data, kinds, none_message: str) -> list[tuple[str, str]]:
    """(file, key) of the snapshots the model ``record`` lists under ``kinds`` (keys of its
    ``training`` record: "train_snapshots", "validation_snapshots"), read from the recorded
    training files or ``data`` (same order). InputError: ``none_message`` when there are none,
    too few files, a missing file."""
    training = record.training or {}
    snaps = [s for kind in kinds for s in training.get(kind) or []]
    files = [str(f) for f in (data or training.get("data_files") or [])]
    if not snaps:
        raise InputError(none_message)
    needed = sorted({int(s["file"]) for s in snaps})
    if len(files) <= needed[-1]:
        raise InputError(f"the model's snapshots come from {needed[-1] + 1} training files but "
                         f"{len(files)} are given. Fix: pass --data with the files 'hpcdens "
                         "train' was given, in that order")
    missing = [files[i] for i in needed if not Path(files[i]).is_file()]
    if missing:
        raise InputError(f"training file {missing[0]!r} (recorded in the model) does not exist "
                         "here. Fix: pass --data with the training files, in the order "
                         "'hpcdens train' was given them")
    return [(files[int(s["file"])], str(s["key"])) for s in snaps]
