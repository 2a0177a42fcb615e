"""Grid-consistent Kohn-Sham pieces for the PySCF backend (gamma point, spin-restricted).

Everything here sees the density only through its values on the uniform FFT grid, so that the SCF
(:class:`GridRKS`) and a later Harris-Foulkes evaluation of a *predicted* grid density share one
discretisation (docs/dft.md, "grid-consistent XC"):

* density on the grid from AOs: rho(r) = sum_ij D_ij phi_i(r) phi_j(r);
* density gradient spectrally: grad f = IFFT(i G FFT(f)) with ``cell.get_Gv``;
* GGA potential in local form v_xc = vrho - div(2 vsigma grad rho), div again spectral;
* Hartree by FFT with ``pyscf.pbc.tools.get_coulG`` and the G=0 term set to zero;
* a potential V(r) enters the Fock matrix as V_ij = sum_r phi_i(r) V(r) phi_j(r) * vol/N_grid.

FFT convention: ``numpy.fft.fftn`` (no normalisation forward, 1/N backward), the array axes in
the grid order of ``cell.get_uniform_grids(mesh)`` (point (i,j,k) at fractional (i/n1,j/n2,k/n3),
C order), which is also the order of ``cell.get_Gv(mesh)``. On even meshes the Nyquist component
is dropped from derivatives (it has no well-defined real derivative); odd meshes are preferred.

Units: Bohr, Hartree, e/Bohr^3 throughout. Functions follow PySCF's style: the ``cell`` first,
small and stateless, so a Harris-Foulkes evaluator can reuse them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
from pyscf import lib
from pyscf.dft.numint import NumInt
from pyscf.pbc import tools
from pyscf.pbc.dft import rks

from . import pyscf_ao_grid, pyscf_pseudo, pyscf_separable

log = logging.getLogger(__name__)

#: Memory (MB) one block of AO values may use when AOs are evaluated block-wise.
BLOCK_MEMORY_MB = 200
#: AO values on the whole grid are cached in :class:`GridRKS` below this size (MB).
AO_CACHE_MB = 2000


def uniform_coords(cell, mesh) -> np.ndarray:
    """(n1*n2*n3, 3) Cartesian coordinates (Bohr) of the uniform grid, C order: point (i, j, k) at
    fractional (i/n1, j/n2, k/n3), as :meth:`hpcdens.grid.Grid.cartesian_points`. PySCF's default
    ``cell.get_uniform_grids(mesh)`` has the same order but wraps fractions >= 1/2 to negative ones
    (the same points up to lattice vectors); we take ``wrap_around=False``."""
    return cell.get_uniform_grids(mesh, wrap_around=False)


def voxel_volume(cell, mesh) -> float:
    """Volume per grid point, vol / (n1 n2 n3) (Bohr^3)."""
    return float(cell.vol / np.prod(mesh))


def eval_ao(cell, coords) -> np.ndarray:
    """(npts, nao) float64: gamma-point (lattice-summed) AO values at ``coords`` (npts, 3) Bohr."""
    return np.asarray(cell.pbc_eval_gto("GTOval", np.asarray(coords, dtype=float)))


def mesh_ao(cell, mesh) -> np.ndarray:
    """(n1 n2 n3, nao) float64: gamma-point AO values on the uniform ``mesh`` of ``cell``: separable
    lattice sums when the cell is orthorhombic (:mod:`hpcdens.dft.pyscf_ao_grid`, 10-40x faster,
    equal to PySCF's to ~1e-13), PySCF's ``pbc_eval_gto`` otherwise."""
    if pyscf_ao_grid.is_orthorhombic(cell.lattice_vectors()) and not cell.cart:
        return pyscf_ao_grid.grid_ao(cell, mesh)
    return eval_ao(cell, uniform_coords(cell, mesh))


def _blocks(npts: int, nao: int, max_memory_mb: float | None = None):
    max_memory_mb = BLOCK_MEMORY_MB if max_memory_mb is None else max_memory_mb
    size = max(256, int(max_memory_mb * 1e6 / 8 / max(nao, 1) / 2))
    for start in range(0, npts, size):
        yield start, min(start + size, npts)


def density_at_points(cell, dm, coords, ao=None) -> np.ndarray:
    """(npts,) electron density (e/Bohr^3) of density matrix ``dm`` (nao, nao) at ``coords``.

    ``ao`` : optional (npts, nao) AO values at ``coords`` (otherwise evaluated block-wise).
    """
    if ao is not None:
        return np.einsum("pi,pi->p", ao @ dm, ao)
    coords = np.asarray(coords, dtype=float).reshape(-1, 3)
    rho = np.empty(len(coords))
    for p0, p1 in _blocks(len(coords), cell.nao):
        chunk = eval_ao(cell, coords[p0:p1])
        rho[p0:p1] = np.einsum("pi,pi->p", chunk @ dm, chunk)
    return rho


def grid_density(cell, dm, mesh, ao=None) -> np.ndarray:
    """(n1, n2, n3) electron density (e/Bohr^3) of ``dm`` on the uniform grid ``mesh``."""
    coords = None if ao is not None else uniform_coords(cell, mesh)
    return density_at_points(cell, dm, coords, ao=ao).reshape(tuple(mesh))


def potential_matrix(cell, v, mesh, ao=None) -> np.ndarray:
    """(nao, nao) matrix sum_r phi_i(r) v(r) phi_j(r) * vol/N of a grid potential v (n1, n2, n3),
    Ha; ``ao`` as in :func:`density_at_points`."""
    weight = voxel_volume(cell, mesh)
    v = np.asarray(v).reshape(-1)
    if ao is not None:
        mat = (ao.T * (v * weight)) @ ao
    else:
        coords = uniform_coords(cell, mesh)
        mat = np.zeros((cell.nao, cell.nao))
        for p0, p1 in _blocks(len(coords), cell.nao):
            chunk = eval_ao(cell, coords[p0:p1])
            mat += (chunk.T * (v[p0:p1] * weight)) @ chunk
    return (mat + mat.T) * 0.5


def spectral_ik(cell, mesh) -> np.ndarray:
    """(3, n1, n2, n3) complex: i*G (1/Bohr) in ``numpy.fft.fftn`` order, Nyquist planes zeroed."""
    mesh = tuple(int(n) for n in mesh)
    gv = cell.get_Gv(mesh).T.reshape(3, *mesh).copy()
    for axis, n in enumerate(mesh):
        if n % 2 == 0:
            index = [slice(None)] * 4
            index[axis + 1] = n // 2
            gv[tuple(index)] = 0.0
    return 1j * gv


def spectral_gradient(cell, f, mesh) -> np.ndarray:
    """(3, n1, n2, n3) Cartesian gradient of the periodic grid field ``f`` (units of f / Bohr)."""
    f_g = np.fft.fftn(np.asarray(f).reshape(tuple(mesh)))
    return np.fft.ifftn(spectral_ik(cell, mesh) * f_g, axes=(1, 2, 3)).real


def spectral_divergence(cell, vec, mesh) -> np.ndarray:
    """(n1, n2, n3) divergence of the periodic vector field ``vec`` (3, n1, n2, n3)."""
    vec_g = np.fft.fftn(np.asarray(vec).reshape(3, *mesh), axes=(1, 2, 3))
    return np.fft.ifftn((spectral_ik(cell, mesh) * vec_g).sum(axis=0)).real


def overlap_kinetic(cell) -> tuple[np.ndarray, np.ndarray]:
    """(nao, nao) gamma-point overlap and kinetic matrix (Ha): separable 1-D sums when the cell is
    orthorhombic and not too large (:func:`hpcdens.dft.pyscf_separable.applies`; equal to
    PySCF's to rounding, 2x faster for 64 atoms), PySCF's lattice-summed ``int1e_ovlp`` /
    ``int1e_kin`` otherwise."""
    if pyscf_separable.applies(cell):
        return pyscf_separable.overlap_kinetic(cell)
    return (np.asarray(cell.pbc_intor("int1e_ovlp", 1, 1)),
            np.asarray(cell.pbc_intor("int1e_kin", 1, 1)))


def hcore_parts(cell, kinetic=None) -> tuple[np.ndarray, np.ndarray]:
    """The gamma-point kinetic + GTH pseudopotential operator on ``cell.mesh`` in two parts: the
    (nao, nao) kinetic + non-local matrix (Ha) and the local pseudopotential on the grid
    (n1, n2, n3), Ha, whose matrix is :func:`potential_matrix` of it. ``kinetic``: the kinetic
    matrix if already computed (:func:`overlap_kinetic`)."""
    if not cell.pseudo or len(cell._ecpbas):
        raise ValueError("gamma_hcore handles GTH pseudopotentials only (cell.pseudo, no ECP)")
    mesh = tuple(int(n) for n in cell.mesh)
    local = pyscf_pseudo.local_pp_potential(cell, mesh) / voxel_volume(cell, mesh)
    if kinetic is None:
        kinetic = overlap_kinetic(cell)[1]
    return pyscf_pseudo.nonlocal_pp_matrix(cell, mesh) + kinetic, local.reshape(mesh)


def gamma_hcore(cell, ao=None) -> np.ndarray:
    """(nao, nao) kinetic + GTH pseudopotential matrix at the gamma point on ``cell.mesh`` (Ha):
    PySCF's ``pyscf.pbc.dft.RKS(cell).get_hcore()`` to rounding, several times faster
    (:mod:`hpcdens.dft.pyscf_pseudo`). ``ao`` as in :func:`density_at_points`, on ``cell.mesh``."""
    matrix, local = hcore_parts(cell)
    return matrix + potential_matrix(cell, local, cell.mesh, ao=ao)


def hartree_potential(cell, rho, mesh):
    """Hartree potential and energy of a grid density.

    Returns ``(v_h, e_h)``: v_h (n1, n2, n3) Ha = IFFT(4 pi/G^2 FFT(rho)) with the G=0 term set to
    zero (the neutralising background; the local pseudopotential's G=0 term lives in hcore), and
    e_h = 1/2 sum_r rho v_h * vol/N (Ha).
    """
    mesh = tuple(int(n) for n in mesh)
    rho = np.reshape(rho, mesh)
    coul_g = np.array(tools.get_coulG(cell, mesh=mesh), dtype=float).reshape(mesh)
    coul_g[0, 0, 0] = 0.0
    v_h = np.fft.ifftn(coul_g * np.fft.fftn(rho)).real
    e_h = 0.5 * float(np.sum(rho * v_h)) * voxel_volume(cell, mesh)
    return v_h, e_h


def xc_type(xc: str) -> str:
    """'LDA' or 'GGA' for a semilocal functional; ValueError for others (hybrids, meta-GGAs)."""
    ni = NumInt()
    kind = ni._xc_type(xc)
    if kind not in ("LDA", "GGA") or ni.libxc.is_hybrid_xc(xc):
        raise ValueError(f"xc {xc!r} is {kind}{' hybrid' if ni.libxc.is_hybrid_xc(xc) else ''}; "
                         "the grid-consistent SCF supports LDA and GGA functionals only")
    return kind


def xc_potential(cell, rho, mesh, xc: str = "PBE"):
    """XC potential and energy of a grid density, gradients taken spectrally.

    Returns ``(v_xc, e_xc)``: v_xc (n1, n2, n3) Ha in local form vrho - div(2 vsigma grad rho)
    (PySCF's ``eval_xc_eff`` already returns 2 vsigma grad rho as the gradient part), and
    e_xc = sum_r rho eps_xc * vol/N (Ha).
    """
    mesh = tuple(int(n) for n in mesh)
    rho = np.reshape(rho, mesh)
    kind = xc_type(xc)
    if kind == "GGA":
        grad = spectral_gradient(cell, rho, mesh)
        rho_in = np.concatenate([rho.reshape(1, -1), grad.reshape(3, -1)])
    else:
        rho_in = rho.reshape(-1)
    exc, vxc = NumInt().eval_xc_eff(xc, rho_in, deriv=1, xctype=kind)[:2]
    vxc = np.asarray(vxc).reshape(-1, *mesh)
    v = vxc[0]
    if kind == "GGA":
        v = v - spectral_divergence(cell, vxc[1:4], mesh)
    e_xc = float(np.sum(rho.reshape(-1) * exc)) * voxel_volume(cell, mesh)
    return v, e_xc


def hxc_potential(cell, rho, mesh, xc: str = "PBE"):
    """Hartree + XC potential of a grid density: ``(v_hxc (n1, n2, n3) Ha, e_h Ha, e_xc Ha)``."""
    v_h, e_h = hartree_potential(cell, rho, mesh)
    v_xc, e_xc = xc_potential(cell, rho, mesh, xc)
    return v_h + v_xc, e_h, e_xc


def fermi_dirac(mo_energy, n_electrons: float, sigma: float):
    """Spin-restricted Fermi-Dirac occupations for ``n_electrons`` at temperature ``sigma`` (Ha).

    Returns ``(mu, occ, entropy)``: chemical potential (Ha), occupations in [0, 2] per orbital, and
    the dimensionless entropy S = -2 sum_i [f ln f + (1-f) ln(1-f)] (PySCF's ``mf.entropy``
    convention; the free energy is E - sigma*S). With ``sigma == 0`` the lowest orbitals are filled
    (``n_electrons`` must be even) and mu is the highest occupied level.
    """
    e = np.asarray(mo_energy, dtype=float)
    if sigma == 0:
        nocc = int(round(n_electrons / 2))
        order = np.argsort(e)
        occ = np.zeros_like(e)
        occ[order[:nocc]] = 2.0
        return float(e[order[nocc - 1]]), occ, 0.0

    def occupation(mu):
        return 2.0 * 0.5 * (1.0 - np.tanh((e - mu) / (2.0 * sigma)))

    mu = scipy.optimize.brentq(lambda m: occupation(m).sum() - n_electrons,
                               e.min() - 50 * sigma - 1.0, e.max() + 50 * sigma + 1.0,
                               xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    occ = occupation(mu)
    f = occ / 2.0
    f = f[(f > 0) & (f < 1)]
    entropy = -2.0 * float(np.sum(f * np.log(f) + (1 - f) * np.log(1 - f)))
    return float(mu), occ, entropy


class GridRKS(rks.RKS):
    """Gamma-point RKS whose Hartree and XC parts come from the grid density (see module doc).

    The one-electron part (kinetic + GTH pseudopotential, ``get_hcore``) and the nuclear (Ewald)
    energy are PySCF's; ``get_veff`` returns J + V_xc built from the density on ``cell.mesh`` with
    spectral gradients, tagged with ``ecoul`` and ``exc`` so that ``energy_elec`` and therefore
    ``e_tot`` are the grid-consistent Kohn-Sham energy.
    """

    def __init__(self, cell, xc="PBE"):
        super().__init__(cell, xc=xc)
        self._grid_ao = None

    def grid_ao(self):
        """(N_grid, nao) AO values on the mesh, cached when smaller than AO_CACHE_MB; else None."""
        mesh = tuple(self.cell.mesh)
        if self._grid_ao is None and np.prod(mesh) * self.cell.nao * 8 / 1e6 < AO_CACHE_MB:
            self._grid_ao = mesh_ao(self.cell, mesh)
        return self._grid_ao

    def get_veff(self, cell=None, dm=None, *args, **kwargs):
        cell = self.cell if cell is None else cell
        dm = self.make_rdm1() if dm is None else np.asarray(dm)
        mesh = tuple(cell.mesh)
        ao = self.grid_ao()
        rho = grid_density(cell, dm, mesh, ao=ao)
        v_hxc, e_h, e_xc = hxc_potential(cell, rho, mesh, self.xc)
        vmat = potential_matrix(cell, v_hxc, mesh, ao=ao)
        return lib.tag_array(vmat, ecoul=e_h, exc=e_xc, vj=None, vk=None)


@dataclass
class KSStep:
    """One Kohn-Sham step from an input grid density ``rho_in`` (all energies in Ha).

    ``energy`` is the Harris-Foulkes energy of ``rho_in``: band - double_counting + e_h + e_xc +
    e_nuc, with band = sum_i f_i eps_i and double_counting = sum_r rho_in v_hxc * vol/N; it has no
    entropy term (the Mermin free energy is ``energy - sigma * entropy``). ``dm``, ``rho_out``
    (n1, n2, n3) e/Bohr^3 are the output density matrix and its grid density (None when not
    asked for).
    """

    energy: float
    band: float
    double_counting: float
    e_h: float
    e_xc: float
    e_nuc: float
    entropy: float
    mu: float
    mo_energy: np.ndarray
    occ: np.ndarray
    dm: np.ndarray
    rho_out: np.ndarray


class GridKS:
    """The fixed parts of a grid-consistent gamma-point KS problem for one cell.

    Built once (AO values on the mesh; overlap, kinetic and non-local GTH matrices and the local
    GTH potential on the grid, :func:`hcore_parts`; Ewald energy: about a second for 8 atoms,
    docs/energy.md for 64); afterwards :meth:`step` costs one Hxc evaluation on the grid, one AO
    projection (of v_Hxc + v_local) and one generalised eigenproblem. ``sigma`` is the Fermi-Dirac
    temperature k_B T (Ha).
    """

    def __init__(self, cell, xc: str = "PBE", sigma: float = 0.0):
        self.cell = cell
        self.xc = xc
        self.sigma = float(sigma)
        self.mesh = tuple(int(n) for n in cell.mesh)
        self.mf = GridRKS(cell, xc=xc)
        self.ao = self.mf.grid_ao()
        self.ovlp, kinetic = overlap_kinetic(cell)
        # hcore = h_matrix + the matrix of v_local; v_local joins the Hxc potential in every step
        self.h_matrix, self.v_local = hcore_parts(cell, kinetic)
        self.e_nuc = float(self.mf.energy_nuc())
        self.n_electrons = float(cell.nelectron)
        self.dv = voxel_volume(cell, self.mesh)

    def density(self, dm) -> np.ndarray:
        """(n1, n2, n3) grid density of a density matrix (e/Bohr^3)."""
        return grid_density(self.cell, dm, self.mesh, ao=self.ao)

    def initial_dm(self) -> np.ndarray:
        """PySCF's superposition-of-atomic-densities ('minao') initial density matrix."""
        dm = np.asarray(self.mf.get_init_guess(key="minao"))
        return dm.sum(axis=0) if dm.ndim == 3 else dm

    def energy(self, dm, rho=None):
        """Grid-consistent KS energy of ``dm`` (Ha, no entropy): Tr(D h) + E_H + E_xc + E_nuc;
        ``rho``: the grid density of ``dm`` (:meth:`density`) if already computed."""
        rho = self.density(dm) if rho is None else rho
        _, e_h = hartree_potential(self.cell, rho, self.mesh)
        _, e_xc = xc_potential(self.cell, rho, self.mesh, self.xc)
        e_local = float(np.sum(rho * self.v_local)) * self.dv  # = Tr(D V_local) on the grid
        return (float(np.einsum("ij,ji->", self.h_matrix, dm)) + e_local + e_h + e_xc
                + self.e_nuc)

    def step(self, rho_in, output_density: bool = True) -> KSStep:
        """Diagonalise the KS Hamiltonian of ``rho_in`` (n1, n2, n3); see :class:`KSStep`.
        ``output_density=False`` skips ``rho_out`` (None), which a Harris-Foulkes energy does not
        need."""
        rho_in = np.reshape(rho_in, self.mesh)
        v_hxc, e_h, e_xc = hxc_potential(self.cell, rho_in, self.mesh, self.xc)
        fock = self.h_matrix + potential_matrix(self.cell, v_hxc + self.v_local, self.mesh,
                                                ao=self.ao)
        mo_energy, mo_coeff = scipy.linalg.eigh(fock, self.ovlp)
        mu, occ, entropy = fermi_dirac(mo_energy, self.n_electrons, self.sigma)
        dm = (mo_coeff * occ) @ mo_coeff.T
        band = float(np.dot(occ, mo_energy))
        double_counting = float(np.sum(rho_in * v_hxc)) * self.dv
        energy = band - double_counting + e_h + e_xc + self.e_nuc
        return KSStep(energy, band, double_counting, e_h, e_xc, self.e_nuc, entropy, mu,
                      mo_energy, occ, dm, self.density(dm) if output_density else None)
