"""Checks and preparation of a prediction, done once on rank 0 before any work.

:func:`prepare_plan` reads and checks everything the ranks need (model file and its metadata,
structure, grid, N_e, SAD tables) and returns a picklable :class:`PredictPlan`;
:func:`broadcast_plan` runs it on rank 0 and broadcasts the plan, or the error, so that every rank
raises the same exception together (no rank waits in a collective that another has left).

Model metadata the prediction relies on (written by the training driver; ``docs/commands/
predict.md`` lists them): ``n_neighbors`` (M), ``species`` (atomic numbers seen in training),
``target`` ("rho" | "delta_rho"), ``n_samples`` (N_s), ``sample_seed``, ``descriptor_version``;
optional ``valence_electrons`` ({Z: N_valence}) and ``dft`` ({backend, basis, pseudo, xc,
mesh_spacing_bohr}: the SAD of delta_rho models, the GTH valence fallback and the default spacing).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr

from ..descriptors import DESCRIPTOR_VERSION
from ..errors import HpcdensError, InputError
from ..grid import Grid
from ..io.files import output_file, sha256_file

log = logging.getLogger("hpcdens.predict")

MAX_SPACING_BOHR = 1.0
"""A grid coarser than this along any lattice vector (Bohr) is refused: densities vary on
~0.1-0.5 Bohr, and no training grid is coarser."""
MIN_POINTS_PER_AXIS = 4
"""A grid with fewer points along an axis is refused."""
TARGETS = ("rho", "delta_rho")
REQUIRED_META = ("n_neighbors", "species", "target", "n_samples", "sample_seed",
                 "descriptor_version")
DEFAULT_PSEUDO = "gth-pbe"


@dataclass(frozen=True)
class PredictPlan:
    """Everything the ranks need, checked. Arrays in atomic units (Bohr).

    numbers : (N,) int; positions_bohr : (N, 3); cell_bohr : (3, 3) rows; pbc : (3,) bool
    grid_shape : (n1, n2, n3); n_electrons : N_e = sum of valence charges
    valence : {Z: valence electrons}; valence_source : "model", "option" or "pyscf-gth:<pseudo>"
    sad : None, or {"settings": {...}, "radial": {symbol: RadialDensity}, "r_cut": Bohr}
    """

    model_path: str
    model_sha256: str
    meta: dict
    m: int
    target: str
    n_samples: int
    sample_seed: int
    numbers: np.ndarray
    positions_bohr: np.ndarray
    cell_bohr: np.ndarray
    pbc: np.ndarray
    grid_shape: tuple
    n_electrons: float
    valence: dict
    valence_source: str
    chunk_points: int
    out: str
    structure_info: dict = field(default_factory=dict)
    sad: dict | None = None

    @property
    def grid(self) -> Grid:
        return Grid(self.cell_bohr, self.grid_shape)


def _name(z: int) -> str:
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


def check_meta(meta: dict, n_in: int, path) -> dict:
    """Checked prediction settings from a model's metadata; raises InputError naming the key."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise InputError(f"model {path} lacks metadata {missing} (needs {list(REQUIRED_META)}); "
                         "it was not written by 'hpcdens train', or by an older version: retrain")
    try:
        m, n_s, seed = int(meta["n_neighbors"]), int(meta["n_samples"]), int(meta["sample_seed"])
        species = sorted(int(z) for z in meta["species"])
        version = int(meta["descriptor_version"])
    except (TypeError, ValueError) as err:
        raise InputError(f"model {path}: malformed metadata ({err}); n_neighbors, n_samples, "
                         "sample_seed, descriptor_version must be integers and species a list "
                         "of atomic numbers") from err
    if m < 1 or 5 * m != n_in:
        raise InputError(f"model {path}: n_neighbors M = {m} does not match its input width "
                         f"{n_in} (descriptors have 5M numbers); the model file is inconsistent")
    if meta["target"] not in TARGETS:
        raise InputError(f"model {path}: target {meta['target']!r} unknown; allowed {TARGETS}")
    if n_s < 1 or not species:
        raise InputError(f"model {path}: n_samples must be >= 1 ({n_s}) and species non-empty")
    if version != DESCRIPTOR_VERSION:
        raise InputError(f"model {path} was trained on descriptor version {version}; this "
                         f"hpcdens computes version {DESCRIPTOR_VERSION}. Retrain the model")
    return {"m": m, "n_samples": n_s, "sample_seed": seed, "species": species,
            "target": meta["target"]}


