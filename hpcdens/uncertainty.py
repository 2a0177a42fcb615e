"""What the Bayesian network's uncertainty says about a prediction, and how well it says it.

* :func:`energy_spread`, :func:`aleatoric_shift`: the Harris-Foulkes energy error bar. Each of
  the N_s weight samples of a prediction is a whole density field (the weights of sample j are the same at every grid point,
  :func:`hpcdens.bnn_predict.predict` with ``keep_samples``); each is renormalised to N_e (Eq. 9)
  and its Harris-Foulkes energy (Eq. 10) computed with one set-up for the structure
  (:func:`hpcdens.dft.harris_foulkes_evaluator`). sigma_E is the standard deviation of those
  energies: the epistemic error bar of the energy. The aleatoric part is the network's
  heteroscedastic noise, independent from point to point; its effect on the energy is measured by
  adding one draw of that noise to the mean density (:func:`aleatoric_shift`), not assumed. The
  draw's std is capped at the local density: the aleatoric variance of Eq. 7 is a mean over the weight
  samples of exp(s_j), and at a few points per 64-atom cell (0.05 %, measured on the SiGeSn study's
  AL2 model) a single sample's log-variance explodes (std up to 1e16 e/Bohr^3), a noise no density
  can carry; ``aleatoric_capped_fraction`` counts those points.
* :func:`point_coverage`: per grid point, the fraction of the DFT density within +-1 and +-2
  predicted standard deviations of the prediction (total, epistemic, aleatoric), overall and by
  density level: for a calibrated Gaussian 68.3 % and 95.4 %.

Units: Ha (energies per atom where named), e/Bohr^3 (densities and standard deviations).
No MPI, no files.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

#: Coverage of +-1 and +-2 standard deviations for a Gaussian.
GAUSSIAN_COVERAGE = {1: math.erf(1 / math.sqrt(2)), 2: math.erf(2 / math.sqrt(2))}
#: Nominal coverages of the reliability diagram (central intervals of a Gaussian).
NOMINAL = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.683, 0.8, 0.9, 0.954, 0.99)
#: Density levels (quantiles of the DFT density of the cell) of the coverage split.
LEVELS = (("low", 0.0, 1 / 3), ("mid", 1 / 3, 2 / 3), ("high", 2 / 3, 1.0))


def energy_spread(samples, energy) -> dict:
    """The energy error bar of a prediction from its sample densities.

    samples : sequence of (n1, n2, n3) raw densities (e/Bohr^3), one per weight sample.
    energy : rho -> Harris-Foulkes free energy per atom (Ha) of the renormalised density, with
        one set-up for the structure (:func:`hpcdens.energy.energy_per_atom`).

    Returns (Ha/atom): sigma_per_atom_ha (standard deviation of the sample energies, ddof 1),
    sample_mean_per_atom_ha, sample_energies_per_atom_ha (list), n_samples.
    """
    if len(samples) < 2:
        raise ValueError(f"an energy spread needs at least 2 sample densities, got {len(samples)}")
    values = np.array([energy(rho) for rho in samples])
    return {"sigma_per_atom_ha": float(values.std(ddof=1)),
            "sample_mean_per_atom_ha": float(values.mean()),
            "sample_energies_per_atom_ha": values.tolist(), "n_samples": len(values)}


def energy_scale(calibration) -> float:
    """The factor on sigma_E of a model's calibration (``hpcdens calibrate``; a dict, or None /
    anything else when uncalibrated): its ``energy_scale``, else 1."""
    return float(calibration.get("energy_scale", 1.0)) if isinstance(calibration, dict) else 1.0


def aleatoric_shift(energy, mean_rho, aleatoric_std, clean: float, seed: int = 0) -> dict:
    """The energy change (Ha/atom, signed: noisy minus ``clean``, the energy of ``mean_rho``)
    from one draw (``seed``) of Gaussian noise with the aleatoric std, capped at |mean_rho|,
    added to the mean density; ``energy`` as in :func:`energy_spread`. Returns
    {"aleatoric_shift_per_atom_ha", "aleatoric_capped_fraction" (the fraction of points whose
    aleatoric std exceeds the density)}."""
    rng = np.random.default_rng(seed)
    cap = np.abs(mean_rho)
    noisy = mean_rho + rng.standard_normal(np.shape(mean_rho)) * np.minimum(aleatoric_std, cap)
    return {"aleatoric_shift_per_atom_ha": energy(noisy) - clean,
            "aleatoric_capped_fraction": float(np.mean(aleatoric_std > cap))}


def key_seed(key: str) -> int:
    """A seed for ``key`` that is the same on every machine and run (CRC32 of its UTF-8)."""
    return zlib.crc32(key.encode())


def point_coverage(rho_pred, rho_ref, epistemic_std, aleatoric_std) -> dict:
    """Fraction of grid points with |rho_ref - rho_pred| <= k sigma, k = 1, 2, for sigma the
    total (sqrt(epi^2 + ale^2)), epistemic and aleatoric standard deviation; overall
    (``coverage_<k>sigma_<kind>``) and, for the total, per third of the DFT density's range of
    values by quantile (``coverage_<k>sigma_total_<level>``, level low/mid/high). All arrays on
    one grid, e/Bohr^3. A calibrated Gaussian gives 0.683 and 0.954 (:data:`GAUSSIAN_COVERAGE`).
    ``reliability``: the observed fraction within the central Gaussian interval of each nominal
    coverage of :data:`NOMINAL` (total sigma): the reliability diagram's points."""
    err = np.abs(np.asarray(rho_ref) - np.asarray(rho_pred)).reshape(-1)
    epi, ale = np.asarray(epistemic_std).reshape(-1), np.asarray(aleatoric_std).reshape(-1)
    sigmas = {"total": np.hypot(epi, ale), "epistemic": epi, "aleatoric": ale}
    out = {}
    for k in (1, 2):
        for kind, sigma in sigmas.items():
            out[f"coverage_{k}sigma_{kind}"] = float(np.mean(err <= k * sigma))
    from scipy.special import erfinv

    ratio = err / np.maximum(sigmas["total"], np.finfo(float).tiny)
    out["reliability"] = [float(np.mean(ratio <= np.sqrt(2) * erfinv(p))) for p in NOMINAL]
    ref = np.asarray(rho_ref).reshape(-1)
    edges = np.quantile(ref, [lo for _, lo, _ in LEVELS] + [1.0])
    for (level, _, _), lo, hi in zip(LEVELS, edges[:-1], edges[1:]):
        inside = (ref >= lo) & (ref <= hi)
        for k in (1, 2):
            out[f"coverage_{k}sigma_total_{level}"] = float(
                np.mean(err[inside] <= k * sigmas["total"][inside]))
    return out
