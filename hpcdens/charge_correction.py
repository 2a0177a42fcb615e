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
    ``atoms``) with every atom's Hirshfeld charge (or, for a model fitted with radial shells,
    every shell's) moved to the charge model's of ``record`` (a model record's ``charges``), the
    total kept (:func:`hpcdens.charges.correct`). info: {"charge_rmse_change": rms of the
    (model - prediction) atomic charges (e), "lambda_max": max |lam|}. The whole grid on one
    process; a prediction file is corrected on every rank by
    :func:`hpcdens.parallel.charge_pass.write_corrected`, with the same sums over blocks."""
    symbols = atoms.get_chemical_symbols()
    models, radii, radial = load_charge_model(record, symbols)
    cell, positions = np.asarray(atoms.cell) / Bohr, atoms.positions / Bohr
    weights = weights_at(cell, positions, symbols, grid.cartesian_points(), radial, radii)
    dv = grid.voxel_volume_bohr3
    now = charges.populations(weights, rho, dv)
    target, change = target_populations(models, radii, radial, positions, atoms.numbers, cell,
                                        now)
    fixed, lam = charges.correct(rho, weights, dv, target, now=now)
    return fixed, {"charge_rmse_change": change, "lambda_max": float(np.abs(lam).max())}


def load_charge_model(record: dict, symbols) -> tuple[list, tuple, dict]:
    """(the charge models, one per radial shell, the shells' radii (Bohr; empty: one model of
    whole atoms), the pro-atoms: element -> :class:`hpcdens.sad.RadialDensity`) of a model
    record's ``charges``; InputError when an element of ``symbols`` has no pro-atom."""
    from .sad import RadialDensity

    radial = {el: RadialDensity.from_table(el, t) for el, t in record["pro_atoms"].items()}
    missing = sorted(set(symbols) - set(radial))
    if missing:
        raise InputError(f"the charge model has no pro-atom for {missing}. Fix: fit it again "
                         "with 'hpcdens charges' on training data holding these elements")
    shells = record.get("shells")
    if not shells:
        return [charges.ChargeModel.from_record(record)], (), radial
    return ([charges.ChargeModel.from_record(r) for r in shells["models"]],
            tuple(float(r) for r in shells["radii_bohr"]), radial)


def reference_populations(radial: dict, symbols, radii=()) -> np.ndarray:
    """(natm, len(radii) + 1) electrons of each atom's neutral pro-atom in each radial shell
    (:func:`hpcdens.sad.shell_integrals`); without shells the valence charge Z_a."""
    from .sad import shell_integrals

    if not radii:
        return np.array([[radial[s].n_electrons] for s in symbols])
    table = {el: shell_integrals(radial[el], radii) for el in set(symbols)}
    return np.array([table[s] for s in symbols])


def target_populations(models, radii, radial: dict, positions_bohr, numbers, cell_bohr,
                       now) -> tuple[np.ndarray, float]:
    """(target populations (natm * (len(radii) + 1),), rms change of the atomic charges (e)):
    the electrons each atom (each shell of it) should hold, c - q with c the pro-atom's
    (:func:`reference_populations`) and q the charge models' ``models``, shifted on every atom's
    outer shell by one constant so that they sum to the populations ``now`` of the density (its
    total kept); a shell holding no more than hpcdens.charges.LIVE_POPULATION keeps ``now``."""
    symbols = [chemical_symbols[z] for z in numbers]
    feats = charges.features(positions_bohr, numbers, cell_bohr, models[0].species)
    target = reference_populations(radial, symbols, radii) \
        - np.stack([m.predict(feats) for m in models], axis=1)
    now = np.asarray(now, dtype=float).reshape(target.shape)
    target = np.where(now > charges.LIVE_POPULATION, target, now)
    target[:, -1] += (now.sum() - target.sum()) / len(target)
    return target.ravel(), float(np.sqrt(np.mean((target.sum(1) - now.sum(1)) ** 2)))


def hirshfeld(atoms, grid, rho, radial: dict, radii=()) -> tuple:
    """(weights (sparse (npts, natm * (len(radii) + 1))), reference populations, charges, both
    (natm * (len(radii) + 1),), e) of the density ``rho`` (e/Bohr^3 on ``grid``, the cell of
    ``atoms``) with the pro-atoms ``radial`` (element -> :class:`hpcdens.sad.RadialDensity`):
    per atom, or per radial shell of it (``radii``, Bohr), the pro-atom's electrons
    (:func:`reference_populations`) minus the density's."""
    symbols = atoms.get_chemical_symbols()
    weights = weights_at(np.asarray(atoms.cell) / Bohr, atoms.positions / Bohr, symbols,
                         grid.cartesian_points(), radial, radii)
    ref = reference_populations(radial, symbols, radii).ravel()
    return weights, ref, ref - charges.populations(weights, rho, grid.voxel_volume_bohr3)


