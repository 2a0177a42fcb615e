"""Gamma-point one-electron matrices of an orthorhombic cell by separable 1-D sums.

When the lattice vectors lie along x, y and z, every reciprocal lattice vector is a product
g = (g1, g2, g3) and the Fourier transform of a Cartesian Gaussian primitive is a product of three
1-D transforms f_a(g) = int x^a exp(-alpha x^2) exp(-i g x) dx (a recursion in a) times a phase per
axis. Sums over G of products of such terms are products of 1-D sums, each an element of a small
matrix product along one axis, contracted afterwards over primitives and Cartesian components
(libcint's coefficients and ``cart2sph``). This module gives

* the GTH non-local projections <p_i^a|phi_mu> summed over the reciprocal vectors of the mesh, as
  :func:`hpcdens.dft.pyscf_pseudo.nonlocal_pp_matrix` sums them (there one (n_proj x N_G) by
  (N_G x nao) product, 2.1 of a 64-atom SiGeSn cell's 4 s Harris-Foulkes set-up, plus the AO
  transforms): a GTH projector is exp(-rl^2 |G|^2 / 2) times a polynomial of degree
  <= l + 2 (i - 1), whose monomial coefficients are fitted once per element on PySCF's own values
  (exact up to rounding, residual checked);
* the overlap and kinetic matrices, (1/vol) sum_G phi_mu(G)* phi_nu(G) (|G|^2 / 2 for the
  kinetic) over every G until the Gaussians vanish: PySCF's lattice-summed ``int1e_ovlp`` and
  ``int1e_kin`` with converged lattice sums. (At PySCF's default ``cell.precision`` 1e-8 its
  real-space sums agree to rounding on SiGeSn cells and miss up to 1.7e-11 Ha of the semi-core
  CrFeCoNi kinetic matrix.)

Both equal PySCF's to rounding (tests/test_pyscf_pseudo.py, tests/test_pyscf_separable.py).

Units: Bohr, Ha. Gamma point only. Functional core: numpy on arrays.
"""

from __future__ import annotations

import numpy as np

from .pyscf_ao_grid import cartesian_powers, is_orthorhombic

#: Largest relative residual accepted when fitting a projector's polynomial (else: not separable).
FIT_TOLERANCE = 1e-11
#: Largest working memory (MB) of the per-axis tables; bigger cells keep the dense sums.
MEMORY_MB = 2000


def monomials(degree: int) -> np.ndarray:
    """(n, 3) exponents (a, b, c) of every monomial gx^a gy^b gz^c of total degree <= ``degree``."""
    return np.array([p for d in range(degree + 1) for p in cartesian_powers(d)], dtype=int)


def projector_polynomials(cell, symbol: str, projectors) -> list[tuple]:
    """Element ``symbol``'s GTH projectors (the rows of ``projectors(cell, gv, symbol)[0]``,
    :func:`hpcdens.dft.pyscf_pseudo.element_projectors`, in order) per angular channel l:
    (beta, powers, coeff) with row(G) = exp(-beta |G|^2) sum_n coeff[row, n] G^powers[n] for the
    channel's rows, beta = rl^2 / 2 (Bohr^2); monomials whose coefficients all vanish are dropped.
    Fitted by least squares on random points; raises ValueError if a row is not such a
    polynomial (residual above FIT_TOLERANCE)."""
    channels = [(l, rl, nl) for l, (rl, nl, _) in enumerate(cell._pseudo[symbol][5:]) if nl > 0]
    if not channels:
        return []
    degree = max(l + 2 * (nl - 1) for l, _, nl in channels)
    scale = 1.0 / min(rl for _, rl, _ in channels)
    gv = np.random.default_rng(0).uniform(-2 * scale, 2 * scale,
                                          size=(4 * len(monomials(degree)) + 40, 3))
    rows = projectors(cell, gv, symbol)[0]
    out, start = [], 0
    for l, rl, nl in channels:
        beta = 0.5 * rl ** 2
        n_rows = nl * (2 * l + 1)
        powers = monomials(l + 2 * (nl - 1))
        basis = np.prod((gv * rl)[:, None, :] ** powers[None], axis=2)  # in u = G rl
        target = rows[start:start + n_rows].T * np.exp(beta * np.sum(gv * gv, axis=1))[:, None]
        coeff = np.linalg.lstsq(basis, target, rcond=None)[0]
        residual = np.abs(basis @ coeff - target).max() / np.abs(target).max()
        if residual > FIT_TOLERANCE:
            raise ValueError(f"GTH projector l={l} of {symbol} is not exp(-rl^2 G^2/2) times a "
                             f"polynomial of degree {powers.sum(axis=1).max()} (residual "
                             f"{residual:.1e})")
        coeff[np.abs(coeff) < 1e-14 * np.abs(coeff).max()] = 0.0
        keep = np.any(coeff != 0, axis=1)
        coeff = coeff.T * rl ** powers.sum(axis=1)[None, :]  # u^n = rl^|n| G^n
        out.append((beta, powers[keep], coeff[:, keep]))
        start += n_rows
    return out


