"""Segregated "checkerboard" cells (Pathrudkar et al. 2025, Fig. 10 and the generalisation
cells): an ideal lattice cut into ``bins**3`` blocks along its lattice vectors, each block
decorated with its own composition with exact counts. Cuts, block sizes and the cut offset that
makes the blocks equal; face-sharing blocks; the decoration. ASE Atoms in Angstrom, fractional
coordinates for the cuts; randomness from an explicit :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
from ase import Atoms

from .composition import atom_counts, parse_composition
from .errors import CompositionError, StructureError
from .structures import _int_at_least, _shuffled_species, _supercell_tuple

log = logging.getLogger(__name__)

_BLOCK_EDGE_TOL = 1e-6  # fractional; a site on a block face belongs to the block above it


def block_indices(atoms: Atoms, bins: int, offset: float = 0.0) -> np.ndarray:
    """Block (i, j, k) of every atom when the cell is cut into ``bins**3`` equal blocks.

    Cuts are along the lattice vectors at fractional coordinates ``offset + m / bins``; a site on
    a block face (within 1e-6) belongs to the block above it. Returns an (n_atoms, 3) int array
    in ``[0, bins)``.
    """
    frac = (atoms.cell.scaled_positions(atoms.positions) - offset) % 1.0
    return np.floor((frac + _BLOCK_EDGE_TOL) * bins).astype(int) % bins


def block_sizes(atoms: Atoms, bins: int, offset: float = 0.0) -> np.ndarray:
    """Sites per block of :func:`block_indices`, (bins**3,) ints in C order of (i, j, k)."""
    flat = np.ravel_multi_index(block_indices(atoms, bins, offset).T, (bins,) * 3)
    return np.bincount(flat, minlength=bins**3)


def block_offset(atoms: Atoms, bins: int) -> float | None:
    """The cut offset (fractional, the same along every lattice vector) that splits an ideal
    lattice into ``bins**3`` blocks of equal site count: 0 when the plain cut does, else the
    smallest midpoint between two consecutive planes of sites along the first lattice vector
    below 1 / bins (a 3x3x3 diamond cell in 8 blocks: 1/24, i.e. a/8, blocks of 27 sites where
    the plain cut gives 28 and 26); None when no such cut exists."""
    x = np.sort(atoms.cell.scaled_positions(atoms.positions)[:, 0] % 1.0)
    planes = x[np.r_[True, np.diff(x) > _BLOCK_EDGE_TOL]]
    middles = 0.5 * (planes[:-1] + planes[1:])
    for offset in [0.0, *middles[middles < 1.0 / bins]]:
        sizes = block_sizes(atoms, bins, offset)
        if sizes.min() == sizes.max():
            return float(offset)
    return None


def block_compositions(bins: int, compositions: list) -> list:
    """The composition of each of the ``bins**3`` blocks, in C order of (i, j, k) (k fastest).

    ``compositions`` holds either exactly ``bins**3`` entries, one per block in that order, or
    ``m`` entries with ``2 <= m < bins**3``: block (i, j, k) then takes
    ``compositions[(i + j + k) % m]``. Entries are returned as given (any type).
    """
    bins = _int_at_least(bins, "bins", 2)
    n_blocks, m = bins**3, len(compositions)
    if m == n_blocks:
        return list(compositions)
    if not 2 <= m < n_blocks:
        few = "at least two compositions" if m < 2 else f"at most {n_blocks} compositions"
        raise StructureError(f"segregation into {n_blocks} blocks (bins={bins}) needs {few}, got "
                             f"{m}; give 2 to {n_blocks - 1} (block (i, j, k) takes number "
                             f"(i+j+k) % m) or exactly {n_blocks}, one per block in C order of "
                             f"(i, j, k)")
    colour = np.indices((bins,) * 3).sum(axis=0).ravel() % m
    return [compositions[c] for c in colour]


def face_neighbour_pairs(bins: int) -> np.ndarray:
    """Face-sharing blocks of a ``bins**3`` cut, periodic images included.

    Returns a (p, 2) int array of flat block indices (C order of (i, j, k)), each pair once with
    the smaller index first; ``bins=2`` gives 12 pairs (each block has 3 distinct neighbours).
    """
    bins = _int_at_least(bins, "bins", 2)
    ijk = np.indices((bins,) * 3).reshape(3, -1)
    pairs = set()
    for axis in range(3):
        up = ijk.copy()
        up[axis] = (up[axis] + 1) % bins
        up_flat = np.ravel_multi_index(up, (bins,) * 3).tolist()
        pairs.update((min(a, b), max(a, b)) for a, b in enumerate(up_flat))
    return np.array(sorted(pairs), dtype=int)


def warn_equal_face_neighbours(bins: int, specs) -> None:
    """log.warning naming the face-sharing blocks (periodic) that ``specs``, one composition per
    block in C order, give the same composition; compositions are compared as parsed fractions
    (unparsable ones as written: the cross-check with system.elements reports them)."""
    def key(spec):
        try:
            comp = parse_composition(spec)
        except CompositionError:
            return spec
        return frozenset((el, x) for el, x in zip(comp.elements, comp.fractions) if x > 0)

    keys = [key(spec) for spec in specs]
    equal = [(a, b) for a, b in face_neighbour_pairs(bins) if keys[a] == keys[b]]
    if equal:
        shape = (bins,) * 3
        named = ", ".join(f"{tuple(map(int, np.unravel_index(a, shape)))} and "
                          f"{tuple(map(int, np.unravel_index(b, shape)))} ({specs[a]})"
                          for a, b in equal)
        log.warning("[snapshots] checkerboard_compositions: %d pair(s) of face-sharing blocks "
                    "(periodic images included) have the same composition: %s", len(equal), named)


def segregate(atoms: Atoms, supercell, bins: int, compositions: list[dict[str, float]],
              rng: np.random.Generator) -> Atoms:
    """Species segregated into the ``bins**3`` blocks of :func:`block_indices`.

    ``compositions`` (dicts of fractions summing to 1) assigns a composition to every block as
    in :func:`block_compositions`: one per block in C order of (i, j, k), or ``m`` of them with
    block (i, j, k) taking ``compositions[(i+j+k) % m]``. With ``m`` dividing ``bins``, no two
    face-sharing blocks hold the same composition, across the periodic boundary too (the paper's
    27-bin cell is ``bins=3`` with three single-element compositions). Each block's sites get
    the exact counts of :func:`hpcdens.composition.atom_counts` for its own composition, placed
    at random; blocks are filled in C order, one ``rng.permutation`` each.

    ``atoms`` is an ideal (unrattled) lattice built with ``supercell`` (int or 3 ints; bins
    blocks per lattice vector, >= 2); rattle after segregating. The cuts lie at fractional
    coordinates ``offset + m / bins`` with the offset of :func:`block_offset`: 0 when the supercell
    is a multiple of ``bins``, else a plane between two layers of sites where that gives equal
    blocks (the paper's 216-atom 8-bin cells: 3x3x3 diamond, blocks of 27 sites).

    The result carries ``info["segregation_bins"]`` and ``info["segregation_compositions"]``, a
    JSON list of the ``bins**3`` block compositions as formula strings (``"Si1Ge0Sn0"``), C
    order: block (i, j, k) spans fractional coordinates ``[offset + i/bins, offset + (i+1)/bins)``
    and so on; a non-zero offset is recorded as ``info["segregation_offset"]``.
    """
    reps = _supercell_tuple(supercell)
    bins = _int_at_least(bins, "bins", 2)
    per_block = block_compositions(bins, compositions)
    offset = block_offset(atoms, bins)
    if offset is None:
        sizes = block_sizes(atoms, bins)
        raise StructureError(f"no cut of this cell into {bins}^3 blocks gives blocks of equal "
                             f"size (between {sizes.min()} and {sizes.max()} sites at the plain "
                             f"cut); pass an unrattled lattice built with supercell {reps}, or "
                             f"use a supercell that is a multiple of bins, e.g. "
                             f"{tuple(bins * math.ceil(r / bins) for r in reps)}")
    flat = np.ravel_multi_index(block_indices(atoms, bins, offset).T, (bins,) * 3)
    symbols = np.empty(len(atoms), dtype=object)
    for block, fractions in enumerate(per_block):
        sites = np.flatnonzero(flat == block)
        counts, _ = atom_counts(fractions, len(sites))
        symbols[sites] = _shuffled_species(counts, rng)
    out = atoms.copy()
    out.set_chemical_symbols(list(symbols))
    out.info["segregation_bins"] = bins
    if offset:
        out.info["segregation_offset"] = offset
    out.info["segregation_compositions"] = json.dumps([str(parse_composition(c))
                                                       for c in per_block])
    return out
