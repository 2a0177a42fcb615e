"""The training data of ``hpcdens train``: snapshots -> sampled grid points -> descriptors and
targets, split by snapshot, spread over MPI ranks, with rank-count-invariant normalisation.

Pipeline (every step is deterministic; the seeds are ``[train] seed``):

1. Every rank reads the training-set files (:func:`load_snapshots`); the snapshots are numbered in
   the order of the files, then of the snapshots inside each file.
2. The snapshots are split into training and validation sets **by snapshot** (:func:`split`).
3. Each snapshot gets its own grid-point sample (:func:`sample_points`) from a random stream keyed
   by the seed, its file index and its key: the sample does not depend on the split, on M, on the
   other snapshots or on the rank count.
4. The training points of all training snapshots, in snapshot order, form one global list; rank r
   takes the contiguous block ``block_range(n, size, r)`` of it and computes the descriptors of
   those points only (:func:`build_points`). The same for the validation points. The union of
   the ranks' blocks is the serial list, point for point.
5. :func:`normalisation_stats` reduces sums over all ranks (two passes: mean, then the squared
   deviations about it), so the statistics equal the serial ones up to the order of the reduction.

Densities are small next to descriptors (1 float vs 5M per point), so every rank keeps the whole
set of densities and computes descriptors only for its own block. No model code and no file output
here; the communicator is any mpi4py communicator (``MPI.COMM_SELF`` for serial use).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.units import Bohr

from ..descriptors import DESCRIPTOR_VERSION, iter_descriptors
from ..errors import InputError
from ..grid import DEFAULT_CHUNK_POINTS
from ..io.training_set import Snapshot, read_training_set
from ..neighbors import NeighborSearch
from ..parallel.collective import allreduce, allreduce_array

DESCRIPTOR = "body-attached-frame"
DESCRIPTOR_LAYOUT = ("block: Z [0:M], |r| Bohr [M:2M], r.e1/|r| [2M:3M], r.e2/|r| [3M:4M], "
                     "r.e3/|r| [4M:5M]")
HASH_SCHEME = ("sha256 over the snapshots in training order (files as given, snapshots in file "
               "order): key utf-8, numbers int64, positions and cell float64 Bohr, grid shape "
               "int64, rho and rho_sad float64 C order; all little-endian")

_STREAM_SPLIT, _STREAM_POINTS = 1, 2


@dataclass(frozen=True)
class Labelled:
    """A snapshot of the training data and where it came from (``file_index`` into the files)."""

    snapshot: Snapshot
    file_index: int

    @property
    def key(self) -> str:
        return self.snapshot.key


@dataclass
class PointSet:
    """This rank's block of a set of sampled grid points.

    x : (n_local, 5M) float64 raw descriptors; target : (n_local,) rho or rho - rho_SAD
    (e/Bohr^3); rho : (n_local,) the DFT density at the points (e/Bohr^3), for density errors;
    snapshot : (n_local,) int64 index of each point's snapshot into the labelled list;
    n_global : points over all ranks.
    """

    x: np.ndarray
    target: np.ndarray
    rho: np.ndarray
    snapshot: np.ndarray
    n_global: int


def load_snapshots(paths) -> list[Labelled]:
    """Read every snapshot of the training-set files ``paths`` (in order). Raises InputError for a
    missing or incomplete file, or when the files hold no snapshot at all."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no training-set file given. Fix: pass --data FILE")
    out = []
    for index, path in enumerate(paths):
        if not path.is_file():
            raise InputError(f"training set {str(path)!r} does not exist. Fix: run 'hpcdens "
                             f"generate CONFIG' first, or point --data at an existing file")
        out += [Labelled(s, index) for s in read_training_set(path)]
    if not out:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"no snapshots in {names} (every label failed?). Fix: run 'hpcdens "
                         f"generate CONFIG --retry-failed' or give other --data files")
    check_same_physics(out, paths)
    return out


PHYSICS_KEYS = ("backend", "basis", "pseudo", "xc", "sparc_psp_dir", "smearing", "smearing_ha")
"""Settings that change the (pseudo-)density a snapshot's label is: the snapshots of one model
must agree in each (where both record it). The mesh spacing may differ (cell sizes do too)."""


def recorded_settings(item: Labelled, keys) -> dict:
    """The entries ``keys`` of the DFT settings a snapshot records (its backend included), those
    present."""
    s = item.snapshot
    return {k: v for k, v in {"backend": s.attrs.get("backend"), **s.settings}.items()
            if k in keys and v is not None}


