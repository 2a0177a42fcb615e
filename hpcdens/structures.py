"""Atomic structures for training and test data: lattices, decoration, snapshots, defects.

The ASE edge of hpcdens: :class:`ase.Atoms` in Angstrom, times in fs, temperatures in K; conversion
to atomic units happens downstream. Data generation follows Pathrudkar et al. (npj Comput. Mater.
2025), Methods: diamond/fcc/bcc cells with a Vegard lattice constant, random species with exact
counts, thermal snapshots (Gaussian rattle here; Langevin MD in :mod:`hpcdens.md`) and vacancies;
segregated "checkerboard" cells are :mod:`hpcdens.segregation`.

Compositions are plain dicts: counts ``{symbol: atoms}`` or fractions ``{symbol: fraction}``. All
randomness comes from an explicit :class:`numpy.random.Generator`, so a seeded run repeats bit for
bit. No DFT, no MPI: ASE's MPI-aware defaults (``ase.parallel.world``, which under mpirun would
broadcast rank 0's MD noise and file contents to other ranks) are switched off.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from numbers import Integral, Real

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import chemical_symbols
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list

from .errors import StructureError

log = logging.getLogger(__name__)

LATTICES = ("diamond", "fcc", "bcc")
"""Lattices :func:`build_cell` knows. Conventional cubic cells hold 8, 4 and 2 sites."""

NEAREST_NEIGHBOUR_FACTOR = {"diamond": math.sqrt(3) / 4, "fcc": 1 / math.sqrt(2),
                            "bcc": math.sqrt(3) / 2}
"""Nearest-neighbour distance of each lattice in units of its cubic lattice constant."""

_ELEMENTS = frozenset(chemical_symbols[1:])
_FRACTION_SUM_TOL = 1e-6
_TIE_RTOL = 1e-6  # relative; neighbours this close to the nearest distance count as ties


# ----------------------------------------------------------------------------- input checks
def _int_at_least(value, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise StructureError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _supercell_tuple(supercell) -> tuple[int, int, int]:
    """``supercell`` as three positive ints; one int means the same along all three vectors."""
    reps = (supercell,) * 3 if isinstance(supercell, Integral) else tuple(np.ravel(supercell))
    ok = len(reps) == 3 and all(isinstance(r, Integral) and not isinstance(r, bool) and r >= 1
                                for r in reps)
    if not ok:
        raise StructureError(f"supercell must be three positive integers such as (2, 2, 2) or one "
                             f"positive integer, got {supercell!r}")
    return tuple(int(r) for r in reps)


def _check_symbols(symbols, what: str) -> None:
    unknown = [s for s in symbols if s not in _ELEMENTS]
    if unknown:
        raise StructureError(f"{what} names unknown element(s) {unknown}; use chemical symbols "
                             f"such as 'Si', 'Ge', 'Sn', 'Cr', 'Fe', 'Co', 'Ni'")


def _check_counts(counts: dict, n_sites: int) -> None:
    _check_symbols(counts, "counts")
    bad = {s: n for s, n in counts.items()
           if isinstance(n, bool) or not isinstance(n, Integral) or n < 0}
    if bad:
        raise StructureError(f"atom counts must be non-negative integers, got {bad}")
    if sum(counts.values()) != n_sites:
        raise StructureError(f"atom counts {dict(counts)} add up to {sum(counts.values())}, but "
                             f"the cell has {n_sites} sites; give counts that sum to {n_sites}")


def _check_fractions(fractions: dict, what: str) -> None:
    _check_symbols(fractions, what)
    values = list(fractions.values())
    if not values or any(not isinstance(f, Real) or not f >= 0 or not math.isfinite(f)
                         for f in values):
        raise StructureError(f"{what} must be non-negative finite numbers, got {fractions}")
    if abs(sum(values) - 1.0) > _FRACTION_SUM_TOL:
        raise StructureError(f"{what} {fractions} sum to {sum(values):.8g}, not 1; normalise "
                             f"them")


# ----------------------------------------------------------------------------- lattices
def build_cell(lattice: str, a_angstrom: float, supercell=(1, 1, 1), primitive: bool = False,
               symbol: str = "X") -> Atoms:
    """A periodic cell of lattice sites, all carrying ``symbol`` until :func:`decorate`.

    Parameters
    ----------
    lattice : str
        One of :data:`LATTICES`: ``"diamond"``, ``"fcc"`` or ``"bcc"``.
    a_angstrom : float, Angstrom
        Cubic lattice constant (also for the primitive cell).
    supercell : int or (3,) tuple of int
        Repetitions along the three lattice vectors; one int repeats equally along all three.
    primitive : bool
        False: the conventional cubic cell (8, 4, 2 sites). True: the primitive, non-orthogonal
        cell (2, 1, 1 sites) with the same density of sites.
    symbol : str
        Placeholder species; ``"X"`` (no element) keeps an undecorated cell out of any calculator.

    Returns
    -------
    ase.Atoms
        ``sites * prod(supercell)`` atoms, ``pbc=True``, with ``info["lattice"]`` and
        ``info["a_angstrom"]``.
    """
    if lattice not in LATTICES:
        close = difflib.get_close_matches(str(lattice).lower(), LATTICES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StructureError(f"unknown lattice {lattice!r}; allowed: {', '.join(LATTICES)}{hint}")
    if not isinstance(a_angstrom, Real) or not a_angstrom > 0:
        raise StructureError(f"lattice constant must be > 0 Angstrom, got {a_angstrom!r}")
    reps = _supercell_tuple(supercell)
    if symbol != "X":
        _check_symbols([symbol], "symbol")
    atoms = bulk(symbol, lattice, a=float(a_angstrom), cubic=not primitive).repeat(reps)
    atoms.info.update(lattice=lattice, a_angstrom=float(a_angstrom))
    return atoms


def nearest_neighbour_distance(lattice: str, a_angstrom: float) -> float:
    """Nearest-neighbour distance (Angstrom) of the ideal ``lattice`` with constant ``a_angstrom``.
    """
    if lattice not in NEAREST_NEIGHBOUR_FACTOR:
        raise StructureError(f"unknown lattice {lattice!r}; allowed: {', '.join(LATTICES)}")
    return NEAREST_NEIGHBOUR_FACTOR[lattice] * float(a_angstrom)


def vegard_lattice_constant(fractions: dict[str, float], constants: dict[str, float]) -> float:
    """Lattice constant of an alloy by Vegard's law, ``a = sum_i x_i a_i`` (Angstrom).

    ``fractions``: atomic fraction of each element, summing to 1. ``constants`` (Angstrom): the
    pure elements' lattice constants on the alloy's lattice; elements with fraction 0 need none.
    """
    _check_fractions(fractions, "fractions")
    present = [s for s, x in fractions.items() if x > 0]
    missing = [s for s in present if s not in constants]
    if missing:
        raise StructureError(f"no lattice constant for {', '.join(missing)}; add it under "
                             f"[system.lattice_constants_angstrom] in the input file, e.g. "
                             f"{missing[0]} = <a in Angstrom>")
    bad = {s: constants[s] for s in present
           if not isinstance(constants[s], Real) or not constants[s] > 0}
    if bad:
        raise StructureError(f"lattice constants must be > 0 Angstrom, got {bad}")
    return float(sum(fractions[s] * constants[s] for s in present))


# ----------------------------------------------------------------------------- decoration
def _shuffled_species(counts: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """Symbols with exactly ``counts`` of each (symbols in sorted order), randomly permuted."""
    symbols = sorted(counts)
    return rng.permutation(np.repeat(symbols, [counts[s] for s in symbols]))


def decorate(atoms: Atoms, counts: dict[str, int], rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` (positions kept) with species at random on the sites, exact counts.

    ``counts`` (symbol -> number of atoms) must sum to ``len(atoms)``. One ``rng.permutation``
    places them; the result does not depend on the dict's key order.
    """
    _check_counts(counts, len(atoms))
    out = atoms.copy()
    out.set_chemical_symbols(list(_shuffled_species(counts, rng)))
    return out


