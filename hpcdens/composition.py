"""Alloy compositions: parsing, simplex grids, tessellation levels, random sampling, atom counts.

A composition is a point of the simplex of element fractions. Formula strings such as
``"Si0.25Ge0.5Sn0.25"`` (user guide: ``docs/compositions.md``); fractions are finite, >= 0, sum
to 1 within ``SUM_TOL`` and are stored as given (never renormalised), so ``str`` round-trips.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real

import numpy as np
from ase.data import chemical_symbols

from .errors import CompositionError

SUM_TOL = 1e-6
"""Largest allowed deviation of the sum of fractions from 1."""

TESSELLATION_LEVELS = (1, 2, 4)
"""Tessellation levels of the paper; T3 is skipped (its edge points do not contain T2's)."""

_SYMBOLS = tuple(s for s in chemical_symbols if s != "X")
_TOKEN = re.compile(r"[\s_,]*(?P<symbol>[A-Z][a-z]?)(?P<number>[^A-Z\s_,]*)")


def _format_fraction(value: float) -> str:
    """Shortest decimal string that reads back as exactly ``value`` (no exponent, no trailing 0)."""
    return np.format_float_positional(value, unique=True, trim="-")


def _suggest(symbol: str, pool) -> str:
    """Hint naming the symbols of ``pool`` meant by ``symbol``: a case-insensitive match, else those
    of the same length and first letter ("Sj" -> Si, Sc, ...), else difflib's close matches."""
    if not isinstance(symbol, str):
        return ""
    lower = [s for s in pool if s.lower() == symbol.lower()]
    same_start = [s for s in pool if len(s) == len(symbol) and s[0] == symbol[:1]]
    close = lower or same_start or difflib.get_close_matches(symbol, pool, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(s) for s in close)}?" if close else ""


def _check_symbol(symbol, system=None) -> None:
    """Raise CompositionError unless ``symbol`` is a chemical symbol (of ``system``, if given)."""
    if symbol not in _SYMBOLS:
        hint = (system and _suggest(symbol, system)) or _suggest(symbol, _SYMBOLS)
        raise CompositionError(
            f"unknown chemical symbol {symbol!r}: elements must be symbols of the periodic "
            f"table, written with a capital first letter (ase.data.chemical_symbols){hint}"
        )
    if system is not None and symbol not in system:
        raise CompositionError(
            f"element {symbol!r} is not one of this system's elements {list(system)}; use only "
            f"these elements, or add it to the system's element list{_suggest(symbol, system)}"
        )


def _check_elements(elements) -> tuple[str, ...]:
    """Return ``elements`` as a tuple after checking it is a non-empty list of distinct symbols."""
    if isinstance(elements, str):
        raise CompositionError(f"element list {elements!r} is a string; give e.g. ['Si', 'Ge']")
    elements = tuple(elements)
    if not elements:
        raise CompositionError("empty element list: give at least one element, e.g. ['Si']")
    for symbol in elements:
        _check_symbol(symbol)
    _check_unique(elements, list(elements))
    return elements


def _check_unique(symbols, where) -> None:
    """Raise CompositionError naming the symbols that occur more than once in ``where``."""
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise CompositionError(f"element(s) {duplicates} repeated in {where!r}; give each once")