def gaussian_moments_ft(g, alpha: float, lmax: int) -> np.ndarray:
    """(lmax + 1, len(g)) complex: f_a(g) = int x^a exp(-alpha x^2) exp(-i g x) dx (Bohr^(a+1)),
    a = 0..lmax, by the recursion f_{a+1} = (a f_{a-1} - i g f_a) / (2 alpha)."""
    g = np.asarray(g, dtype=float)
    f = np.zeros((lmax + 1, len(g)), dtype=complex)
    f[0] = np.sqrt(np.pi / alpha) * np.exp(-g * g / (4 * alpha))
    for a in range(lmax):
        f[a + 1] = (-1j * g * f[a] + (a * f[a - 1] if a else 0)) / (2 * alpha)
    return f


def applies(cell) -> bool:
    """Whether the separable sums serve ``cell``: orthorhombic, spherical AOs, and per-axis tables
    under MEMORY_MB (they grow as the square of the atoms: about 1 GB for 216 Si atoms)."""
    if not is_orthorhombic(cell.lattice_vectors()) or cell.cart:
        return False
    lmax = max(cell.bas_angular(b) for b in range(cell.nbas))
    prims = sum(cell.bas_nprim(b) for b in range(cell.nbas)) * (lmax + 1)
    channels = sum(sum(1 for _, nl, _ in cell._pseudo[cell.atom_symbol(a)][5:] if nl > 0)
                   for a in range(cell.natm) if cell.atom_symbol(a) in cell._pseudo)
    # overlap/kinetic: 6 real (prims x prims); projections: 3 complex (5 channels x prims)
    return max(6 * 8 * prims ** 2, 3 * 16 * 5 * channels * prims) / 1e6 <= MEMORY_MB


def _lengths(cell) -> np.ndarray:
    lattice = np.asarray(cell.lattice_vectors(), dtype=float)
    if not is_orthorhombic(lattice) or cell.cart:
        raise ValueError("separable sums need lattice vectors along x, y and z and spherical AOs")
    return np.diag(lattice)


def _prim_offsets(cell) -> np.ndarray:
    """Index of each shell's first primitive in the list of all (shell, primitive) pairs."""
    return np.concatenate([[0], np.cumsum([cell.bas_nprim(b) for b in range(cell.nbas)])])


def ao_factors(cell, g, axis: int, lmax: int) -> np.ndarray:
    """(n_prims, lmax + 1, len(g)) complex: f_a(g) exp(-i g R) along ``axis`` for every primitive
    of every shell (shell by shell, :func:`_prim_offsets`), R its atom's coordinate (Bohr)."""
    coords = np.asarray(cell.atom_coords(), dtype=float)
    return np.stack([gaussian_moments_ft(g, alpha, lmax)
                     * np.exp(-1j * g * coords[cell.bas_atom(shell), axis])
                     for shell in range(cell.nbas) for alpha in cell.bas_exp(shell)])


