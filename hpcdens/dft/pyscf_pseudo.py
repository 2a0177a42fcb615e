"""The GTH pseudopotential of PySCF's FFTDF at the gamma point, fast: its local potential on the
grid and its non-local matrix.

``pyscf.pbc.dft.RKS(cell).get_hcore()`` (FFTDF) evaluates the atomic orbitals on the mesh once
more for the local part and projects the non-local GTH projectors of each atom in reciprocal space
with one thin complex matrix product per atom, streaming the (N_G, nao) Fourier transforms of the
AOs from memory once per atom: 35 s of a 64-atom cell's 45 s Harris-Foulkes set-up here. The
functions below follow PySCF's formulas (``pyscf.pbc.df.fft.get_pp``) term by term, so
:func:`hpcdens.dft.pyscf_grid_ks.gamma_hcore` equals PySCF's matrix to rounding (about 1e-15 Ha,
tests/test_pyscf_pseudo.py) and the labels of earlier runs stay comparable with energies computed
now; the time is in docs/energy.md ("Harris-Foulkes cost").

Units: Bohr, Ha. Gamma point only (the only k-point the backend uses).
"""

from __future__ import annotations

import numpy as np
from pyscf import gto
from pyscf.pbc import tools
from pyscf.pbc.df import ft_ao
from pyscf.pbc.gto import pseudo

from . import pyscf_separable

#: Peak memory (MB) of one block of the reciprocal-space projection of the non-local part.
BLOCK_MEMORY_MB = 400


def local_pp_potential(cell, mesh) -> np.ndarray:
    """(N_grid,) local GTH pseudopotential of all atoms on the uniform grid (Ha), G = 0 removed,
    as ``pyscf.pbc.df.fft.get_pp`` builds it (grid order of ``cell.get_uniform_grids(mesh)``)."""
    gv = cell.get_Gv(mesh)
    vloc_g = -np.einsum("ij,ij->j", cell.get_SI(mesh=mesh), pseudo.get_vlocG(cell, gv))
    return tools.ifft(vloc_g, mesh).real.reshape(-1)


def element_projectors(cell, gv, symbol):
    """(n_proj, N_G) real GTH projectors p_{l,i,m}(G) of element ``symbol`` (before the structure
    factor, PySCF's normalisation), the (n_proj, n_proj) block-diagonal coupling matrix h and the
    (n_proj,) parity l % 2 of each projector."""
    pp = cell._pseudo[symbol]
    g_rad = np.linalg.norm(gv, axis=1)
    fake = gto.Mole()
    fake._atm = np.zeros((1, gto.ATM_SLOTS), dtype=np.int32)
    fake._bas = np.zeros((1, gto.BAS_SLOTS), dtype=np.int32)
    ptr = gto.PTR_ENV_START
    fake._env = np.zeros(ptr + 10)
    fake._bas[0, gto.NPRIM_OF] = fake._bas[0, gto.NCTR_OF] = 1
    fake._bas[0, gto.PTR_EXP], fake._bas[0, gto.PTR_COEFF] = ptr + 3, ptr + 4
    rows, blocks, parity = [], [], []
    for l, (rl, nl, hl) in enumerate(pp[5:]):
        if nl <= 0:
            continue
        fake._bas[0, gto.ANG_OF] = l
        fake._env[ptr + 3] = 0.5 * rl ** 2
        fake._env[ptr + 4] = rl ** (l + 1.5) * np.pi ** 1.25
        ylm = fake.eval_gto("GTOval", gv).T  # (2l+1, N_G)
        for k in range(nl):
            rows.append(ylm * pseudo.pp._qli(g_rad * rl, l, k))
            parity += [l % 2] * (2 * l + 1)
        hl = np.asarray(hl, dtype=float)
        blocks.append(np.kron(hl, np.eye(2 * l + 1)))  # index (i, m) with i outer, as rows
    if not rows:
        return np.zeros((0, len(gv))), np.zeros((0, 0)), np.zeros(0, dtype=int)
    return np.concatenate(rows), _block_diag(blocks), np.asarray(parity)


def _block_diag(blocks):
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n))
    p = 0
    for b in blocks:
        out[p:p + len(b), p:p + len(b)] = b
        p += len(b)
    return out


def _half_space(mesh):
    """Split the reciprocal vectors of ``mesh`` (order of ``cell.get_Gv(mesh)``) into ``half``, one
    of each pair (G, -G) that are both on the mesh, and ``single``: G = 0 and the vectors whose -G
    is not on the mesh (Nyquist planes of even n). Returns two index arrays."""
    freq = [np.fft.fftfreq(n, 1.0 / n).astype(int) for n in mesh]
    f = np.stack(np.meshgrid(*freq, indexing="ij"), axis=-1).reshape(-1, 3)
    nyquist = np.zeros(len(f), dtype=bool)
    for axis, n in enumerate(mesh):
        if n % 2 == 0:
            nyquist |= f[:, axis] == -n // 2
    first = np.where(f[:, 0] != 0, f[:, 0], np.where(f[:, 1] != 0, f[:, 1], f[:, 2]))
    half = ~nyquist & (first > 0)
    single = nyquist | (first == 0)
    return np.flatnonzero(half), np.flatnonzero(single)