#: Bohr: the Hirshfeld weights leave out each pro-atom's tail beyond this distance (the SAD keeps
#: it). A transition metal's reaches 12.6 Bohr; the cut leaves a third of the pairs and changes
#: a CrFeCoNi cell's atomic and shell charges by at most 3e-6 e (docs/charges.md).
WEIGHT_CUTOFF_BOHR = 9.0


def weight_radials(radial: dict) -> dict:
    """The pro-atoms ``radial`` (element -> :class:`hpcdens.sad.RadialDensity`) as the Hirshfeld
    weights see them: each cut at :data:`WEIGHT_CUTOFF_BOHR`."""
    return {el: replace(r, r_cut=min(r.r_cut, WEIGHT_CUTOFF_BOHR)) for el, r in radial.items()}


def weights_at(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict, radii=()):
    """Hirshfeld weights (sparse (npts, natm * (len(radii) + 1))) at any ``points_bohr`` (Bohr)
    of the periodic cell, split over the radial shells ``radii`` of :func:`hpcdens.sad.pro_atoms`
    (column a (K + 1) + k; none: one column per atom), from the pro-atoms ``radial`` cut by
    :func:`weight_radials`: a point's weights depend on that point alone, so a grid's rows can
    be computed block by block."""
    from .sad import pro_atoms

    return charges.hirshfeld_weights(pro_atoms(cell_bohr, positions_bohr, symbols, points_bohr,
                                               weight_radials(radial), shells_bohr=radii or None))


def atom_features(atoms, species) -> np.ndarray:
    """:func:`hpcdens.charges.features` of an ASE Atoms (Angstrom) in Bohr."""
    return charges.features(atoms.positions / Bohr, atoms.numbers,
                            np.asarray(atoms.cell) / Bohr, species)


def run_fit_charges(comm, model, out=None, *, data=None, shells_bohr=()) -> dict:
    """Fit the charge model of ``model`` (all ranks of ``comm`` compute the training charges,
    rank 0 fits) and write the model with it to ``out`` (default: ``model``, replaced
    atomically). ``shells_bohr`` (increasing radii, Bohr): also one charge model per radial
    shell of every atom (:func:`hpcdens.sad.pro_atoms`), which the correction then uses
    (docs/charges.md, "Radial shells"). Returns {"n_atoms", "n_snapshots", "cv_rmse",
    "charge_rms", "alpha", "gamma", "shell_cv_rmse" (one per shell, or None), "wall_time_s"} on
    every rank; cv_rmse and charge_rms are those of the whole atoms' charges (e)."""
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
    radii = _checked_radii(shells_bohr)
    items = on_root(comm, training_items, record, data)

    def mine():
        out_items = []
        for i in range(comm.rank, len(items), comm.size):
            snap = read_snapshot(*items[i])
            q = hirshfeld(snap.atoms, snap.grid, snap.rho, radial, radii)[2].reshape(
                len(snap.atoms), -1)
            out_items.append((i, atom_features(snap.atoms, record.species), q))
            log.info("charges: %s (%d atoms, rms %.4f e)", snap.key, len(q),
                     float(np.sqrt(np.mean(q.sum(1) ** 2))))
        return out_items

    parts = comm.gather(on_every_rank(comm, mine), root=0)

    def fit_and_write():
        found = sorted((t for p in parts for t in p), key=lambda t: t[0])
        feats = np.vstack([f for _, f, _ in found])
        shell_q = np.concatenate([c for _, _, c in found])
        q = shell_q.sum(1)
        groups = np.concatenate([[i] * len(c) for i, _, c in found])
        fitted = charges.fit(feats, q, groups, record.species)
        stored = {**fitted.to_record(),
                  "pro_atoms": {el: radial[el].to_table() for el in symbols}}
        shell_models = [charges.fit(feats, shell_q[:, k], groups, record.species)
                        for k in range(shell_q.shape[1])] if radii else []
        if radii:
            stored["shells"] = {"radii_bohr": list(radii),
                                "models": [m.to_record() for m in shell_models]}
        net, rec = load_model(model)
        save_model(out or model, net, replace(rec, charges=stored))
        return {"n_atoms": int(len(q)), "n_snapshots": len(found), "cv_rmse": fitted.cv_rmse,
                "charge_rms": float(np.sqrt(np.mean(q ** 2))), "alpha": fitted.alpha,
                "gamma": fitted.gamma,
                "shell_cv_rmse": [m.cv_rmse for m in shell_models] if radii else None,
                "wall_time_s": time.perf_counter() - t0}

    return on_root(comm, fit_and_write)


def _checked_radii(shells_bohr) -> tuple:
    """``shells_bohr`` as a tuple of floats; InputError unless they increase from above 0."""
    radii = tuple(float(r) for r in (shells_bohr or ()))
    if radii and (radii[0] <= 0 or any(b <= a for a, b in zip(radii, radii[1:]))):
        raise InputError(f"charge-model shell radii {list(radii)} must increase from above 0 "
                         "Bohr. Fix: e.g. --shells 0.3 0.6 1.0 1.6")
    return radii