def shell_kinds(cell) -> list[tuple[str, list[int]]]:
    """The shells grouped by kind: (element, [the t-th shell of every atom of that element]) for
    each element and t; shells of one kind share l, exponents and coefficients."""
    slices = cell.aoslice_by_atom()
    kinds = []
    for symbol in sorted({cell.atom_symbol(a) for a in range(cell.natm)}):
        atoms = [a for a in range(cell.natm) if cell.atom_symbol(a) == symbol]
        for t in range(slices[atoms[0]][1] - slices[atoms[0]][0]):
            kinds.append((symbol, [int(slices[a][0]) + t for a in atoms]))
    return kinds


def _kind_terms(cell, shells):
    """For shells of one kind: (primitive indices (n_shells, nprim), Cartesian powers (ncart, 3),
    AO weights (nprim, ncart, nctr, 2l + 1) = libcint coefficient x cart2sph, AO indices
    (n_shells, nctr (2l + 1)))."""
    from pyscf import gto

    l = cell.bas_angular(shells[0])
    ctr = cell._libcint_ctr_coeff(shells[0])  # (nprim, nctr), as libcint uses them
    offsets = _prim_offsets(cell)
    prims = offsets[shells][:, None] + np.arange(len(ctr))[None, :]
    weights = np.einsum("kt,cm->kctm", ctr, gto.cart2sph(l))
    n_ao = ctr.shape[1] * (2 * l + 1)
    aos = cell.ao_loc_nr()[shells][:, None] + np.arange(n_ao)[None, :]
    return prims, np.array(cartesian_powers(l)), weights, aos


def overlap_kinetic(cell) -> tuple[np.ndarray, np.ndarray]:
    """(nao, nao) gamma-point overlap S and kinetic matrix T (Ha) of an orthorhombic ``cell``:
    (1/vol) sum_G phi_mu(G)* phi_nu(G) (times |G|^2 / 2 for T) over reciprocal lattice vectors
    until the products of the steepest primitives fall below 1e-24 of their peak."""
    lengths = _lengths(cell)
    lmax = max(cell.bas_angular(b) for b in range(cell.nbas))
    alpha_max = max(float(np.max(cell.bas_exp(b))) for b in range(cell.nbas))
    g_max = np.sqrt(2 * alpha_max * 24 * np.log(10) + 4 * alpha_max * (lmax + 1))
    overlaps, kinetics = [], []
    for d, length in enumerate(lengths):
        # the AOs are real, so the term at -g is the conjugate of the one at g: the real parts of
        # g >= 0 (g > 0 twice) as one symmetric real product
        g = 2 * np.pi / length * np.arange(int(np.ceil(g_max * length / (2 * np.pi))) + 1)
        f = ao_factors(cell, g, d, lmax) * np.sqrt(np.where(g > 0, 2.0, 1.0))
        a = np.concatenate([f.real, f.imag], axis=-1).reshape(-1, 2 * len(g))
        ag = a * np.concatenate([g, g])
        shape = f.shape[:2] * 2
        overlaps.append((a @ a.T).reshape(shape))
        kinetics.append((ag @ ag.T).reshape(shape))
    s = np.zeros((cell.nao, cell.nao))
    t = np.zeros((cell.nao, cell.nao))
    kinds = [_kind_terms(cell, shells) for _, shells in shell_kinds(cell)]
    for prims_a, carts_a, w_a, aos_a in kinds:
        for prims_b, carts_b, w_b, aos_b in kinds:
            # (atoms a, prim k, cart c, atoms b, prim q, cart e) per axis
            index = [(prims_a[:, :, None, None, None, None], carts_a[:, d][None, None, :, None,
                      None, None], prims_b[None, None, None, :, :, None],
                      carts_b[:, d][None, None, None, None, None, :]) for d in range(3)]
            o = [overlaps[d][index[d]] for d in range(3)]
            k = [kinetics[d][index[d]] for d in range(3)]
            o_prod = o[0] * o[1] * o[2]
            k_sum = 0.5 * (k[0] * o[1] * o[2] + o[0] * k[1] * o[2] + o[0] * o[1] * k[2])
            for out, terms in ((s, o_prod), (t, k_sum)):
                block = np.einsum("akcbqe,kctm,qeun->atmbun", terms, w_a, w_b, optimize=True)
                out[np.ix_(aos_a.ravel(), aos_b.ravel())] = block.reshape(aos_a.size, aos_b.size)
    return (s + s.T) / (2 * cell.vol), (t + t.T) / (2 * cell.vol)  # symmetric to the bit