def _check_fraction(symbol: str, value) -> float:
    """Return ``value`` as a float after checking it is a finite, non-negative real number."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise CompositionError(f"fraction of {symbol} is {value!r}, not a number in [0, 1]")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise CompositionError(f"fraction of {symbol} is {value}; give a finite number in [0, 1]")
    return value + 0.0  # turns -0.0 into 0.0


@dataclass(frozen=True)
class Composition:
    """Element fractions of an alloy, in a fixed element order.

    Attributes
    ----------
    elements : tuple of str
        Distinct chemical symbols, in the order given (the system's order when built with
        ``parse_composition(..., elements=...)``).
    fractions : tuple of float
        Atomic fraction of each element, >= 0, summing to 1 within ``SUM_TOL``; stored as given.

    Notes
    -----
    ``str(c)`` is the formula with every element in order, zeros kept (``Si0.25Ge0.5Sn0.25``,
    ``Si1Ge0Sn0``). Each fraction is the shortest exponent-free decimal that reads back as the
    same float: <= 6 significant digits whenever one exists (0.25, 0.1, 0.015625), up to 17
    otherwise (1/3 gives ``0.3333333333333333``); so ``parse_composition(str(c)) == c`` always.
    """

    elements: tuple[str, ...]
    fractions: tuple[float, ...]

    def __post_init__(self):
        elements = _check_elements(self.elements)
        fractions = tuple(self.fractions)
        if len(fractions) != len(elements):
            raise CompositionError(
                f"{len(elements)} elements {list(elements)} but {len(fractions)} fractions "
                f"{list(fractions)}; give one fraction per element"
            )
        fractions = tuple(_check_fraction(s, f) for s, f in zip(elements, fractions))
        total = math.fsum(fractions)
        if abs(total - 1.0) > SUM_TOL:
            hint = "".join(f"{s}{_format_fraction(f / total)}" for s, f in zip(elements, fractions))
            hint = f", e.g. {hint!r}" if total > 0 else ""
            raise CompositionError(
                f"fractions {dict(zip(elements, fractions))} sum to {total:.9g}, not 1 (tolerance "
                f"{SUM_TOL:g}); normalise them by dividing each by their sum{hint}"
            )
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "fractions", fractions)

    def _formula(self, separator: str) -> str:
        pairs = zip(self.elements, self.fractions)
        return separator.join(f"{s}{_format_fraction(f)}" for s, f in pairs)

    def __str__(self) -> str:
        return self._formula("")

    @property
    def label(self) -> str:
        """File- and HDF5-safe name: ``str(self)`` with ``_`` between elements (``Si0.25_Ge0.75``);
        only letters, digits, ``.`` and ``_`` occur, and it parses back to the same composition."""
        return self._formula("_")

    def as_dict(self) -> dict[str, float]:
        """Fractions keyed by element symbol, in element order."""
        return dict(zip(self.elements, self.fractions))

    def fraction(self, symbol: str) -> float:
        """Fraction of element ``symbol``; CompositionError if it is not one of ``elements``."""
        if symbol not in self.elements:
            raise CompositionError(
                f"element {symbol!r} is not in composition {self} (elements {list(self.elements)})"
            )
        return self.fractions[self.elements.index(symbol)]


def _parse_string(spec: str) -> list[tuple[str, object]]:
    """Split a formula such as ``"Si0.25 Ge0.5Sn0.25"`` into (symbol, fraction) pairs."""
    pairs, position, end = [], 0, len(spec.rstrip(" \t\n_,"))
    while position < end:
        match = _TOKEN.match(spec, position)
        if match is None:
            raise CompositionError(
                f"cannot read composition {spec!r} at {spec[position:].lstrip()!r}: expected an "
                f"element symbol with a capital first letter followed by its fraction, e.g. 'Si0.5'"
            )
        symbol, number = match.group("symbol", "number")
        try:
            value = float(number) if number else 1.0
        except ValueError:
            value = number  # rejected as non-numeric, with its symbol, by _check_fraction
        pairs.append((symbol, value))
        position = match.end()
    return pairs


def _pairs(spec) -> list[tuple[str, object]]:
    """(symbol, fraction) pairs of any accepted composition spec, unchecked."""
    if isinstance(spec, Composition):
        return list(zip(spec.elements, spec.fractions))
    if isinstance(spec, str):
        return _parse_string(spec)
    if isinstance(spec, Mapping):
        return list(spec.items())
    raise CompositionError(
        f"cannot read a composition from {spec!r} ({type(spec).__name__}); give a string such as "
        f"'Si0.5Ge0.5', a mapping such as {{'Si': 0.5, 'Ge': 0.5}} or a Composition"
    )


def parse_composition(spec, elements=None) -> Composition:
    """Read a composition from a formula string, a mapping or a Composition.

    Parameters
    ----------
    spec : str, Mapping[str, float] or Composition
        ``"Si0.25Ge0.5Sn0.25"``, ``"Si0.5 Ge0.5"``, ``"Si"`` (a bare symbol means fraction 1),
        ``{"Si": 0.25, "Ge": 0.75}`` or an existing Composition.
    elements : sequence of str, optional
        The system's elements. If given, the result is expressed over exactly these elements in
        this order (absent ones get fraction 0), and any other element is an error.

    Returns
    -------
    Composition

    Raises
    ------
    CompositionError
        Empty spec, unknown or duplicate symbol, element outside ``elements``, non-numeric,
        negative, NaN or infinite fraction, or fractions not summing to 1 within ``SUM_TOL``.
    """
    system = None if elements is None else _check_elements(elements)
    pairs = _pairs(spec)
    if not pairs:
        raise CompositionError(
            f"empty composition {spec!r}: give at least one element, e.g. 'Si' or 'Si0.5Ge0.5'"
        )
    for symbol, _ in pairs:
        _check_symbol(symbol, system)
    symbols = [s for s, _ in pairs]
    _check_unique(symbols, spec)
    if system is None:
        return Composition(tuple(symbols), tuple(f for _, f in pairs))
    return Composition(system, tuple(dict(pairs).get(s, 0.0) for s in system))


def _check_int(name: str, value, minimum: int, hint: str) -> int:
    """Return ``value`` as an int after checking it is an integer >= ``minimum`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise CompositionError(f"{name} must be an integer >= {minimum}, got {value!r}; {hint}")
    return int(value)


def _weak_compositions(total: int, parts: int):
    """Integer vectors k >= 0 of length ``parts`` summing to ``total``, k_1 descending first."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _weak_compositions(total - first, parts - 1):
            yield (first, *rest)


def _grid_points(elements, resolution: int, keep=lambda k: True) -> list[Composition]:
    """Compositions k/resolution for the integer vectors k accepted by ``keep``."""
    return [
        Composition(elements, tuple(k_i / resolution for k_i in k))
        for k in _weak_compositions(resolution, len(elements))
        if keep(k)
    ]


def simplex_grid(elements, resolution: int) -> list[Composition]:
    """All compositions whose fractions are multiples of ``1/resolution``.

    Parameters
    ----------
    elements : sequence of str
        The d distinct elements.
    resolution : int
        Number of divisions of each edge of the simplex (>= 1).

    Returns
    -------
    list of Composition
        The C(resolution + d - 1, d - 1) points k/resolution, integers k_i >= 0 summing to
        ``resolution``, in reverse lexicographic order of k (first element's fraction descending,
        then the second's, ...): the pure first element comes first, the pure last one last.
    """
    elements = _check_elements(elements)
    resolution = _check_int("resolution", resolution, 1, "e.g. 4 for steps of 0.25")
    return _grid_points(elements, resolution)


def tessellation(elements, level: int) -> list[Composition]:
    """Training compositions of tessellation level T``level`` (Pathrudkar et al. 2025, Fig. 3).

    - T1: the d pure elements (resolution-1 grid).
    - T2: the resolution-2 grid, plus, for d >= 4, the centre of the simplex (all fractions 1/d),
      appended last: for d >= 4 the middle cell of the second tessellation is not a simplex (for
      a quaternary, the octahedron whose midpoint is the paper's "star"); for d = 3 it is a
      triangle spanned by grid points, so nothing is added.
    - T4: each corner sub-simplex of T2 tessellated again, i.e. the resolution-4 grid points with
      some k_i >= 2. The middle cell is not refined, so a quaternary T4 lacks (1, 1, 1, 1)/4, the
      T2 centre (the paper's T4 has 34 points); it holds every other T2 point.

    T3 is skipped as in the paper: its edge points (thirds) do not contain T2's (halves).
    Counts T1 / T2 / T4: d = 2: 2 / 3 / 5; d = 3: 3 / 6 / 15; d = 4: 4 / 11 / 34; d = 5:
    5 / 16 / 65 (the 5 points with four k_i = 1 are dropped from the 70 at resolution 4).

    Parameters
    ----------
    elements : sequence of str
        The d distinct elements.
    level : {1, 2, 4}
        Tessellation level.

    Returns
    -------
    list of Composition
        In ``simplex_grid`` order (with the T2 centre last).
    """
    elements = _check_elements(elements)
    is_int = isinstance(level, Integral) and not isinstance(level, bool)
    if not is_int or level not in TESSELLATION_LEVELS:
        raise CompositionError(
            f"tessellation level {level!r} is not offered; choose one of {TESSELLATION_LEVELS} "
            f"(T3 is skipped as in the paper: its edge points do not contain those of T2)"
        )
    if level == 4:
        return _grid_points(elements, 4, keep=lambda k: max(k) >= 2)
    d = len(elements)
    centre = [Composition(elements, (1 / d,) * d)] if level == 2 and d >= 4 else []
    return _grid_points(elements, level) + centre


def _largest_remainder(fractions, total: int) -> tuple[int, ...]:
    """Integers >= 0 summing to ``total``, proportional to ``fractions`` (Hamilton's method).

    Each gets floor(f_i * total / sum f), computed exactly on the float values; the units left go
    one each to the largest remainders, ties to the earlier element. The result is also the point
    of the resolution-``total`` grid nearest to ``fractions`` (Euclidean distance)."""
    exact = [Fraction(f) for f in fractions]
    quotas = [f * total / sum(exact) for f in exact]
    counts = [math.floor(q) for q in quotas]
    ranking = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in ranking[: total - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def random_compositions(elements, n: int, rng: np.random.Generator, resolution=None):
    """Compositions drawn uniformly from the simplex, i.e. from Dirichlet(1, ..., 1).

    Parameters
    ----------
    elements : sequence of str
        The d distinct elements.
    n : int
        Number of compositions (>= 0).
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same list bit for bit.
    resolution : int, optional
        If given, each draw is moved to the nearest (Euclidean) point of ``simplex_grid(elements,
        resolution)``, found by the largest-remainder method (ties to the earlier element).
        Duplicates are kept.

    Returns
    -------
    list of Composition
    """
    elements = _check_elements(elements)
    n = _check_int("n", n, 0, "give the number of compositions to draw")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng is a {type(rng).__name__}; pass numpy.random.default_rng(seed)")
    if resolution is not None:
        resolution = _check_int("resolution", resolution, 1, "e.g. 4 for steps of 0.25")
    draws = rng.dirichlet(np.ones(len(elements)), size=n).tolist()
    if resolution is None:
        return [Composition(elements, tuple(row)) for row in draws]
    snapped = [_largest_remainder(row, resolution) for row in draws]
    return [Composition(elements, tuple(k / resolution for k in ks)) for ks in snapped]


def atom_counts(composition, n_sites: int) -> tuple[dict[str, int], Composition]:
    """Whole numbers of atoms of each element on ``n_sites`` sites.

    Largest-remainder (Hamilton) rounding: every element gets floor(f_i * n_sites) atoms, and the
    atoms left go one each to the elements with the largest remainders; equal remainders are
    broken by element order, the earlier element first (Si1/3 Ge1/3 Sn1/3 on 64 sites gives
    Si 22, Ge 21, Sn 21). Counts are exact when every f_i * n_sites is an integer, and an element
    of fraction 0 never gets an atom.

    Parameters
    ----------
    composition : Composition or any spec accepted by ``parse_composition``
    n_sites : int
        Number of lattice sites (> 0).

    Returns
    -------
    counts : dict of str to int
        Atoms per element, in element order, summing to ``n_sites``.
    realised : Composition
        The composition the counts actually give, counts / n_sites.
    """
    composition = parse_composition(composition)
    n_sites = _check_int("n_sites", n_sites, 1, "give the number of sites of the cell")
    counts = _largest_remainder(composition.fractions, n_sites)
    realised = Composition(composition.elements, tuple(c / n_sites for c in counts))
    return dict(zip(composition.elements, counts)), realised