def check_same_physics(labelled: list[Labelled], paths) -> None:
    """InputError naming two snapshots whose labels were computed with different DFT settings
    (:data:`PHYSICS_KEYS`; numbers equal to 1e-6 relative): one model learns one kind of density."""
    first = {}
    for item in labelled:
        where = f"{paths[item.file_index]}:{item.key}"
        for k, v in recorded_settings(item, PHYSICS_KEYS).items():
            v0, w0 = first.setdefault(k, (v, where))
            same = (abs(v - v0) <= 1e-6 * max(abs(v), abs(v0))
                    if isinstance(v, float) and isinstance(v0, float) else v == v0)
            if not same:
                raise InputError(f"the training snapshots were labelled with different DFT "
                                 f"settings: {k} = {v0!r} in {w0} but {v!r} in {where}. Fix: "
                                 "label them all with one [dft] section (the mesh spacing may "
                                 "differ), or train on the files of one setting")


def data_hash(labelled: list[Labelled]) -> str:
    """SHA-256 of the content of the training data (see ``HASH_SCHEME``): independent of file
    names, compression, HDF5 layout and bookkeeping attributes such as wall times."""
    h = hashlib.sha256()
    for item in labelled:
        s = item.snapshot
        h.update(s.key.encode() + b"\0")
        for arr, dtype in ((s.atoms.numbers, "<i8"), (s.atoms.positions / Bohr, "<f8"),
                           (s.grid.cell_bohr, "<f8"), (np.array(s.grid.shape), "<i8"),
                           (s.rho, "<f8"), (s.rho_sad, "<f8")):
            h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()


def seed_words(seed: int, *words: int) -> np.random.SeedSequence:
    """The random stream named by ``words`` under the master ``seed`` (counter-based streams)."""
    return np.random.SeedSequence([int(seed), *(int(w) for w in words)])