def check_species(numbers, species, path) -> None:
    """Every element of the structure was seen in training, else InputError naming them."""
    unseen = sorted(set(int(z) for z in numbers) - set(species))
    if unseen:
        raise InputError(f"structure {path} contains {', '.join(_name(z) for z in unseen)}, which "
                         f"the model never saw in training (it knows "
                         f"{', '.join(_name(z) for z in species)}); use a model trained on them")


def make_grid(cell_bohr, spacing_bohr=None, shape=None) -> Grid:
    """The prediction grid from a spacing (odd n_i) or a shape; refuses grids too coarse."""
    if shape is not None:
        grid = Grid(cell_bohr, tuple(shape))
    else:
        grid = Grid.from_spacing(cell_bohr, float(spacing_bohr))
    coarse = grid.spacing_bohr.max()
    if coarse > MAX_SPACING_BOHR or min(grid.shape) < MIN_POINTS_PER_AXIS:
        raise InputError(f"grid {grid.shape} is too coarse for this cell: spacing up to "
                         f"{coarse:.3f} Bohr (allowed <= {MAX_SPACING_BOHR}) and at least "
                         f"{MIN_POINTS_PER_AXIS} points per axis. Fix: a smaller --spacing-bohr "
                         "(e.g. 0.4) or a larger --shape")
    return grid


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


def valence_table(meta: dict, option: str | None, species) -> tuple[dict, str]:
    """{Z: valence electrons} and where it came from (model meta, --valence, PySCF GTH)."""
    if meta.get("valence_electrons"):
        return {int(z): float(n) for z, n in meta["valence_electrons"].items()}, "model"
    if option:
        return parse_valence(option), "option"
    dft = meta.get("dft") or {}
    if dft.get("backend", "pyscf") != "pyscf":
        raise InputError(f"the model has no valence_electrons table and was trained with the "
                         f"{dft['backend']} backend, whose pseudopotentials PySCF does not know. "
                         "Fix: pass --valence, e.g. --valence Si=4,Ge=14")
    from ..dft.pyscf_backend import valence_electrons

    pseudo = dft.get("pseudo", DEFAULT_PSEUDO)
    table = {}
    for z in species:
        try:
            table[z] = float(valence_electrons([chemical_symbols[z]], pseudo))
        except Exception as err:  # PySCF raises assorted errors for missing elements
            raise InputError(f"no valence charge for {_name(z)} in PySCF's {pseudo}; pass "
                             "--valence") from err
    return table, f"pyscf-gth:{pseudo}"


