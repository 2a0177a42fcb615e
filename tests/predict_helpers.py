"""Small models and cells of the prediction tests (tests/test_predict.py, test_predict_mpi.py):
an untrained model with prediction metadata, rattled SiGe cells (ASE Atoms, Angstrom)."""

import h5py
import numpy as np

from hpcdens import bnn
from hpcdens.io.model import ModelRecord, save_model
from hpcdens.structures import build_cell, decorate, rattle, write_structures

M = 8  # neighbours per point of the test models
META = {"n_neighbors": M, "species": [14, 32], "target": "rho", "n_samples": 4,
        "sample_seed": 11, "descriptor_version": 1, "valence_electrons": {"14": 4, "32": 4}}


def make_model(path, m=M, meta=None, hidden=(16, 16), seed=0):
    """An untrained model (rank invariance needs no training) with prediction metadata."""
    import torch

    from hpcdens.config import ModelConfig

    model = bnn.build_model(5 * m, ModelConfig(hidden_layers=hidden),
                            generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.choice([14, 32], (64, m)), rng.uniform(2, 10, (64, m)),
                        rng.uniform(-1, 1, (64, 3 * m))], axis=1)
    model.fit_normalisation(x, rng.uniform(0.01, 0.08, 64))
    return save_model(path, model,
                      ModelRecord.from_meta({**META, "n_neighbors": m, **(meta or {})}))


def sige_cell(supercell=(1, 1, 1), primitive=False, seed=0, stdev=0.1, a=5.55):
    """Rattled Si/Ge diamond cell (ASE Atoms, Angstrom)."""
    atoms = build_cell("diamond", a, supercell, primitive=primitive)
    rng = np.random.default_rng(seed)
    n = len(atoms)
    return rattle(decorate(atoms, {"Si": n - n // 2, "Ge": n // 2}, rng), stdev, rng)


def write_cell(path, atoms):
    """Write ``atoms`` as extxyz; compare against ``read_structure(path)`` (file precision)."""
    write_structures(path, [atoms])
    return path


def read_fields(path):
    """The datasets (but the atoms) and the attributes of a prediction file."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f if k != "atoms"}, dict(f.attrs)


def vacancy_cluster_cell(radius_angstrom=4.0):
    """2x2x2 rattled SiGe diamond cell without the 15 atoms within 4 Angstrom of the origin:
    every block touching the corner sees a void and its first halo guess fails the check."""
    from ase.geometry import get_distances

    atoms = sige_cell((2, 2, 2), seed=3)
    _, dist = get_distances(atoms.positions, [[0.0, 0.0, 0.0]], cell=atoms.cell, pbc=True)
    return atoms[dist[:, 0] > radius_angstrom]


def charge_record(seed=0, shells=()):
    """A model record's ``charges`` for Si/Ge (hpcdens charges' format) without DFT: Gaussian
    pro-atoms of 4 electrons and a kernel charge model fitted to a made-up charge law (each atom
    gains 0.02 e per Ge neighbour within 4.5 Bohr) on rattled SiGe cells; ``shells`` (radii,
    Bohr): also one model per radial shell, shell k taking (k + 1) / sum of the gain."""
    from ase.neighborlist import neighbor_list
    from ase.units import Bohr

    from hpcdens import charges
    from hpcdens.sad import tabulate

    r = np.arange(0.0, 14.0, 0.01)
    pro = {el: tabulate(el, 4.0, r, 4.0 * np.exp(-(r / w) ** 2) / (np.pi ** 1.5 * w ** 3))
           for el, w in (("Si", 1.4), ("Ge", 1.7))}
    feats, q, groups = [], [], []
    for k in range(4):
        atoms = sige_cell(seed=seed + k)
        i, j = neighbor_list("ij", atoms, 4.5 * Bohr)
        feats.append(charges.features(atoms.positions / Bohr, atoms.numbers,
                                      np.asarray(atoms.cell) / Bohr, (14, 32)))
        q.append(-0.02 * np.bincount(i[atoms.numbers[j] == 32], minlength=len(atoms)))
        groups += [k] * len(atoms)
    feats, q = np.vstack(feats), np.concatenate(q)
    model = charges.fit(feats, q, groups, (14, 32))
    record = {**model.to_record(), "pro_atoms": {el: t.to_table() for el, t in pro.items()}}
    if shells:
        share = np.arange(1, len(shells) + 2) / np.arange(1, len(shells) + 2).sum()
        record["shells"] = {"radii_bohr": list(shells), "models": [
            charges.fit(feats, f * q, groups, (14, 32)).to_record() for f in share]}
    return record
