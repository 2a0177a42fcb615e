"""From an input file to the list of structures it asks for: compositions x snapshots.

Every (composition, snapshot) pair is a :class:`Task` with its own random stream, derived from
``snapshots.seed``, the composition and the snapshot index only. A task therefore builds the same
structure whichever rank builds it, in whatever order, and adding compositions to an input file
leaves the structures of the existing ones unchanged.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from . import md
from . import segregation as sg
from . import structures as st
from .composition import (
    Composition,
    atom_counts,
    parse_composition,
    random_compositions,
    simplex_grid,
    tessellation,
)
from .config import Config

TESSELLATION_LEVELS = {"T1": 1, "T2": 2, "T4": 4}


@dataclass(frozen=True)
class Task:
    """One structure to build (and, later, label with DFT).

    Attributes
    ----------
    composition : Composition
        The composition asked for (for checkerboard cells, the mean of the two).
    snapshot : int
        Snapshot index within the composition, 0-based.
    key : str
        Stable name, ``<composition label>/s<snapshot>``: an HDF5 group path.
    config : Config
    """

    composition: Composition
    snapshot: int
    config: Config

    @property
    def key(self) -> str:
        return f"{self.composition.label}/s{self.snapshot:03d}"

    def rng(self) -> np.random.Generator:
        """The task's random stream: from (seed, crc32 of the composition label, snapshot)."""
        label = zlib.crc32(self.composition.label.encode())
        seq = np.random.SeedSequence(self.config.snapshots.seed, spawn_key=(label, self.snapshot))
        return np.random.default_rng(seq)

    def build_atoms(self) -> Atoms:
        """The task's structure (ASE Atoms, Angstrom), with its provenance in ``atoms.info``."""
        return build_atoms(self.config, self.composition, self.snapshot, self.rng())


def compositions(config: Config) -> list[Composition]:
    """The compositions of ``[compositions]``, in order: list, tessellation, grid, random;
    duplicates removed (first occurrence kept). With checkerboard segregation, the one mean
    composition of the checkerboard compositions: of the two, or over the bins^3 blocks."""
    elements = config.system.elements
    snap = config.snapshots
    if snap.checkerboard_bins:
        comps = [parse_composition(c, elements) for c in snap.checkerboard_compositions]
        if len(comps) == 2:  # as before: the label seeds every snapshot's random stream
            mean = {el: 0.5 * (x + y) for el, x, y in zip(elements, *(c.fractions for c in comps))}
        else:
            blocks = sg.block_compositions(snap.checkerboard_bins, comps)
            mean = {el: math.fsum(c.fraction(el) for c in blocks) / len(blocks) for el in elements}
        return [parse_composition(mean, elements)]
    spec = config.compositions
    found = [parse_composition(c, elements) for c in spec.list]
    if spec.tessellation:
        found += tessellation(elements, TESSELLATION_LEVELS[spec.tessellation])
    if spec.grid_resolution:
        found += simplex_grid(elements, spec.grid_resolution)
    if spec.random:
        found += random_compositions(elements, spec.random, np.random.default_rng(spec.seed))
    unique = {}
    for comp in found:
        unique.setdefault(tuple(round(f, 9) for f in comp.fractions), comp)
    return list(unique.values())


def build_plan(config: Config) -> list[Task]:
    """All tasks of ``config``: every composition times ``snapshots.per_composition``. An MD
    calculator that is not installed or does not cover ``system.elements`` is refused here, before
    any output exists (StructureError)."""
    if config.snapshots.method == "md":
        md.make_calculator(config.snapshots.md_calculator, config.system.elements)
    return [Task(comp, s, config) for comp in compositions(config)
            for s in range(config.snapshots.per_composition)]


def template_cell(config: Config, composition: Composition) -> Atoms:
    """The ideal sites: the structure file's (its species are replaced by the decoration), or the lattice with the Vegard constant of
    ``composition`` repeated by ``system.supercell``."""
    path = config.structure_file()
    if path is not None:
        return st.read_structure(path)
    system = config.system
    a = st.vegard_lattice_constant(composition.as_dict(), system.lattice_constants())
    return st.build_cell(system.lattice, a, system.supercell, primitive=system.primitive)


def build_atoms(config: Config, composition: Composition, snapshot: int,
                rng: np.random.Generator) -> Atoms:
    """Decorate or segregate, remove atoms and displace, in that order, drawing from ``rng``.

    Vacancies are made on the ideal sites, before the displacement, and recorded in
    ``info["vacancy_sites_angstrom"]``; segregated cells carry ``info["segregation_bins"]`` and
    ``info["segregation_compositions"]`` (:func:`hpcdens.segregation.segregate`)."""
    snap, elements = config.snapshots, config.system.elements
    atoms = template_cell(config, composition)
    if snap.checkerboard_bins:
        blocks = [parse_composition(c, elements).as_dict() for c in snap.checkerboard_compositions]
        atoms = sg.segregate(atoms, config.system.supercell, snap.checkerboard_bins, blocks, rng)
    else:
        counts, _ = atom_counts(composition, len(atoms))
        atoms = st.decorate(atoms, counts, rng)
    if snap.vacancies:
        atoms = st.add_vacancies(atoms, snap.vacancies, rng)
    if snap.divacancy:
        atoms = st.add_divacancy(atoms, rng)
    atoms = _displace(config, atoms, rng)
    realised = parse_composition(_fractions(atoms, elements), elements)
    atoms.info.update(composition=str(realised), requested_composition=str(composition),
                      snapshot=snapshot, seed=config.snapshots.seed)
    return atoms


def _displace(config: Config, atoms: Atoms, rng: np.random.Generator) -> Atoms:
    snap = config.snapshots
    if snap.method == "rattle" and snap.rattle_stdev_angstrom > 0:
        return st.rattle(atoms, snap.rattle_stdev_angstrom, rng)
    if snap.method == "md":
        calc = md.make_calculator(snap.md_calculator, sorted(set(atoms.get_chemical_symbols())))
        return md.md_snapshots(atoms, calc, 1, snap.temperature_kelvin, rng=rng,
                               timestep_fs=snap.md_timestep_fs, steps_between=snap.md_steps_between)[0]
    return atoms


def _fractions(atoms: Atoms, elements) -> dict[str, float]:
    symbols = atoms.get_chemical_symbols()
    return {el: symbols.count(el) / len(symbols) for el in elements}
