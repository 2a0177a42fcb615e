"""Superposition of atomic densities (SAD) for the PySCF backend.

Each element's neutral atom is solved once (per basis, pseudopotential and functional) as a
spherically averaged, spin-restricted Kohn-Sham atom with the *same* GTH pseudopotential, basis and
functional as the crystal (PySCF's ``AtomSphAverageRKS`` with the GTH ``hcore`` of
``atom_hf_pp.AtomSCFPP``), with the ground-state configuration of ``pyscf.data.elements.
CONFIGURATION`` averaged over each shell's m components, so its density is exactly spherical.
Its valence (pseudo) density rho_A(r) is tabulated on a radial grid and interpolated by a cubic
spline; the SAD at a point r is sum_A sum_L rho_A(|r - R_A - L|) over atoms A and lattice
translations L within the cutoff radius of rho_A.

Note: pseudo-valence densities are not largest at the nucleus. The GTH valence density of Si peaks
on a shell at r = 1.38 Bohr (Ge 1.39, Sn 1.73, Al 1.56), that of Cr-Ni at r = 0.45-0.56 Bohr
(semicore 3s3p), with rho_A(0) 10-1000 times smaller than the maximum.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.integrate import simpson
from scipy.interpolate import CubicSpline

from ..errors import DFTSetupError

log = logging.getLogger(__name__)

#: Radial table: step and extent (Bohr); densities below DENSITY_CUTOFF (e/Bohr^3) count as zero.
RADIAL_STEP_BOHR = 0.002
RADIAL_MAX_BOHR = 30.0
DENSITY_CUTOFF = 1e-14
#: Points per block in the lattice sum (bounds memory to a few tens of MB).
POINTS_PER_BLOCK = 32768


@dataclass(frozen=True)
class RadialDensity:
    """Spherical valence density of one neutral atom.

    element : str; n_electrons : float, valence electrons (GTH charge);
    r_cut : float, Bohr, beyond which rho < DENSITY_CUTOFF and is taken as zero;
    integral : float, 4 pi int r^2 rho dr of the table (equals n_electrons to ~1e-10);
    energy : float, Ha, total energy of the atom.
    """

    element: str
    n_electrons: float
    r_cut: float
    integral: float
    energy: float
    spline: CubicSpline

    def __call__(self, r) -> np.ndarray:
        """rho_A at distances ``r`` (Bohr), e/Bohr^3; zero beyond ``r_cut``."""
        r = np.asarray(r, dtype=float)
        return np.where(r < self.r_cut, self.spline(np.minimum(r, self.r_cut)), 0.0)


def _atom_ks(element: str, basis: str, pseudo: str, xc: str):
    from pyscf import gto
    from pyscf.data import elements
    from pyscf.scf import atom_hf_pp, atom_ks

    class AtomRKSPP(atom_ks.AtomSphAverageRKS):
        get_hcore = atom_hf_pp.AtomSCFPP.get_hcore

    mol = gto.Mole(atom=[(element, (0.0, 0.0, 0.0))], basis=basis, pseudo=pseudo, unit="Bohr",
                   verbose=0)
    mol.spin = _nelectron(element, pseudo) % 2
    mol.build(parse_arg=False, dump_input=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PySCF's own remove_linear_dep_
        mf = AtomRKSPP(mol)
    mf.xc = xc
    mf.init_guess = "minao"
    mf.atomic_configuration = elements.CONFIGURATION
    mf.verbose = 0
    mf.run()
    if not mf.converged:
        raise DFTSetupError(f"the spherical {xc} atom of {element} ({basis}, {pseudo}) for the SAD "
                            "did not converge; try another basis family, e.g. gth-dzvp-molopt-sr")
    return mol, mf


def _nelectron(element: str, pseudo: str) -> int:
    from pyscf.pbc import gto

    return int(sum(gto.pseudo.load(pseudo, element)[0]))


@functools.lru_cache(maxsize=None)
def radial_density(element: str, basis: str, pseudo: str, xc: str = "PBE") -> RadialDensity:
    """The tabulated spherical valence density of a neutral ``element`` atom (cached per process)."""
    mol, mf = _atom_ks(element, basis, pseudo, xc)
    r = np.arange(0.0, RADIAL_MAX_BOHR + RADIAL_STEP_BOHR / 2, RADIAL_STEP_BOHR)
    points = np.zeros((len(r), 3))
    points[:, 2] = r
    ao = mol.eval_gto("GTOval", points)
    rho = np.einsum("pi,ij,pj->p", ao, mf.make_rdm1(), ao)
    above = np.nonzero(rho >= DENSITY_CUTOFF)[0]
    r_cut = float(r[above[-1] + 1]) if len(above) and above[-1] + 1 < len(r) else float(r[-1])
    keep = r <= r_cut + 10 * RADIAL_STEP_BOHR
    integral = float(4 * np.pi * simpson(r ** 2 * rho, x=r))
    log.info("SAD atom %s (%s, %s, %s): %d valence electrons, radial integral %.12f, r_cut %.2f "
             "Bohr, E = %.8f Ha", element, basis, pseudo, xc, mol.nelectron, integral, r_cut,
             mf.e_tot)
    return RadialDensity(element, float(mol.nelectron), r_cut, integral, float(mf.e_tot),
                         CubicSpline(r[keep], rho[keep]))


def _plane_spacings(cell_bohr: np.ndarray) -> np.ndarray:
    """(3,) distances between neighbouring lattice planes (Bohr)."""
    recip = np.linalg.inv(cell_bohr).T
    return 1.0 / np.linalg.norm(recip, axis=1)


def _image_offsets(cell_bohr: np.ndarray, r_cut: float) -> np.ndarray:
    """(m, 3) integer translations n whose images can come within ``r_cut`` of a minimum-image
    displacement (fractional components in [-1/2, 1/2))."""
    reach = np.ceil(r_cut / _plane_spacings(cell_bohr) + 0.5).astype(int)
    axes = [np.arange(-m, m + 1) for m in reach]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    half_diag = 0.5 * np.sum(np.linalg.norm(cell_bohr, axis=1))
    keep = np.linalg.norm(offsets @ cell_bohr, axis=1) - half_diag <= r_cut
    return offsets[keep]


def superpose(cell_bohr, positions_bohr, symbols, points_bohr, radial: dict) -> np.ndarray:
    """(npts,) sum over atoms and lattice images of ``radial[symbol](distance)``, e/Bohr^3.

    cell_bohr : (3, 3) lattice vectors as rows; positions_bohr : (natm, 3); points_bohr : (npts, 3)
    arbitrary Cartesian points; radial : element -> :class:`RadialDensity`.
    """
    cell_bohr = np.asarray(cell_bohr, dtype=float)
    points = np.asarray(points_bohr, dtype=float).reshape(-1, 3)
    inv = np.linalg.inv(cell_bohr)
    offsets = {el: _image_offsets(cell_bohr, rad.r_cut) for el, rad in radial.items()}
    out = np.zeros(len(points))
    for p0 in range(0, len(points), POINTS_PER_BLOCK):
        block = points[p0:p0 + POINTS_PER_BLOCK]
        acc = out[p0:p0 + POINTS_PER_BLOCK]
        for symbol, position in zip(symbols, np.asarray(positions_bohr, dtype=float)):
            rad = radial[symbol]
            frac = (block - position) @ inv
            frac -= np.floor(frac + 0.5)
            disp = frac @ cell_bohr
            for shift in offsets[symbol] @ cell_bohr:
                dist = np.linalg.norm(disp + shift, axis=1)
                near = dist < rad.r_cut
                if near.any():
                    acc[near] += rad.spline(dist[near])
    return out
