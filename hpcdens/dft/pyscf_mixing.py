"""SCF driver of the PySCF backend: Pulay (DIIS) mixing of the grid density with a Kerker
preconditioner, around :class:`hpcdens.dft.pyscf_grid_ks.GridKS`.

Why not PySCF's own SCF loop: with its default Fock-matrix DIIS the 4-atom fcc CrFeCoNi cell
(gamma point, 0.002 Ha Fermi-Dirac smearing) converged in 3 of 7 runs (after 26, 67 and 91
cycles); the other 4 still oscillated after 50-100 cycles (stock and grid XC alike; a level shift,
ADIIS, EDIIS or a larger DIIS space did not help; DIIS damping 0.5 did, 28-40 cycles). Mixing
the density, as plane-wave codes do, converged every cell we tried (CrFeCoNi and a rattled
variant in 34 and 38 cycles with the defaults below); it lets the SCF stop on an explicit density
residual, and every step is a Harris-Foulkes evaluation of the input density, so the SCF and the
Harris-Foulkes evaluator are the same code.

Convergence (all three at one step): the KS energy of the output density changed by less than
``conv_tol`` (Ha) since the previous step, it differs from the Harris-Foulkes energy of the input
density by less than ``conv_tol`` (both are stationary at self-consistency, so their difference is
second order in the density residual), and the density residual int |rho_out - rho_in| / N_e is
below ``density_tol``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .pyscf_grid_ks import GridKS, KSStep

log = logging.getLogger(__name__)

#: Mixing defaults: linear weight beta, Kerker wave vector q0 (1/Bohr), Pulay history length.
MIXING_BETA = 0.3
KERKER_Q0 = 1.5
PULAY_HISTORY = 12


def default_density_tol(conv_tol: float) -> float:
    """Density-residual tolerance that goes with an energy tolerance: 10 * conv_tol, clipped to
    [1e-6, 1e-4] (below ~1e-7 the residual of metallic cells can stall on numerical noise while
    the energy is converged to 1e-11 Ha)."""
    return min(1e-4, max(1e-6, 10.0 * conv_tol))


class PulayKerkerMixer:
    """Pulay (Anderson) extrapolation of grid densities, preconditioned by
    P(G) = beta G^2 / (G^2 + q0^2) (P(0) = beta; q0 = 0 is plain linear mixing)."""

    def __init__(self, cell, mesh, beta=MIXING_BETA, q0=KERKER_Q0, history=PULAY_HISTORY):
        # |G|^2 from get_Gv itself: spectral_ik zeroes the Nyquist planes of even meshes, which
        # would freeze the Nyquist component of the density.
        g2 = np.sum(cell.get_Gv(tuple(mesh)) ** 2, axis=1).reshape(tuple(mesh))
        self.precond = beta * g2 / (g2 + q0 ** 2) if q0 > 0 else np.full(g2.shape, beta)
        self.precond[0, 0, 0] = beta
        self.history = history
        self._inputs: list[np.ndarray] = []
        self._residuals: list[np.ndarray] = []

    def next(self, rho_in: np.ndarray, rho_out: np.ndarray) -> np.ndarray:
        """The input density of the next step."""
        residual = rho_out - rho_in
        self._inputs = (self._inputs + [rho_in.copy()])[-self.history:]
        self._residuals = (self._residuals + [residual])[-self.history:]
        x_opt, r_opt = rho_in, residual
        if len(self._residuals) > 1:
            d_res = [b - a for a, b in zip(self._residuals[:-1], self._residuals[1:])]
            d_in = [b - a for a, b in zip(self._inputs[:-1], self._inputs[1:])]
            overlap = np.array([[np.vdot(a, b) for b in d_res] for a in d_res])
            rhs = np.array([np.vdot(a, residual) for a in d_res])
            coef = np.linalg.lstsq(overlap, rhs, rcond=1e-12)[0]
            x_opt = rho_in - sum(c * d for c, d in zip(coef, d_in))
            r_opt = residual - sum(c * d for c, d in zip(coef, d_res))
        return x_opt + np.fft.ifftn(self.precond * np.fft.fftn(r_opt)).real


@dataclass
class SCFOutcome:
    """Result of :func:`run_scf`: ``energy`` is the KS energy (Ha, no entropy) of ``step.dm``."""

    converged: bool
    n_iterations: int
    energy: float
    step: KSStep
    energy_change: float
    residual: float
    message: str = ""


def run_scf(ks: GridKS, conv_tol: float, max_cycle: int, dm0=None, density_tol=None,
            beta=MIXING_BETA, q0=KERKER_Q0, history=PULAY_HISTORY, callback=None,
            rho0=None) -> SCFOutcome:
    """Self-consistent field by density mixing; see the module docstring for the criteria.

    The first input density is ``rho0`` (e/Bohr^3 on ``ks.mesh``, e.g. a predicted density) if
    given, else the density of ``dm0``, else of PySCF's atomic guess.

    ``callback(dict)`` is called after every step with cycle, energy, hf_energy, energy_change,
    residual and step. A run that hits ``max_cycle`` returns ``converged=False`` with a message.
    """
    density_tol = default_density_tol(conv_tol) if density_tol is None else density_tol
    if rho0 is not None and dm0 is not None:
        raise ValueError("give an initial density rho0 or a density matrix dm0, not both")
    if rho0 is not None:
        rho_in = np.reshape(np.asarray(rho0, dtype=float), ks.mesh).copy()
    else:
        rho_in = ks.density(ks.initial_dm() if dm0 is None else dm0)
    mixer = PulayKerkerMixer(ks.cell, ks.mesh, beta, q0, history)
    e_last, d_e = math.nan, math.inf
    for cycle in range(1, max_cycle + 1):
        step = ks.step(rho_in)
        energy = ks.energy(step.dm, step.rho_out)
        residual = float(np.sum(np.abs(step.rho_out - rho_in))) * ks.dv / ks.n_electrons
        d_e = energy - e_last if cycle > 1 else math.inf
        log.debug("cycle %d  E = %.12f  dE = %.3e  E - E_HF(in) = %.3e  residual = %.3e",
                  cycle, energy, d_e, energy - step.energy, residual)
        if callback is not None:
            callback(dict(cycle=cycle, energy=energy, hf_energy=step.energy, energy_change=d_e,
                          residual=residual, step=step))
        if not math.isfinite(energy):
            return SCFOutcome(False, cycle, energy, step, d_e, residual,
                              f"SCF diverged: energy {energy} at cycle {cycle}")
        if abs(d_e) < conv_tol and abs(energy - step.energy) < conv_tol and residual < density_tol:
            return SCFOutcome(True, cycle, energy, step, d_e, residual)
        rho_in = mixer.next(rho_in, step.rho_out)
        e_last = energy
    message = (f"SCF not converged after {max_cycle} cycles: last energy change {d_e:.3e} Ha "
               f"(tolerance {conv_tol:.1e}), density residual {residual:.3e} "
               f"(tolerance {density_tol:.1e})")
    return SCFOutcome(False, max_cycle, energy, step, d_e, residual, message)
