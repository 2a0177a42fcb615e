"""The atomic-charge correction of a model (:mod:`hpcdens.charges`, docs/charges.md): fitted by
``hpcdens charges`` (:func:`run_fit_charges`) on the DFT densities of the model's training
snapshots and stored in its record with the backend's pro-atoms; applied to a renormalised
prediction on its full grid by :func:`correct_density` (``evaluate``, ``scf``).

Fitting: the snapshots are those ``hpcdens train`` recorded (training and validation), read from
the recorded training files (or ``data``, in the same order); each rank computes the Hirshfeld
charges and the features of every size-th snapshot, rank 0 fits and writes. Units: e, Bohr.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr

from . import charges
from .errors import InputError

log = logging.getLogger("hpcdens.charges")


def training_items(record, data=None) -> list[tuple[str, str]]:
    """(file, key) of every snapshot the model ``record`` was trained or validated on; ``data``
    replaces the recorded training files (same order). InputError naming the fix."""
    from .io.training_set import recorded_items

    return recorded_items(record, data, ("train_snapshots", "validation_snapshots"),
                          "the model records no training snapshots. Fix: use a model written by "
                          "'hpcdens train' of this version")


def correct_density(rho, atoms, grid, record: dict) -> tuple[np.ndarray, dict]:
    """(rho', info): the renormalised density ``rho`` (e/Bohr^3 on ``grid``, the cell of
    ``atoms``) with every atom's Hirshfeld charge moved to the charge model's of ``record``
    (a model record's ``charges``), the total kept (:func:`hpcdens.charges.correct`). info:
    {"charge_rmse_change": rms of (model - prediction) charges (e), "lambda_max": max |lam|}.
    The whole grid on one process; a prediction file is corrected on every rank by
    :func:`hpcdens.parallel.charge_pass.write_corrected`, with the same sums over blocks."""
    model, radial = load_charge_model(record, atoms.get_chemical_symbols())
    weights, zval, q_now = hirshfeld(atoms, grid, rho, radial)
    target, change = target_populations(model, atoms.positions / Bohr, atoms.numbers,
                                        np.asarray(atoms.cell) / Bohr, zval, zval - q_now)
    fixed, lam = charges.correct(rho, weights, grid.voxel_volume_bohr3, target)
    return fixed, {"charge_rmse_change": change, "lambda_max": float(np.abs(lam).max())}


def load_charge_model(record: dict, symbols) -> tuple[charges.ChargeModel, dict]:
    """(the charge model, its pro-atoms: element -> :class:`hpcdens.sad.RadialDensity`) of a
    model record's ``charges``; InputError when an element of ``symbols`` has no pro-atom."""
    from .sad import RadialDensity

    radial = {el: RadialDensity.from_table(el, t) for el, t in record["pro_atoms"].items()}
    missing = sorted(set(symbols) - set(radial))
    if missing:
        raise InputError(f"the charge model has no pro-atom for {missing}. Fix: fit it again "
                         "with 'hpcdens charges' on training data holding these elements")
    return charges.ChargeModel.from_record(record), radial


def target_populations(model: charges.ChargeModel, positions_bohr, numbers, cell_bohr, zval,
                       now) -> tuple[np.ndarray, float]:
    """(target populations (natm,), rms change of the charges (e)): the electrons each atom
    should hold, Z_a - q_a with the charges q_a of ``model``, shifted by one constant so that they
    sum to the populations ``now`` of the density (its total kept). ``zval``: valence charges."""
    zval = np.asarray(zval, dtype=float)
    q_now = zval - np.asarray(now, dtype=float)
    q_model = model.predict(charges.features(positions_bohr, numbers, cell_bohr, model.species))
    q_model += float(np.mean(q_now - q_model))
    return zval - q_model, float(np.sqrt(np.mean((q_model - q_now) ** 2)))


def hirshfeld(atoms, grid, rho, radial: dict) -> tuple:
    """(weights (sparse (npts, natm)), valence charges (natm,), Hirshfeld charges (natm,), e) of
    the density ``rho`` (e/Bohr^3 on ``grid``, the cell of ``atoms``) with the pro-atoms
    ``radial`` (element -> :class:`hpcdens.sad.RadialDensity`)."""
    symbols = atoms.get_chemical_symbols()
    weights = weights_at(np.asarray(atoms.cell) / Bohr, atoms.positions / Bohr, symbols,
                         grid.cartesian_points(), radial)
    zval = np.array([radial[s].n_electrons for s in symbols])
    return weights, zval, zval - charges.populations(weights, rho, grid.voxel_volume_bohr3)


def weights_at(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict):
    """Hirshfeld weights (sparse (npts, natm)) at any ``points_bohr`` (Bohr) of the periodic
    cell: a point's weights depend on that point alone, so a grid's rows can be computed block
    by block."""
    from .sad import pro_atoms

    return charges.hirshfeld_weights(pro_atoms(cell_bohr, positions_bohr, symbols, points_bohr,
                                               radial))


def atom_features(atoms, species) -> np.ndarray:
    """:func:`hpcdens.charges.features` of an ASE Atoms (Angstrom) in Bohr."""
    return charges.features(atoms.positions / Bohr, atoms.numbers,
                            np.asarray(atoms.cell) / Bohr, species)


def run_fit_charges(comm, model, out=None, *, data=None) -> dict:
    """Fit the charge model of ``model`` (all ranks of ``comm`` compute the training charges,
    rank 0 fits) and write the model with it to ``out`` (default: ``model``, replaced
    atomically). Returns {"n_atoms", "n_snapshots", "cv_rmse", "charge_rms", "alpha", "gamma",
    "wall_time_s"} on every rank."""
    from .dft import get_backend, settings_from_record
    from .io.model import load_model, save_model
    from .io.training_set import read_snapshot
    from .parallel.collective import on_every_rank, on_root

    t0 = time.perf_counter()
    record = on_root(comm, lambda: load_model(model)[1])
    if record.dft is None:
        raise InputError(f"model {model} records no DFT settings of its labels, so its pro-atoms "
                         "are unknown. Fix: retrain it on labels of one backend and settings")
    settings = settings_from_record(record.dft)
    symbols = [chemical_symbols[z] for z in record.species]
    radial = get_backend(settings.backend).radial_densities(symbols, settings)
    items = on_root(comm, training_items, record, data)

    def mine():
        out_items = []
        for i in range(comm.rank, len(items), comm.size):
            snap = read_snapshot(*items[i])
            q = hirshfeld(snap.atoms, snap.grid, snap.rho, radial)[2]
            out_items.append((i, atom_features(snap.atoms, record.species), q))
            log.info("charges: %s (%d atoms, rms %.4f e)", snap.key, len(q),
                     float(np.sqrt(np.mean(q ** 2))))
        return out_items

    parts = comm.gather(on_every_rank(comm, mine), root=0)

    def fit_and_write():
        found = sorted((t for p in parts for t in p), key=lambda t: t[0])
        feats = np.vstack([f for _, f, _ in found])
        q = np.concatenate([c for _, _, c in found])
        groups = np.concatenate([[i] * len(c) for i, _, c in found])
        fitted = charges.fit(feats, q, groups, record.species)
        stored = {**fitted.to_record(),
                  "pro_atoms": {el: radial[el].to_table() for el in symbols}}
        net, rec = load_model(model)
        save_model(out or model, net, replace(rec, charges=stored))
        return {"n_atoms": int(len(q)), "n_snapshots": len(found), "cv_rmse": fitted.cv_rmse,
                "charge_rms": float(np.sqrt(np.mean(q ** 2))), "alpha": fitted.alpha,
                "gamma": fitted.gamma, "wall_time_s": time.perf_counter() - t0}

    return on_root(comm, fit_and_write)