# ----------------------------------------------------------------------------- snapshots
def rattle(atoms: Atoms, stdev_angstrom: float, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` with Gaussian displacements ``rng.normal(0, stdev_angstrom, (n, 3))``.

    ``stdev_angstrom`` (Angstrom) is the standard deviation of each Cartesian component. Positions
    are not wrapped, so ``result.positions - atoms.positions`` are the displacements.
    """
    if not isinstance(stdev_angstrom, Real) or not stdev_angstrom >= 0:
        raise StructureError(f"rattle stdev must be >= 0 Angstrom, got {stdev_angstrom!r}")
    out = atoms.copy()
    out.positions += rng.normal(0.0, float(stdev_angstrom), size=(len(out), 3))
    out.info["rattle_stdev_angstrom"] = float(stdev_angstrom)
    return out


# ----------------------------------------------------------------------------- defects
def add_vacancies(atoms: Atoms, n: int, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` with ``n`` randomly chosen atoms removed (0 <= n < len(atoms)).

    ``info["vacancies"]`` counts the vacancies made so far and ``info["vacancy_sites_angstrom"]``
    lists where they are (see :func:`_remove`).
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n < len(atoms):
        raise StructureError(f"cannot make {n!r} vacancies in a cell of {len(atoms)} atoms; the "
                             f"count must be an integer from 0 to {len(atoms) - 1}")
    return _remove(atoms, rng.choice(len(atoms), size=int(n), replace=False))


def add_void(atoms: Atoms, n: int) -> Atoms:
    """A copy of ``atoms`` without the ``n`` atoms nearest the cell centre (0 <= n < len(atoms)):
    a vacancy cluster, recorded as :func:`add_vacancies` records vacancies."""
    if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n < len(atoms):
        raise StructureError(f"cannot remove {n!r} atoms around the centre of a cell of "
                             f"{len(atoms)} atoms; the count must be an integer from 0 to "
                             f"{len(atoms) - 1}")
    centre = atoms.cell.array.sum(0) / 2
    return _remove(atoms, np.argsort(np.linalg.norm(atoms.positions - centre, axis=1))[:n])


def add_divacancy(atoms: Atoms, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` without a random atom and one of its nearest neighbours.

    Distances follow the minimum-image convention of the (periodic) cell; when several neighbours
    are equally near (to a relative 1e-6), ``rng`` picks one.
    """
    if len(atoms) < 3:
        raise StructureError(f"a divacancy needs a cell of at least 3 atoms, got {len(atoms)}; "
                             f"use a larger supercell")
    first = int(rng.integers(len(atoms)))
    _, dist = get_distances(atoms.positions[first], atoms.positions, cell=atoms.cell,
                            pbc=atoms.pbc)
    dist = dist[0]
    dist[first] = np.inf
    nearest = np.flatnonzero(dist <= dist.min() * (1 + _TIE_RTOL))
    return _remove(atoms, [first, int(rng.choice(nearest))])


def _remove(atoms: Atoms, indices) -> Atoms:
    """A copy of ``atoms`` without the atoms ``indices``; records the vacancies in ``info``.

    ``info["vacancies"]``: vacancies made so far (int). ``info["vacancy_sites_angstrom"]``: a JSON
    string of the list of ``[x, y, z]`` Cartesian positions (Angstrom) the removed atoms had,
    appended to any list already there. :func:`hpcdens.plan.build_atoms` removes atoms before the
    MD or rattle displacement, so these are the ideal lattice sites of the template cell, and
    the displaced atoms around them have moved off their own sites.
    """
    indices = np.asarray(indices, dtype=int)
    sites = json.loads(atoms.info.get("vacancy_sites_angstrom", "[]"))
    sites += atoms.positions[indices].tolist()
    out = atoms.copy()
    del out[indices]
    out.info["vacancies"] = int(atoms.info.get("vacancies", 0)) + len(indices)
    out.info["vacancy_sites_angstrom"] = json.dumps(sites)
    return out


# ----------------------------------------------------------------------------- files
def check_min_distance(atoms: Atoms, min_angstrom: float = 0.5) -> None:
    """Raise :class:`StructureError` if two atoms (periodic images included) are closer than
    ``min_angstrom`` (Angstrom), naming the closest pair and their distance."""
    i, j, d = neighbor_list("ijd", atoms, float(min_angstrom))
    if len(d):
        k = int(np.argmin(d))
        raise StructureError(f"atoms {i[k]} and {j[k]} are {d[k]:.3f} Angstrom apart, closer "
                             f"than {min_angstrom} Angstrom; check for duplicated atoms and that "
                             f"positions are in Angstrom")


def _check_read(atoms: Atoms, path, min_angstrom: float) -> None:
    if len(atoms) == 0:
        raise StructureError(f"{path} holds a structure with zero atoms")
    if not atoms.pbc.all() or atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{path} has no 3D periodic cell (pbc={atoms.pbc.tolist()}, cell "
                             f"volume {abs(atoms.cell.volume):.3g} Angstrom^3); give three "
                             f"lattice vectors and pbc in all directions (extxyz: Lattice=... "
                             f"pbc=\"T T T\")")
    check_min_distance(atoms, min_angstrom)


def read_structures(path, format: str | None = None,
                    min_distance_angstrom: float = 0.5) -> list[Atoms]:
    """All frames of an ASE-readable structure file (``format``: ASE's name, guessed if None).

    Checks: the file exists and is not empty; ASE can read it; every frame has atoms, a 3D
    periodic non-singular cell, and no two atoms closer than ``min_distance_angstrom`` (Angstrom).
    """
    if not os.path.isfile(path):
        raise StructureError(f"structure file {path} does not exist (or is not a file); check "
                             f"the path")
    if os.path.getsize(path) == 0:
        raise StructureError(f"structure file {path} is empty")
    try:
        frames = ase.io.read(path, index=":", format=format, parallel=False)
    except Exception as err:  # ASE readers fail on bad input with arbitrary exception types
        raise StructureError(f"ASE could not read {path}: format not recognised or file malformed "
                             f"({type(err).__name__}: {err}); readable formats include extxyz, "
                             f"cif, vasp (POSCAR), espresso-in; name one with format=...") from err
    if not frames:  # e.g. a file of blank lines
        raise StructureError(f"structure file {path} holds no structures (is it blank?)")
    for atoms in frames:
        _check_read(atoms, path, min_distance_angstrom)
    return frames


def read_structure(path, format: str | None = None, min_distance_angstrom: float = 0.5) -> Atoms:
    """The last frame of :func:`read_structures` (same checks, applied to every frame)."""
    return read_structures(path, format, min_distance_angstrom)[-1]


def write_structures(path, images: list[Atoms]) -> None:
    """Write ``images`` to ``path`` as extended XYZ, with ``atoms.info`` as per-frame metadata.

    Written to ``<path>.tmp`` and renamed, so a half-written file never has the final name.
    Info values should be str, int, float, bool or arrays; ASE turns keys such as ``energy``
    or ``stress`` into calculator results when reading back.
    """
    images = [images] if isinstance(images, Atoms) else list(images)
    if not images:
        raise StructureError(f"nothing to write to {path}: the list of structures is empty")
    tmp = f"{path}.tmp"
    ase.io.write(tmp, images, format="extxyz", parallel=False)
    os.replace(tmp, path)
