"""Superposition of atomic densities (SAD): spherical neutral-atom valence densities, tabulated on a
radial grid, summed over the atoms of a periodic cell and their lattice images at arbitrary points.

Backend-independent (pure numpy/scipy): each DFT backend supplies the radial tables of its own
pseudopotentials (``radial_densities`` of :mod:`hpcdens.dft`); this module only builds a
:class:`RadialDensity` from a table (:func:`tabulate`) and sums them (:func:`superpose`):
rho_SAD(r) = sum_A sum_L rho_A(|r - R_A - L|) over atoms A and lattice translations L within the
cutoff radius of rho_A. Units: Bohr and e/Bohr^3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import simpson
from scipy.interpolate import CubicSpline

#: Densities below this (e/Bohr^3) count as zero: a table's cutoff radius is where it drops below.
DENSITY_CUTOFF = 1e-14
#: Points per block of the lattice sum: its pair list (24 bytes a pair, about 100 pairs a point for
#: a transition metal's 12-Bohr tail) stays near 20 MB.
POINTS_PER_BLOCK = 8192
#: Table points kept beyond the cutoff radius, so the spline is smooth up to it.
_TAIL_POINTS = 10


@dataclass(frozen=True)
class RadialDensity:
    """Spherical valence density of one neutral atom.

    element : str; n_electrons : float, valence electrons (the pseudopotential's charge);
    r_cut : float, Bohr, beyond which rho < DENSITY_CUTOFF and is taken as zero;
    integral : float, 4 pi int r^2 rho dr of the table (Simpson), in electrons;
    spline : cubic spline of rho (e/Bohr^3) in r (Bohr), valid on [0, r_cut];
    r, rho : the table points it splines (Bohr, e/Bohr^3), what :meth:`to_table` stores.
    """

    element: str
    n_electrons: float
    r_cut: float
    integral: float
    spline: CubicSpline
    r: np.ndarray = field(compare=False, repr=False)
    rho: np.ndarray = field(compare=False, repr=False)

    def __call__(self, r) -> np.ndarray:
        """rho_A at distances ``r`` (Bohr), e/Bohr^3; zero beyond ``r_cut``."""
        r = np.asarray(r, dtype=float)
        return np.where(r < self.r_cut, self.spline(np.minimum(r, self.r_cut)), 0.0)

    def to_table(self) -> dict:
        """Plain values (a model record stores them): n_electrons, r_cut, integral and the splined
        points r (Bohr) and rho (e/Bohr^3); :meth:`from_table` rebuilds the same spline."""
        return {"n_electrons": self.n_electrons, "r_cut": self.r_cut, "integral": self.integral,
                "r": self.r.tolist(), "rho": self.rho.tolist()}

    @classmethod
    def from_table(cls, element: str, table: dict) -> "RadialDensity":
        """The density of a :meth:`to_table` dict, bit for bit; ValueError for a malformed one."""
        try:
            r, rho = (np.asarray(table[k], dtype=float) for k in ("r", "rho"))
            scalars = [float(table[k]) for k in ("n_electrons", "r_cut", "integral")]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"radial table of {element} is malformed ({err!r})") from err
        if (r.ndim != 1 or r.shape != rho.shape or len(r) < 4 or r[0] != 0
                or np.any(np.diff(r) <= 0) or not np.all(np.isfinite(rho))):
            raise ValueError(f"radial table of {element} needs increasing r from 0 and finite rho "
                             "of the same length (at least 4 points)")
        return cls(element, *scalars, CubicSpline(r, rho), r, rho)


def radial_integral(r, rho) -> float:
    """4 pi int r^2 rho(r) dr (electrons) of a table on the radial grid ``r`` (Bohr), Simpson."""
    r = np.asarray(r, dtype=float)
    return float(4 * np.pi * simpson(r ** 2 * np.asarray(rho, dtype=float), x=r))


def tabulate(element: str, n_electrons: float, r, rho) -> RadialDensity:
    """The :class:`RadialDensity` of the table ``rho`` (e/Bohr^3) on the increasing radial grid
    ``r`` (Bohr, from 0): cut where rho last reaches DENSITY_CUTOFF (the table's end if it never
    drops below), splined over the points up to the cut plus a short tail."""
    r = np.asarray(r, dtype=float)
    rho = np.asarray(rho, dtype=float)
    above = np.nonzero(rho >= DENSITY_CUTOFF)[0]
    r_cut = float(r[above[-1] + 1]) if len(above) and above[-1] + 1 < len(r) else float(r[-1])
    step = float(r[1] - r[0])
    keep = r <= r_cut + _TAIL_POINTS * step
    return RadialDensity(element, float(n_electrons), r_cut, radial_integral(r, rho),
                         CubicSpline(r[keep], rho[keep]), r[keep], rho[keep])


def aliasing_error(radial: RadialDensity, grid_cell_bohr, shape) -> float:
    """Typical relative error of one atom's charge summed on a periodic grid: the root mean square
    over the atom's position of (grid integral - n_electrons) / n_electrons.

    The grid with ``shape`` points along the rows of ``grid_cell_bohr`` (Bohr) integrates a
    periodic density exactly up to aliasing (Poisson summation): for one atom at R the error is
    sum over K != 0 of f(|G_K|) exp(i G_K . R), G_K the reciprocal vectors of the grid step
    (2 pi K (H^-1)^T, H the step vectors) and f(q) = 4 pi int r^2 rho(r) sin(qr)/(qr) dr the
    atom's form factor; its mean square over R is sum_K f(|G_K|)^2. Position-free and cheap (no
    grid is built); |K_i| <= 2 suffices, f falls off fast beyond the first shell.
    """
    step = np.asarray(grid_cell_bohr, dtype=float) / np.asarray(shape, dtype=float)[:, None]
    recip = 2 * np.pi * np.linalg.inv(step).T
    k = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    q = np.linalg.norm(k[np.any(k != 0, axis=1)] @ recip, axis=1)
    r = np.linspace(0.0, radial.r_cut, int(radial.r_cut / 0.001) // 2 * 2 + 1)
    weight = 4 * np.pi * r ** 2 * radial(r)
    form = simpson(weight * np.sinc(np.outer(q, r) / np.pi), x=r, axis=1)
    return float(np.sqrt(np.sum(form ** 2)) / radial.n_electrons)


def shell_integrals(radial: RadialDensity, shells_bohr=()) -> np.ndarray:
    """(K + 1,) electrons of the spherical density ``radial`` in each radial shell of
    :func:`pro_atoms` (the hats b_k on the nodes 0, r_1, ..., r_K Bohr; b_K = 1 beyond r_K):
    4 pi int r^2 rho(r) b_k(r) dr (Simpson on 0.5 mBohr steps); they add up to the atom's
    integral. With no radii: (integral,)."""
    nodes = np.concatenate([[0.0], np.asarray(shells_bohr, dtype=float)])
    r = np.linspace(0.0, radial.r_cut, int(radial.r_cut / 0.0005) // 2 * 2 + 1)
    weight = 4 * np.pi * r ** 2 * radial(r)
    return np.array([simpson(weight * np.interp(r, nodes, np.eye(len(nodes))[k]), x=r)
                     for k in range(len(nodes))])


def _plane_spacings(cell_bohr: np.ndarray) -> np.ndarray:
    """(3,) distances between neighbouring lattice planes (Bohr)."""
    recip = np.linalg.inv(cell_bohr).T
    return 1.0 / np.linalg.norm(recip, axis=1)


def _images_near(cell_bohr: np.ndarray, frac_atoms: np.ndarray, frac_lo: np.ndarray,
                 frac_hi: np.ndarray, r_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """((m, 3) Cartesian positions (Bohr), (m,) row of ``frac_atoms``) of the lattice images of
    atoms at fractional coordinates ``frac_atoms`` that can lie within ``r_cut`` of a point whose
    fractional coordinates are in the box [frac_lo, frac_hi]: a displacement of length d changes
    fractional coordinate i by at most d / (plane spacing i), so an image further than that
    outside the box along any axis is further than r_cut from every point of it."""
    margin = r_cut / _plane_spacings(cell_bohr)
    n_lo = np.ceil(frac_lo - margin - frac_atoms.max(0)).astype(int)
    n_hi = np.floor(frac_hi + margin - frac_atoms.min(0)).astype(int)
    axes = [np.arange(lo, hi + 1) for lo, hi in zip(n_lo, n_hi)]
    shifts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    frac = (frac_atoms[:, None, :] + shifts[None, :, :]).reshape(-1, 3)
    atom = np.repeat(np.arange(len(frac_atoms)), len(shifts))
    inside = np.all((frac >= frac_lo - margin) & (frac <= frac_hi + margin), axis=1)
    return frac[inside] @ cell_bohr, atom[inside]


def _pairs(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict):
    """Per block of POINTS_PER_BLOCK points and per element: (point index, atom index, value of
    the atom image's radial density at the point, e/Bohr^3, distance, Bohr) of every (point, atom
    image) pair closer than the element's r_cut (arrays; an atom appears once per image in
    range)."""
    from scipy.spatial import cKDTree

    cell_bohr = np.asarray(cell_bohr, dtype=float)
    points = np.asarray(points_bohr, dtype=float).reshape(-1, 3)
    positions = np.asarray(positions_bohr, dtype=float).reshape(-1, 3)
    symbols = np.asarray(symbols, dtype=object)
    inv = np.linalg.inv(cell_bohr)
    for p0 in range(0, len(points), POINTS_PER_BLOCK):
        block = points[p0:p0 + POINTS_PER_BLOCK]
        frac = block @ inv
        tree = cKDTree(block)
        for el in sorted(set(symbols.tolist())):
            rad, rows = radial[el], np.flatnonzero(symbols == el)
            images, atom = _images_near(cell_bohr, positions[rows] @ inv, frac.min(0),
                                        frac.max(0), rad.r_cut)
            if not len(images):
                continue
            pairs = tree.sparse_distance_matrix(cKDTree(images), rad.r_cut,
                                                output_type="ndarray")
            pairs = pairs[pairs["v"] < rad.r_cut]
            yield pairs["i"] + p0, rows[atom[pairs["j"]]], rad.spline(pairs["v"]), pairs["v"]


def superpose(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict) -> np.ndarray:
    """(npts,) sum over atoms and lattice images of ``radial[symbol](distance)``, e/Bohr^3.

    cell_bohr : (3, 3) lattice vectors as rows; positions_bohr : (natm, 3); symbols : natm element
    symbols; points_bohr : (npts, 3) arbitrary Cartesian points; radial : element ->
    :class:`RadialDensity` (every element of ``symbols``).

    Linear in the number of points: per block of POINTS_PER_BLOCK points and per element, a
    KD-tree pair search between the points and the atom images near the block finds every
    (point, image) pair closer than the element's r_cut, and only those are evaluated. Equal to
    the direct sum over all atoms and images to rounding (tests/test_sad.py).
    """
    out = np.zeros(len(np.asarray(points_bohr).reshape(-1, 3)))
    for point, _, value, _ in _pairs(cell_bohr, positions_bohr, symbols, points_bohr, radial):
        out += np.bincount(point, weights=value, minlength=len(out))
    return out


def pro_atoms(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict, shells_bohr=None):
    """The SAD of :func:`superpose` atom by atom: a ``scipy.sparse.csr_matrix`` (npts, natm)
    whose column a is atom a's radial density summed over its lattice images (e/Bohr^3), zero
    beyond its r_cut; its row sums are :func:`superpose`'s values. The pro-atoms of a Hirshfeld
    partition (:mod:`hpcdens.charges`).

    ``shells_bohr`` (increasing radii r_1 < ... < r_K, Bohr) splits each column over K + 1 radial
    shells of every image's own distance: column a (K + 1) + k is sum over images of
    rho_a(d) b_k(d), with b_k the piecewise-linear hats on the nodes 0, r_1, ..., r_K (b_K = 1
    beyond r_K); sum_k b_k = 1, so the shells' columns of an atom add up to its pro-atom."""
    from scipy.sparse import coo_matrix, csr_matrix, vstack

    points = np.asarray(points_bohr, dtype=float).reshape(-1, 3)
    n_atoms = len(np.asarray(positions_bohr).reshape(-1, 3))
    nodes = np.zeros(1)
    if shells_bohr is not None:
        nodes = np.concatenate([nodes, np.asarray(shells_bohr, dtype=float)])
        if np.any(np.diff(nodes) <= 0):
            raise ValueError("shell radii must increase from above 0 Bohr, got "
                             f"{list(shells_bohr)}")
    n_shells = len(nodes)
    blocks = [csr_matrix((0, n_atoms * n_shells))]
    for p0 in range(0, len(points), POINTS_PER_BLOCK):   # one block's pairs, images summed
        block = points[p0:p0 + POINTS_PER_BLOCK]
        rows, cols, vals = [], [], []
        for point, atom, value, dist in _pairs(cell_bohr, positions_bohr, symbols, block, radial):
            if n_shells == 1:
                rows.append(point), cols.append(atom), vals.append(value)
                continue
            # the hats b_k: shell j gets the fraction of its segment up to dist, j - 1 the rest
            j = np.minimum(np.searchsorted(nodes, dist, side="right"), n_shells - 1)
            up = np.clip((dist - nodes[j - 1]) / (nodes[j] - nodes[j - 1]), 0.0, 1.0)
            rows += [point, point]
            cols += [atom * n_shells + j, atom * n_shells + j - 1]
            vals += [value * up, value * (1.0 - up)]
        row, col, val = (np.concatenate(x or [[]]) for x in (rows, cols, vals))
        part = coo_matrix((val, (row.astype(int), col.astype(int))),
                          shape=(len(block), n_atoms * n_shells)).tocsr()   # duplicates summed
        part.eliminate_zeros()
        blocks.append(part)
    return vstack(blocks, format="csr")
