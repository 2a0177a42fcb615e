"""Radial atomic densities of the PySCF backend, for the superposition of atomic densities (SAD,
:mod:`hpcdens.sad`).

Each element's neutral atom is solved once (per basis, pseudopotential and functional) as a
spherically averaged, spin-restricted Kohn-Sham atom with the *same* GTH pseudopotential, basis and
functional as the crystal (PySCF's ``AtomSphAverageRKS`` with the GTH ``hcore`` of
``atom_hf_pp.AtomSCFPP``), with the ground-state configuration of ``pyscf.data.elements.
CONFIGURATION`` averaged over each shell's m components, so its density is exactly spherical.
Its valence (pseudo) density rho_A(r) is tabulated on a radial grid (:data:`RADIAL_STEP_BOHR`
out to :data:`RADIAL_MAX_BOHR`) and interpolated by a cubic spline (:func:`hpcdens.sad.tabulate`);
the table integrates to the GTH valence charge to ~1e-10 and is used as it is.

Note: pseudo-valence densities are not largest at the nucleus. The GTH valence density of Si peaks
on a shell at r = 1.38 Bohr (Ge 1.39, Sn 1.73, Al 1.56), that of Cr-Ni at r = 0.45-0.56 Bohr
(semicore 3s3p), with rho_A(0) 10-1000 times smaller than the maximum.
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np

from ..errors import DFTSetupError
from ..sad import RadialDensity, tabulate

log = logging.getLogger(__name__)

#: Radial table: step and extent (Bohr).
RADIAL_STEP_BOHR = 0.002
RADIAL_MAX_BOHR = 30.0


def _atom_ks(element: str, basis: str, pseudo: str, xc: str):
    from pyscf import gto
    from pyscf.data import elements
    from pyscf.scf import atom_hf_pp, atom_ks

    class AtomRKSPP(atom_ks.AtomSphAverageRKS):
        get_hcore = atom_hf_pp.AtomSCFPP.get_hcore

    mol = gto.Mole(atom=[(element, (0.0, 0.0, 0.0))], basis=basis, pseudo=pseudo, unit="Bohr",
                   verbose=0)
    mol.spin = gth_charge(element, pseudo) % 2
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


def gth_charge(element: str, pseudo: str) -> int:
    """Valence electrons of ``element`` in the GTH pseudopotential set ``pseudo`` (its charge)."""
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
    rad = tabulate(element, float(mol.nelectron), r, rho)
    log.info("SAD atom %s (%s, %s, %s): %d valence electrons, radial integral %.12f, r_cut %.2f "
             "Bohr, E = %.8f Ha", element, basis, pseudo, xc, mol.nelectron, rad.integral,
             rad.r_cut, mf.e_tot)
    return rad
