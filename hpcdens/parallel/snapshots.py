"""Predict labelled snapshots one after another on all ranks and judge each on one rank.

``evaluate`` (test sets) and ``calibrate`` (validation snapshots) both predict many DFT-size cells
with one loaded model and then do serial work per cell (errors against the label, Harris-Foulkes
energies). :func:`judge_snapshots` predicts snapshot i on all ranks, gathers its fields on rank
i % size and lets that rank run ``work`` on it while the other ranks run theirs: one snapshot per
rank at a time, so the serial part scales with the ranks.
"""

from __future__ import annotations

import time
from pathlib import Path

from .block import sample_field_names
from .collective import on_every_rank
from .predict import gather_fields, predict_atoms


def judge_snapshots(comm, predictor, items, work, *, n_samples: int = 0, predictions_dir=None,
                    info=None) -> list:
    """``work(snapshot, fields, predict_s)`` for every ``(file, key)`` of ``items`` (the same
    list on every rank), in order; its results on every rank.

    The snapshot (:class:`hpcdens.io.training_set.Snapshot`) is read on rank 0 for its atoms and
    grid shape and on the rank that judges it. ``fields``: the whole grid's fields of the
    prediction (rho, epistemic_std, aleatoric_std, and rho_sad / out_of_reach where the model has
    them; e/Bohr^3) and ``samples``: the densities of the first ``n_samples`` weight samples (a
    list of arrays, raw, not renormalised; empty when ``n_samples`` is 0). ``predictions_dir``: also write each prediction
    file there (``<key>.h5``, ``/`` -> ``__``) with ``info`` in its structure record. A failure of
    ``work`` on any rank is raised on every rank.
    """
    from ..io.training_set import read_snapshot

    unused = set(sample_field_names(predictor.record.n_samples)[n_samples:])
    results = []
    for first in range(0, len(items), comm.size):
        mine = None
        for owner, (path, key) in enumerate(items[first:first + comm.size]):
            t0 = time.perf_counter()
            snap = read_snapshot(path, key) if comm.rank == 0 else None
            out = (None if predictions_dir is None
                   else Path(predictions_dir) / f"{key.replace('/', '__')}.h5")
            prediction = predict_atoms(
                comm, snap.atoms if snap is not None else None, predictor,
                shape=snap.grid.shape if snap is not None else None, out=out, overwrite=True,
                structure_info={**(info or {}), "key": key}, keep_samples=n_samples > 0)
            fields = gather_fields(comm, prediction, [n for n in prediction.fields
                                                      if n not in unused], root=owner)
            if comm.rank == owner:
                mine = (path, key, fields, time.perf_counter() - t0)
            del prediction, snap

        def judge(mine=mine):
            if mine is None:
                return None
            path, key, fields, predict_s = mine
            fields["samples"] = [fields.pop(n) for n in sample_field_names(n_samples)]
            return work(read_snapshot(path, key), fields, predict_s)

        batch = comm.gather(on_every_rank(comm, judge), root=0)
        if comm.rank == 0:
            results += batch[:len(items[first:first + comm.size])]
    return comm.bcast(results, root=0)

