"""The acquisition function of ``hpcdens learn`` (bayesian strategy): the mean epistemic standard
deviation of a model over seeded grid points of a candidate composition's structures
(:mod:`hpcdens.learning.loop`). Units: e/Bohr^3."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np


def score_composition(config, comp, predictor, pools=()) -> float:
    """Mean over ``score_structures`` structures of the mean over ``score_points`` seeded random
    grid points of the epistemic standard deviation (e/Bohr^3) of the loaded model
    ``predictor`` (:class:`hpcdens.io.model.Predictor`). A structure that a label pool
    ``pools`` holds is read from it (the same structure, without running its MD again)."""
    from ase.units import Bohr

    from ..bnn_predict import predict
    from ..descriptors import descriptors
    from ..dft import get_backend
    from ..labelling import pool_atoms
    from ..neighbors import NeighborSearch
    from ..plan import Task

    lc, backend, m = config.learn, get_backend(config.dft.backend), predictor.record.n_neighbors
    per_structure = []
    for s in range(lc.score_structures):
        task = Task(comp, s, config)
        atoms = pool_atoms(pools, task.key) or task.build_atoms()
        grid = backend.make_grid(atoms, config.dft)
        seq = np.random.SeedSequence(lc.seed, spawn_key=(zlib.crc32(comp.label.encode()), s))
        rng = np.random.default_rng(seq)
        idx = np.sort(rng.choice(grid.size, size=min(lc.score_points, grid.size), replace=False))
        frac = np.stack(np.unravel_index(idx, grid.shape), axis=1) / np.array(grid.shape)
        points = frac @ grid.cell_bohr
        search = NeighborSearch(atoms.positions / Bohr, atoms.numbers, grid.cell_bohr, m=m)
        pred = predict(predictor.net, descriptors(points, search, m), predictor.samples)
        per_structure.append(float(np.mean(np.sqrt(pred["epistemic_var"]))))
    return float(np.mean(per_structure))


def score_candidates(config, model_path: Path, labels: list[str], comps: dict, comm,
                     pools=()) -> dict:
    """Scores of ``labels`` (round-robin over the ranks of ``comm``), on every rank; the model is
    read on rank 0 and broadcast with its weight samples; ``pools``: label pools."""
    from ..parallel.predict import load_predictor

    predictor = load_predictor(comm, model_path)
    mine = {lb: score_composition(config, comps[lb], predictor, pools)
            for lb in labels[comm.rank::comm.size]}
    merged = {}
    for part in comm.allgather(mine):
        merged.update(part)
    return {lb: merged[lb] for lb in labels}