def nonlocal_pp_matrix(cell, mesh) -> np.ndarray:
    """(nao, nao) non-local GTH pseudopotential matrix at the gamma point (Ha), summed over the
    reciprocal vectors of ``mesh`` as ``pyscf.pbc.df.fft.get_pp`` does:
    V = 1/vol sum_a sum_ij <phi|p_i^a> h_ij <p_j^a|phi> with
    <p_i^a|phi> = vol^-1/2 sum_G p_i(G) S_a(G)* phi(G).

    Orthorhombic cells (spherical AOs, :func:`hpcdens.dft.pyscf_separable.applies`) sum by axis
    (O(n_i) per term instead of O(N_G)); other cells by :func:`dense_projector_overlaps`."""
    if pyscf_separable.applies(cell):
        proj_ao, atoms = pyscf_separable.projector_overlaps(cell, mesh, element_projectors)
        proj_ao = proj_ao * (1 / cell.vol) ** 0.5
    else:
        proj_ao, atoms = dense_projector_overlaps(cell, mesh)
    if not atoms:
        return np.zeros((cell.nao, cell.nao))
    coupling = {s: element_projectors(cell, np.zeros((1, 3)), s)[1]
                for s in {cell.atom_symbol(a) for a in atoms}}
    couplings = _block_diag([coupling[cell.atom_symbol(a)] for a in atoms])
    return (proj_ao.conj().T @ (couplings @ proj_ao)).real / cell.vol


def dense_projector_overlaps(cell, mesh) -> tuple[np.ndarray, list[int]]:
    """(n_proj, nao) complex <p_i^a|phi> = vol^-1/2 sum_G p_i(G) S_a(G)* phi(G) over every
    reciprocal vector of ``mesh`` (rows: atom by atom, :func:`element_projectors`' order) and
    the atoms with projectors.

    The AOs and projectors are real, so the term at -G is (-1)^l times the conjugate of the one at
    G: the sum runs over half of the vectors in real arithmetic (2 Re for even l, 2i Im for odd
    l), all atoms in one matrix product per block of projectors: a quarter of the floating-point
    work of PySCF's per-atom complex products, and the AO transforms are read once."""
    gv = cell.get_Gv(mesh)
    half, single = _half_space(mesh)
    symbols = [cell.atom_symbol(a) for a in range(cell.natm)]
    per_element = {s: element_projectors(cell, gv, s) for s in set(symbols) if s in cell._pseudo}
    atoms = [a for a, s in enumerate(symbols) if s in per_element and len(per_element[s][0])]
    if not atoms:
        return np.zeros((0, cell.nao), dtype=complex), []
    nao = cell.nao
    structure = cell.get_SI(mesh=mesh)
    s_half, s_single = structure[:, half], structure[:, single]
    p_half = {s: (proj[:, half], proj[:, single], parity)
              for s, (proj, _, parity) in per_element.items()}
    norm = (1 / cell.vol) ** 0.5
    ao_half = ft_ao.ft_ao(cell, gv[half]) * norm  # (N_half, nao) complex
    ao_single = ft_ao.ft_ao(cell, gv[single]) * norm
    n_half = len(half)
    ao_stacked = np.empty((2 * n_half, nao))  # [Re; Im] of the AO transforms
    ao_stacked[:n_half], ao_stacked[n_half:] = ao_half.real, ao_half.imag
    del ao_half
    proj_ao = []
    per_block = max(1, int(BLOCK_MEMORY_MB * 1e6 / 16 / n_half))
    for block in _batches([(a, p_half[symbols[a]]) for a in atoms], per_block):
        x = np.empty((sum(len(p[0]) for _, p in block), 2 * n_half))
        single_part, odd = [], []
        row = 0
        for a, (p, p_single, parity) in block:
            # even l: [p Re S, p Im S] @ [Re B; Im B] = Re(X B) with X = p S*;
            # odd l: [-p Im S, p Re S] @ [Re B; Im B] = Im(X B)
            re_part = np.multiply(p, s_half[a].real, out=x[row:row + len(p), :n_half])
            im_part = np.multiply(p, s_half[a].imag, out=x[row:row + len(p), n_half:])
            odd_rows = np.flatnonzero(parity) + row
            if len(odd_rows):
                odd_re = re_part[parity == 1].copy()
                x[odd_rows, :n_half] = -im_part[parity == 1]
                x[odd_rows, n_half:] = odd_re
            single_part.append((p_single * s_single[a].conj()) @ ao_single)
            odd.append(parity)
            row += len(p)
        paired = x @ ao_stacked
        factor = np.where(np.concatenate(odd) == 1, 2j, 2.0)[:, None]
        proj_ao.append(np.concatenate(single_part) + factor * paired)
    proj_ao = np.concatenate(proj_ao)
    return proj_ao, atoms


def _batches(rows, per_block):
    """Consecutive groups of ``rows`` ((atom, (projectors, ...))) with about ``per_block``
    projectors each."""
    batch, size = [], 0
    for row in rows:
        batch.append(row)
        size += len(row[1][0])
        if size >= per_block:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
