"""The acquisition functions of ``hpcdens learn`` (bayesian strategy, :mod:`hpcdens.learning.loop`),
``[learn] score``:

* "density" (the paper's): the mean epistemic standard deviation of a model over seeded grid
  points of a candidate composition's structures, e/Bohr^3;
* "energy": the standard deviation over the model's N_s weight samples of the Harris-Foulkes
  energies of the sample densities (each renormalised to N_e, Eq. 9; one set-up per structure),
  the energy error bar of ``evaluate`` before any calibration, Ha/atom; averaged over the
  structures. It asks the question a user asks (how uncertain is the energy?) and sees what the
  grid-mean density std averages away (docs/uncertainty.md).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np


def score_composition(config, comp, predictor, pools=()) -> float:
    """Mean over ``score_structures`` structures of the mean over ``score_points`` seeded random
    grid points of the epistemic standard deviation (e/Bohr^3) of the loaded model
    ``predictor`` (:class:`hpcdens.io.model.Predictor`); structures by :func:`candidate_atoms`."""
    from ase.units import Bohr

    from ..bnn_predict import predict
    from ..descriptors import descriptors
    from ..dft import get_backend
    from ..neighbors import NeighborSearch

    lc, backend, m = config.learn, get_backend(config.dft.backend), predictor.record.n_neighbors
    per_structure = []
    for s in range(lc.score_structures):
        atoms = candidate_atoms(config, comp, s, pools)
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


def candidate_atoms(config, comp, index: int, pools=()):
    """Structure ``index`` of candidate composition ``comp``: from a label pool if one holds it
    (the same structure, without running its MD again), else built as the plan builds it."""
    from ..labelling import pool_atoms
    from ..plan import Task

    task = Task(comp, index, config)
    return pool_atoms(pools, task.key) or task.build_atoms()


def energy_scores(config, predictor, labels: list[str], comps: dict, comm, pools=()) -> dict:
    """The "energy" score of every candidate of ``labels`` (Ha/atom), on every rank: each of its
    ``score_structures`` structures is predicted on the DFT grid on all ranks
    (:func:`hpcdens.parallel.snapshots.judge_structures`) and the std (ddof 1) of the
    Harris-Foulkes energies of its N_s renormalised sample densities computed on one rank."""
    from ..dft import get_backend, valence_electrons
    from ..energy import energy_per_atom
    from ..parallel.snapshots import judge_structures
    from ..uncertainty import energy_spread

    backend = get_backend(config.dft.backend)
    items = [(lb, s) for lb in labels for s in range(config.learn.score_structures)]

    def load(item):
        atoms = candidate_atoms(config, comps[item[0]], item[1], pools)
        return atoms, backend.make_grid(atoms, config.dft).shape

    def work(item, atoms, fields, predict_s):
        grid = backend.make_grid(atoms, config.dft)
        energy = energy_per_atom(atoms, grid, config.dft, valence_electrons(atoms, config.dft))
        return energy_spread(fields["samples"], energy)["sigma_per_atom_ha"]

    sigmas = judge_structures(comm, predictor, items, load, work,
                              n_samples=predictor.record.n_samples,
                              name=lambda item: f"{item[0]}/s{item[1]:03d}")
    per_label: dict[str, list[float]] = {lb: [] for lb in labels}
    for (lb, _), sigma in zip(items, sigmas):
        per_label[lb].append(sigma)
    return {lb: float(np.mean(v)) for lb, v in per_label.items()}


def score_candidates(config, model_path: Path, labels: list[str], comps: dict, comm,
                     pools=()) -> dict:
    """Scores of ``labels`` by ``config.learn.score`` (module docstring), on every rank; the
    model is read on rank 0 and broadcast with its weight samples; ``pools``: label pools. The
    density score runs the candidates round-robin over the ranks, the energy score predicts each
    structure on all ranks and judges it on one."""
    from ..parallel.predict import load_predictor

    predictor = load_predictor(comm, model_path)
    if config.learn.score == "energy":
        return energy_scores(config, predictor, labels, comps, comm, pools)
    mine = {lb: score_composition(config, comps[lb], predictor, pools)
            for lb in labels[comm.rank::comm.size]}
    merged = {}
    for part in comm.allgather(mine):
        merged.update(part)
    return {lb: merged[lb] for lb in labels}