def projector_overlaps(cell, mesh, projectors) -> tuple[np.ndarray, list[int]]:
    """(n_proj, nao) complex: sum over the reciprocal vectors G of ``mesh`` of p_i(G) S_a(G)*
    phi_mu(G) (Bohr^3), the projectors of every atom a with a non-local part (rows: atom by atom,
    each in the order of ``projectors``, :func:`hpcdens.dft.pyscf_pseudo.element_projectors`)
    against the AOs' Fourier transforms int phi(r) e^{-iGr} dr; and the list of those atoms.
    ``cell`` orthorhombic, spherical AOs."""
    lengths = _lengths(cell)
    mesh = tuple(int(n) for n in mesh)
    g_axes = [2 * np.pi / length * np.fft.fftfreq(n, 1.0 / n) for n, length in zip(mesh, lengths)]
    coords = np.asarray(cell.atom_coords(), dtype=float)
    symbols = [cell.atom_symbol(a) for a in range(cell.natm)]
    fits = {s: projector_polynomials(cell, s, projectors)
            for s in set(symbols) if s in cell._pseudo}
    atoms = [a for a, s in enumerate(symbols) if fits.get(s)]
    if not atoms:
        return np.zeros((0, cell.nao), dtype=complex), []
    max_pow = max(int(p.max()) for f in fits.values() for _, p, _ in f)
    lmax = max(cell.bas_angular(b) for b in range(cell.nbas))
    # per axis: projector factors x[(atom, channel), n, g] = g^n exp(-beta g^2) e^{igR_a} against
    # the AO factors y[prim, c, g]: overlaps[d][(atom, channel), n, prim, c]
    channels = [(a, ch) for a in atoms for ch in range(len(fits[symbols[a]]))]
    x_index = {key: i for i, key in enumerate(channels)}
    overlaps = []
    for d, g in enumerate(g_axes):
        powers = g[None, :] ** np.arange(max_pow + 1)[:, None]
        x = np.stack([powers * np.exp(-fits[symbols[a]][ch][0] * g * g + 1j * g * coords[a, d])
                      for a, ch in channels])
        y = ao_factors(cell, g, d, lmax)
        overlaps.append((x.reshape(-1, len(g)) @ y.reshape(-1, len(g)).T).reshape(
            x.shape[:2] + y.shape[:2]))
    # <p|phi> = sum over the projector's monomials n and the AO's primitives k and Cartesian
    # components c of coeff[row, n] w[k, c] prod_d overlaps[d][(a, ch), n_d, k, c_d], for all
    # atoms of one element and all shells of one kind at once
    n_rows = {a: sum(len(c) for _, _, c in fits[symbols[a]]) for a in atoms}
    first_row = dict(zip(atoms, np.cumsum([0] + [n_rows[a] for a in atoms[:-1]])))
    out = np.zeros((sum(n_rows.values()), cell.nao), dtype=complex)
    kinds = [_kind_terms(cell, shells) for _, shells in shell_kinds(cell)]
    for symbol in sorted({symbols[a] for a in atoms}):
        group = [a for a in atoms if symbols[a] == symbol]
        row = 0
        for ch, (_, powers, coeff) in enumerate(fits[symbol]):
            xs = np.array([x_index[a, ch] for a in group])
            rows = (np.array([first_row[a] for a in group])[:, None]
                    + row + np.arange(len(coeff))[None, :])
            for prims, carts, weights, aos in kinds:
                prod = 1.0
                for d in range(3):
                    prod = prod * overlaps[d][xs[:, None, None, None, None],
                                              powers[:, d][None, :, None, None, None],
                                              prims[None, None, :, :, None],
                                              carts[:, d][None, None, None, None, :]]
                block = np.einsum("rn,anbkc,kctm->arbtm", coeff, prod, weights, optimize=True)
                out[np.ix_(rows.ravel(), aos.ravel())] = block.reshape(rows.size, aos.size)
            row += len(coeff)
    return out, atoms
