"""Checks and preparation of a prediction, done once on rank 0 before any work.

:func:`plan_for_atoms` checks a structure (ASE Atoms) against a model's record and the grid and
returns a picklable :class:`PredictPlan` (atoms in Bohr, grid, N_e, SAD tables); the drivers run it
on rank 0 with :func:`hpcdens.parallel.collective.on_root`, so every rank raises the same
exception together (no rank waits in a collective that another has left). :func:`prepare_plan` is
the same for ``hpcdens predict``'s files (model, structure, output path).

What a prediction takes from the model's :class:`~hpcdens.io.model.ModelRecord`: M, species,
target, N_s, seed; valence_electrons (N_e) and the dft settings record (the default grid spacing,
the valence charges when the model has no table, the SAD of delta_rho models), both through the
DFT backend interface (:mod:`hpcdens.dft`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr

from ..errors import HpcdensError, InputError
from ..grid import DEFAULT_CHUNK_POINTS, Grid
from ..io.files import output_file
from ..io.model import ModelRecord, Predictor

log = logging.getLogger("hpcdens.predict")

#: The smallest --chunk-points: one block of the network pass (hpcdens.bnn_predict).
MIN_CHUNK_POINTS = 256
#: Working memory of a chunk per grid point and descriptor number (5M of them a point):
#: descriptors, neighbour lists, frames and their temporaries. Measured 5.5-7.7 kB per point at
#: M = 55 (peak RSS against chunk size, docs/commands/predict.md); 32 x 275 = 8.8 kB.
CHUNK_BYTES_PER_FEATURE = 32


def chunk_memory_error(chunk_points: int, block_points: int, n_features: int,
                       saved_samples: int, available_bytes: int | None,
                       ranks_on_node: int) -> str | None:
    """Why a chunk of ``chunk_points`` grid points (at most the rank's ``block_points``) would not
    fit in half of the memory available to this rank (``available_bytes`` of the node shared by
    ``ranks_on_node`` ranks), with the --chunk-points that would; None when it fits or the
    available memory is unknown. ``n_features``: 5M; ``saved_samples``: per-sample fields
    written (N_s with --save-samples, else 0)."""
    if available_bytes is None:
        return None
    per_point = CHUNK_BYTES_PER_FEATURE * n_features + 16 * saved_samples
    budget = available_bytes / (2 * max(1, ranks_on_node))
    points = min(int(chunk_points), int(block_points))
    if points * per_point <= budget:
        return None
    fits = int(budget // per_point)
    fix = (f"--chunk-points {fits}" if fits >= MIN_CHUNK_POINTS else
           "fewer ranks per node, or a node with more memory")
    return (f"--chunk-points {chunk_points}: a chunk of {points} points needs about "
            f"{points * per_point / 2**20:.0f} MB per rank, more than half of the "
            f"{available_bytes / 2**20:.0f} MB available on this node shared by {ranks_on_node} "
            f"ranks. Fix: {fix}")


@dataclass(frozen=True)
class PredictPlan:
    """Everything the ranks need, checked. Arrays in atomic units (Bohr).

    record : the model's ModelRecord; model_path, model_sha256 : its file and hash
    numbers : (N,) int; positions_bohr : (N, 3); cell_bohr : (3, 3) rows; pbc : (3,) bool
    grid_shape : (n1, n2, n3); n_electrons : N_e = sum of valence charges
    valence : {Z: valence electrons}; valence_source : "model", "option" or "dft-backend:<name>"
    out : the prediction file, or None for a prediction kept in memory
    sad : None, or {"settings": the dft record but the grid spacing, "radial": {symbol:
        RadialDensity}, "source": "model" or "dft-backend:<name>", "r_cut": Bohr}
    keep_samples : also predict the density of each of the N_s weight samples (kept in memory
        only, fields ``rho_sample_<j>``; see :func:`hpcdens.parallel.block.sample_field_names`)
    save_samples : also write the per-sample densities into the prediction file (datasets
        ``rho_sample_<j>``; ``hpcdens energy`` then gives the energy error bar)
    charge_correction : write rho_normalised corrected to the model's atomic charges (a file
        and a model with a charge model only; :mod:`hpcdens.parallel.charge_pass`)
    sample_mode : which weight samples (``hpcdens.io.model.with_samples``): "all", "first K of
        N_s" or "mean"; ``record.n_samples`` is their number
    """

    model_path: str
    model_sha256: str
    record: ModelRecord
    numbers: np.ndarray
    positions_bohr: np.ndarray
    cell_bohr: np.ndarray
    pbc: np.ndarray
    grid_shape: tuple
    n_electrons: float
    valence: dict
    valence_source: str
    chunk_points: int
    out: str | None = None
    structure_info: dict = field(default_factory=dict)
    sad: dict | None = None
    keep_samples: bool = False
    sample_mode: str = "all"
    save_samples: bool = False
    charge_correction: bool = False

    @property
    def sample_fields(self) -> bool:
        """Whether the chunks carry the per-sample densities (kept or written)."""
        return self.keep_samples or self.save_samples

    @property
    def grid(self) -> Grid:
        return Grid(self.cell_bohr, self.grid_shape)


def _name(z: int) -> str:
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


def check_species(numbers, species, what) -> None:
    """Every element of the structure was seen in training, else InputError naming them."""
    unseen = sorted(set(int(z) for z in numbers) - set(species))
    if unseen:
        raise InputError(f"structure {what} contains {', '.join(_name(z) for z in unseen)}, which "
                         f"the model never saw in training (it knows "
                         f"{', '.join(_name(z) for z in species)}); use a model trained on them")


def make_grid(cell_bohr, spacing_bohr=None, shape=None) -> Grid:
    """The prediction grid from a spacing (odd n_i) or a shape; refuses grids the project's grid
    rule (:meth:`hpcdens.grid.Grid.check`) finds too coarse."""
    if shape is not None:
        grid = Grid(cell_bohr, tuple(shape))
    else:
        grid = Grid.from_spacing(cell_bohr, float(spacing_bohr))
    return grid.check("a smaller --spacing-bohr (e.g. 0.4) or a larger --shape")


def parse_valence(text: str) -> dict:
    """``"Si=4,Ge=4"`` -> {14: 4.0, 32: 4.0}."""
    table = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        symbol, _, value = item.partition("=")
        try:
            z = chemical_symbols.index(symbol.strip())
            table[z] = float(value)
        except ValueError as err:
            raise InputError(f"--valence item {item!r}: expected SYMBOL=ELECTRONS, e.g. "
                             "'Si=4,Ge=4'") from err
    return table


def valence_table(record: ModelRecord, option: str | None, species) -> tuple[dict, str]:
    """{Z: valence electrons} of the atomic numbers ``species`` and where it came from: the
    model's table, ``--valence``, or the valence charges of the DFT backend of the model's dft
    record (the default settings when it has none)."""
    if record.valence_electrons:
        return dict(record.valence_electrons), "model"
    if option:
        return parse_valence(option), "option"
    from ..dft import get_backend, settings_from_record

    settings = settings_from_record(record.dft)
    symbols = [chemical_symbols[z] for z in species]
    try:
        charges = get_backend(settings.backend).valence_charges(symbols, settings)
    except HpcdensError as err:
        raise InputError(f"the model has no valence_electrons table and the {settings.backend} "
                         f"backend gives no valence charge for {', '.join(symbols)} ({err}). "
                         "Fix: pass --valence, e.g. --valence Si=4,Ge=4") from err
    return ({z: float(charges[chemical_symbols[z]]) for z in species},
            f"dft-backend:{settings.backend}")


def sad_tables(record: ModelRecord, symbols) -> dict:
    """Radial SAD tables of a delta_rho model's elements: the ones its record stores
    (``sad_radial``, source "model"), else from the DFT backend of its dft record (the backend's
    ``radial_densities``, source "dft-backend:<name>"; models trained before the tables were
    stored)."""
    from ..dft import get_backend, settings_from_record

    if not record.dft:
        raise InputError("this delta_rho model needs the SAD density, but its record has no dft "
                         "settings (its training snapshots did not share one). Fix: retrain it on "
                         "labels made with one DFT setting, or use a target 'rho' model")
    elements = sorted(set(symbols))
    stored = record.radial_densities() or {}
    if set(elements) <= set(stored):
        radial, source = {el: stored[el] for el in elements}, "model"
    else:
        settings = settings_from_record(record.dft)
        radial = get_backend(settings.backend).radial_densities(elements, settings)
        source = f"dft-backend:{settings.backend}"
    used = {k: v for k, v in record.dft.items() if k != "mesh_spacing_bohr"}  # not a SAD setting
    return {"settings": used, "radial": radial, "source": source,
            "r_cut": max(r.r_cut for r in radial.values())}


def build_structure(path, supercell=None, vacancies: int = 0, seed: int = 0):
    """Read ``path`` (ASE-readable, Angstrom), repeat it, remove ``vacancies`` random atoms."""
    from ..structures import add_vacancies, read_structure

    atoms = read_structure(path)
    if supercell is not None:
        reps = tuple(supercell)
        if len(reps) != 3 or any(isinstance(r, bool) or int(r) != r or r < 1 for r in reps):
            raise InputError(f"--supercell needs three integers >= 1, got {list(reps)}")
        atoms = atoms.repeat(tuple(int(r) for r in reps))
    if vacancies:
        atoms = add_vacancies(atoms, int(vacancies), np.random.default_rng(int(seed)))
    return atoms


def plan_for_atoms(atoms, predictor: Predictor, *, spacing_bohr=None, shape=None,
                   chunk_points=DEFAULT_CHUNK_POINTS, valence=None, out=None,
                   structure_info=None, what: str = "",
                   keep_samples: bool = False) -> PredictPlan:
    """Check ``atoms`` (ASE Atoms, Angstrom) against the model of ``predictor`` (its record,
    file, hash and sample mode go into the plan) and return the plan (run on one rank). Grid:
    ``shape``, or ``spacing_bohr`` (default: the record's training spacing). ``what`` names the
    structure in messages; ``keep_samples``: see :class:`PredictPlan`. Raises InputError."""
    record = predictor.record
    if isinstance(chunk_points, bool) or int(chunk_points) < MIN_CHUNK_POINTS:
        raise InputError(f"--chunk-points {chunk_points} is below one network block "
                         f"({MIN_CHUNK_POINTS} points): smaller chunks only add overhead. Fix: "
                         f"--chunk-points {MIN_CHUNK_POINTS} or more (default "
                         f"{DEFAULT_CHUNK_POINTS})")
    check_species(atoms.numbers, record.species, what)
    if spacing_bohr is None and shape is None:
        spacing_bohr = record.mesh_spacing_bohr
        if spacing_bohr is None:
            raise InputError("give the grid: --spacing-bohr H or --shape n1 n2 n3 (the model "
                             "record has no dft.mesh_spacing_bohr to default to)")
    cell = np.asarray(atoms.cell.array, dtype=float) / Bohr
    grid = make_grid(cell, spacing_bohr, shape)
    species = sorted(set(atoms.numbers.tolist()))
    table, source = valence_table(record, valence, species)
    lacking = sorted(set(species) - set(table))
    if lacking:
        raise InputError(f"no valence electron count for {', '.join(map(_name, lacking))} "
                         f"(source: {source}); pass --valence")
    sad = sad_tables(record, atoms.get_chemical_symbols()) if record.target == "delta_rho" \
        else None
    return PredictPlan(
        model_path=str(predictor.path), model_sha256=predictor.sha256, record=record,
        sample_mode=predictor.sample_mode,
        numbers=atoms.numbers.astype(np.int64), positions_bohr=atoms.positions / Bohr,
        cell_bohr=cell, pbc=np.asarray(atoms.pbc, dtype=bool), grid_shape=grid.shape,
        n_electrons=float(sum(table[int(z)] for z in atoms.numbers)),
        valence={z: table[z] for z in species}, valence_source=source,
        chunk_points=int(chunk_points), out=None if out is None else str(out),
        structure_info=dict(structure_info or {}), sad=sad, keep_samples=bool(keep_samples))


def prepare_plan(model, structure, out, *, spacing_bohr=None, shape=None, supercell=None,
                 vacancies=0, seed=0, chunk_points=DEFAULT_CHUNK_POINTS, overwrite=False,
                 valence=None, samples=None):
    """The plan of ``hpcdens predict`` and its model (run on one rank): check the output path,
    read the model file once (:func:`hpcdens.io.model.read_predictor`: network, record, the
    weight samples of the fast-sample mode ``samples``, SHA-256) and the structure file
    (repeated by ``supercell``, less ``vacancies`` atoms), then :func:`plan_for_atoms`. Returns
    (PredictPlan, Predictor). Raises InputError."""
    from ..io.model import read_predictor

    out = output_file(out, overwrite)
    predictor = read_predictor(model, samples)
    atoms = build_structure(structure, supercell, vacancies, seed)
    info = {"path": str(structure), "supercell": list(supercell or (1, 1, 1)),
            "vacancies": int(vacancies), "seed": int(seed)}
    plan = plan_for_atoms(atoms, predictor, spacing_bohr=spacing_bohr, shape=shape,
                          chunk_points=chunk_points, valence=valence, out=out,
                          structure_info=info, what=str(structure))
    return plan, predictor


def plan_summary(plan: PredictPlan) -> str:
    """One JSON line for logs."""
    record = plan.record
    return json.dumps({"model": plan.model_path, "M": record.n_neighbors, "target": record.target,
                       "N_s": record.n_samples, "atoms": len(plan.numbers),
                       "grid": list(plan.grid_shape), "N_e": plan.n_electrons,
                       "valence_source": plan.valence_source})
