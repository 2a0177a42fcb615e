"""Gamma-point AO values on the uniform grid of an orthorhombic cell, by separable lattice sums.

PySCF's ``pbc_eval_gto`` sums every AO over the lattice images within its cut-off radius point by
point: for a 16-atom CrFeCoNi cell at 0.2 Bohr (167k points, 160 AOs) that is 26 of the 32 s of a
Harris-Foulkes set-up (docs/energy.md, "Harris-Foulkes cost"). When the lattice vectors are along
x, y and z, each Cartesian Gaussian primitive x^a y^b z^c exp(-alpha r^2) is a product of three
one-dimensional functions, and so is its sum over the lattice: the sum over images of
(x - X - n L)^a exp(-alpha (x - X - n L)^2) along each axis, on that axis's grid points. The AO
values on the whole grid are then outer products of 1-D sums, contracted over primitives and turned
into real spherical harmonics with libcint's conventions (PySCF's ``cart2sph``). The 1-D sums keep
every image whose term exceeds 1e-20 of the primitive's peak, so these values are PySCF's up to
PySCF's own lattice-sum truncation (``cell.precision``); ``tests/test_pyscf_ao_grid.py`` bounds the
difference. Other cells use ``pbc_eval_gto``.

Units: Bohr. Functional core: numpy on arrays.
"""

from __future__ import annotations

import numpy as np

#: Images along an axis are kept while exp(-alpha u^2) > IMAGE_TAIL (u the distance to the image).
IMAGE_TAIL = 1e-20


def is_orthorhombic(lattice_bohr) -> bool:
    """Whether the lattice vectors (rows, Bohr) lie along x, y and z."""
    a = np.asarray(lattice_bohr, dtype=float)
    return bool(np.all(np.abs(a - np.diag(np.diag(a))) <= 1e-12 * np.abs(a).max()))


def periodic_powers(t, centre: float, length: float, exponents, l: int) -> np.ndarray:
    """(nprim, l + 1, npts): sum over n of u^p exp(-alpha u^2), u = t - centre - n length, for
    each exponent alpha of ``exponents`` and p = 0..l, at the 1-D points ``t`` (Bohr)."""
    t = np.asarray(t, dtype=float)
    out = np.zeros((len(exponents), l + 1, len(t)))
    for k, alpha in enumerate(exponents):
        reach = np.sqrt(-np.log(IMAGE_TAIL) / alpha)
        lo = int(np.floor((t.min() - centre - reach) / length))
        hi = int(np.ceil((t.max() - centre + reach) / length))
        u = t[None, :] - centre - length * np.arange(lo, hi + 1)[:, None]
        gauss = np.exp(-alpha * u * u)
        power = np.ones_like(u)
        for p in range(l + 1):
            out[k, p] = np.sum(power * gauss, axis=0)
            power = power * u
    return out


def cartesian_powers(l: int) -> list[tuple[int, int, int]]:
    """libcint's order of the Cartesian components of angular momentum l (xx, xy, xz, yy, ...)."""
    return [(lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1)]


def grid_ao(cell, mesh) -> np.ndarray:
    """(n1 n2 n3, nao) float64: gamma-point AO values of the PySCF ``cell`` (spherical basis) at
    its uniform grid ``mesh`` (``cell.get_uniform_grids(mesh, wrap_around=False)``, C order). The
    cell must be orthorhombic (:func:`is_orthorhombic`)."""
    from pyscf import gto

    lattice = np.asarray(cell.lattice_vectors(), dtype=float)
    if not is_orthorhombic(lattice):
        raise ValueError("separable lattice sums need lattice vectors along x, y and z")
    if cell.cart:
        raise ValueError("separable lattice sums are written for spherical AOs (cell.cart False)")
    mesh = tuple(int(n) for n in mesh)
    lengths = np.diag(lattice)
    axes = [np.arange(n) * length / n for n, length in zip(mesh, lengths)]
    ao_loc = cell.ao_loc_nr()
    out = np.empty((mesh[0], mesh[1], mesh[2], ao_loc[-1]))
    for shell in range(cell.nbas):
        l = cell.bas_angular(shell)
        exponents = cell.bas_exp(shell)
        coeff = cell._libcint_ctr_coeff(shell)  # (nprim, nctr), normalised as libcint uses them
        centre = cell.atom_coord(cell.bas_atom(shell))
        px, py, pz = (periodic_powers(axes[d], centre[d], lengths[d], exponents, l)
                      for d in range(3))
        carts = cartesian_powers(l)
        to_sph = gto.cart2sph(l)  # (ncart, 2l + 1)
        # values[x, y, (m, z)] = sum over Cartesian components i and primitives k of
        # (px[k, a_i] py[k, b_i])[x, y] x (to_sph[i, m] coeff[k, c] pz[k, z_i])[z]: one product
        xy = np.stack([np.multiply.outer(px[k, a], py[k, b]) for a, b, _ in carts
                       for k in range(len(exponents))], axis=-1).reshape(mesh[0] * mesh[1], -1)
        for c in range(coeff.shape[1]):
            z = np.einsum("im,k,kiz->ikmz", to_sph, coeff[:, c], pz[:, [zc for _, _, zc in carts]])
            values = xy @ z.reshape(len(carts) * len(exponents), -1)
            start = ao_loc[shell] + c * (2 * l + 1)
            out[..., start:start + 2 * l + 1] = np.moveaxis(
                values.reshape(mesh[0], mesh[1], 2 * l + 1, mesh[2]), 2, -1)
    return out.reshape(-1, ao_loc[-1])