def torch_seed(seed: int, *words: int) -> int:
    """A 63-bit integer seed for ``torch.Generator.manual_seed`` from the stream ``words``."""
    return int(seed_words(seed, *words).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def n_validation(n_snapshots: int, fraction: float) -> int:
    """Validation snapshots: round(fraction * n), at least 1 when fraction > 0 and n >= 2, at most
    n - 1; none for a single snapshot or fraction 0."""
    if n_snapshots < 2 or fraction <= 0:
        return 0
    return int(min(max(1, round(fraction * n_snapshots)), n_snapshots - 1))


def split(n_snapshots: int, fraction: float, seed: int, groups: list[str] | None = None,
          species: list[frozenset] | None = None) -> tuple[list[int], list[int]]:
    """(training, validation) snapshot indices, each sorted: up to ``n_validation`` snapshots held
    out whole, spread over the groups (compositions).

    ``groups[i]`` is snapshot i's group (its composition label; None: one group), ``species[i]``
    its atomic numbers (None: not checked). Each group's snapshots are shuffled (seeded).
    Validation snapshots are taken one at a time from the group that has been validated least,
    then has the most snapshots left, then comes first in a seeded order of the groups. A group
    gives up its last training snapshot only when no group has two left, and only if every species
    stays in the training set; when no snapshot can go, fewer than ``n_validation`` are held out.
    So every composition is validated before any is validated twice, and no composition or
    species is lost from training while it can be avoided."""
    n_val = n_validation(n_snapshots, fraction)
    rng = np.random.default_rng(seed_words(seed, _STREAM_SPLIT))
    labels = list(groups) if groups is not None else [""] * n_snapshots
    members: dict[str, list[int]] = {}
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    queues = [[members[g][j] for j in rng.permutation(len(members[g]))] for g in members]
    queues = [queues[j] for j in rng.permutation(len(queues))]
    taken = [0] * len(queues)
    val: list[int] = []

    def keeps_species(i: int) -> bool:
        if species is None:
            return True
        rest = set().union(*(species[k] for q in queues for k in q if k != i))
        return set(species[i]) <= rest

    while len(val) < n_val:
        two_left = any(len(q) >= 2 for q in queues)
        eligible = [j for j, q in enumerate(queues)
                    if len(q) >= 2 or (q and not two_left and keeps_species(q[0]))]
        if not eligible:
            break
        g = min(eligible, key=lambda j: (taken[j], -len(queues[j]), j))
        val.append(int(queues[g].pop(0)))
        taken[g] += 1
    held = set(val)
    return [i for i in range(n_snapshots) if i not in held], sorted(val)


def sample_points(item: Labelled, n_points: int, seed: int,
                  density_fraction: float = 0.0) -> np.ndarray:
    """Sorted flat (C-order) grid indices of the points drawn from ``item`` (0 or more than the
    grid has: all of them), without replacement, from the stream (seed, file, crc32(key)).

    ``density_fraction`` of them (rounded) are drawn with probability proportional to the
    snapshot's SAD density, which puts them near the nuclei where the density is sharpest; the
    rest uniformly from the points not yet drawn. With 0 the draw is the plain uniform one."""
    size = item.snapshot.grid.size
    if n_points <= 0 or n_points >= size:
        return np.arange(size)
    words = (_STREAM_POINTS, item.file_index, zlib.crc32(item.key.encode()))
    rng = np.random.default_rng(seed_words(seed, *words))
    n_dense = int(round(density_fraction * n_points))
    if n_dense == 0:
        return np.sort(rng.choice(size, size=n_points, replace=False))
    weight = np.clip(item.snapshot.rho_sad.reshape(-1), 0.0, None)
    dense = rng.choice(size, size=n_dense, replace=False, p=weight / weight.sum())
    rest = np.delete(np.arange(size), dense)
    return np.sort(np.concatenate([dense, rng.choice(rest, size=n_points - n_dense,
                                                     replace=False)]))


def block_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous block of n items over ``size`` ranks; the first
    n % size ranks get one more item (ranks may get none when n < size)."""
    base, extra = divmod(int(n), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def build_points(labelled: list[Labelled], indices: list[int], m: int, target: str, seed: int,
                 points_per_snapshot: int, comm, chunk_points: int = DEFAULT_CHUNK_POINTS,
                 density_fraction: float = 0.0) -> PointSet:
    """This rank's block of the sampled points of the snapshots ``indices`` (see module doc).

    m : M, neighbours per descriptor; target : "rho" or "delta_rho"; density_fraction: see
    :func:`sample_points`. Memory: the rank's block of descriptors, (n_local, 5M) float64,
    computed in chunks of ``chunk_points``."""
    samples = [sample_points(labelled[i], points_per_snapshot, seed, density_fraction)
               for i in indices]
    counts = np.array([len(s) for s in samples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi = block_range(int(offsets[-1]), comm.size, comm.rank)
    parts = []
    for i, flat, first in zip(indices, samples, offsets[:-1]):
        a, b = max(lo - first, 0), min(hi - first, len(flat))
        if a < b:
            parts.append(_snapshot_points(labelled[i].snapshot, flat[a:b], m, target,
                                          chunk_points) + (np.full(b - a, i, dtype=np.int64),))
    if not parts:
        empty = np.empty(0)
        return PointSet(np.empty((0, 5 * m)), empty, empty, np.empty(0, np.int64), int(offsets[-1]))
    x, y, rho, snap = (np.concatenate(col) for col in zip(*parts))
    return PointSet(x, y, rho, snap, int(offsets[-1]))


def _snapshot_points(s: Snapshot, flat: np.ndarray, m: int, target: str, chunk_points: int):
    grid = s.grid
    frac = np.stack(np.unravel_index(flat, grid.shape), axis=1) / np.asarray(grid.shape)
    points = frac @ grid.cell_bohr
    search = NeighborSearch(s.atoms.positions / Bohr, s.atoms.numbers, grid.cell_bohr, m=m)
    x = np.empty((len(flat), 5 * m))
    for start, block in iter_descriptors(points, search, m, chunk_points):
        x[start:start + len(block)] = block
    rho = s.rho.reshape(-1)[flat]
    y = rho - s.rho_sad.reshape(-1)[flat] if target == "delta_rho" else rho.copy()
    return x, y, rho


def normalisation_stats(points: PointSet, comm, chunk_points: int = 65536) -> dict:
    """Means and population standard deviations (float64) of descriptors and targets over the
    points of ALL ranks: {"x_mean", "x_std"} (5M,), {"y_mean", "y_std"} floats, "n". Two passes
    (sum, then squared deviations about the global mean), each reduced with an Allreduce."""
    n = allreduce(comm, len(points.target))
    if n < 1:
        raise InputError("no training points to normalise over")
    mean = allreduce_array(comm, _column_sums(points, 0.0, chunk_points)) / n
    std = np.sqrt(allreduce_array(comm, _column_sums(points, mean, chunk_points, squared=True)) / n)
    return {"x_mean": mean[:-1], "x_std": std[:-1], "y_mean": float(mean[-1]),
            "y_std": float(std[-1]), "n": int(n)}


def _column_sums(points: PointSet, shift, chunk_points: int, squared: bool = False) -> np.ndarray:
    """Per column of [x | target], sum of (v - shift) (or its square), chunk by chunk."""
    total = np.zeros(points.x.shape[1] + 1)
    for a in range(0, len(points.target), chunk_points):
        block = np.column_stack([points.x[a:a + chunk_points], points.target[a:a + chunk_points]])
        block -= shift
        total += (block * block if squared else block).sum(0)
    return total


def feature_spec(labelled: list[Labelled], train: list[int], m: int) -> dict:
    """What a model needs from the data it is applied to: M, the species table (sorted atomic
    numbers of the training snapshots), the descriptor definition and the grid spacing range."""
    species = sorted({int(z) for i in train for z in labelled[i].snapshot.atoms.numbers})
    spacing = np.concatenate([item.snapshot.grid.spacing_bohr for item in labelled])
    return {"descriptor": DESCRIPTOR, "descriptor_version": DESCRIPTOR_VERSION,
            "layout": DESCRIPTOR_LAYOUT, "M": int(m), "n_in": 5 * int(m), "species": species,
            "units": "Bohr", "grid_spacing_bohr": [float(spacing.min()), float(spacing.max())]}


DFT_KEYS = ("backend", "basis", "pseudo", "xc", "mesh_spacing_bohr", "sparc_psp_dir")


def dft_settings(labelled: list[Labelled], indices: list[int]) -> dict | None:
    """{backend, basis, pseudo, xc, mesh_spacing_bohr, sparc_psp_dir} (those present) shared by the
    snapshots ``indices`` (the finest mesh spacing among them), or None when the others differ:
    the record from which :func:`hpcdens.dft.settings_from_record` rebuilds the settings the
    predictor needs for N_e, the SAD of delta_rho models and its default grid spacing."""
    mesh = "mesh_spacing_bohr"
    records = [recorded_settings(labelled[i], DFT_KEYS) for i in indices]
    seen = {json.dumps({k: v for k, v in r.items() if k != mesh}, sort_keys=True)
            for r in records}
    if len(seen) != 1:
        return None
    spacings = [r[mesh] for r in records if mesh in r]
    return {**json.loads(seen.pop()), **({mesh: min(spacings)} if spacings else {})}


def valence_electrons(labelled: list[Labelled], indices: list[int]) -> dict | None:
    """{Z: valence electrons} of the pseudopotentials the snapshots ``indices`` were labelled with:
    the backend's ``valence_charges`` for their shared settings (:func:`dft_settings`). None when
    they share no backend and settings, when the backend cannot give the charges here, or when a
    snapshot's recorded N_e disagrees with them (logged: the files changed since labelling).
    Keys are strings (JSON)."""
    import logging

    from ase.data import chemical_symbols

    from ..dft import get_backend, settings_from_record
    from ..errors import DFTSetupError

    record = dft_settings(labelled, indices)
    if not record or "backend" not in record:
        return None
    settings = settings_from_record(record)
    species = sorted({int(z) for i in indices for z in labelled[i].snapshot.atoms.numbers})
    try:
        charges = get_backend(settings.backend).valence_charges(
            [chemical_symbols[z] for z in species], settings)
    except (DFTSetupError, ImportError) as err:
        logging.getLogger(__name__).warning("no valence table for the model: %s", err)
        return None
    table = {z: float(charges[chemical_symbols[z]]) for z in species}
    for i in indices:
        s = labelled[i].snapshot
        n_e = float(s.attrs.get("n_electrons", np.nan))
        mine = sum(table[int(z)] for z in s.atoms.numbers)
        if not abs(mine - n_e) <= 1e-6 * max(1.0, n_e):
            logging.getLogger(__name__).warning(
                "snapshot %s has N_e = %g, its %s pseudopotentials give %g: no valence table for "
                "the model", s.key, n_e, settings.backend, mine)
            return None
    return {str(z): v for z, v in table.items()}
