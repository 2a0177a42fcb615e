"""Predict structures one after another on all ranks and judge each on one rank.

``evaluate`` (test sets), ``calibrate`` (validation snapshots) and the energy score of ``learn``
(candidate structures) all predict many DFT-size cells with one loaded model and then do serial
work per cell (errors against the label, Harris-Foulkes energies). :func:`judge_structures`
predicts structure i on all ranks, gathers its fields on rank i % size and lets that rank run
``work`` on it while the other ranks run theirs: one structure per rank at a time, so the serial
part scales with the ranks. :func:`judge_snapshots` does it for labelled snapshots.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..io.prediction import read_prediction
from .block import sample_field_names
from .collective import on_every_rank
from .predict import gather_fields, predict_atoms


def judge_structures(comm, predictor, items, load, work, *, n_samples: int = 0,
                     predictions_dir=None, info=None, name=str,
                     charge_correction: bool = True) -> list:
    """``work(item, atoms, fields, predict_s)`` for every item of ``items`` (the same list on
    every rank), in order; its results on every rank.

    ``load(item) -> (atoms, grid_shape)`` runs on rank 0 only; the atoms (ASE, Angstrom) are
    passed on to the rank that judges the item. ``fields``: the whole grid's fields of the
    prediction (rho, epistemic_std, aleatoric_std, and rho_sad / out_of_reach where the model has
    them; e/Bohr^3) and ``samples``: the densities of the first ``n_samples`` weight samples (a
    list of arrays, raw, not renormalised; empty when ``n_samples`` is 0). ``predictions_dir``:
    also write each prediction file there (``<name(item)>.h5``, ``/`` -> ``__``) with ``info`` and
    the key ``name(item)`` in its structure record (its ``rho_normalised`` corrected to the
    model's charge model, if it has one, unless ``charge_correction`` is False; then ``fields``
    also holds that corrected density, read back from the file, as ``rho_corrected`` and the
    correction's {"charge_rmse_change", "lambda_max"} as ``charge_correction``). A failure of
    ``work`` on any rank is raised on every rank.
    """
    unused = set(sample_field_names(predictor.record.n_samples)[n_samples:])
    results = []
    for first in range(0, len(items), comm.size):
        mine = None
        for owner, item in enumerate(items[first:first + comm.size]):
            t0 = time.perf_counter()
            atoms, shape = load(item) if comm.rank == 0 else (None, None)
            out = (None if predictions_dir is None
                   else Path(predictions_dir) / f"{name(item).replace('/', '__')}.h5")
            prediction = predict_atoms(
                comm, atoms, predictor, shape=shape, out=out, overwrite=True,
                structure_info={**(info or {}), "key": name(item)}, keep_samples=n_samples > 0,
                charge_correction=charge_correction)
            fields = gather_fields(comm, prediction, [n for n in prediction.fields
                                                      if n not in unused], root=owner)
            corrected = prediction.summary.get("charge_correction")
            if corrected and comm.rank == owner:     # corrected on every rank: not again
                fields["rho_corrected"] = read_prediction(out, "rho_normalised").rho
                fields["charge_correction"] = corrected
            if owner != 0:
                if comm.rank == 0:
                    comm.send(atoms, dest=owner, tag=7)
                elif comm.rank == owner:
                    atoms = comm.recv(source=0, tag=7)
            if comm.rank == owner:
                mine = (item, atoms, fields, time.perf_counter() - t0)
            del prediction

        def judge(mine=mine):
            if mine is None:
                return None
            item, atoms, fields, predict_s = mine
            fields["samples"] = [fields.pop(n) for n in sample_field_names(n_samples)]
            return work(item, atoms, fields, predict_s)

        batch = comm.gather(on_every_rank(comm, judge), root=0)
        if comm.rank == 0:
            results += batch[:len(items[first:first + comm.size])]
    return comm.bcast(results, root=0)


def judge_snapshots(comm, predictor, items, work, *, n_samples: int = 0, predictions_dir=None,
                    info=None, charge_correction: bool = True) -> list:
    """:func:`judge_structures` for the labelled snapshots ``items`` ((file, key) pairs): each
    is predicted on its own grid and ``work(snapshot, fields, predict_s)`` gets the
    :class:`hpcdens.io.training_set.Snapshot` (read on the judging rank); prediction files are
    named by key."""
    from ..io.training_set import read_snapshot

    def load(item):
        snap = read_snapshot(*item)
        return snap.atoms, snap.grid.shape

    return judge_structures(
        comm, predictor, items, load,
        lambda item, atoms, fields, predict_s: work(read_snapshot(*item), fields, predict_s),
        n_samples=n_samples, predictions_dir=predictions_dir, info=info, name=lambda it: it[1],
        charge_correction=charge_correction)