def sad_tables(meta: dict, symbols) -> dict:
    """Radial SAD tables for a delta_rho model (``meta['dft']`` names basis, pseudo, xc)."""
    dft = meta.get("dft") or {}
    if dft.get("backend", "pyscf") != "pyscf" or not {"basis", "pseudo"} <= set(dft):
        raise InputError("this delta_rho model needs the SAD density, but its metadata has no "
                         "PySCF 'dft' settings {backend: 'pyscf', basis, pseudo, xc}; only the "
                         "PySCF SAD can be evaluated on grid blocks (SPARC writes it only for a "
                         "whole cell). Retrain with the PySCF backend or a target 'rho' model")
    from ..dft.pyscf_sad import radial_density

    settings = {"backend": "pyscf", "basis": dft["basis"], "pseudo": dft["pseudo"],
                "xc": dft.get("xc", "PBE")}
    radial = {el: radial_density(el, settings["basis"], settings["pseudo"], settings["xc"])
              for el in sorted(set(symbols))}
    return {"settings": settings, "radial": radial,
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


def prepare_plan(model, structure, out, *, spacing_bohr=None, shape=None, supercell=None,
                 vacancies=0, seed=0, chunk_points=8192, overwrite=False,
                 valence=None) -> PredictPlan:
    """Check every input and return the plan (run on one rank). Raises InputError."""
    from ..bnn import load_model

    out = output_file(out, overwrite)
    if isinstance(chunk_points, bool) or int(chunk_points) < 1:
        raise InputError(f"--chunk-points must be >= 1, got {chunk_points}")
    net, meta = load_model(model)
    spec = check_meta(meta, net.n_in, model)
    atoms = build_structure(structure, supercell, vacancies, seed)
    check_species(atoms.numbers, spec["species"], structure)
    if spacing_bohr is None and shape is None:
        spacing_bohr = (meta.get("dft") or {}).get("mesh_spacing_bohr")
        if spacing_bohr is None:
            raise InputError("give the grid: --spacing-bohr H or --shape n1 n2 n3 (the model "
                             "metadata has no dft.mesh_spacing_bohr to default to)")
    cell = np.asarray(atoms.cell.array, dtype=float) / Bohr
    grid = make_grid(cell, spacing_bohr, shape)
    table, source = valence_table(meta, valence, sorted(set(atoms.numbers.tolist())))
    lacking = sorted(set(atoms.numbers.tolist()) - set(table))
    if lacking:
        raise InputError(f"no valence electron count for {', '.join(map(_name, lacking))} "
                         f"(source: {source}); pass --valence")
    sad = sad_tables(meta, atoms.get_chemical_symbols()) if spec["target"] == "delta_rho" else None
    info = {"path": str(structure), "supercell": list(supercell or (1, 1, 1)),
            "vacancies": int(vacancies), "seed": int(seed)}
    return PredictPlan(
        model_path=str(model), model_sha256=sha256_file(model), meta=meta, m=spec["m"],
        target=spec["target"], n_samples=spec["n_samples"], sample_seed=spec["sample_seed"],
        numbers=atoms.numbers.astype(np.int64), positions_bohr=atoms.positions / Bohr,
        cell_bohr=cell, pbc=np.asarray(atoms.pbc, dtype=bool), grid_shape=grid.shape,
        n_electrons=float(sum(table[int(z)] for z in atoms.numbers)),
        valence={int(z): table[int(z)] for z in sorted(set(atoms.numbers.tolist()))},
        valence_source=source, chunk_points=int(chunk_points), out=str(out),
        structure_info=info, sad=sad)


def broadcast_plan(comm, **kwargs) -> PredictPlan:
    """:func:`prepare_plan` on rank 0, broadcast; every rank raises the same error together."""
    result = None
    if comm.rank == 0:
        try:
            result = ("ok", prepare_plan(**kwargs))
        except InputError as err:
            result = ("input", str(err))
        except HpcdensError as err:
            result = ("failed", f"{type(err).__name__}: {err}")
        except Exception as err:  # a bug on rank 0 must not leave the others waiting
            result = ("failed", f"unexpected {type(err).__name__} on rank 0 while checking "
                                f"inputs: {err}")
    result = comm.bcast(result, root=0)
    if result[0] == "input":
        raise InputError(result[1])
    if result[0] == "failed":
        raise HpcdensError(result[1])
    return result[1]


def plan_summary(plan: PredictPlan) -> str:
    """One JSON line for logs."""
    return json.dumps({"model": plan.model_path, "M": plan.m, "target": plan.target,
                       "N_s": plan.n_samples, "atoms": len(plan.numbers),
                       "grid": list(plan.grid_shape), "N_e": plan.n_electrons,
                       "valence_source": plan.valence_source})
